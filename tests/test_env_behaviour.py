"""What RPPEnv promises: info contents, history mechanics, bad input, error recovery, rendering."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import pytest

import rpp_gym  # noqa: F401
from rpp_gym.llm.base import Completion, LLMBackendError, LLMRequest
from rpp_gym.llm.sim import SimLLM

ENV_ID = "RPP-MovieLens-Sim-v0"


@pytest.fixture
def env() -> gym.Env:
    e = gym.make(ENV_ID, render_mode="ansi")
    yield e
    e.close()


def test_spaces_match_the_movie_bank(env: gym.Env) -> None:
    assert env.action_space.nvec.tolist() == [3, 5, 9, 5]
    assert env.observation_space.shape == (2 * 32 + 2 + 22 + 4,)
    assert env.observation_space.dtype == np.float32


def test_info_maps_the_answer_back_to_items(env: gym.Env) -> None:
    _, info0 = env.reset(seed=1)
    assert len(info0["candidates"]) == 10
    _, reward, term, trunc, info = env.step(np.array([1, 1, 3, 4]))
    # candidates are the same set as at reset, shown in a new order, target where info says
    assert sorted(info["candidates"]) == sorted(info0["candidates"])
    assert info["candidates"][info["target_pos"]] == info["target"] == info0["candidates"][0]
    assert set(info["ranking"]) <= set(info["candidates"])
    rank = info["target_rank"]
    expected = 0.0 if rank < 0 or rank >= 10 else 1 / np.log2(rank + 2)
    assert reward == pytest.approx(expected) == pytest.approx(info["metrics"]["ndcg@10"])
    assert set(info["metrics"]) >= {"ndcg@1", "ndcg@5", "ndcg@10", "hit@1", "hit@5", "hit@10", "mrr"}
    for title_line in info["answer"].splitlines():
        assert isinstance(title_line, str)
    assert info["prompt"].count("[") >= 10 and info["sentences"]["format"] in info["prompt"]
    assert not term and not trunc


def test_candidate_order_is_reshuffled_every_round(env: gym.Env) -> None:
    env.reset(seed=2)
    orders = {tuple(env.step(np.array([0, 0, 0, 0]))[4]["candidates"]) for _ in range(6)}
    assert len(orders) > 1


def test_history_increments_and_cap() -> None:
    env = gym.make(ENV_ID, rounds=15)
    env.reset(seed=0)
    lengths = [env.step(np.array([2, 0, 0, 0]))[4]["history_len"] for _ in range(15)]
    assert lengths[0] == 1 + 2  # init_history=1 for MovieLens, +2 per step
    assert lengths == sorted(lengths) and lengths[-1] <= 50
    env.reset(seed=0)
    assert [env.step(np.array([0, 0, 0, 0]))[4]["history_len"] for _ in range(3)] == [1, 1, 1]
    env.close()


def test_absolute_history_mode() -> None:
    env = gym.make(ENV_ID, history_mode="absolute", history_lengths=(0, 5, 20))
    assert env.action_space.nvec[0] == 3
    env.reset(seed=0)
    assert env.step(np.array([2, 0, 0, 0]))[4]["history_len"] == 20
    assert env.step(np.array([0, 0, 0, 0]))[4]["history_len"] == 0
    env.close()


def test_episode_ends_after_rounds_and_step_after_end_raises() -> None:
    env = gym.make(ENV_ID, rounds=3)
    env.reset(seed=0)
    terms = [env.step(env.action_space.sample())[2] for _ in range(3)]
    assert terms == [False, False, True]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env.action_space.sample())
    env.close()


def test_step_before_reset_raises() -> None:
    env = gym.make(ENV_ID).unwrapped
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.array([0, 0, 0, 0]))
    env.close()


@pytest.mark.parametrize("bad", [[3, 0, 0, 0], [0, -1, 0, 0], [0, 0, 9, 0], [0, 0, 0], [0.5, 0, 0, 0]])
def test_bad_actions_name_the_value(env: gym.Env, bad: list) -> None:
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"MultiDiscrete|outside"):
        env.unwrapped.step(np.array(bad))
    # the env is still usable
    env.unwrapped.step(np.array([0, 0, 0, 0]))


def test_reset_options(env: gym.Env) -> None:
    core = env.unwrapped.core
    test_users = [core.bundle.dataset.user_ids[i] for i in core.bundle.pools["test"][:2]]
    _, info = env.reset(seed=0, options={"split": "test", "user_id": test_users[1]})
    assert info["user_id"] == test_users[1] and info["split"] == "test"
    with pytest.raises(KeyError, match="not in the 'train' pool"):
        env.reset(options={"user_id": test_users[0]})
    with pytest.raises(KeyError, match="unknown reset option"):
        env.reset(options={"usr": "1"})
    with pytest.raises(ValueError, match="split"):
        env.reset(options={"split": "dev"})


def test_misspelled_kwarg_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="roundz"):
        gym.make(ENV_ID, roundz=3)


def test_pools_are_disjoint_and_independent_of_env_seed(env: gym.Env) -> None:
    pools = env.unwrapped.core.bundle.pools
    assert all(len(p) == 200 for p in pools.values())
    assert not (set(pools["train"]) & set(pools["test"])) and not (set(pools["valid"]) & set(pools["test"]))
    other = gym.make(ENV_ID)
    other.reset(seed=123)
    for split in pools:
        assert np.array_equal(other.unwrapped.core.bundle.pools[split], pools[split])
    other.close()


def test_candidates_are_unseen_negatives_plus_target(env: gym.Env) -> None:
    core = env.unwrapped.core
    for seed in range(5):
        env.reset(seed=seed)
        user = int(core.user[0])
        cands = core.candidates[0]
        assert cands[0] == core.bundle.split.targets[user]
        assert len(set(cands.tolist())) == 10
        assert not set(cands[1:].tolist()) & set(core.bundle.dataset.sequence(user).tolist())


class FlakyBackend:
    """Wraps the sim; fails on demand, like a server that drops a request."""

    def __init__(self, inner: SimLLM) -> None:
        self.inner = inner
        self.fail_next = False

    @property
    def identity(self) -> str:
        return "flaky"

    def generate(self, requests: Sequence[LLMRequest]) -> list[Completion]:
        if self.fail_next:
            self.fail_next = False
            raise LLMBackendError("injected failure")
        return self.inner.generate(requests)

    def close(self) -> None:
        pass


def test_failed_step_leaves_the_env_usable(env: gym.Env) -> None:
    core = env.unwrapped.core
    flaky = FlakyBackend(core.backend)
    core.backend = flaky
    env.reset(seed=0)
    env.step(np.array([1, 1, 1, 1]))
    before = (core.round.copy(), core.hist_len.copy(), core.prev_action.copy(), env.unwrapped.core.observations())
    flaky.fail_next = True
    with pytest.raises(LLMBackendError, match="injected"):
        env.step(np.array([2, 2, 2, 2]))
    after = (core.round, core.hist_len, core.prev_action, env.unwrapped.core.observations())
    for x, y in zip(before, after, strict=True):
        assert np.array_equal(x, y)
    _, _, _, _, info = env.step(np.array([2, 2, 2, 2]))
    assert info["round"] == 2
    env.reset(seed=1)


def test_render_ansi_shows_prompt_answer_reward(env: gym.Env) -> None:
    env.reset(seed=0)
    assert "no prompt sent yet" in env.render()
    _, reward, _, _, info = env.step(np.array([1, 1, 3, 4]))
    text = env.render()
    assert info["prompt"] in text and info["answer"] in text and f"{reward:.3f}" in text


def test_vector_env_matches_its_own_seed_and_batches_one_call() -> None:
    vec = gym.make_vec(ENV_ID, num_envs=8)
    sim = vec.unwrapped.core.backend
    vec.reset(seed=5)
    calls = sim.calls
    vec.step(np.tile([1, 1, 3, 4], (8, 1)))
    assert sim.calls == calls + 1  # one backend batch per vector step
    vec.close()


def test_vector_env_same_step_autoreset_puts_final_obs_in_info() -> None:
    vec = gym.make_vec(ENV_ID, num_envs=2, rounds=2, autoreset_mode="SameStep")
    vec.reset(seed=0)
    vec.step(np.zeros((2, 4), dtype=np.int64))
    _, _, term, _, info = vec.step(np.zeros((2, 4), dtype=np.int64))
    assert term.all() and info["_final_obs"].all()
    assert info["final_obs"][0].shape == vec.single_observation_space.shape
    vec.close()
