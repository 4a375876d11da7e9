"""The evaluation's candidate lists as arrays, and metrics of any scorer over them.

:func:`rpp_gym.evaluation.evaluate` rolls a prompt policy out on a vector env; the candidate
list of each user (the held-out next item plus unseen negatives) comes from the env's reset with
the evaluation seed alone. :func:`candidate_lists` runs exactly that reset (same env id, env
kwargs, batching, padding and seeds) and reads the lists back, so a recommender that scores
items (popularity, BPR-MF, SASRec, ...) is measured on the very lists the LLM methods ranked.
:func:`evaluate_scores` turns a score matrix into an :class:`~rpp_gym.evaluation.EvalResult`
that a comparison report lists beside the LLM methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from rpp_gym.data.bundle import DataBundle
from rpp_gym.evaluation import METRIC_KEYS, EvalResult, split_users, user_batches
from rpp_gym.metrics import batch_metrics

__all__ = [
    "CandidateLists",
    "Scorer",
    "candidate_lists",
    "evaluate_scorer",
    "evaluate_scores",
    "target_ranks",
]


class CandidateLists(NamedTuple):
    """What :func:`candidate_lists` returns; unpacks as ``users, candidates, target_col``."""

    users: npt.NDArray[np.int64]
    """``int64[U]`` user indices (into ``bundle.dataset.user_ids``), in evaluation order."""
    candidates: npt.NDArray[np.int32]
    """``int32[U, n]`` item indices (into ``bundle.dataset.item_ids``), in the env's stored order."""
    target_col: int
    """Column of ``candidates`` that holds each user's held-out item (the env stores it first)."""


@dataclass(frozen=True)
class _Extraction:
    lists: CandidateLists
    bundle: DataBundle


def _extract(
    env_id: str,
    split: str,
    seed: int,
    n_users: int | None,
    env_kwargs: dict[str, Any] | None,
    batch_size: int,
) -> _Extraction:
    import gymnasium as gym

    import rpp_gym  # noqa: F401  (registers the env ids)

    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    if n_users is not None and n_users < 1:
        raise ValueError(f"n_users={n_users} must be at least 1 (or None for the whole pool)")
    env_kwargs = dict(env_kwargs or {})
    # evaluate()'s users, width and batches (rpp_gym.evaluation.user_batches): the same lists
    users, bundle = split_users(env_id, split, n_users, env_kwargs)
    width = min(batch_size, len(users))
    env = gym.make_vec(env_id, num_envs=width, **env_kwargs)
    vec: Any = env.unwrapped
    core = vec.core
    out_users = np.zeros(len(users), dtype=np.int64)
    out_cands = np.zeros((len(users), core.config.n_candidates), dtype=np.int32)
    try:
        for lo, real, chunk, batch_seed in user_batches(users, width, seed):
            env.reset(seed=batch_seed, options={"split": split, "user_id": chunk})
            out_users[lo : lo + real] = core.user[:real]
            out_cands[lo : lo + real] = core.candidates[:real]
    finally:
        env.close()
    return _Extraction(CandidateLists(out_users, out_cands, 0), bundle)


def candidate_lists(
    env_id: str = "RPP-MovieLens-Sim-v0",
    split: str = "test",
    seed: int = 0,
    n_users: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    *,
    batch_size: int = 200,
) -> CandidateLists:
    """The candidate list of every user that ``evaluate`` with the same arguments uses.

    The lists are read from the env itself after the same resets ``evaluate`` performs, so they
    match what the env shows in ``info["candidates"]`` (as item keys: ``bundle.dataset.item_ids``)
    whatever the backend.

    Args:
        env_id: A registered env id.
        split: The user pool (``"train"``, ``"valid"`` or ``"test"``).
        seed: The evaluation seed (each batch is reset with ``seed + first row``).
        n_users: Evaluate only the first ``n_users`` users of the pool (default: all).
        env_kwargs: Keyword arguments for ``gym.make_vec`` (e.g. ``{"n_candidates": 20}``).
        batch_size: ``evaluate``'s batch size; it changes the lists when the pool is larger.

    Returns:
        ``(users, candidates, target_col)``; see :class:`CandidateLists`.
    """
    return _extract(env_id, split, seed, n_users, env_kwargs, batch_size).lists


def target_ranks(scores: npt.ArrayLike, target_col: int = 0) -> npt.NDArray[np.int64]:
    """0-based rank of the target in each row when candidates are sorted by descending score.

    Ties are broken pessimistically: every other candidate whose score equals the target's is
    ranked above it, so a constant scorer earns the worst rank rather than the credit of the
    target's storage position (the env stores the target first, so breaking ties by position
    would reward a scorer for knowing nothing).

    >>> target_ranks([[0.9, 0.1, 0.5], [0.2, 0.2, 0.7], [1.0, 1.0, 1.0]]).tolist()
    [0, 2, 2]

    Raises:
        ValueError: ``scores`` is not a 2-D float matrix with finite values, or ``target_col``
            is not one of its columns.
    """
    s = np.asarray(scores)
    if s.ndim != 2 or s.shape[1] < 1:
        raise ValueError(f"scores must be a 2-D [n_users, n_candidates] array, got shape {s.shape}")
    if not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)):
        raise ValueError(f"scores must be numeric, got dtype {s.dtype}")
    if not np.isfinite(s).all():
        bad = tuple(int(v) for v in np.argwhere(~np.isfinite(s))[0])
        raise ValueError(f"scores must be finite; entry {bad} is {s[bad]!r}")
    if isinstance(target_col, bool) or not 0 <= int(target_col) < s.shape[1]:
        raise ValueError(f"target_col={target_col!r} is not a column of a {s.shape[1]}-candidate score matrix")
    t = s[:, [int(target_col)]]
    better_or_equal = (s >= t).sum(axis=1) - 1  # minus the target itself
    return better_or_equal.astype(np.int64)


def evaluate_scores(
    scores: npt.ArrayLike,
    target_col: int = 0,
    *,
    name: str = "scores",
    user_ids: Sequence[str] | None = None,
    wall_s: float = 0.0,
) -> EvalResult:
    """Metrics of a score matrix over candidate lists, as an ``EvalResult`` with one round.

    Args:
        scores: ``float[U, n]``, higher is better; row ``u`` scores user ``u``'s candidates.
        target_col: The column holding the held-out item.
        name: Label in reports.
        user_ids: User keys in row order (default: ``"0"``, ``"1"``, ...).
        wall_s: Time to report (e.g. fitting plus scoring).

    Returns:
        An :class:`~rpp_gym.evaluation.EvalResult` whose ``metrics`` are ``[U, 1]`` arrays of
        NDCG@1/5/10, hit@1/5/10 and MRR (ties broken pessimistically, see
        :func:`target_ranks`), every answer counted as parsed and no tokens spent.

    >>> r = evaluate_scores([[3.0, 1.0, 2.0], [0.0, 1.0, 2.0]], name="demo")
    >>> r.summary()["ndcg@1"], r.metrics["mrr"][:, 0].tolist()
    (0.5, [1.0, 0.3333333333333333])
    """
    ranks = target_ranks(scores, target_col)
    found = batch_metrics(ranks)
    metrics = {k: found[k].reshape(-1, 1) for k in METRIC_KEYS}
    ids = [str(i) for i in range(len(ranks))] if user_ids is None else [str(u) for u in user_ids]
    if len(ids) != len(ranks):
        raise ValueError(f"{len(ids)} user_ids for {len(ranks)} score rows")
    return EvalResult(
        name,
        ids,
        metrics,
        np.ones((len(ranks), 1), dtype=bool),
        tokens=0,
        wall_s=wall_s,
        actions=np.zeros((len(ranks), 0, 4), dtype=np.int64),
    )


class Scorer(Protocol):
    """A fitted recommender: scores candidate items per user (higher is better)."""

    name: str

    def score(
        self,
        users: npt.NDArray[np.int64],
        histories: Sequence[npt.NDArray[np.int32]],
        candidates: npt.NDArray[np.int32],
    ) -> npt.NDArray[np.float64]: ...


def evaluate_scorer(
    scorer: Scorer,
    env_id: str = "RPP-MovieLens-Sim-v0",
    *,
    split: str = "test",
    n_users: int | None = None,
    seed: int = 0,
    batch_size: int = 200,
    env_kwargs: dict[str, Any] | None = None,
) -> EvalResult:
    """Score the candidate lists ``evaluate`` would use with the same arguments.

    Each user's history is the env's (``bundle.split.history``: up to ``history_cap`` items
    before the held-out one, oldest first).
    """
    import time

    start = time.perf_counter()
    ex = _extract(env_id, split, seed, n_users, env_kwargs, batch_size)
    users, cands, col = ex.lists
    histories = [ex.bundle.split.history(int(u)) for u in users]
    scores = scorer.score(users, histories, cands)
    ids = [ex.bundle.dataset.user_ids[int(u)] for u in users]
    return evaluate_scores(scores, col, name=scorer.name, user_ids=ids, wall_s=time.perf_counter() - start)
