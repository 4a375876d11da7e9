"""RPP+: growing banks, rewrite validation, the simulated refiner, masks in every view and agent."""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import rpp_gym
from rpp_gym.data.specs import data_available
from rpp_gym.envs.core import SlotBank
from rpp_gym.envs.parallel import AGENTS
from rpp_gym.envs.refine import (
    REJECT_REASONS,
    RefineConfig,
    RefineWrapper,
    clean_rewrite,
    make_refine_env,
    render_refine_prompt,
    validate_rewrite,
)
from rpp_gym.envs.registration import PLUS_ENV_SPECS
from rpp_gym.envs.rpp_env import RPPEnv
from rpp_gym.llm.sim import SentenceInfo
from rpp_gym.llm.sim_refine import (
    RefineContext,
    RefineSimConfig,
    answer_refine,
    lineage,
    quality,
    refined_id,
    refined_strictness,
)
from rpp_gym.prompts.bank import SENTENCE_PATTERNS, Sentence, available_banks, load_bank

_ok, _why = data_available("movielens-1m")
pytestmark = pytest.mark.skipif(not _ok, reason=_why)

PLUS_SIM = "RPP-Plus-MovieLens-Sim-v0"
PLAIN_SIM = "RPP-MovieLens-Sim-v0"
SIM_PLUS_IDS = [i for i, s in PLUS_ENV_SPECS.items() if s["kwargs"].get("llm") == "sim"]
BANK = load_bank("movie")


def _masked_sample(nvec: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    parts = np.split(np.asarray(mask, dtype=bool), np.cumsum(nvec)[:-1])
    return np.array([rng.choice(np.flatnonzero(p)) for p in parts], dtype=np.int64)


# ---- validation, cleaning, the refine prompt (pure) -------------------------------------------

FORMAT_OK = "Rank all 10 candidates, one per line, best first."


@pytest.mark.parametrize(
    ("pattern", "text", "reason"),
    [
        ("role", "", "empty"),
        ("role", "   ", "empty"),
        ("role", "Act as a critic.\nThen rank.", "multiline"),
        ("role", "Be nice.", "too_short"),
        ("reasoning", "Think. " * 60, "too_long"),
        ("reasoning", "Use my {history} to rank the candidates.", "placeholder"),
        ("role", "I'm sorry, but I cannot rewrite this sentence.", "refusal"),
        ("role", "As an AI language model, I rank movies.", "refusal"),
        ("reasoning", "1. Toy Story (1995)", "looks_like_answer"),
        ("reasoning", "[3] Heat (1995) is the best candidate.", "looks_like_answer"),
        ("role", "Act as a seasoned film expert.", "duplicate"),
        ("role", "  act as a SEASONED film expert  ", "duplicate"),
        (
            "format",
            "Reply with a numbered ranking of all 10 candidates, one movie per line, and nothing else.",
            "duplicate",
        ),
        ("format", "Rank all the candidates, one per line.", "missing_candidate_count"),
        ("format", "Rank all 100 candidates, one per line.", "missing_candidate_count"),
        ("format", "Write all 10 candidates, one per line.", "missing_ranking"),
        ("format", "Rank them as on page 10, one per line.", "missing_candidate_count"),
        ("format", "Rank the movies by NDCG@10 and list them.", "mentions_reward"),
        ("role", "Act as an expert who maximises my reward.", "mentions_reward"),
        ("format", "Rank the 10 movies, best first, one per line.", None),
        ("format", "Put the 10 candidate films in order, one per line.", None),
        ("format", FORMAT_OK, None),
        ("format", "List the 10 candidates in order of preference, numbered.", None),
        ("role", "Act as a film critic who loves old westerns.", None),
        ("reasoning", "Think about the 10 candidates and my latest movies.", None),
    ],
)
def test_validate_rewrite_table(pattern: str, text: str, reason: str | None) -> None:
    assert validate_rewrite(pattern, text, BANK, 10) == reason
    assert reason is None or reason in REJECT_REASONS


def test_validate_rewrite_accepts_every_packaged_sentence_against_an_empty_bank() -> None:
    # The checks must not reject what the project's own banks say (format: count + ranking word).
    for domain in available_banks():
        bank = load_bank(domain)
        for pattern in SENTENCE_PATTERNS:
            for s in bank.sentences(pattern):
                if s.text:
                    assert validate_rewrite(pattern, s.text.replace("{n}", "10"), [], 10) is None, (domain, s.id)


def test_validate_rewrite_against_slot_lists_and_bounds() -> None:
    current: list[Sentence | str | None] = [BANK.role[1], None, "Act as a film critic."]
    assert validate_rewrite("role", "act as a film critic", current, 10) == "duplicate"
    assert validate_rewrite("role", "Act as a film buff.", current, 10, min_chars=30) == "too_short"
    assert validate_rewrite("role", "Act as a film buff.", current, 10, max_chars=10) == "too_long"
    with pytest.raises(ValueError, match="history"):
        validate_rewrite("history", "x", BANK, 10)


@pytest.mark.parametrize(
    ("answer", "cleaned"),
    [
        ("Act as a film critic.", "Act as a film critic."),
        ('"Act as a film critic."', "Act as a film critic."),
        ("“Act as a film critic.”", "Act as a film critic."),
        ("Sure! Here is a better version:\n\nAct as a film critic.\n\nI made it shorter.", "Act as a film critic."),
        ("Rewritten sentence: Act as a film critic.", "Act as a film critic."),
        ("**Act as a film critic.**", "Act as a film critic."),
        ("", ""),
        ("Here you go:", ""),
    ],
)
def test_clean_rewrite(answer: str, cleaned: str) -> None:
    assert clean_rewrite(answer) == cleaned


def test_refine_prompt_shows_sentence_purpose_history_and_reward() -> None:
    text = render_refine_prompt(BANK, "format", FORMAT_OK, ["Heat (1995)", "Fargo (1996)"], 0.3869, 10, 10)
    assert f"Sentence: {FORMAT_OK}" in text
    assert "ranking of all 10 candidate movies" in text  # the pattern's purpose
    assert "It must still ask for a ranking of all 10 candidates." in text
    assert "watched most recently: Heat (1995), Fargo (1996)." in text
    assert "NDCG@10 = 0.39" in text
    role = render_refine_prompt(BANK, "role", "Act as a critic.", [], 1.0, 5, 20)
    assert "none are shown" in role and "NDCG@5 = 1.00" in role and "must still" not in role


def test_config_rejects_bad_values() -> None:
    with pytest.raises(TypeError):
        RefineConfig(capacty=3)  # type: ignore[call-arg]
    for bad in ({"scope": "user"}, {"invalid_action": "random"}, {"patterns": ("history",)}, {"every": -1}):
        with pytest.raises(ValueError):
            RefineConfig(**bad)  # type: ignore[arg-type]


# ---- SlotBank ------------------------------------------------------------------------------


def _sentence(sid: str, text: str = "Act as a critic of films.") -> Sentence:
    return Sentence(sid, text, BANK.role[1].traits)


def test_slot_bank_fills_free_slots_then_replaces_the_lowest_mean() -> None:
    bank = SlotBank(BANK, {"role": 7, "reasoning": 9, "format": 5})
    assert bank.victim("role") == 5
    bank.put("role", 5, _sentence("a", "Act as critic A of films."), prior=0.5)
    bank.put("role", 6, _sentence("b", "Act as critic B of films."), prior=0.2)
    assert bank.mask("role").all() and np.isnan(bank.means("format")).sum() == 0
    assert bank.victim("role") == 6  # lowest prior, the originals are protected
    bank.record("role", 5, 0.0)
    bank.record("role", 6, 0.9)
    assert bank.means("role")[5:].tolist() == [0.0, 0.9]
    assert bank.victim("role") == 5
    assert bank.victim("reasoning") is None  # full of originals
    # with replace_originals the lowest mean wins, but never the default slot (0)
    for i in range(5):
        bank.record("role", i, 0.1 * i)
    assert bank.victim("role", replace_originals=True) == 5
    bank.record("role", 5, 0.0)
    bank.record("role", 1, -1.0)
    assert bank.victim("role", replace_originals=True) == 1
    with pytest.raises(ValueError, match="already in slot"):
        bank.put("role", 6, _sentence("a"))
    with pytest.raises(ValueError, match="smaller than"):
        SlotBank(BANK, {"role": 2, "reasoning": 9, "format": 5})


def test_slot_bank_compact_bank_round_trip_and_copy() -> None:
    bank = SlotBank(BANK, {"role": 8, "reasoning": 9, "format": 6})
    assert bank.bank() is BANK
    bank.put("role", 6, _sentence("critic"), prior=0.4)  # slot 5 stays empty
    compact = bank.bank()
    assert [s.id for s in compact.role] == [*(s.id for s in BANK.role), "critic"]
    assert bank.compact_index("role", 6) == 5 and compact.defaults == BANK.defaults
    clone = bank.copy()
    clone.put("role", 5, _sentence("other", "Act as another film critic."))
    assert bank.sentences["role"][5] is None and clone.sentences["role"][5] is not None
    again = SlotBank.from_dict(bank.to_dict())
    assert again == bank and again.bank() == compact
    assert again.means("role")[6] == pytest.approx(0.4)
    bad = bank.to_dict()
    bad["slots"]["role"][6]["text"] = "Act as a {critic}."
    with pytest.raises(ValueError, match="placeholder"):
        SlotBank.from_dict(bad)


# ---- the simulated refiner -------------------------------------------------------------------


def _ctx(pattern: str = "role", sid: str = "expert", text: str = "Act as a seasoned film expert.", **kw: Any):
    info = SentenceInfo(pattern, sid, BANK.sentences(pattern)[BANK.index_of(pattern, sid)].traits)
    return RefineContext(pattern, info, text, kw.get("user", 3), kw.get("round", 1), 0.5, 10)


def test_sim_refiner_is_deterministic_and_keeps_the_pattern_valid(sim: Any) -> None:
    from rpp_gym.llm.base import LLMRequest

    requests = [LLMRequest.from_prompt("rewrite", meta=_ctx(user=u, round=r)) for u in range(20) for r in (1, 2)]
    a, b = answer_refine(sim, requests), answer_refine(sim, requests)
    assert [c.text for c in a] == [c.text for c in b]
    texts = [c.text for c in a]
    assert len(set(texts)) > 5  # depends on user and round
    rejected = [validate_rewrite("role", t, BANK, 10) for t in texts]
    assert set(rejected) <= {None, "empty", "duplicate"}
    assert 0 < rejected.count(None) < len(texts)  # malformed answers exist but are rare
    fmt = BANK.format[3].text.replace("{n}", "10")
    answers = answer_refine(
        sim, [LLMRequest.from_prompt("r", meta=_ctx("format", "numbers_only", fmt, user=u)) for u in range(30)]
    )
    assert all(validate_rewrite("format", c.text, BANK, 10) in (None, "empty", "duplicate") for c in answers)


@pytest.fixture(scope="module")
def sim() -> Iterator[Any]:
    env = gym.make(PLAIN_SIM)
    yield env.unwrapped.core.backend
    env.close()


def test_documented_quality_distribution() -> None:
    cfg = RefineSimConfig()
    q = np.array([quality(0, "role", refined_id("expert", f"text {i}"), cfg) for i in range(4000)])
    expected = np.clip(np.random.default_rng(0).normal(cfg.quality_mean, cfg.quality_std, 200_000), -0.5, 0.5)
    assert q.mean() == pytest.approx(expected.mean(), abs=0.02)
    assert q.std() == pytest.approx(expected.std(), abs=0.02)
    assert (q > 0).mean() == pytest.approx(0.37, abs=0.03)  # "37% of rewrites improve on their parent"
    assert (q > 0.3).mean() == pytest.approx(0.09, abs=0.02)
    assert q.max() == cfg.quality_cap == 0.5 and q.min() == -0.5
    child = refined_id("expert~abcdef", "more")
    assert lineage(child)[1] == "expert~abcdef"
    step = quality(0, "role", child, cfg) - quality(0, "role", "expert~abcdef", cfg)
    assert abs(step) < 5 * cfg.quality_std  # the child builds on its parent's quality
    s = [refined_strictness(0, refined_id("numbered", f"t{i}"), 0.6, cfg) for i in range(2000)]
    changed = np.mean([x != 0.6 for x in s])
    assert changed == pytest.approx(cfg.strictness_change, abs=0.03)
    assert min(s) >= 0.6 - cfg.strictness_step and max(s) <= 0.6 + cfg.strictness_step


def test_refined_direction_keeps_rho_of_the_parent(sim: Any) -> None:
    users = np.arange(sim.world.user_emb.shape[0])
    parent = SentenceInfo("reasoning", "history", BANK.reasoning[1].traits)
    base = sim.affinity(users, parent)
    corr = []
    for i in range(40):
        child = SentenceInfo("reasoning", refined_id("history", f"v{i}"), parent.traits)
        corr.append(np.corrcoef(base, sim.affinity(users, child))[0, 1])
    assert 0.5 < np.mean(corr) < 0.95  # rho = 0.8 of the direction, through tanh


def test_a_better_rewrite_ranks_better_and_a_worse_one_worse() -> None:
    # Quality multiplies the gain: the same prompts with a rewrite of high q score higher.
    cfg = RefineSimConfig()
    ids = [refined_id("ranker", f"variant {i}") for i in range(300)]
    best = max(ids, key=lambda i: quality(0, "role", i, cfg))
    worst = min(ids, key=lambda i: quality(0, "role", i, cfg))
    assert quality(0, "role", best, cfg) > 0.4 and quality(0, "role", worst, cfg) < -0.4

    def mean_reward(sid: str | None) -> float:
        env = make_refine_env(dataset="movielens-1m", llm="sim?failure_scale=0", rounds=15, every=0, capacity=6)
        if sid is not None:
            env.unwrapped.core.set_sentences(
                "role", [*BANK.role, Sentence(sid, BANK.role[3].text + " Truly.", BANK.role[3].traits)]
            )
        rewards = []
        for user in range(40):
            env.reset(seed=user)
            for _ in range(15):
                rewards.append(env.step([1, 5 if sid else 3, 1, 0])[1])
        env.close()
        return float(np.mean(rewards))

    parent, good, bad = mean_reward(None), mean_reward(best), mean_reward(worst)
    assert good > parent + 0.01 and bad < parent - 0.01, (parent, good, bad)


# ---- the env ---------------------------------------------------------------------------------


def _plus(**kwargs: Any) -> gym.Env:
    return gym.make(PLUS_SIM, **kwargs)


def test_spaces_masks_and_observation_slice() -> None:
    env = _plus(rounds=6)
    core = env.unwrapped.core
    assert env.action_space == gym.spaces.MultiDiscrete([3, 16, 16, 16])
    assert env.observation_space.shape == (268,) and core.mask_slice == slice(217, 268)
    assert core.stats_slice == slice(121, 217)  # per sentence slot: running mean, then trials
    obs, _ = env.reset(seed=0)
    mask = env.get_wrapper_attr("action_masks")()
    assert mask.dtype == bool and mask.shape == (51,)
    assert mask.tolist() == [True] * 3 + ([True] * 5 + [False] * 11) + ([True] * 9 + [False] * 7) + (
        [True] * 5 + [False] * 11
    )
    assert np.array_equal(obs[core.mask_slice], mask.astype(np.float32))
    assert np.array_equal(env.unwrapped.action_masks(), mask)
    obs, _, _, _, info = env.step([1, 1, 1, 1])
    mask = env.get_wrapper_attr("action_masks")()
    assert np.array_equal(obs[core.mask_slice], mask.astype(np.float32))
    assert mask.sum() == 3 + 5 + 9 + 5 + info["refine"]["accepted"] > 22
    env.close()


def test_observation_carries_each_slots_running_mean_and_trials() -> None:
    from rpp_gym.envs.core import TRIALS_SCALE

    for scope in ("episode", "global"):
        vec = gym.make_vec(PLUS_SIM, num_envs=3, rounds=4, scope=scope, every=0)
        core = vec.unwrapped.core
        obs, _ = vec.reset(seed=1)
        assert not obs[:, core.stats_slice].any()  # nothing tried yet
        rewards = []
        for action in ([0, 1, 2, 3], [0, 1, 2, 3], [0, 2, 2, 0]):
            obs, reward, _, _, _ = vec.step(np.tile(action, (3, 1)))
            rewards.append(reward)
        stats = obs[:, core.stats_slice]
        means, trials = stats[:, :48].reshape(3, 3, 16), stats[:, 48:].reshape(3, 3, 16)
        r = np.array(rewards)  # [step, user]
        if scope == "episode":  # each user's own bank: role slot 1 was chosen twice by that user
            np.testing.assert_allclose(means[:, 0, 1], r[:2].mean(axis=0), rtol=1e-6)
            np.testing.assert_allclose(means[:, 0, 2], r[2], rtol=1e-6)
            np.testing.assert_allclose(trials[:, 0, 1], np.log1p(2) / TRIALS_SCALE, rtol=1e-6)
            np.testing.assert_allclose(means[:, 1, 2], r.mean(axis=0), rtol=1e-6)  # reasoning 2: every step
        else:  # one shared bank: every user sees the same statistics, over all users' rewards
            assert (stats == stats[0]).all()
            np.testing.assert_allclose(means[0, 0, 1], r[:2].mean(), rtol=1e-6)
            np.testing.assert_allclose(trials[0, 2, 3], np.log1p(6) / TRIALS_SCALE, rtol=1e-6)
        assert (trials[:, 0, 5:] == 0).all() and (means[:, 0, 5:] == 0).all()  # empty slots
        vec.close()


def test_empty_slot_raises_or_maps_to_the_default() -> None:
    env = _plus(rounds=3)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"role slot 12, which is empty \(valid role slots now: \[0, 1, 2, 3, 4\]\)"):
        env.step([0, 12, 0, 0])
    assert env.unwrapped.core.round[0] == 0  # nothing was stepped
    ref = _plus(rounds=3)
    lenient = _plus(rounds=3, invalid_action="default")
    ref.reset(seed=1)
    lenient.reset(seed=1)
    _, r1, _, _, i1 = ref.step([1, 0, 2, 0])
    _, r2, _, _, i2 = lenient.step([1, 12, 2, 15])
    assert r1 == r2 and i1["answer"] == i2["answer"]
    assert i2["action"] == {"history": 1, "role": 0, "reasoning": 2, "format": 0}
    assert i2["empty_slot_replaced"] == {"role": True, "reasoning": False, "format": True}
    for e in (env, ref, lenient):
        e.close()


def test_refine_info_counts_add_up_and_rewrites_enter_the_bank() -> None:
    env = _plus(rounds=15, scope="global")
    wrapper = env.get_wrapper_attr("slot_bank")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    nvec = env.action_space.nvec
    totals = {"asked": 0, "accepted": 0}
    for _ in range(15):
        action = _masked_sample(nvec, env.get_wrapper_attr("action_masks")(), rng)
        _, _, _, _, info = env.step(action)
        ref = info["refine"]
        assert ref["asked"] == ref["accepted"] + sum(ref["rejected"].values()) == len(ref["rewrites"])
        assert set(ref["rejected"]) == set(REJECT_REASONS)
        for entry in ref["rewrites"]:
            if entry["reason"] is None:
                assert wrapper.sentences[entry["pattern"]][entry["slot"]].id == entry["id"]
                assert entry["id"].startswith(entry["parent"] + "~")
        totals["asked"] += ref["asked"]
        totals["accepted"] += ref["accepted"]
    refiner = env.get_wrapper_attr("refiner")
    assert refiner.totals["asked"] == totals["asked"] > 30
    assert refiner.totals["accepted"] == totals["accepted"] > 10
    assert sum(refiner.totals[r] for r in REJECT_REASONS) == totals["asked"] - totals["accepted"] > 0
    env.close()


def test_choosing_only_originals_reproduces_the_plain_env() -> None:
    # Refinement never touches the env's generator: the same seed and the same original choices
    # give the plain env's rewards and answers.
    plus, plain = _plus(rounds=15), gym.make(PLAIN_SIM, rounds=15)
    a, b = plus.reset(seed=9), plain.reset(seed=9)
    assert a[1]["user_id"] == b[1]["user_id"] and a[1]["candidates"] == b[1]["candidates"]
    plain.action_space.seed(9)
    d = plain.unwrapped.core.bundle.user_emb.shape[1]
    for _ in range(15):
        action = plain.action_space.sample()
        s1, s2 = plus.step(action), plain.step(action)
        assert s1[1] == s2[1] and s1[4]["answer"] == s2[4]["answer"] and s1[4]["prompt"] == s2[4]["prompt"]
        assert np.array_equal(s1[0][: d + 2], s2[0][: d + 2])  # user embedding, round, history length
    plus.close()
    plain.close()


def test_episode_scope_restarts_from_the_original_bank_and_global_keeps_growing() -> None:
    episode, shared = _plus(rounds=4), _plus(rounds=4, scope="global")
    for env in (episode, shared):
        env.reset(seed=0)
        for _ in range(4):
            env.step([1, 1, 1, 1])
    assert episode.get_wrapper_attr("action_masks")().sum() > 22
    episode.reset(seed=1)
    assert episode.get_wrapper_attr("action_masks")().sum() == 22
    grown = shared.get_wrapper_attr("action_masks")().copy()
    shared.reset(seed=1)
    assert np.array_equal(shared.get_wrapper_attr("action_masks")(), grown) and grown.sum() > 22
    episode.close()
    shared.close()


def test_global_bank_saves_loads_and_is_reusable(tmp_path: Path) -> None:
    env = _plus(rounds=5, scope="global")
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    for _ in range(5):
        env.step(_masked_sample(env.action_space.nvec, env.get_wrapper_attr("action_masks")(), rng))
    path = env.get_wrapper_attr("save_bank")(tmp_path / "trained.json")
    saved = env.get_wrapper_attr("slot_bank")
    reused = _plus(rounds=5, scope="global", bank_file=str(path), every=0)
    assert reused.get_wrapper_attr("slot_bank") == saved
    reused.reset(seed=3)
    mask = reused.get_wrapper_attr("action_masks")()
    for _ in range(5):
        info = reused.step(_masked_sample(reused.action_space.nvec, mask, rng))[4]
        assert info["refine"]["asked"] == 0  # every=0: the trained bank as it is
    assert np.array_equal(reused.get_wrapper_attr("action_masks")(), mask)
    # the grown bank as a plain bank, for the fixed-bank env
    plain = gym.make(PLAIN_SIM, bank=env.get_wrapper_attr("grown_bank")())
    assert int(plain.action_space.nvec[1:].sum()) == int(mask.sum()) - 3
    plain.close()
    with pytest.raises(ValueError, match="different"):
        _plus(bank_file=str(path), bank="music")
    with pytest.raises(FileNotFoundError, match="save_bank"):
        _plus(bank_file=str(tmp_path / "missing.json"))
    env.close()
    reused.close()


def test_wrapping_checks_its_env() -> None:
    env = RPPEnv(rounds=2)
    env.reset(seed=0)
    with pytest.raises(RuntimeError, match="before the first reset"):
        RefineWrapper(env)
    with pytest.raises(TypeError, match="RPP env"):
        RefineWrapper(gym.make("CartPole-v1"))
    with pytest.raises(TypeError):
        gym.make(PLUS_SIM, capasity=4)
    with pytest.raises(ValueError, match="smaller than"):
        gym.make(PLUS_SIM, capacity={"reasoning": 3})
    env.close()


def test_render_shows_the_refined_prompt() -> None:
    env = gym.make(PLUS_SIM, render_mode="ansi", rounds=3, scope="global")
    env.reset(seed=0)
    info = env.step([1, 1, 1, 1])[4]
    new = next(e for e in info["refine"]["rewrites"] if e["reason"] is None)
    action = [1, 1, 1, 1]
    action[SENTENCE_PATTERNS.index(new["pattern"]) + 1] = new["slot"]
    info = env.step(action)[4]
    assert new["text"] in info["prompt"] and new["text"] in env.render()
    assert info["sentence_ids"][new["pattern"]] == new["id"]
    env.close()


# ---- registry checks with masks (the fixed-bank ones sample unmasked actions) -------------------


@pytest.fixture(params=SIM_PLUS_IDS)
def plus_id(request: pytest.FixtureRequest) -> str:
    return request.param


def test_plus_ids_are_registered() -> None:
    rpp_gym.register_envs()
    assert set(PLUS_ENV_SPECS) <= set(gym.registry)
    assert PLUS_ENV_SPECS["RPP-Plus-MovieLens-v0"]["nondeterministic"] is True


def test_checkers_pass(plus_id: str) -> None:
    # The checkers sample unmasked actions: empty slots map to the default here.
    env = gym.make(plus_id, invalid_action="default")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env.unwrapped)
        sb3_check_env(env, warn=True)
    assert [str(w.message) for w in caught if "max_episode_steps" not in str(w.message)] == []
    env.close()


def _rollout(env: gym.Env, seed: int) -> list[Any]:
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    trace: list[Any] = [obs.tobytes(), info["user_id"]]
    for _ in range(15):
        action = _masked_sample(env.action_space.nvec, env.get_wrapper_attr("action_masks")(), rng)
        obs, reward, term, _, info = env.step(action)
        trace += [obs.tobytes(), reward, term, info["answer"], info["refine"]["accepted"]]
    return trace


def test_same_seed_same_rollout_and_pickle(plus_id: str) -> None:
    a, b = gym.make(plus_id, scope="global"), gym.make(plus_id, scope="global")
    ta = _rollout(a, 7)
    assert ta == _rollout(b, 7) and ta != _rollout(b, 8)
    assert ta[-3] is True
    env = gym.make(plus_id)
    env.reset(seed=3)
    rng = np.random.default_rng(3)
    for _ in range(4):
        env.step(_masked_sample(env.action_space.nvec, env.get_wrapper_attr("action_masks")(), rng))
    clone = pickle.loads(pickle.dumps(env))
    for _ in range(5):
        action = _masked_sample(env.action_space.nvec, env.get_wrapper_attr("action_masks")(), rng)
        o1, r1, _, _, i1 = env.step(action)
        o2, r2, _, _, i2 = clone.step(action)
        assert np.array_equal(o1, o2) and r1 == r2 and i1["refine"]["rewrites"] == i2["refine"]["rewrites"]
    for e in (a, b, env, clone):
        e.close()


# ---- the vector env ----------------------------------------------------------------------------


def _count_batches(core: Any) -> list[int]:
    sizes: list[int] = []
    generate = core.backend.generate

    def spy(requests: Any) -> Any:
        sizes.append(len(requests))
        return generate(requests)

    core.backend.generate = spy
    return sizes


def test_vector_env_batches_refinement_and_keeps_a_bank_per_user(plus_id: str) -> None:
    vec = gym.make_vec(plus_id, num_envs=4, rounds=3)
    core = vec.unwrapped.core
    sizes = _count_batches(core)
    obs, _ = vec.reset(seed=0)
    masks = vec.unwrapped.action_masks()
    assert masks.shape == (4, 51) and (masks.sum(axis=1) == 22).all()
    assert np.array_equal(obs[:, core.mask_slice], masks.astype(np.float32))
    rng = np.random.default_rng(0)
    for t in range(3):
        actions = np.stack([_masked_sample(core.nvec, m, rng) for m in vec.unwrapped.action_masks()])
        obs, _, term, _, info = vec.step(actions)
        assert np.array_equal(obs[:, core.mask_slice], vec.unwrapped.action_masks().astype(np.float32))
        if t < 2:
            asked = int(np.sum(info["refine"]["asked"]))
            assert sizes[-2:] == [4, asked] and asked >= 8  # rankings, then ONE refine batch for all users
        else:
            assert sizes[-1] == 4 and term.all()  # no rewrite after the last round (episode scope)
    banks = [core.bank_of(i) for i in range(4)]
    assert len({id(b) for b in banks}) == 4  # episode scope: each user its own bank
    vec.step(actions)  # NEXT_STEP autoreset: new users start from the original banks
    assert (vec.unwrapped.action_masks().sum(axis=1) == 22).all()
    vec.close()
    shared = gym.make_vec(plus_id, num_envs=3, rounds=3, scope="global")
    shared.reset(seed=0)
    shared.step(np.tile([1, 1, 1, 1], (3, 1)))
    core = shared.unwrapped.core
    assert core.bank_of(0) is core.bank_of(1) is core.bank_of(2)
    masks = shared.unwrapped.action_masks()
    assert (masks == masks[0]).all() and masks[0].sum() > 22
    shared.close()


# ---- the PettingZoo view -------------------------------------------------------------------------


def test_parallel_view_exposes_live_masks(plus_id: str) -> None:
    from pettingzoo.test import parallel_api_test, parallel_seed_test

    par = rpp_gym.parallel_env(plus_id, padded=True, rounds=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parallel_api_test(par, num_cycles=30)  # samples with obs["action_mask"]
    parallel_seed_test(lambda: rpp_gym.parallel_env(plus_id, invalid_action="default"), num_cycles=20)
    par = rpp_gym.parallel_env(plus_id, rounds=6, scope="global")
    assert par.action_space("role") == gym.spaces.Discrete(16)
    _, infos = par.reset(seed=0)
    assert infos["role"]["action_mask"].tolist() == [1] * 5 + [0] * 11
    with pytest.raises(ValueError, match="empty slot"):
        par.step({"history": 0, "role": 9, "reasoning": 0, "format": 0})
    rng = np.random.default_rng(0)
    grew = False
    while par.agents:
        actions = {a: int(rng.choice(np.flatnonzero(par.action_mask(a)))) for a in par.agents}
        _, _, _, _, infos = par.step(actions)
        for a in AGENTS:
            assert np.array_equal(infos[a]["action_mask"], par.action_mask(a))
        shared = par.state()
        assert np.array_equal(shared[par.core.mask_slice], par.core.action_masks()[0].astype(np.float32))
        grew |= bool(par.action_mask("format")[5:].any())
    assert grew
    par.close()


# ---- agents: MaskablePPO, FlattenJointAction -------------------------------------------------------


class _Recorder(gym.Wrapper):
    """Records each action with the mask in force when it was chosen."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.log: list[tuple[np.ndarray, np.ndarray]] = []

    def action_masks(self) -> np.ndarray:
        return self.env.get_wrapper_attr("action_masks")()

    def step(self, action: Any) -> Any:
        self.log.append((np.asarray(action).copy(), self.action_masks().copy()))
        return self.env.step(action)


def test_maskable_ppo_never_chooses_empty_slots_and_gives_them_zero_probability() -> None:
    import torch
    from sb3_contrib import MaskablePPO

    env = _Recorder(_plus(rounds=5, scope="global"))
    model = MaskablePPO("MlpPolicy", env, n_steps=40, batch_size=40, n_epochs=1, seed=0, device="cpu")
    model.learn(80)
    nvec = env.action_space.nvec
    offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]])
    assert len(env.log) >= 80
    for action, mask in env.log:
        assert mask[offsets + action].all()
    assert any(a[1] >= 5 or a[3] >= 5 for a, _ in env.log)  # rewrites were chosen too
    obs, _ = env.reset(seed=5)
    mask = env.action_masks()
    obs_t, _ = model.policy.obs_to_tensor(obs)
    with torch.no_grad():
        dist = model.policy.get_distribution(obs_t, action_masks=mask[None])
    parts = np.split(mask, np.cumsum(nvec)[:-1])
    for head, valid in zip(dist.distributions, parts, strict=True):
        probs = head.probs[0].numpy()
        assert (probs[~valid] == 0).all() and probs[valid].sum() == pytest.approx(1.0, abs=1e-5)
    env.close()


def test_maskable_ppo_on_the_batched_sb3_vec_env() -> None:
    from sb3_contrib import MaskablePPO

    from rpp_gym.agents.sb3 import make_sb3_vec_env

    vec = make_sb3_vec_env(PLUS_SIM, n_envs=4, seed=0, rounds=3)
    masks = vec.env_method("action_masks")
    assert len(masks) == 4 and all(m.shape == (51,) and m.sum() == 22 for m in masks)
    model = MaskablePPO("MlpPolicy", vec, n_steps=6, batch_size=24, n_epochs=1, seed=0, device="cpu")
    model.learn(48)
    assert model.num_timesteps == 48
    vec.close()


def test_flatten_joint_action_mask_follows_the_growing_bank() -> None:
    from rpp_gym.agents.sb3 import FlattenJointAction

    env = FlattenJointAction(_plus(rounds=3, capacity=6))
    nvec = env.joint_nvec
    assert nvec.tolist() == [3, 6, 9, 6] and env.action_space == gym.spaces.Discrete(3 * 6 * 9 * 6)
    env.reset(seed=0)
    flat = env.action_masks()
    assert flat.sum() == 3 * 5 * 9 * 5
    assert (env.joint(np.flatnonzero(flat))[:, [1, 3]] < 5).all()
    env.step(int(env.index([1, 1, 1, 1])))
    per_pattern = np.split(env.env.get_wrapper_attr("action_masks")(), np.cumsum(nvec)[:-1])
    assert env.action_masks().sum() == np.prod([p.sum() for p in per_pattern]) > 3 * 5 * 9 * 5
    env.close()


# ---- a refiner behind the OpenAI protocol (the fake server) ------------------------------------


def test_openai_refiner_rewrites_flow_through_validation(tmp_path: Path) -> None:
    from fake_openai_server import FakeOpenAIServer

    def answer(body: dict[str, Any]) -> str:
        prompt = body["messages"][-1]["content"]
        sentence = prompt.split("Sentence: ", 1)[1].split("\n", 1)[0]
        if "reason" in prompt.split("What the sentence is for:", 1)[1].split("\n", 1)[0]:
            return "1. Toy Story (1995)"  # the model answered instead of rewriting
        return f'Here is the rewritten sentence:\n"{sentence.rstrip(".")}, thinking of my latest favourites."'

    with FakeOpenAIServer(answer=answer) as server:
        spec = f"openai:{server.base_url}?model=fake-model&concurrency=4"
        cache = tmp_path / "cache.sqlite"
        env = gym.make(PLUS_SIM, rounds=3, refiner=spec, cache=str(cache), scope="global")
        env.reset(seed=0)
        info = env.step([1, 1, 1, 1])[4]
        ref = info["refine"]
        assert ref["asked"] == 3 == len(server.requests)
        assert ref["accepted"] == 2 and ref["rejected"]["looks_like_answer"] == 1
        bank = env.get_wrapper_attr("slot_bank")
        assert bank.sentences["role"][5].text == "Act as a seasoned film expert, thinking of my latest favourites."
        fmt = bank.sentences["format"][5].text
        assert "{n}" in fmt and fmt.endswith("thinking of my latest favourites.")
        assert "NDCG@10" in server.requests[0]["messages"][-1]["content"]
        env.close()
        # the response cache makes the refiner replayable: the same run asks the server nothing
        again = gym.make(PLUS_SIM, rounds=3, refiner=spec, cache=str(cache), scope="global")
        again.reset(seed=0)
        assert again.step([1, 1, 1, 1])[4]["refine"]["rewrites"] == ref["rewrites"]
        assert len(server.requests) == 3
        again.close()


# ---- the real model --------------------------------------------------------------------------


@pytest.mark.llm
def test_real_model_rewrite_is_accepted_or_rejected_with_a_counted_reason(tmp_path: Path) -> None:
    pytest.importorskip("xllamacpp", reason="the llamacpp backend needs the xllamacpp wheel")
    from rpp_gym.data.fetch import AssetError, fetch
    from rpp_gym.data.specs import SMOLLM2_135M_Q4_1

    try:
        files = fetch(SMOLLM2_135M_Q4_1).files
    except AssetError as e:
        pytest.skip(f"SmolLM2-135M GGUF not cached: {str(e).splitlines()[0]}")
    gguf = next(p for name, p in files.items() if name.endswith(".gguf"))
    env = gym.make(
        PLUS_SIM,
        rounds=2,
        refiner=f"llamacpp:{gguf}?n_parallel=2&n_ctx=2048",
        cache=str(tmp_path / "cache.sqlite"),
        patterns=("role", "format"),
        max_tokens=48,
    )
    env.reset(seed=0)
    ref = env.step([1, 1, 1, 1])[4]["refine"]
    assert ref["asked"] == 2 == ref["accepted"] + sum(ref["rejected"].values())
    bank = env.get_wrapper_attr("slot_bank")
    for entry in ref["rewrites"]:
        if entry["reason"] is None:  # the model's own text is now an action
            placed = bank.sentences[entry["pattern"]][entry["slot"]]
            assert placed.id == entry["id"] and placed.text.replace("{n}", "10") == entry["text"]
        else:
            assert entry["reason"] in REJECT_REASONS
    env.close()
