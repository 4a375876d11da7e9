"""The SQLite response cache: keys, hits and misses, seeds, several processes, crashes, tools."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from rpp_gym.llm import (
    CachedBackend,
    Completion,
    LLMBackendError,
    LLMRequest,
    SamplingParams,
    cache_stats,
    export_cache,
    prune_cache,
)
from rpp_gym.llm.cache import cache_key

GREEDY = SamplingParams()
HOT = SamplingParams(temperature=0.8)


class ScriptedBackend:
    """Answers ``answer(prompt, seed)``; records every batch it receives."""

    def __init__(self, identity: str = "scripted:v1", fail: bool = False) -> None:
        self._identity = identity
        self.model = "scripted-model"
        self.fail = fail
        self.batches: list[list[LLMRequest]] = []
        self.closed = 0

    @property
    def identity(self) -> str:
        return self._identity

    def generate(self, requests: Sequence[LLMRequest]) -> list[Completion]:
        self.batches.append(list(requests))
        if self.fail:
            raise LLMBackendError("scripted failure")
        return [Completion(answer(r.prompt, r.seed), "stop", len(r.prompt.split()), 3, latency_s=0.5) for r in requests]

    def close(self) -> None:
        self.closed += 1


def answer(prompt: str, seed: int | None) -> str:
    return f"answer to {prompt!r} with seed {seed}"


def req(i: int, sampling: SamplingParams = GREEDY, seed: int | None = None) -> LLMRequest:
    return LLMRequest.from_prompt(f"prompt number {i}", sampling, seed)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "sub" / "cache.sqlite"


def test_miss_then_hit_replays_without_backend_calls(path: Path) -> None:
    inner = ScriptedBackend()
    cache = CachedBackend(inner, path)
    batch = [req(i) for i in range(5)]
    first = cache.generate(batch)
    assert len(inner.batches) == 1 and not any(c.cached for c in first)
    second = cache.generate(batch)
    assert len(inner.batches) == 1  # zero backend calls
    assert all(c.cached for c in second)
    assert [c.text for c in second] == [c.text for c in first]
    assert [(c.prompt_tokens, c.completion_tokens, c.finish_reason) for c in second] == [
        (c.prompt_tokens, c.completion_tokens, c.finish_reason) for c in first
    ]
    assert all(c.latency_s < 0.5 for c in second)
    assert cache.stats() == {"hits": 5, "misses": 5, "prompt_tokens": 15, "completion_tokens": 15, "hit_rate": 0.5}
    cache.close()
    cache.close()
    assert inner.closed == 1
    # a new process (or run) replays from the same file
    replay_inner = ScriptedBackend()
    with CachedBackend(replay_inner, path) as replay:
        assert [c.text for c in replay.generate(batch)] == [c.text for c in first]
    assert replay_inner.batches == []


def test_only_misses_go_to_the_backend_as_one_batch(path: Path) -> None:
    inner = ScriptedBackend()
    with CachedBackend(inner, path) as cache:
        cache.generate([req(0), req(1)])
        out = cache.generate([req(1), req(2), req(0), req(3), req(2)])
    assert [r.prompt for r in inner.batches[1]] == ["prompt number 2", "prompt number 3"]  # duplicates sent once
    assert [c.cached for c in out] == [True, False, True, False, True]
    assert [c.text for c in out] == [answer(f"prompt number {i}", None) for i in (1, 2, 0, 3, 2)]


def test_key_rules() -> None:
    base = req(0)
    key = cache_key("b", "m", base)
    assert cache_key("b", "m", req(0, seed=5)) == key  # greedy: seed dropped
    assert cache_key("b", "m", LLMRequest.from_prompt("prompt number 0", meta={"user": 3})) == key
    assert cache_key("other", "m", base) != key
    assert cache_key("b", "m2", base) != key
    assert cache_key("b", "m", req(0, SamplingParams(max_tokens=10))) != key
    assert cache_key("b", "m", req(0, SamplingParams(stop=("\n",)))) != key
    assert cache_key("b", "m", req(1)) != key
    assert cache_key("b", "m", req(0, HOT, seed=1)) != cache_key("b", "m", req(0, HOT, seed=2))
    assert cache_key("b", "m", req(0, HOT, seed=1)) == cache_key("b", "m", req(0, HOT, seed=1))
    system = LLMRequest(({"role": "system", "content": "x"}, {"role": "user", "content": "prompt number 0"}))
    assert cache_key("b", "m", system) != key


def test_sampled_request_without_seed_is_refused(path: Path) -> None:
    inner = ScriptedBackend()
    with CachedBackend(inner, path) as cache:
        with pytest.raises(ValueError, match=r"request 1 samples \(temperature=0.8\) without a seed.*cache=None"):
            cache.generate([req(0), req(1, HOT)])
        assert inner.batches == []
        seeded = cache.generate([req(1, HOT, seed=7), req(1, HOT, seed=8)])
        assert [c.text for c in seeded] == [answer("prompt number 1", 7), answer("prompt number 1", 8)]
        assert all(c.cached for c in cache.generate([req(1, HOT, seed=7), req(1, HOT, seed=8)]))


def test_backend_error_stores_nothing(path: Path) -> None:
    inner = ScriptedBackend(fail=True)
    with CachedBackend(inner, path) as cache:
        with pytest.raises(LLMBackendError, match="scripted failure"):
            cache.generate([req(0)])
        assert cache.stats()["misses"] == 0
    assert cache_stats(path)["entries"] == 0


def test_file_is_wal(path: Path) -> None:
    CachedBackend(ScriptedBackend(), path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# --------------------------------------------------------------------------- several processes


def _writer(path: str, worker: int, batches: int) -> None:
    with CachedBackend(ScriptedBackend(), path) as cache:
        for b in range(batches):
            # every worker walks all 300 prompts from its own offset: mostly misses, overlapping
            out = cache.generate([req((worker * 37 + b * 8 + j) % 300) for j in range(8)])
            assert all(c.text.startswith("answer to") for c in out)


def _check_rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT key, backend, model, request, completion FROM completions").fetchall()
    finally:
        conn.close()
    for key, backend, model, request, completion in rows:
        doc = json.loads(request)
        prompt = doc["messages"][0]["content"]
        assert (backend, model) == ("scripted:v1", "scripted-model")
        assert key == cache_key(backend, model, LLMRequest.from_prompt(prompt))
        assert json.loads(completion)["text"] == answer(prompt, None)
    return len(rows)


def test_many_processes_write_one_file(path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_writer, args=(str(path), w, 60)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=120)
        assert p.exitcode == 0
    assert _check_rows(path) == 300  # each prompt stored once
    inner = ScriptedBackend()
    with CachedBackend(inner, path) as cache:
        cache.generate([req(i) for i in range(300)])
    assert inner.batches == []


def _use_inherited(cache: CachedBackend, queue) -> None:
    out = cache.generate([req(0), req(1)])
    queue.put([c.cached for c in out])


def test_forked_child_uses_an_inherited_cache(path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    with CachedBackend(ScriptedBackend(), path) as cache:
        cache.generate([req(0)])  # the parent's connection is open
        queue = ctx.Queue()
        child = ctx.Process(target=_use_inherited, args=(cache, queue))
        child.start()
        assert queue.get(timeout=30) == [True, False]
        child.join(timeout=30)
        assert child.exitcode == 0
        assert [c.cached for c in cache.generate([req(0), req(1)])] == [True, True]  # the child's write


def _endless_writer(path: str) -> None:
    with CachedBackend(ScriptedBackend(), path) as cache:
        i = 0
        while True:
            cache.generate([req(i + j) for j in range(25)])
            i += 25


def test_killed_writer_leaves_no_corrupt_entry(path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    CachedBackend(ScriptedBackend(), path).close()
    writer = ctx.Process(target=_endless_writer, args=(str(path),))
    writer.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with sqlite3.connect(path, timeout=30) as conn:
            if conn.execute("SELECT COUNT(*) FROM completions").fetchone()[0] >= 500:
                break
        time.sleep(0.01)
    assert writer.pid is not None
    os.kill(writer.pid, signal.SIGKILL)
    writer.join(timeout=30)
    assert writer.exitcode == -signal.SIGKILL
    count = _check_rows(path)
    assert count >= 500 and count % 25 == 0  # whole batches only
    inner = ScriptedBackend()
    with CachedBackend(inner, path) as cache:
        out = cache.generate([req(i) for i in range(count + 10)])
    assert [len(b) for b in inner.batches] == [10]
    assert sum(c.cached for c in out) == count


# --------------------------------------------------------------------------- maintenance tools


def test_stats_export_prune(path: Path, tmp_path: Path) -> None:
    with CachedBackend(ScriptedBackend("llamacpp:a.gguf:1"), path) as a:
        a.generate([req(i) for i in range(4)])
    with CachedBackend(ScriptedBackend("openai:http://h/v1?model=x"), path) as b:
        b.generate([req(i, HOT, seed=i) for i in range(3)])
    stats = cache_stats(path)
    assert stats["entries"] == 7 and stats["size_bytes"] > 0
    assert stats["backends"]["llamacpp:a.gguf:1"] == {"entries": 4, "prompt_tokens": 12, "completion_tokens": 12}
    assert stats["oldest"] <= stats["newest"]

    out = tmp_path / "export" / "pairs.jsonl"
    assert export_cache(path, out) == 7
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {line["backend"] for line in lines} == {"llamacpp:a.gguf:1", "openai:http://h/v1?model=x"}
    sampled = [line for line in lines if line["sampling"]["temperature"] > 0]
    assert sorted(line["seed"] for line in sampled) == [0, 1, 2]
    first = lines[0]
    assert set(first) == {"key", "backend", "model", "sampling", "seed", "messages", "completion", "created"}
    assert first["completion"]["text"] == answer(first["messages"][0]["content"], first["seed"])

    with pytest.raises(ValueError, match="older_than_days"):
        prune_cache(path)
    assert prune_cache(path, backend="openai:") == 3
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE completions SET created = created - 3 * 86400 WHERE key IN (SELECT key FROM completions LIMIT 1)"
        )
    assert prune_cache(path, older_than_days=2) == 1
    assert prune_cache(path, older_than_days=2, backend="llamacpp:") == 0
    assert cache_stats(path)["entries"] == 3
    with pytest.raises(FileNotFoundError, match="no LLM response cache"):
        cache_stats(tmp_path / "missing.sqlite")
