"""Ranking metrics with one relevant item: hand-computed values, vectorized agreement, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rpp_gym.metrics import (
    batch_metrics,
    hit_at_k,
    metric_keys,
    metrics_for_rank,
    ndcg_at_k,
    rank_of,
    reciprocal_rank,
)


@pytest.mark.parametrize(
    ("rank", "k", "expected"),
    [
        (0, 10, 1.0),
        (1, 10, 1 / math.log2(3)),  # 0.6309...
        (2, 10, 0.5),
        (6, 10, 1 / 3),  # log2(8) = 3
        (9, 10, 1 / math.log2(11)),
        (10, 10, 0.0),
        (4, 5, 1 / math.log2(6)),
        (5, 5, 0.0),
        (0, 1, 1.0),
        (1, 1, 0.0),
        (None, 10, 0.0),
        (-1, 10, 0.0),
    ],
)
def test_ndcg_hand_values(rank: int | None, k: int, expected: float) -> None:
    assert ndcg_at_k(rank, k) == pytest.approx(expected)


def test_hit_and_reciprocal_rank() -> None:
    assert [hit_at_k(r, 5) for r in (0, 4, 5, None, -1)] == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert [reciprocal_rank(r) for r in (0, 1, 3, 9, None, -1)] == [1.0, 0.5, 0.25, 0.1, 0.0, 0.0]


def test_metrics_for_rank_keys_and_values() -> None:
    m = metrics_for_rank(2)
    assert list(m) == ["ndcg@1", "ndcg@5", "ndcg@10", "hit@1", "hit@5", "hit@10", "mrr"]
    assert m == pytest.approx(
        {"ndcg@1": 0.0, "ndcg@5": 0.5, "ndcg@10": 0.5, "hit@1": 0.0, "hit@5": 1.0, "hit@10": 1.0, "mrr": 1 / 3}
    )
    unranked = metrics_for_rank(None)
    assert set(unranked.values()) == {0.0}
    assert list(metrics_for_rank(7, ks=(3,))) == ["ndcg@3", "hit@3", "mrr"]
    assert metric_keys() == tuple(m)


def test_batch_matches_scalar() -> None:
    ranks = np.array([0, 1, 2, 4, 5, 9, 10, 30, -1, -1])
    ks = (1, 3, 5, 10)
    batch = batch_metrics(ranks, ks)
    assert list(batch) == list(metric_keys(ks))
    for i, r in enumerate(ranks):
        scalar = metrics_for_rank(None if r < 0 else int(r), ks)
        for key, value in scalar.items():
            assert batch[key][i] == pytest.approx(value), (key, r)
    assert batch["ndcg@10"].dtype == np.float64


def test_batch_keeps_shape_and_means() -> None:
    ranks = np.array([[0, -1], [2, 12]], dtype=np.int32)
    m = batch_metrics(ranks)
    assert m["ndcg@10"].shape == (2, 2)
    assert m["ndcg@10"].tolist() == [[1.0, 0.0], [0.5, 0.0]]
    assert m["hit@10"].mean() == 0.5
    assert batch_metrics(np.array([], dtype=np.int64))["mrr"].shape == (0,)


@pytest.mark.parametrize("k", [0, -3, 2.5, True, "10"])
def test_invalid_k_raises(k: object) -> None:
    with pytest.raises(ValueError, match=r"use an integer k >= 1"):
        ndcg_at_k(0, k)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"use an integer k >= 1"):
        metrics_for_rank(0, ks=(1, k))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"use an integer k >= 1"):
        batch_metrics(np.array([0]), ks=(k,))  # type: ignore[arg-type]


def test_float_ranks_rejected_in_batch() -> None:
    with pytest.raises(ValueError, match="ranks must be integers"):
        batch_metrics(np.array([0.0, 1.5]))


def test_rank_of() -> None:
    assert rank_of((3, 1, 2), 3) == 0
    assert rank_of((3, 1, 2), 2) == 2
    assert rank_of((3, 1, 2), 0) is None
    assert rank_of((), 0) is None
