"""The simulated LLM does what its docstring says, in the documented direction."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

import rpp_gym  # noqa: F401
from rpp_gym.agents.baselines import FixedPolicy
from rpp_gym.evaluation import evaluate
from rpp_gym.llm.base import LLMBackendError, LLMRequest
from rpp_gym.llm.sim import RankingContext, SimConfig, SimLLM
from rpp_gym.prompts.parse import parse_ranking

ENV_ID = "RPP-MovieLens-Sim-v0"


@pytest.fixture(scope="module")
def captured() -> tuple[SimLLM, list[LLMRequest]]:
    """Real requests, captured from 32 envs stepped with varied prompts."""
    env = gym.make_vec(ENV_ID, num_envs=32)
    env.reset(seed=0)
    sim = env.unwrapped.core.backend
    got: list[LLMRequest] = []
    original = sim.generate
    sim.generate = lambda reqs: got.extend(reqs) or original(reqs)
    rng = np.random.default_rng(0)
    nvec = env.single_action_space.nvec
    for _ in range(3):
        env.step((rng.random((32, 4)) * nvec).astype(np.int64))
    sim.generate = original
    env.close()
    return sim, got


def test_deterministic_and_independent_of_batch_composition(captured) -> None:
    sim, reqs = captured
    whole = [c.text for c in sim.generate(reqs)]
    assert whole == [c.text for c in sim.generate(reqs)]
    one_by_one = [sim.generate([r])[0].text for r in reqs[:20]]
    assert whole[:20] == one_by_one
    reversed_batch = [c.text for c in sim.generate(reqs[::-1])]
    assert reversed_batch[::-1] == whole


def test_seed_changes_the_sample(captured) -> None:
    sim, reqs = captured
    a = [c.text for c in sim.generate(reqs)]
    b = [c.text for c in sim.generate([dataclasses.replace(r, seed=r.seed + 1) for r in reqs])]
    assert a != b


def test_refuses_requests_it_cannot_simulate(captured) -> None:
    sim, _ = captured
    with pytest.raises(LLMBackendError, match="RankingContext"):
        sim.generate([LLMRequest.from_prompt("rank these movies")])


def test_every_format_layout_parses_completely_without_failures(captured) -> None:
    sim, reqs = captured
    clean = SimLLM(sim.world, SimConfig(failure_scale=0.0))
    titles = sim.world.dataset.item_text
    for req, comp in zip(reqs, clean.generate(reqs), strict=True):
        ctx: RankingContext = req.meta
        cands = [titles[i] for i in ctx.candidates]
        result = parse_ranking(comp.text, cands, [titles[i] for i in ctx.history])
        assert result.recognized == len(cands), (ctx.format.traits, comp.text)


def test_failure_rates_grow_with_prompt_length_and_fall_with_strictness(captured) -> None:
    sim, reqs = captured
    ctx: RankingContext = reqs[0].meta
    short = sim.failure_probabilities(dataclasses.replace(ctx, prompt_chars=400))
    long = sim.failure_probabilities(dataclasses.replace(ctx, prompt_chars=4000))
    assert all(long[e] >= short[e] for e in short) and sum(long.values()) > sum(short.values())
    lax = dataclasses.replace(ctx.format, traits={**ctx.format.traits, "strictness": 0.0})
    strict = dataclasses.replace(ctx.format, traits={**ctx.format.traits, "strictness": 1.0})
    p_lax = sim.failure_probabilities(dataclasses.replace(ctx, format=lax))
    p_strict = sim.failure_probabilities(dataclasses.replace(ctx, format=strict))
    assert sum(p_strict.values()) < sum(p_lax.values())


def _mean_ndcg(action, users=200, **kwargs) -> np.ndarray:
    res = evaluate(FixedPolicy(action), ENV_ID, split="test", n_users=users, seed=1, env_kwargs=kwargs)
    return res.per_user("ndcg@10")


def test_more_history_helps_when_formatting_never_fails() -> None:
    # absolute history lengths 0, 3, 20; reasoning 3 weighs recent items most; no role
    kwargs = {"history_mode": "absolute", "history_lengths": (0, 3, 20), "llm": "sim?failure_scale=0"}
    none, few, many = (_mean_ndcg([h, 0, 3, 3], **kwargs).mean() for h in range(3))
    assert none < few < many, (none, few, many)


def _complete_rate(history_choice: int) -> float:
    env = gym.make_vec(ENV_ID, num_envs=200, history_mode="absolute", history_lengths=(0, 3, 50))
    env.reset(seed=0, options={"split": "test"})
    done = []
    for _ in range(5):
        info = env.step(np.tile([history_choice, 0, 1, 0], (200, 1)))[4]
        done.append(info["parse"]["complete"].mean())
    env.close()
    return float(np.mean(done))


def test_history_costs_format_failures() -> None:
    # fewer answers rank every candidate when the prompt is long
    assert _complete_rate(2) < _complete_rate(0) - 0.05


def test_per_user_affinity_changes_outcomes_in_the_documented_direction() -> None:
    """A role helps the users with positive affinity to it and hurts those with negative affinity."""
    env = gym.make(ENV_ID)
    sim: SimLLM = env.unwrapped.core.backend
    bundle = sim.world
    env.close()
    users = bundle.pools["test"]
    kwargs = {"llm": "sim?failure_scale=0&role_gain=1.0"}
    base = _mean_ndcg([1, 0, 1, 3], **kwargs)  # no role (affinity 0)
    for role in (1, 2):
        info = env.unwrapped.core._sentence_info["role"][role]
        aff = sim.affinity(users, info)
        gain = _mean_ndcg([1, role, 1, 3], **kwargs) - base
        hi, lo = gain[aff > 0.3].mean(), gain[aff < -0.3].mean()
        assert hi > 0 > lo, (role, hi, lo)
        assert np.corrcoef(aff, gain)[0, 1] > 0.2
