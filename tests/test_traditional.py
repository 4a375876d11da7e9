"""Traditional recommenders: same candidates as the env, no held-out item in training, they learn.

Fits use one torch thread (``num_threads=1`` in each config: restored after ``fit``) and short
schedules so the module stays well under a minute on a loaded 2-core machine; the benchmark
(``benchmarks/bench_traditional.py``) runs the full schedules.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
import torch

import rpp_gym  # noqa: F401  (registers the env ids)
from rpp_gym.agents.baselines import FixedPolicy
from rpp_gym.agents.traditional import (
    BPRMF,
    BPRConfig,
    Popularity,
    SASRec,
    SASRecConfig,
    sample_unseen,
    training_matrix,
    training_sequences,
    training_windows,
)
from rpp_gym.data.bundle import BundleOptions, DataBundle, load_bundle
from rpp_gym.data.dataset import Dataset
from rpp_gym.evaluation import METRIC_KEYS, EvalResult, evaluate
from rpp_gym.evaluation_candidates import (
    candidate_lists,
    evaluate_scorer,
    evaluate_scores,
    target_ranks,
)

ENV_ID = "RPP-MovieLens-Sim-v0"


@pytest.fixture(scope="module")
def ml1m() -> DataBundle:
    return load_bundle("movielens-1m")


@pytest.fixture(scope="module")
def small() -> DataBundle:
    """The first 300 ML-1M users as an in-memory dataset (fits in a second)."""
    ds = load_bundle("movielens-1m").dataset
    return load_bundle(_subset(ds, 300), options=BundleOptions(pool_sizes=(20, 20, 20)))


def _subset(ds: Dataset, n: int, name: str = "ml-1m-head") -> Dataset:
    end = int(ds.offsets[n])
    return Dataset(name, ds.domain, ds.item_ids, ds.item_text, ds.user_ids[:n], ds.offsets[: n + 1], ds.items[:end])


# --------------------------------------------------------------------------------------------
# candidate lists


def test_candidate_lists_are_what_evaluate_shows(ml1m: DataBundle, monkeypatch: pytest.MonkeyPatch) -> None:
    """Record what the env shows during `evaluate` (padding, several batches, seed + lo)."""
    from rpp_gym.envs.vector import RPPVectorEnv

    shown: list[dict[str, Any]] = []
    reset, step = RPPVectorEnv.reset, RPPVectorEnv.step

    def record_reset(self: RPPVectorEnv, **kw: Any) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = reset(self, **kw)
        shown.append({"reset": info["candidates"].tolist(), "users": info["user_id"].tolist()})
        return obs, info

    def record_step(self: RPPVectorEnv, actions: Any) -> tuple[Any, ...]:
        out = step(self, actions)
        info = out[-1]
        shown[-1]["step"] = [list(c) for c in info["candidates"]]
        shown[-1]["target"] = info["target"].tolist()
        return out

    monkeypatch.setattr(RPPVectorEnv, "reset", record_reset)
    monkeypatch.setattr(RPPVectorEnv, "step", record_step)
    evaluate(
        FixedPolicy([0, 0, 0, 0]), ENV_ID, split="valid", n_users=7, seed=5, batch_size=3, env_kwargs={"rounds": 1}
    )
    monkeypatch.undo()

    users, cands, col = candidate_lists(ENV_ID, "valid", seed=5, n_users=7, env_kwargs={"rounds": 1}, batch_size=3)
    assert col == 0 and cands.dtype == np.int32 and cands.shape == (7, 10) and len(shown) == 3  # 3 + 3 + 1(padded)
    ids = ml1m.dataset.item_ids
    keys = [[ids[j] for j in row] for row in cands]
    rec_reset = [row for batch in shown for row in batch["reset"]]
    rec_step = [row for batch in shown for row in batch["step"]]
    rec_target = [t for batch in shown for t in batch["target"]]
    rec_users = [u for batch in shown for u in batch["users"]]
    real = [0, 1, 2, 3, 4, 5, 6]  # rows 7, 8 are the padding of the last batch
    assert [rec_reset[i] for i in real] == keys  # same items, same stored order
    for i in real:
        assert sorted(rec_step[i]) == sorted(keys[i])  # the LLM saw them shuffled
        assert rec_target[i] == keys[i][col] == ids[ml1m.split.targets[users[i]]]
        assert rec_users[i] == ml1m.dataset.user_ids[users[i]]
    assert users.tolist() == ml1m.pools["valid"][:7].tolist()


def test_candidate_lists_default_matches_test_pool(ml1m: DataBundle) -> None:
    users, cands, _ = candidate_lists()
    assert users.tolist() == ml1m.pools["test"].tolist() and cands.shape == (200, 10)
    assert (cands[:, 0] == ml1m.split.targets[users]).all()
    for u, row in zip(users, cands, strict=True):  # negatives are unseen and distinct
        assert len(set(row.tolist())) == 10 and not np.isin(row[1:], ml1m.seen(int(u))).any()
    again = candidate_lists()
    assert np.array_equal(again.candidates, cands)
    assert not np.array_equal(candidate_lists(seed=1).candidates, cands)
    with pytest.raises(KeyError, match="unknown split 'tset'"):
        candidate_lists(split="tset")
    with pytest.raises(ValueError, match="n_users=0"):
        candidate_lists(n_users=0)


# --------------------------------------------------------------------------------------------
# metrics of a score matrix


def test_evaluate_scores_metrics_ties_and_result_shape() -> None:
    scores = np.array([[5.0, 1, 2, 3], [1.0, 2, 3, 4], [2.0, 2, 2, 2], [3.0, 3, 1, 0]])
    assert target_ranks(scores).tolist() == [0, 3, 3, 1]  # ties count against the target
    assert target_ranks(scores, target_col=3).tolist() == [1, 0, 3, 3]
    r = evaluate_scores(scores, name="demo", user_ids=["a", "b", "c", "d"], wall_s=1.5)
    assert isinstance(r, EvalResult) and r.name == "demo" and r.user_ids == ["a", "b", "c", "d"]
    assert set(r.metrics) == set(METRIC_KEYS) and all(v.shape == (4, 1) for v in r.metrics.values())
    assert r.parse_ok.all() and r.parse_ok.shape == (4, 1) and r.tokens == 0 and r.wall_s == 1.5
    np.testing.assert_allclose(r.metrics["ndcg@1"][:, 0], [1, 0, 0, 0])
    np.testing.assert_allclose(r.metrics["ndcg@5"][:, 0], [1, 1 / np.log2(5), 1 / np.log2(5), 1 / np.log2(3)])
    np.testing.assert_allclose(r.metrics["mrr"][:, 0], [1, 0.25, 0.25, 0.5])
    summary = r.summary()
    assert summary["parse_failure_rate"] == 0.0 and summary["ndcg@1"] == 0.25
    oracle = evaluate_scores(np.eye(10)[[0] * 5])
    assert oracle.summary()["ndcg@10"] == 1.0 and oracle.user_ids == ["0", "1", "2", "3", "4"]


@pytest.mark.parametrize(
    ("scores", "kw", "match"),
    [
        (np.zeros(5), {}, "2-D"),
        (np.array([[1.0, np.nan]]), {}, "finite"),
        (np.array([[1.0, 2.0]]), {"target_col": 2}, "target_col=2"),
        (np.array([["a", "b"]]), {}, "numeric"),
        (np.array([[1.0, 2.0]]), {"user_ids": ["a", "b"]}, "2 user_ids for 1 score rows"),
    ],
)
def test_evaluate_scores_rejects_bad_input(scores: np.ndarray, kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        evaluate_scores(scores, **kw)


# --------------------------------------------------------------------------------------------
# training data: never a held-out item


def test_held_out_items_are_not_training_data(ml1m: DataBundle) -> None:
    ds, targets = ml1m.dataset, ml1m.split.targets
    rows = np.arange(ds.n_users)
    x = training_matrix(ml1m)
    assert x.shape == (ds.n_users, ds.n_items) and x.nnz == ds.n_interactions - ds.n_users  # ML-1M: no repeats
    assert (x[rows, targets] == 0).all()
    offsets, items = training_sequences(ml1m)
    for u in (0, 17, ds.n_users - 1):
        assert items[offsets[u] : offsets[u + 1]].tolist() == ds.sequence(u)[:-1].tolist()
    inputs, labels, owner = training_windows(ml1m, max_len=50)
    assert (labels > 0).sum() == ds.n_interactions - 2 * ds.n_users  # every transition, once
    held_out = set((rows * ds.n_items + targets).tolist())
    for codes in (inputs, labels):
        real = codes > 0
        keys = np.broadcast_to(owner[:, None], codes.shape)[real] * ds.n_items + codes[real] - 1
        assert held_out.isdisjoint(keys.tolist())
    pop = Popularity().fit(ml1m)
    assert pop.counts is not None
    np.testing.assert_array_equal(
        pop.counts, np.bincount(ds.items, minlength=ds.n_items) - np.bincount(targets, minlength=ds.n_items)
    )


def test_fits_never_read_the_held_out_items(small: DataBundle) -> None:
    """Replacing every user's held-out item by another item leaves each fit bit-identical."""
    ds = small.dataset
    items = ds.items.copy()
    last = ds.offsets[1:] - 1
    items[last] = (items[last] + 1 + np.arange(ds.n_users)) % ds.n_items
    other = load_bundle(
        Dataset("ml-1m-head-swapped", ds.domain, ds.item_ids, ds.item_text, ds.user_ids, ds.offsets, items),
        options=small.options,
    )
    for make in (lambda: BPRMF(epochs=1, num_threads=1), lambda: SASRec(epochs=1, num_threads=1)):
        a, b = make().fit(small, seed=3), make().fit(other, seed=3)
        assert a.model is not None and b.model is not None
        for (name, pa), (_, pb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
            assert torch.equal(pa, pb), name


def test_sample_unseen_avoids_training_items() -> None:
    rng = np.random.default_rng(0)
    keys = np.array([0 * 5 + 0, 0 * 5 + 1, 0 * 5 + 2, 0 * 5 + 3, 1 * 5 + 4])  # user 0 saw 0-3, user 1 saw 4
    draws = sample_unseen(rng, np.array([[0] * 50, [1] * 50]), keys, n_items=5)
    assert draws.shape == (2, 50) and (draws[0] == 4).all() and (draws[1] != 4).all()


# --------------------------------------------------------------------------------------------
# determinism, shapes, validation


def test_fit_is_deterministic_and_leaves_global_state_alone(small: DataBundle) -> None:
    users = small.pools["test"]
    hist = [small.split.history(int(u)) for u in users]
    cands = np.stack([np.arange(10) + int(u) % 50 for u in users]).astype(np.int32)
    threads, torch_rng, np_rng = (
        torch.get_num_threads(),
        torch.random.get_rng_state(),
        pickle.dumps(np.random.get_state()),
    )
    for make in (lambda: BPRMF(epochs=2, num_threads=1), lambda: SASRec(epochs=1, num_threads=1)):
        a, b, c = make().fit(small, seed=0), make().fit(small, seed=0), make().fit(small, seed=1)
        sa, sb, sc = (m.score(users, hist, cands) for m in (a, b, c))
        assert a.losses == b.losses and np.array_equal(sa, sb)
        assert not np.array_equal(sa, sc)
        assert sa.shape == (len(users), 10) and sa.dtype == np.float64 and np.isfinite(sa).all()
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.random.get_rng_state(), torch_rng)
    assert pickle.dumps(np.random.get_state()) == np_rng


def test_sasrec_reads_the_history_and_bpr_does_not(small: DataBundle) -> None:
    users = np.array([u for u in small.pools["test"] if len(small.split.history(int(u))) == 50][:5])
    hist = [small.split.history(int(u)) for u in users]
    assert len(users) == 5
    cands = np.tile(np.arange(10, dtype=np.int32), (5, 1))
    other = [h[: len(h) // 2] for h in hist]
    sas = SASRec(epochs=1, num_threads=1).fit(small, seed=0)
    assert not np.allclose(sas.score(users, hist, cands), sas.score(users, other, cands))
    longer = [np.concatenate([np.arange(100, dtype=np.int32), h]) for h in hist]  # only the last max_len count
    np.testing.assert_array_equal(sas.score(users, longer, cands), sas.score(users, hist, cands))
    empty = sas.score(users, [h[:0] for h in hist], cands)
    assert np.isfinite(empty).all()
    bpr = BPRMF(epochs=1, num_threads=1).fit(small, seed=0)
    np.testing.assert_array_equal(bpr.score(users, hist, cands), bpr.score(users, other, cands))


def test_validation_errors(small: DataBundle) -> None:
    users = np.array([0, 1], dtype=np.int64)
    hist = [small.split.history(0), small.split.history(1)]
    cands = np.zeros((2, 10), dtype=np.int32)
    for model in (Popularity(), BPRMF(), SASRec()):
        with pytest.raises(RuntimeError, match="not fitted; call fit"):
            model.score(users, hist, cands)
    with pytest.raises(TypeError):
        BPRMF(epoch=3)  # misspelled field
    with pytest.raises(TypeError):
        SASRecConfig(hidden=64)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="heads=3 must divide dim=64"):
        SASRec(heads=3)
    with pytest.raises(ValueError, match=r"dropout=1\.0"):
        SASRecConfig(dropout=1.0)
    with pytest.raises(ValueError, match="epochs=0"):
        BPRConfig(epochs=0)
    with pytest.raises(ValueError, match="num_threads=0"):
        BPRMF(epochs=1, num_threads=0).fit(small)
    pop = Popularity().fit(small)
    n = small.dataset.n_items
    with pytest.raises(ValueError, match=rf"candidate item indices must lie in \[0, {n}\)"):
        pop.score(users, hist, cands + n)
    with pytest.raises(ValueError, match="2-D integer"):
        pop.score(users, hist, cands.astype(float))
    with pytest.raises(ValueError, match="users must be 2 integer user indices"):
        pop.score(users[:1], hist, cands)
    with pytest.raises(ValueError, match="got 1 histories for 2 candidate rows"):
        pop.score(users, hist[:1], cands)


# --------------------------------------------------------------------------------------------
# they learn: paired over ML-1M's 200 test users, on the env's own candidate lists


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    d = a - b
    return float(d.mean()), float(d.mean() / (d.std(ddof=1) / np.sqrt(len(d))))


def test_bpr_and_sasrec_beat_popularity_on_ml1m_test_users(ml1m: DataBundle) -> None:
    pop = evaluate_scorer(Popularity().fit(ml1m), ENV_ID, split="test", seed=0)
    assert 0.5 < pop.summary()["ndcg@10"] < 0.8  # popularity is a real baseline with random negatives
    models: list[BPRMF | SASRec] = [
        BPRMF(epochs=3, lr=1e-2, num_threads=1),
        SASRec(epochs=3, lr=5e-3, windows_per_user=1, num_threads=1),  # the paper's last-max_len window
    ]
    for model in models:
        result = evaluate_scorer(model.fit(ml1m, seed=0), ENV_ID, split="test", seed=0)
        assert result.user_ids == pop.user_ids and len(result.user_ids) == 200
        gain, t = _paired(result.per_user("ndcg@10"), pop.per_user("ndcg@10"))
        assert gain > 0.03 and t > 2.5, (model.name, gain, t)
        assert result.summary()["ndcg@1"] > pop.summary()["ndcg@1"] + 0.05, model.name
