"""OpenAIBackend against a real loopback HTTP server with scripted faults."""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import socket
import time

import pytest
from fake_openai_server import FakeOpenAIServer, Fault

from rpp_gym.llm import LLMBackend, LLMBackendError, LLMRequest, SamplingParams
from rpp_gym.llm.openai_backend import OpenAIBackend

PROMPT = "Rank the candidates:\n[1] Heat (1995)\n[2] Fargo (1996)\n[3] Babe (1995)"
RANKING = "1. Heat (1995)\n2. Fargo (1996)\n3. Babe (1995)"


@pytest.fixture
def server():
    with FakeOpenAIServer() as fake:
        yield fake


def make(server: FakeOpenAIServer, **kwargs) -> OpenAIBackend:
    kwargs.setdefault("timeout", 5)
    return OpenAIBackend(server.base_url, server.model, **kwargs)


def test_answer_usage_and_request_body(server) -> None:
    with make(server) as backend:
        assert isinstance(backend, LLMBackend)
        sampling = SamplingParams(temperature=0.7, top_p=0.9, max_tokens=50, stop=("###",))
        greedy, sampled = backend.generate(
            [LLMRequest.from_prompt(PROMPT), LLMRequest.from_prompt(PROMPT, sampling, seed=11)]
        )
    assert greedy.text == sampled.text == RANKING
    assert greedy.finish_reason == "stop"
    assert greedy.prompt_tokens == len(PROMPT.split())
    assert greedy.completion_tokens == len(RANKING.split())
    assert greedy.latency_s > 0 and not greedy.cached
    first, second = sorted(server.requests, key=lambda body: "seed" in body)
    assert first["model"] == server.model
    assert first["messages"] == [{"role": "user", "content": PROMPT}]
    assert (first["temperature"], first["max_tokens"]) == (0.0, 256)
    assert "seed" not in first and "stop" not in first
    assert (second["seed"], second["temperature"], second["top_p"], second["max_tokens"], second["stop"]) == (
        11,
        0.7,
        0.9,
        50,
        ["###"],
    )


def test_empty_batch_makes_no_call(server) -> None:
    with make(server) as backend:
        assert backend.generate([]) == []
    assert server.requests == []


def test_retries_then_success_honours_retry_after(server) -> None:
    server.push("drop", Fault("rate_limit", retry_after=0.3), Fault("server_error", retry_after=0.05))
    with make(server, max_retries=4) as backend:
        start = time.perf_counter()
        (answer,) = backend.generate([LLMRequest.from_prompt(PROMPT)])
        elapsed = time.perf_counter() - start
    assert answer.text == RANKING
    assert len(server.requests) == 4  # three failures, then the answer
    assert elapsed >= 0.35  # waited the server's Retry-After (0.3 s) and 0.05 s


def test_retries_exhausted_names_endpoint_model_and_error(server) -> None:
    server.always(Fault("server_error", retry_after=0.01))
    with make(server, max_retries=2) as backend, pytest.raises(LLMBackendError) as info:
        backend.generate([LLMRequest.from_prompt(PROMPT)])
    message = str(info.value)
    assert server.base_url in message and repr(server.model) in message
    assert "HTTP 500 after 2 retries" in message and "internal error (scripted)" in message
    assert len(server.requests) == 3


def test_rate_limit_exhausted(server) -> None:
    server.always(Fault("rate_limit", retry_after=0.01))
    with make(server, max_retries=1) as backend, pytest.raises(LLMBackendError, match="HTTP 429 after 1 retries"):
        backend.generate([LLMRequest.from_prompt(PROMPT)])
    assert len(server.requests) == 2


def test_timeout(server) -> None:
    server.always(Fault("slow", delay_s=1.5))
    with make(server, timeout=0.2, max_retries=0) as backend, pytest.raises(LLMBackendError, match="timed out"):
        backend.generate([LLMRequest.from_prompt(PROMPT)])


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m", max_retries=0) as backend:
        with pytest.raises(LLMBackendError, match=f"127.0.0.1:{port}/v1.*connection failed"):
            backend.generate([LLMRequest.from_prompt(PROMPT)])


@pytest.mark.parametrize(
    ("fault", "why"),
    [
        ("malformed", "malformed response"),
        ("empty_choices", "no choices"),
        ("no_content", "no message content"),
    ],
)
def test_bad_responses_raise_without_retrying(server, fault: str, why: str) -> None:
    server.push(fault)
    with make(server, max_retries=3) as backend, pytest.raises(LLMBackendError, match=why) as info:
        backend.generate([LLMRequest.from_prompt(PROMPT)])
    assert server.base_url in str(info.value)
    assert len(server.requests) == 1


def test_finish_reason_length_passes_through(server) -> None:
    server.push("length")
    with make(server) as backend:
        (answer,) = backend.generate([LLMRequest.from_prompt(PROMPT)])
    assert (answer.text, answer.finish_reason, answer.completion_tokens) == ("1. Heat", "length", 2)


def test_one_failure_fails_the_batch(server) -> None:
    server.push("empty_choices")
    with make(server) as backend:
        with pytest.raises(LLMBackendError, match="no choices"):
            backend.generate([LLMRequest.from_prompt(PROMPT)] * 3)
        assert backend.generate([LLMRequest.from_prompt(PROMPT)])[0].text == RANKING  # still usable


@pytest.mark.parametrize("concurrency", [1, 4])
def test_concurrency_bounds_requests_in_flight(concurrency: int) -> None:
    with FakeOpenAIServer(delay_s=0.15) as server, make(server, concurrency=concurrency) as backend:
        start = time.perf_counter()
        answers = backend.generate([LLMRequest.from_prompt(f"{PROMPT}\n[4] Movie {i}") for i in range(8)])
        elapsed = time.perf_counter() - start
    assert [a.text.splitlines()[-1] for a in answers] == [f"4. Movie {i}" for i in range(8)]  # order kept
    assert server.max_in_flight == concurrency
    assert elapsed >= 8 / concurrency * 0.15 * 0.9
    if concurrency > 1:
        assert elapsed < 8 * 0.15 * 0.6  # really overlapped


def test_close_is_idempotent_and_final(server) -> None:
    backend = make(server)
    backend.close()
    backend.close()
    with pytest.raises(LLMBackendError, match="closed"):
        backend.generate([LLMRequest.from_prompt(PROMPT)])


def test_sync_call_inside_a_running_event_loop(server) -> None:
    async def caller() -> str:
        with make(server) as backend:
            return backend.generate([LLMRequest.from_prompt(PROMPT)])[0].text

    assert asyncio.run(caller()) == RANKING


def test_pickle_round_trip(server) -> None:
    with make(server, concurrency=3, max_retries=1) as backend:
        clone = pickle.loads(pickle.dumps(backend))
    with clone:
        assert (clone.concurrency, clone.max_retries, clone.identity) == (3, 1, backend.identity)
        assert clone.generate([LLMRequest.from_prompt(PROMPT)])[0].text == RANKING


def _child_generate(backend: OpenAIBackend, queue) -> None:
    try:
        queue.put(backend.generate([LLMRequest.from_prompt(PROMPT)])[0].text)
    except BaseException as e:
        queue.put(repr(e))


def test_forked_child_gets_its_own_loop(server) -> None:
    ctx = multiprocessing.get_context("fork")
    with make(server) as backend:
        backend.generate([LLMRequest.from_prompt(PROMPT)])  # the parent's loop is running
        queue = ctx.Queue()
        child = ctx.Process(target=_child_generate, args=(backend, queue))
        child.start()
        assert queue.get(timeout=30) == RANKING
        child.join(timeout=30)
        assert child.exitcode == 0
        assert backend.generate([LLMRequest.from_prompt(PROMPT)])[0].text == RANKING
