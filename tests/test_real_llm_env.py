"""The env with real backends: an OpenAI-compatible server on loopback (with faults) and llama.cpp."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from fake_openai_server import FakeOpenAIServer, Fault

import rpp_gym  # noqa: F401
from rpp_gym.data.specs import data_available
from rpp_gym.llm.base import LLMBackendError

ENV_ID = "RPP-MovieLens-v0"


@pytest.fixture
def server():
    with FakeOpenAIServer() as srv:
        yield srv


def _spec(server: FakeOpenAIServer) -> str:
    return f"openai:{server.base_url}?model={server.model}&timeout=5"


def test_env_over_an_openai_server_parses_every_answer(server, tmp_path: Path) -> None:
    env = gym.make(ENV_ID, llm=_spec(server), cache=str(tmp_path / "c.sqlite"))
    env.reset(seed=0)
    for _ in range(3):
        info = env.step(np.array([1, 1, 3, 4]))[4]
        assert info["parse"]["complete"]  # the fake server answers "1. Title" lines in shown order
        assert info["target_rank"] == info["target_pos"]  # ... so the held-out item ranks where it was shown
        assert info["llm"]["completion_tokens"] > 0 and info["cache"]["misses"] >= 1
    assert len(server.requests) == 3
    assert "[1] " in server.requests[0]["messages"][0]["content"]
    env.close()


def test_vector_env_sends_one_concurrent_batch_per_step(server, tmp_path: Path) -> None:
    vec = gym.make_vec(ENV_ID, num_envs=6, llm=_spec(server) + "&concurrency=6", cache=None)
    vec.reset(seed=0)
    server.delay_s = 0.2
    vec.step(np.tile([1, 0, 3, 0], (6, 1)))
    assert len(server.requests) == 6
    assert server.max_in_flight >= 3  # the six prompts were in flight together, not one by one
    vec.close()


def test_warm_cache_replays_with_zero_backend_calls(server, tmp_path: Path) -> None:
    cache = str(tmp_path / "replay.sqlite")

    def run() -> list[str]:
        env = gym.make(ENV_ID, llm=_spec(server), cache=cache, rounds=4)
        env.reset(seed=11)
        answers = [env.step(np.array([2, 1, 1, 0]))[4]["answer"] for _ in range(4)]
        stats = env.unwrapped.backend.stats()
        env.close()
        return answers, stats

    first, stats1 = run()
    calls = len(server.requests)
    second, stats2 = run()
    assert first == second
    assert len(server.requests) == calls  # nothing reached the server the second time
    assert stats1["misses"] == 4 and stats2["misses"] == 0 and stats2["hits"] == 4


def test_server_errors_surface_and_the_env_stays_usable(server, tmp_path: Path) -> None:
    env = gym.make(ENV_ID, llm=_spec(server) + "&max_retries=1", cache=None)
    env.reset(seed=0)
    env.step(np.array([1, 0, 0, 0]))
    core = env.unwrapped.core
    before = (core.round.copy(), core.hist_len.copy(), core.observations())
    server.always(Fault("server_error"))
    with pytest.raises(LLMBackendError, match=server.base_url.split("//")[1].split("/")[0]):
        env.step(np.array([2, 2, 2, 2]))
    assert np.array_equal(core.round, before[0]) and np.array_equal(core.hist_len, before[1])
    assert np.array_equal(core.observations(), before[2])
    server.always(None)
    _, _, _, _, info = env.step(np.array([2, 2, 2, 2]))  # the same step, now answered
    assert info["round"] == 2
    env.reset(seed=1)
    env.close()


def test_malformed_answer_is_an_error_not_a_made_up_ranking(server) -> None:
    env = gym.make(ENV_ID, llm=_spec(server) + "&max_retries=0", cache=None)
    env.reset(seed=0)
    server.push(Fault("malformed"))
    with pytest.raises(LLMBackendError):
        env.step(np.array([0, 0, 0, 0]))
    server.push(Fault("length"))  # an answer cut at max_tokens is an answer: parsed, counted
    info = env.step(np.array([0, 0, 0, 0]))[4]
    assert info["llm"]["finish_reason"] == "length" and not info["parse"]["complete"]
    env.close()


def test_api_keys_never_reach_specs_or_info(server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")
    with pytest.raises(ValueError, match="api_key"):
        gym.make(ENV_ID, llm=_spec(server) + "&api_key=sk-secret-123")
    env = gym.make(ENV_ID, llm=_spec(server), cache=None)
    env.reset(seed=0)
    info = env.step(np.array([0, 0, 0, 0]))[4]
    assert "sk-secret-123" not in repr(info) and "sk-secret-123" not in env.unwrapped.backend.identity
    assert server.headers[-1].get("authorization") == "Bearer sk-secret-123"  # sent only as the header
    env.close()


@pytest.mark.llm
@pytest.mark.skipif(not data_available(ENV_ID)[0], reason="MovieLens-1M not fetched")
def test_embedded_llamacpp_env_runs_parses_and_caches(tmp_path: Path) -> None:
    """The real default: llama.cpp + SmolLM2-135M inside step(). Few, short steps (2 CPU cores)."""
    cache = str(tmp_path / "llm.sqlite")
    env = gym.make(ENV_ID, cache=cache, rounds=2, max_tokens=160, render_mode="ansi")
    env.reset(seed=0)
    infos = [env.step(np.array([1, 1, 1, 4]))[4] for _ in range(2)]
    for info in infos:
        assert info["answer"].strip()  # the model wrote something
        assert info["llm"]["prompt_tokens"] > 100 and info["llm"]["completion_tokens"] > 0
        # it parsed into a ranking, or the failure is counted (never an exception, never a fake)
        p = info["parse"]
        assert p["recognized"] + p["unknown_lines"] + p["hallucinated"] + p["echoed_history"] + p["out_of_range"] > 0
    assert "LLM answer:" in env.render()
    env.close()
    replay = gym.make(ENV_ID, cache=cache, rounds=2, max_tokens=160)
    replay.reset(seed=0)
    again = [replay.step(np.array([1, 1, 1, 4]))[4] for _ in range(2)]
    assert [i["answer"] for i in again] == [i["answer"] for i in infos]
    assert replay.unwrapped.backend.stats()["misses"] == 0
    replay.close()
