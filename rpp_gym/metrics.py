"""Ranking metrics for one relevant item (the user's held-out next item).

``rank`` is the 0-based position of the target in the parsed ranking, or ``None`` (``-1`` in
arrays) when the LLM did not rank it; an unranked target gets no credit (the paper's rule).

>>> {key: round(value, 4) for key, value in metrics_for_rank(1).items()}
{'ndcg@1': 0.0, 'ndcg@5': 0.6309, 'ndcg@10': 0.6309, 'hit@1': 0.0, 'hit@5': 1.0, 'hit@10': 1.0, 'mrr': 0.5}
>>> metrics_for_rank(None)["ndcg@10"]
0.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_KS",
    "batch_metrics",
    "hit_at_k",
    "metric_keys",
    "metrics_for_rank",
    "ndcg_at_k",
    "rank_of",
    "reciprocal_rank",
]

DEFAULT_KS: tuple[int, ...] = (1, 5, 10)
"""Cut-offs reported by default (the paper reports NDCG@1/5/10; the reward is NDCG@10)."""


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k={k!r} is not a valid cut-off; use an integer k >= 1 (e.g. 10 for NDCG@10)")
    return int(k)


def rank_of(order: Sequence[int], target: int) -> int | None:
    """0-based position of ``target`` in ``order``, or None if it is not ranked.

    >>> rank_of((4, 2, 7), 2), rank_of((4, 2, 7), 5)
    (1, None)
    """
    for position, item in enumerate(order):
        if item == target:
            return position
    return None


def ndcg_at_k(rank: int | None, k: int = 10) -> float:
    """NDCG@k with one relevant item: ``1 / log2(rank + 2)`` if ``rank < k``, else 0.

    The ideal DCG is 1 (the target at position 0), so DCG equals NDCG.

    >>> ndcg_at_k(0, 10), ndcg_at_k(2, 10), ndcg_at_k(10, 10), ndcg_at_k(None, 10)
    (1.0, 0.5, 0.0, 0.0)
    """
    k = _check_k(k)
    if rank is None or not 0 <= rank < k:
        return 0.0
    return 1.0 / math.log2(rank + 2)


def hit_at_k(rank: int | None, k: int = 10) -> float:
    """1.0 if the target is among the first ``k`` ranked items, else 0.0.

    >>> hit_at_k(4, 5), hit_at_k(5, 5), hit_at_k(-1, 5)
    (1.0, 0.0, 0.0)
    """
    k = _check_k(k)
    return 1.0 if rank is not None and 0 <= rank < k else 0.0


def reciprocal_rank(rank: int | None) -> float:
    """``1 / (rank + 1)``, or 0.0 when the target is not ranked (averaged: MRR).

    >>> reciprocal_rank(0), reciprocal_rank(3), reciprocal_rank(None)
    (1.0, 0.25, 0.0)
    """
    return 1.0 / (rank + 1) if rank is not None and rank >= 0 else 0.0


def metric_keys(ks: Sequence[int] = DEFAULT_KS) -> tuple[str, ...]:
    """Keys of :func:`metrics_for_rank` in order: ``ndcg@k`` for each k, ``hit@k``, ``mrr``.

    >>> metric_keys((1, 10))
    ('ndcg@1', 'ndcg@10', 'hit@1', 'hit@10', 'mrr')
    """
    ks = tuple(_check_k(k) for k in ks)
    return (*(f"ndcg@{k}" for k in ks), *(f"hit@{k}" for k in ks), "mrr")


def metrics_for_rank(rank: int | None, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """All metrics of one ranking, keyed as :func:`metric_keys`.

    Args:
        rank: 0-based position of the target, or ``None``/negative if it is not ranked.
        ks: Cut-offs, each an integer >= 1.

    >>> metrics_for_rank(0, ks=(1,))
    {'ndcg@1': 1.0, 'hit@1': 1.0, 'mrr': 1.0}
    """
    ks = tuple(_check_k(k) for k in ks)
    out = {f"ndcg@{k}": ndcg_at_k(rank, k) for k in ks}
    out.update({f"hit@{k}": hit_at_k(rank, k) for k in ks})
    out["mrr"] = reciprocal_rank(rank)
    return out


def batch_metrics(ranks: npt.ArrayLike, ks: Sequence[int] = DEFAULT_KS) -> dict[str, npt.NDArray[np.float64]]:
    """Vectorized :func:`metrics_for_rank` over an integer array of ranks (``-1`` = unranked).

    Returns:
        ``{key: float64 array of the same shape as ranks}``, keyed as :func:`metric_keys`.

    >>> m = batch_metrics([0, 2, -1, 12])
    >>> m["ndcg@10"].tolist(), m["hit@1"].tolist(), m["mrr"].tolist()
    ([1.0, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [1.0, 0.3333333333333333, 0.0, 0.07692307692307693])
    """
    ks = tuple(_check_k(k) for k in ks)
    r = np.asarray(ranks)
    if r.size and not np.issubdtype(r.dtype, np.integer):
        raise ValueError(f"ranks must be integers (-1 = unranked), got dtype {r.dtype}")
    r = r.astype(np.int64, copy=False)
    ranked = r >= 0
    safe = np.where(ranked, r, 0)
    gain = np.where(ranked, 1.0 / np.log2(safe + 2.0), 0.0)
    out: dict[str, npt.NDArray[np.float64]] = {}
    for k in ks:
        out[f"ndcg@{k}"] = np.where(ranked & (r < k), gain, 0.0)
    for k in ks:
        out[f"hit@{k}"] = (ranked & (r < k)).astype(np.float64)
    out["mrr"] = np.where(ranked, 1.0 / (safe + 1.0), 0.0)
    return out
