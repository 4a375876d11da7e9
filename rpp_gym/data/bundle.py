"""Everything an env needs from a dataset, computed once and cached as arrays.

A :class:`DataBundle` holds the canonical :class:`~rpp_gym.data.dataset.Dataset`, the
leave-one-out split, the user pools, and the collaborative features (a deterministic truncated
SVD of the *training* interactions: every interaction except each user's held-out last one).
Bundles are memoised per process (so 64 envs share one) and stored on disk under
``$RPP_GYM_HOME/processed`` so a warm load skips parsing the raw files.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from rpp_gym.data.dataset import Dataset
from rpp_gym.data.protocol import LeaveOneOut, leave_one_out, make_pools, training_interactions

__all__ = ["BundleOptions", "DataBundle", "load_bundle"]

PROCESS_VERSION = 1
"""Bump when the processing below changes, so stale caches are rebuilt."""


@dataclass(frozen=True)
class BundleOptions:
    """How a dataset is turned into an RL benchmark; part of the processed-cache key."""

    history_cap: int = 50
    """Most recent items kept before the held-out target."""
    pool_sizes: tuple[int, int, int] = (200, 200, 200)
    """Users in the train, valid and test pools."""
    split_seed: int = 2025
    """Seeds the user pools; independent of any env seed."""
    min_interactions: int = 5
    """Users with fewer interactions (target included) are not eligible for pools."""
    embedding_dim: int = 32
    """Rank of the collaborative factorization."""

    def __post_init__(self) -> None:
        if len(self.pool_sizes) != 3 or min(self.pool_sizes) < 1:
            raise ValueError(f"pool_sizes={self.pool_sizes} must be three positive sizes (train, valid, test)")
        if self.embedding_dim < 2:
            raise ValueError(f"embedding_dim={self.embedding_dim} must be at least 2")
        if self.min_interactions < 2:
            raise ValueError(f"min_interactions={self.min_interactions} must be at least 2 (history + target)")


@dataclass(eq=False)
class DataBundle:
    """A dataset with its protocol and features. Treat as read-only.

    Attributes:
        dataset: The canonical dataset.
        options: The options it was built with.
        split: Leave-one-out targets and capped histories.
        pools: ``{"train"|"valid"|"test": sorted user indices}``.
        item_vecs: ``float32[n_items, d]`` unit-norm item factors (zero rows for items with no
            training interaction).
        user_emb: ``float32[n_users, d]`` unit-norm user factors.
        popularity: ``float32[n_items]`` ``log1p(count) / log1p(max count)`` over training data.
        negative_pool: Items eligible as negatives (at least one training interaction).
        seen_sorted: CSR (offsets = ``dataset.offsets``) of each user's items, sorted, for
            fast "never interacted" checks.
    """

    dataset: Dataset
    options: BundleOptions
    split: LeaveOneOut
    pools: dict[str, npt.NDArray[np.int64]]
    item_vecs: npt.NDArray[np.float32]
    user_emb: npt.NDArray[np.float32]
    popularity: npt.NDArray[np.float32]
    negative_pool: npt.NDArray[np.int32]
    seen_sorted: npt.NDArray[np.int32]
    key: tuple[Any, ...] = ()

    def seen(self, user: int) -> npt.NDArray[np.int32]:
        """Sorted items the user ever interacted with (target included)."""
        o = self.dataset.offsets
        return self.seen_sorted[o[user] : o[user + 1]]

    def user_index(self, user_id: str, split: str) -> int:
        """The index of ``user_id`` if it is in pool ``split``, else a ``KeyError`` saying so."""
        if split not in self.pools:
            raise KeyError(f"unknown split {split!r}; choose one of {list(self.pools)}")
        try:
            idx = self.dataset.user_ids.index(str(user_id))
        except ValueError:
            raise KeyError(f"user_id {user_id!r} is not in dataset {self.dataset.name!r}") from None
        pool = self.pools[split]
        pos = np.searchsorted(pool, idx)
        if pos >= len(pool) or pool[pos] != idx:
            raise KeyError(
                f"user_id {user_id!r} is not in the {split!r} pool of {self.dataset.name!r} "
                f"({len(pool)} users, e.g. {[self.dataset.user_ids[i] for i in pool[:3]]}); "
                "pick one from that pool or change options['split']"
            )
        return idx

    def __reduce_ex__(self, protocol: Any) -> Any:
        # A named dataset pickles by reference: unpickling reloads it from the per-process memo
        # or the processed cache, so pickled envs stay small. In-memory datasets pickle by value.
        if self.key and self.key[0] == "name":
            return (_load_by_key, (self.key,))
        return super().__reduce_ex__(protocol)


# --------------------------------------------------------------------------------------------
# building


def _factorize(dataset: Dataset, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Degree-normalised truncated SVD of the binary training matrix; deterministic."""
    users, items = training_interactions(dataset)
    x = sp.csr_matrix((np.ones(len(users), dtype=np.float64), (users, items)), shape=(dataset.n_users, dataset.n_items))
    x.data[:] = 1.0  # duplicates collapse to 1
    du = np.asarray(x.sum(axis=1)).ravel()
    di = np.asarray(x.sum(axis=0)).ravel()
    norm = sp.diags(1 / np.sqrt(np.maximum(du, 1))) @ x @ sp.diags(1 / np.sqrt(np.maximum(di, 1)))
    k = min(dim, min(norm.shape) - 1)
    v0 = np.full(min(norm.shape), 1 / np.sqrt(min(norm.shape)))
    u, s, vt = svds(norm, k=k, v0=v0, solver="arpack")
    order = np.argsort(-s)
    u, s, vt = u[:, order], s[order], vt[order]
    signs = np.sign(vt[np.arange(k), np.abs(vt).argmax(axis=1)])  # fix each factor's sign
    u, vt = u * signs, vt * signs[:, None]
    item = vt.T * np.sqrt(s)
    user = u * np.sqrt(s)
    if k < dim:
        item = np.pad(item, ((0, 0), (0, dim - k)))
        user = np.pad(user, ((0, 0), (0, dim - k)))
    item /= np.maximum(np.linalg.norm(item, axis=1, keepdims=True), 1e-12)
    user /= np.maximum(np.linalg.norm(user, axis=1, keepdims=True), 1e-12)
    item[di == 0] = 0.0
    pop = (np.log1p(di) / np.log1p(max(di.max(), 1))).astype(np.float32)
    return item.astype(np.float32), user.astype(np.float32), pop


def _build_arrays(dataset: Dataset, options: BundleOptions) -> dict[str, np.ndarray]:
    item_vecs, user_emb, popularity = _factorize(dataset, options.embedding_dim)
    seen = np.concatenate(
        [np.sort(dataset.sequence(u)) for u in range(dataset.n_users)] or [np.empty(0, np.int32)]
    ).astype(np.int32)
    return {"item_vecs": item_vecs, "user_emb": user_emb, "popularity": popularity, "seen_sorted": seen}


def _assemble(
    dataset: Dataset, options: BundleOptions, arrays: dict[str, np.ndarray], key: tuple[Any, ...]
) -> DataBundle:
    split = leave_one_out(dataset, options.history_cap)
    eligible = np.flatnonzero(dataset.lengths() >= options.min_interactions)
    pools = make_pools(eligible, options.pool_sizes, options.split_seed)
    negative_pool = np.flatnonzero(arrays["popularity"] > 0).astype(np.int32)
    return DataBundle(
        dataset=dataset,
        options=options,
        split=split,
        pools=pools,
        item_vecs=arrays["item_vecs"],
        user_emb=arrays["user_emb"],
        popularity=arrays["popularity"],
        negative_pool=negative_pool,
        seen_sorted=arrays["seen_sorted"],
        key=key,
    )


# --------------------------------------------------------------------------------------------
# caching

_MEMO: dict[tuple[Any, ...], DataBundle] = {}
_LOCK = threading.Lock()


def _files_signature(paths: list[Path]) -> list[tuple[str, int, int]]:
    out = []
    for p in sorted(paths):
        st = p.stat()
        out.append((p.name, st.st_size, st.st_mtime_ns))
    return out


def _save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _dataset_to_arrays(ds: Dataset) -> dict[str, np.ndarray]:
    return {
        "meta": np.array(json.dumps({"name": ds.name, "domain": ds.domain})),
        "item_ids": np.array(ds.item_ids, dtype=np.str_),
        "item_text": np.array(ds.item_text, dtype=np.str_),
        "user_ids": np.array(ds.user_ids, dtype=np.str_),
        "offsets": ds.offsets,
        "items": ds.items,
    }


def _dataset_from_arrays(z: Any) -> Dataset:
    meta = json.loads(str(z["meta"]))
    return Dataset(
        meta["name"],
        meta["domain"],
        tuple(z["item_ids"].tolist()),
        tuple(z["item_text"].tolist()),
        tuple(z["user_ids"].tolist()),
        z["offsets"].astype(np.int64),
        z["items"].astype(np.int32),
    )


def _load_named(name: str, data_dir: str | None, options: BundleOptions, key: tuple[Any, ...]) -> DataBundle:
    from rpp_gym.data.fetch import cache_home
    from rpp_gym.data.loaders import dataset_files, load_dataset

    files = dataset_files(name, data_dir)
    digest = hashlib.sha256(
        json.dumps([name, PROCESS_VERSION, asdict(options), _files_signature(files)]).encode()
    ).hexdigest()[:16]
    path = cache_home() / "processed" / f"{name}-{digest}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                dataset = _dataset_from_arrays(z)
                arrays = {k: z[k] for k in ("item_vecs", "user_emb", "popularity", "seen_sorted")}
            return _assemble(dataset, options, arrays, key)
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # a damaged cache is rebuilt, never trusted
    dataset = load_dataset(name, data_dir)
    arrays = _build_arrays(dataset, options)
    _save_npz_atomic(path, {**_dataset_to_arrays(dataset), **arrays})
    return _assemble(dataset, options, arrays, key)


def _load_by_key(key: tuple[Any, ...]) -> DataBundle:
    with _LOCK:
        if key in _MEMO:
            return _MEMO[key]
    kind, ref, data_dir, opts = key
    options = BundleOptions(**dict(opts))
    if kind == "name":
        bundle = _load_named(ref, data_dir, options, key)
    else:
        raise KeyError(f"dataset {ref!r} was built in memory and is not in this process; pass the Dataset again")
    with _LOCK:
        return _MEMO.setdefault(key, bundle)


def load_bundle(
    dataset: str | Dataset, data_dir: str | os.PathLike[str] | None = None, options: BundleOptions | None = None
) -> DataBundle:
    """Load (or build and cache) the bundle for a dataset name or an in-memory ``Dataset``."""
    options = options or BundleOptions()
    opts = tuple(sorted(asdict(options).items()))
    opts = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in opts)
    if isinstance(dataset, Dataset):
        key = ("memory", dataset.fingerprint(), None, opts)
        with _LOCK:
            if key in _MEMO:
                return _MEMO[key]
        bundle = _assemble(dataset, options, _build_arrays(dataset, options), key)
        with _LOCK:
            return _MEMO.setdefault(key, bundle)
    key = ("name", str(dataset), None if data_dir is None else str(Path(data_dir).resolve()), opts)
    return _load_by_key(key)
