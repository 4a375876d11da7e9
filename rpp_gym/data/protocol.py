"""The evaluation protocol: leave-one-out by time, user pools, candidate sampling.

All functions are pure given their inputs (randomness comes in as a ``numpy.random.Generator``
or a seed) so the env, the baselines and the traditional recommenders see the same users and
the same candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rpp_gym.data.dataset import Dataset

__all__ = ["SPLITS", "LeaveOneOut", "leave_one_out", "make_pools", "sample_negatives"]

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True, eq=False)
class LeaveOneOut:
    """Per-user held-out target and capped history (CSR).

    Attributes:
        targets: ``int32[n_users]``, the user's last item (by time).
        hist_offsets: ``int64[n_users + 1]`` into ``hist_items``.
        hist_items: The up to ``cap`` most recent items before the target, oldest first.
    """

    targets: npt.NDArray[np.int32]
    hist_offsets: npt.NDArray[np.int64]
    hist_items: npt.NDArray[np.int32]

    def history(self, user: int) -> npt.NDArray[np.int32]:
        """The capped history of user index ``user``, oldest first."""
        return self.hist_items[self.hist_offsets[user] : self.hist_offsets[user + 1]]

    def history_lengths(self) -> npt.NDArray[np.int64]:
        return np.diff(self.hist_offsets)


def leave_one_out(dataset: Dataset, cap: int = 50) -> LeaveOneOut:
    """Hold out each user's last interaction; keep up to ``cap`` items before it as history.

    Users with a single interaction get an empty history (they are excluded from pools).

    >>> ds = Dataset.from_sequences("t", "movie", ["a", "b", "c"], ["A", "B", "C"], {"u": [0, 1, 2]})
    >>> loo = leave_one_out(ds, cap=1)
    >>> int(loo.targets[0]), loo.history(0).tolist()
    (2, [1])
    """
    if cap < 1:
        raise ValueError(f"history cap={cap} must be at least 1")
    lengths = dataset.lengths()
    if (lengths < 1).any():
        raise ValueError("every user needs at least one interaction")
    ends = dataset.offsets[1:]
    targets = dataset.items[ends - 1].astype(np.int32)
    hist_len = np.minimum(lengths - 1, cap)
    hist_offsets = np.zeros(dataset.n_users + 1, dtype=np.int64)
    np.cumsum(hist_len, out=hist_offsets[1:])
    # Gather the last hist_len items before each target, vectorised.
    starts = ends - 1 - hist_len
    idx = np.repeat(starts - hist_offsets[:-1], hist_len) + np.arange(hist_offsets[-1])
    hist_items = dataset.items[idx].astype(np.int32)
    return LeaveOneOut(targets, hist_offsets, hist_items)


def training_interactions(dataset: Dataset) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """(user index, item index) of every interaction except each user's held-out last one."""
    lengths = dataset.lengths()
    users = np.repeat(np.arange(dataset.n_users), lengths)
    keep = np.ones(dataset.n_interactions, dtype=bool)
    keep[dataset.offsets[1:] - 1] = False
    return users[keep], dataset.items[keep]


def make_pools(
    eligible: npt.NDArray[np.int64], sizes: tuple[int, int, int], split_seed: int
) -> dict[str, npt.NDArray[np.int64]]:
    """Disjoint, deterministic ``train``/``valid``/``test`` user pools.

    A permutation of the eligible users seeded by the dataset-level ``split_seed`` (never the
    env seed), cut into consecutive blocks, each block sorted.

    >>> pools = make_pools(np.arange(10), (3, 3, 3), split_seed=0)
    >>> sorted(len(p) for p in pools.values())
    [3, 3, 3]
    >>> len(set().union(*map(set, pools.values())))
    9
    """
    need = sum(sizes)
    if need > len(eligible):
        raise ValueError(
            f"pool sizes {sizes} need {need} users but only {len(eligible)} are eligible; "
            "pass smaller pool_sizes="
        )
    perm = np.random.default_rng(split_seed).permutation(np.asarray(eligible, dtype=np.int64))
    pools, start = {}, 0
    for name, size in zip(SPLITS, sizes, strict=True):
        pools[name] = np.sort(perm[start : start + size])
        start += size
    return pools


def sample_negatives(
    rng: np.random.Generator,
    seen_sorted: npt.NDArray[np.int32],
    pool: npt.NDArray[np.int32],
    n: int,
) -> npt.NDArray[np.int32]:
    """Draw ``n`` distinct items from ``pool`` that are not in ``seen_sorted`` (a sorted array).

    Rejection sampling: cheap because a user has seen a small fraction of the catalogue.
    """
    if n == 0:
        return np.empty(0, dtype=np.int32)
    out: list[int] = []
    chosen: set[int] = set()
    for _ in range(100):
        draw = pool[rng.integers(0, len(pool), size=2 * n + 4)]
        pos = np.searchsorted(seen_sorted, draw)
        pos[pos == len(seen_sorted)] = 0
        fresh = draw[seen_sorted[pos] != draw] if len(seen_sorted) else draw
        for item in fresh.tolist():
            if item not in chosen:
                chosen.add(item)
                out.append(item)
                if len(out) == n:
                    return np.asarray(out, dtype=np.int32)
    raise ValueError(f"could not draw {n} unseen negatives; the user has seen almost every item")
