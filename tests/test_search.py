"""Exhaustive prompt search equals brute force through ``evaluate``, user by user."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

import rpp_gym  # noqa: F401
from rpp_gym.agents.baselines import FixedPolicy
from rpp_gym.agents.search import (
    best_fixed_prompt,
    episode_draws,
    joint_actions,
    per_user_oracle,
    score_actions,
)
from rpp_gym.evaluation import evaluate
from rpp_gym.prompts.bank import load_bank

ENV_ID = "RPP-MovieLens-Sim-v0"


def _small_bank():
    """The movie bank cut to 2 roles, 3 reasonings, 2 formats: 3 * 2 * 3 * 2 = 36 joint actions."""
    bank = load_bank("movie")
    return dataclasses.replace(bank, role=bank.role[1:3], reasoning=bank.reasoning[1:4], format=bank.format[:2])


def _brute_force(actions, **kwargs) -> np.ndarray:
    """``[n_users, n_actions]`` per-user scores, one ``evaluate`` of a FixedPolicy per action."""
    return np.stack([evaluate(FixedPolicy(a), ENV_ID, **kwargs).per_user() for a in actions], axis=1)


def test_joint_actions_enumerates_the_space_once() -> None:
    acts = joint_actions([3, 5, 9, 5])
    assert acts.shape == (675, 4)
    assert len({tuple(a) for a in acts.tolist()}) == 675
    assert (acts.min(axis=0) == 0).all() and (acts.max(axis=0) == [2, 4, 8, 4]).all()


def test_draws_do_not_depend_on_the_placeholder_action() -> None:
    # the premise of the search: candidates, orders and seeds are the same whatever is played
    a = episode_draws(ENV_ID, split="test", n_users=3, seed=5, env_kwargs={"rounds": 3})
    env = gym.make_vec(ENV_ID, num_envs=3, rounds=3)
    env.reset(seed=5, options={"split": "test", "user_id": a.user_ids})
    core = env.unwrapped.core
    assert (core.candidates == a.candidates).all()
    for t in range(3):
        out = core.step(np.tile([2, 4, 8, 4], (3, 1)), env.unwrapped.np_random)
        assert (out.draws[0] == a.orders[:, t]).all() and (out.draws[1] == a.seeds[:, t]).all()
    env.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_score_actions_equals_evaluate_across_batches_and_padding(workers: int) -> None:
    # 5 users in evaluate-batches of 2: three batches, the last one padded
    kwargs = {"split": "test", "n_users": 5, "seed": 11, "batch_size": 2, "env_kwargs": {"rounds": 4}}
    actions = np.array([[0, 0, 0, 0], [2, 3, 4, 1], [1, 1, 8, 4], [2, 4, 6, 2]])
    got = score_actions(actions, ENV_ID, workers=workers, **kwargs)
    np.testing.assert_allclose(got, _brute_force(actions, **kwargs), rtol=0, atol=1e-12)


def test_per_user_actions_are_scored_per_user() -> None:
    kwargs = {"split": "valid", "n_users": 3, "seed": 2, "env_kwargs": {"rounds": 3}}
    per_user = np.array([[[0, 1, 2, 3]], [[1, 2, 3, 4]], [[2, 0, 5, 1]]])
    got = score_actions(per_user, ENV_ID, workers=1, **kwargs)[:, 0]
    for u in range(3):
        want = evaluate(FixedPolicy(per_user[u, 0]), ENV_ID, **kwargs).per_user()[u]
        assert got[u] == pytest.approx(want, abs=1e-12)


def test_best_fixed_prompt_matches_brute_force_via_evaluate() -> None:
    env_kwargs = {"rounds": 3, "bank": _small_bank()}
    kwargs = {"split": "train", "n_users": 4, "seed": 0, "env_kwargs": env_kwargs}
    result = best_fixed_prompt(ENV_ID, workers=1, **kwargs)
    assert result.actions.shape == (36, 4)
    brute = _brute_force(result.actions, **kwargs)
    np.testing.assert_allclose(result.scores, brute, rtol=0, atol=1e-12)
    assert (result.best_action == result.actions[np.argmax(brute.mean(axis=0))]).all()
    np.testing.assert_allclose(result.per_user(), brute[:, np.argmax(brute.mean(axis=0))])
    # the oracle is each user's best row entry, and never below the best fixed prompt
    oracle_idx = result.oracle_index()
    assert (brute[np.arange(4), oracle_idx] == brute.max(axis=1)).all()
    assert (brute.max(axis=1) >= result.per_user()).all()


def test_oracle_is_picked_on_one_seed_and_scored_on_another() -> None:
    env_kwargs = {"rounds": 3, "bank": _small_bank()}
    orc = per_user_oracle(
        ENV_ID, split="test", n_users=3, select_seed=1, score_seed=0, env_kwargs=env_kwargs, workers=1
    )
    for u in range(3):
        fair = evaluate(FixedPolicy(orc.actions[u]), ENV_ID, split="test", n_users=3, seed=0, env_kwargs=env_kwargs)
        same = evaluate(FixedPolicy(orc.actions[u]), ENV_ID, split="test", n_users=3, seed=1, env_kwargs=env_kwargs)
        assert orc.scores[u] == pytest.approx(fair.per_user()[u], abs=1e-12)
        assert orc.optimistic_scores[u] == pytest.approx(same.per_user()[u], abs=1e-12)
        assert orc.optimistic_scores[u] == pytest.approx(orc.search.scores[u].max(), abs=1e-12)


def test_bad_action_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="must be"):
        score_actions(np.zeros((2, 3), dtype=int), ENV_ID, n_users=2, workers=1)
