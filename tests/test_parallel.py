"""The PettingZoo view: API and seed tests, equivalence with RPPEnv, counterfactual credit, padding."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

import rpp_gym
from rpp_gym.data.specs import data_available
from rpp_gym.envs.parallel import AGENTS, RPPParallelEnv
from rpp_gym.envs.registration import ENV_SPECS


def _with_data(env_id: str) -> object:
    """The id as a pytest param, skipped with the reason when its data is absent (checked offline)."""
    ok, reason = data_available(env_id)
    return env_id if ok else pytest.param(env_id, marks=pytest.mark.skip(reason=reason))


SIM_IDS = [_with_data(i) for i, s in ENV_SPECS.items() if s["kwargs"].get("llm") == "sim"]

# parallel_api_test resets with options={"options": 1}; the view ignores unknown keys with this warning.
API_TEST_WARNING = "ignoring unknown reset option"


@pytest.fixture(params=SIM_IDS)
def env_id(request: pytest.FixtureRequest) -> str:
    return request.param


def _joint_actions(env_id: str, seed: int, n: int) -> list[np.ndarray]:
    space = gym.make(env_id).action_space
    space.seed(seed)
    return [space.sample() for _ in range(n)]


def _as_dict(joint: np.ndarray) -> dict[str, int]:
    return {a: int(x) for a, x in zip(AGENTS, joint, strict=True)}


def _count_requests(env: RPPParallelEnv) -> list[int]:
    """Record the size of every backend batch the env sends."""
    sizes: list[int] = []
    generate = env.core.backend.generate

    def spy(requests: Any) -> Any:
        sizes.append(len(requests))
        return generate(requests)

    env.core.backend.generate = spy  # type: ignore[method-assign]
    return sizes


# ---- PettingZoo's own checks -------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"padded": True}, {"padded": True, "invalid_action": "default"}, {"counterfactual_credit": True}],
    ids=["plain", "padded", "padded-default", "credit"],
)
def test_parallel_api_test(env_id: str, kwargs: dict[str, Any]) -> None:
    env = rpp_gym.parallel_env(env_id, **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parallel_api_test(env, num_cycles=50)
    assert [str(w.message) for w in caught if API_TEST_WARNING not in str(w.message)] == []
    env.close()


@pytest.mark.parametrize(
    "kwargs",
    # The seed test samples actions without masks, so the padded variant maps padding to defaults.
    [{}, {"padded": True, "invalid_action": "default"}, {"counterfactual_credit": True}],
    ids=["plain", "padded-default", "credit"],
)
def test_parallel_seed_test(env_id: str, kwargs: dict[str, Any]) -> None:
    parallel_seed_test(lambda: rpp_gym.parallel_env(env_id, **kwargs), num_cycles=50)


def _episode(make: Callable[[], RPPParallelEnv], seed: int) -> list[tuple[Any, ...]]:
    env = make()
    obs, _ = env.reset(seed=seed)
    for i, agent in enumerate(env.agents):
        env.action_space(agent).seed(seed + i)
    trace: list[tuple[Any, ...]] = [tuple(obs[a].tobytes() for a in AGENTS)]
    while env.agents:
        actions = {a: env.action_space(a).sample() for a in env.agents}
        obs, rew, term, _, info = env.step(actions)
        trace.append((tuple(obs[a].tobytes() for a in AGENTS), rew["role"], term["role"], info["role"]["answer"]))
    env.close()
    return trace


def test_full_episode_is_deterministic(env_id: str) -> None:
    # parallel_seed_test stops after one step; this compares whole episodes.
    def make() -> RPPParallelEnv:
        return rpp_gym.parallel_env(env_id, rounds=6)

    a, b, c = _episode(make, 5), _episode(make, 5), _episode(make, 6)
    assert a == b
    assert a != c
    assert len(a) == 7 and a[-1][2] is True


# ---- one step implementation: same numbers as RPPEnv ---------------------------------------------


@pytest.mark.parametrize("credit", [False, True])
def test_same_rewards_as_single_env(env_id: str, credit: bool) -> None:
    single = gym.make(env_id)
    par = rpp_gym.parallel_env(env_id, counterfactual_credit=credit)
    s_obs, s_info = single.reset(seed=11)
    p_obs, p_info = par.reset(seed=11)
    dim = single.observation_space.shape[0]
    assert p_info["role"]["user_id"] == s_info["user_id"]
    assert p_info["format"]["candidates"] == s_info["candidates"]
    assert np.array_equal(par.state(), s_obs)
    rewards = []
    for joint in _joint_actions(env_id, 11, 15):
        s_obs, s_rew, s_term, _, s_info = single.step(joint)
        p_obs, p_rew, p_term, p_trunc, p_info = par.step(_as_dict(joint))
        rewards.append(s_rew)
        assert set(p_rew.values()) == {s_rew}
        assert set(p_term.values()) == {s_term} and set(p_trunc.values()) == {False}
        assert np.array_equal(par.state(), s_obs)
        for j, agent in enumerate(AGENTS):
            assert np.array_equal(p_obs[agent][:dim], s_obs)
            assert np.array_equal(p_obs[agent][dim:], np.eye(len(AGENTS))[j])
            assert p_info[agent]["answer"] == s_info["answer"]
            assert p_info[agent]["choice"] == joint[j]
        for pattern in ("role", "reasoning", "format"):
            assert p_info[pattern]["sentence"] == s_info["sentences"][pattern]
    assert s_term and par.agents == []
    assert len(set(rewards)) > 1  # the actions mattered: not a constant-reward episode
    with pytest.raises(RuntimeError, match="reset"):
        par.step({})
    par.reset(seed=0)
    assert par.agents == list(AGENTS)
    single.close()
    par.close()


def test_render_is_the_single_envs() -> None:
    par = rpp_gym.parallel_env("RPP-MovieLens-Sim-v0", render_mode="ansi")
    assert par.render_mode == "ansi" and par.env.render_mode == "ansi"
    par.reset(seed=0)
    par.step({"history": 1, "role": 1, "reasoning": 1, "format": 1})
    text = par.render()
    assert isinstance(text, str)
    assert par.core.last_info[0]["prompt"] in text


# ---- counterfactual credit -------------------------------------------------------------------


def test_credit_is_reward_minus_reasked_ndcg(env_id: str) -> None:
    """Credit_j(t) = r(t) - the reward RPPEnv gives at t for the same prefix with j's default."""
    rounds, seed = 4, 21
    par = rpp_gym.parallel_env(env_id, rounds=rounds, counterfactual_credit=True)
    defaults = par.defaults
    plan = _joint_actions(env_id, seed, rounds)
    plan[1] = defaults.copy()  # a round where every agent uses its default
    plan[2] = defaults.copy()
    plan[2][2] = (defaults[2] + 3) % par.nvec[2]  # only reasoning differs from its default
    sizes = _count_requests(par)
    par.reset(seed=seed)
    nonzero = 0
    for t, joint in enumerate(plan):
        _, rew, _, _, info = par.step(_as_dict(joint))
        reward = rew["history"]
        for j, agent in enumerate(AGENTS):
            credit = info[agent]["credit"]
            assert credit == reward - info[agent]["counterfactual_ndcg"]
            if joint[j] == defaults[j]:
                assert credit == 0.0
                continue
            single = gym.make(env_id, rounds=rounds)
            single.reset(seed=seed)
            for earlier in plan[:t]:
                single.step(earlier)
            cf = joint.copy()
            cf[j] = defaults[j]
            assert single.step(cf)[1] == info[agent]["counterfactual_ndcg"]
            nonzero += credit != 0.0
            single.close()
    assert nonzero > 0  # the check above was not vacuous
    # one real question per step, plus one batch with a row per non-default agent
    expected: list[int] = []
    for joint in plan:
        changed = int((joint != defaults).sum())
        expected += [changed, 1] if changed else [1]
    assert sizes == expected
    par.close()


def test_credit_not_computed_unless_asked(env_id: str) -> None:
    par = rpp_gym.parallel_env(env_id, rounds=5)
    sizes = _count_requests(par)
    par.reset(seed=0)
    for joint in _joint_actions(env_id, 0, 5):
        _, _, _, _, info = par.step(_as_dict(joint))
        assert "credit" not in info["role"] and "counterfactual_ndcg" not in info["role"]
    assert sizes == [1] * 5
    par.close()


# ---- spaces and padding ----------------------------------------------------------------------


def test_spaces_plain(env_id: str) -> None:
    par = rpp_gym.parallel_env(env_id)
    single = gym.make(env_id)
    nvec = single.action_space.nvec
    dim = single.observation_space.shape[0]
    assert par.possible_agents == list(AGENTS)
    assert par.state_space == single.observation_space
    for j, agent in enumerate(AGENTS):
        assert par.action_space(agent) is par.action_space(agent)
        assert par.observation_space(agent) is par.observation_space(agent)
        assert par.action_space(agent) == gym.spaces.Discrete(int(nvec[j]))
        assert par.observation_space(agent) == gym.spaces.Box(-1.0, 1.0, (dim + 4,), np.float32)
    obs, _ = par.reset(seed=1)
    assert all(par.observation_space(a).contains(obs[a]) for a in AGENTS)
    assert par.state_space.contains(par.state())
    with pytest.raises(KeyError, match="unknown agent"):
        par.action_space("critic")
    with pytest.raises(ValueError, match="role"):
        par.step({"history": 0, "role": int(nvec[1]), "reasoning": 0, "format": 0})
    with pytest.raises(ValueError, match="missing \\['format'\\]"):
        par.step({"history": 0, "role": 0, "reasoning": 0})
    par.close()


def test_padded_spaces_and_masks(env_id: str) -> None:
    par = rpp_gym.parallel_env(env_id, padded=True)
    nvec = par.nvec
    n_max = int(nvec.max())
    first = AGENTS[0]
    for agent in AGENTS:
        assert par.action_space(agent) == par.action_space(first) == gym.spaces.Discrete(n_max)
        assert par.observation_space(agent) == par.observation_space(first)
        assert par.observation_space(agent) is par.observation_space(agent)
    obs, _ = par.reset(seed=2)
    for j, agent in enumerate(AGENTS):
        assert par.observation_space(agent).contains(obs[agent])
        mask = obs[agent]["action_mask"]
        assert mask.dtype == np.int8
        assert mask.tolist() == [1] * int(nvec[j]) + [0] * (n_max - int(nvec[j]))
    padded_agent = AGENTS[int(np.argmin(nvec))]
    actions = {a: 0 for a in AGENTS} | {padded_agent: n_max - 1}
    with pytest.raises(ValueError, match=f"action {n_max - 1} of agent '{padded_agent}' is padding"):
        par.step(actions)
    assert par.core.round[0] == 0  # nothing was stepped
    par.close()


def test_padded_action_maps_to_default(env_id: str) -> None:
    par = rpp_gym.parallel_env(env_id, padded=True, invalid_action="default")
    ref = rpp_gym.parallel_env(env_id)
    n_max = int(par.nvec.max())
    j = int(np.argmin(par.nvec))
    joint = np.array([1, 1, 1, 1])
    padded = _as_dict(joint) | {AGENTS[j]: n_max - 1}
    mapped = joint.copy()
    mapped[j] = par.defaults[j]
    par.reset(seed=4)
    ref.reset(seed=4)
    _, rew, _, _, info = par.step(padded)
    _, ref_rew, _, _, ref_info = ref.step(_as_dict(mapped))
    assert rew == ref_rew and info["role"]["answer"] == ref_info["role"]["answer"]
    assert info[AGENTS[j]]["choice"] == par.defaults[j] and info[AGENTS[j]]["padding_replaced"] is True
    assert not any(info[a]["padding_replaced"] for a in AGENTS if a != AGENTS[j])
    with pytest.raises(ValueError, match="not in its space"):
        par.step(_as_dict(joint) | {"role": n_max})  # outside Discrete(n_max): never mapped
    par.close()
    ref.close()


def test_invalid_action_option_is_checked() -> None:
    with pytest.raises(ValueError, match="padded=True"):
        rpp_gym.parallel_env("RPP-MovieLens-Sim-v0", invalid_action="default")
    with pytest.raises(ValueError, match="invalid_action="):
        rpp_gym.parallel_env("RPP-MovieLens-Sim-v0", padded=True, invalid_action="random")


# ---- construction ----------------------------------------------------------------------------


def test_parallel_env_forwards_kwargs() -> None:
    par = rpp_gym.parallel_env("rpp_gym:RPP-MovieLens-Sim-v0", rounds=3, split="valid")
    assert par.core.config.rounds == 3 and par.core.config.split == "valid"
    assert par.core.config.dataset == ENV_SPECS["RPP-MovieLens-Sim-v0"]["kwargs"]["dataset"]
    par.close()
    with pytest.raises(TypeError):
        rpp_gym.parallel_env("RPP-MovieLens-Sim-v0", roundz=3)
    with pytest.raises(gym.error.NameNotFound):
        rpp_gym.parallel_env("RPP-Nowhere-v0")


# ---- SuperSuit -------------------------------------------------------------------------------


def test_supersuit_vectorizes_padded_env() -> None:
    supersuit = pytest.importorskip("supersuit", reason="supersuit is optional (pip install supersuit)")
    par = rpp_gym.parallel_env("RPP-MovieLens-Sim-v0", padded=True, rounds=3)
    vec = supersuit.pettingzoo_env_to_vec_env_v1(par)
    obs, _ = vec.reset(seed=0)
    n_max = int(par.nvec.max())
    assert vec.num_envs == 4
    assert obs["observation"].shape == (4, par.core.obs_dim + 4)
    assert obs["action_mask"].shape == (4, n_max)
    rng = np.random.default_rng(0)
    for step in range(4):  # crosses the episode end: SuperSuit resets the view itself
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in obs["action_mask"]])
        obs, rew, term, trunc, infos = vec.step(actions)
        assert len(set(rew.tolist())) == 1  # one shared reward
        assert term.all() == (step == 2) and not trunc.any()
        assert [i["sentence"] for i in infos[1:]] == [
            i["sentences"][a] for i, a in zip(infos[1:], AGENTS[1:], strict=True)
        ]
    assert par.agents == list(AGENTS)
    vec.close()
