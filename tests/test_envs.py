"""Registry-driven checks: every registered id gets the API, determinism, pickle and vector checks."""

from __future__ import annotations

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import rpp_gym

# Real-LLM ids start a llama.cpp server; they get their own (few, quick) tests in test_llamacpp_env.py.
from rpp_gym.data.specs import data_available
from rpp_gym.envs.registration import ENV_SPECS


def _with_data(env_id: str) -> object:
    """The id as a pytest param, skipped with the reason when its data is absent (checked offline)."""
    ok, reason = data_available(env_id)
    return env_id if ok else pytest.param(env_id, marks=pytest.mark.skip(reason=reason))


SIM_IDS = [_with_data(i) for i, s in ENV_SPECS.items() if s["kwargs"].get("llm") == "sim"]

# Warnings we accept from the checkers, each with its reason:
ALLOWED_WARNINGS = (
    # The observation is a documented feature vector in [-1, 1], not an image; SB3 advises
    # normalising Box observations only when their bounds are not symmetric/small: not triggered.
    # Gymnasium warns when an env's spec has no max_episode_steps; our episodes end by themselves
    # (terminated after `rounds`), so a TimeLimit would be redundant.
    "max_episode_steps",
)


def _allowed(msg: str) -> bool:
    return any(a in msg for a in ALLOWED_WARNINGS)


@pytest.fixture(params=SIM_IDS)
def env_id(request: pytest.FixtureRequest) -> str:
    return request.param


def test_ids_are_registered_idempotently() -> None:
    rpp_gym.register_envs()
    rpp_gym.register_envs()
    for env_id in ENV_SPECS:
        assert env_id in gym.registry
    env = gym.make("rpp_gym:RPP-MovieLens-Sim-v0")
    assert env.spec is not None and env.spec.id == "RPP-MovieLens-Sim-v0"
    env.close()


def test_gymnasium_env_checker(env_id: str) -> None:
    env = gym.make(env_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env.unwrapped)
    unexpected = [str(w.message) for w in caught if not _allowed(str(w.message))]
    assert unexpected == []
    env.close()


def test_sb3_env_checker(env_id: str) -> None:
    env = gym.make(env_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(env, warn=True)
    unexpected = [str(w.message) for w in caught if not _allowed(str(w.message))]
    assert unexpected == []
    env.close()


def _rollout(env: gym.Env, seed: int, rounds: int = 15) -> list[tuple]:
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    trace = [(obs.copy(), info["user_id"], tuple(info["candidates"]))]
    for _ in range(rounds):
        obs, reward, term, trunc, info = env.step(env.action_space.sample())
        trace.append((obs.copy(), reward, term, trunc, info["answer"], tuple(info["ranking"])))
    return trace


def _same(a: list[tuple], b: list[tuple]) -> bool:
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x, y, strict=True):
            if isinstance(u, np.ndarray):
                if not np.array_equal(u, v):
                    return False
            elif u != v:
                return False
    return True


def test_two_envs_same_seed_same_rollout(env_id: str) -> None:
    a, b = gym.make(env_id), gym.make(env_id)
    ta, tb = _rollout(a, seed=7), _rollout(b, seed=7)
    assert _same(ta, tb)
    assert ta[-1][2] is True  # terminated after `rounds`
    tc = _rollout(a, seed=8)
    assert not _same(ta, tc)  # the seed matters
    a.close()
    b.close()


def test_pickle_round_trip_mid_episode(env_id: str) -> None:
    env = gym.make(env_id)
    env.reset(seed=3)
    env.action_space.seed(3)
    for _ in range(4):
        env.step(env.action_space.sample())
    clone = pickle.loads(pickle.dumps(env))
    actions = [env.action_space.sample() for _ in range(5)]
    for a in actions:
        o1, r1, t1, _, i1 = env.step(a)
        o2, r2, t2, _, i2 = clone.step(a)
        assert np.array_equal(o1, o2) and r1 == r2 and t1 == t2 and i1["answer"] == i2["answer"]
    env.close()
    clone.close()


def test_make_vec_four(env_id: str) -> None:
    env = gym.make_vec(env_id, num_envs=4)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, *env.single_observation_space.shape)
    assert obs.dtype == np.float32
    for _ in range(16):  # crosses an episode end (15 rounds) so autoreset runs
        obs, rew, term, trunc, _ = env.step(env.action_space.sample())
        assert rew.shape == (4,) and term.shape == (4,) and not trunc.any()
        assert env.single_observation_space.contains(obs[0])
    env.close()


def test_double_close(env_id: str) -> None:
    env = gym.make(env_id)
    env.reset(seed=0)
    env.close()
    env.close()
    vec = gym.make_vec(env_id, num_envs=2)
    vec.close()
    vec.close()
