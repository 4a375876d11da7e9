"""Backend specs: parsing, validation, construction, caching policy and API-key hygiene."""

from __future__ import annotations

import doctest
import pickle
from typing import Any

import fake_openai_server
import pytest
from fake_openai_server import FakeOpenAIServer

import rpp_gym.llm.cache
import rpp_gym.llm.spec
from rpp_gym.llm import CachedBackend, LLMRequest, make_backend, parse_spec
from rpp_gym.llm.openai_backend import OpenAIBackend

PROMPT = "Rank the candidates:\n[1] Heat (1995)\n[2] Fargo (1996)\n[3] Babe (1995)"


@pytest.mark.parametrize("module", [rpp_gym.llm.spec, rpp_gym.llm.cache, fake_openai_server])
def test_doctests(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("sim", ("sim", "", {})),
        ("sim?temperature=0.3", ("sim", "", {"temperature": "0.3"})),
        ("llamacpp", ("llamacpp", "", {})),
        ("llamacpp:/m/a.gguf?n_parallel=4&n_ctx=4096", ("llamacpp", "/m/a.gguf", {"n_parallel": "4", "n_ctx": "4096"})),
        (
            "openai:https://api.example.com/v1?model=gpt-4o-mini&timeout=30",
            ("openai", "https://api.example.com/v1", {"model": "gpt-4o-mini", "timeout": "30"}),
        ),
        ("hf:./models/tiny?device=cpu", ("hf", "./models/tiny", {"device": "cpu"})),
        ("vllm:Qwen/Qwen2.5-7B-Instruct", ("vllm", "Qwen/Qwen2.5-7B-Instruct", {})),
        ("  LlamaCpp  ", ("llamacpp", "", {})),
    ],
)
def test_parse_spec_valid(spec: str, expected: tuple[str, str, dict[str, str]]) -> None:
    assert parse_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("gpt4", "unknown scheme 'gpt4'"),
        ("", "unknown scheme ''"),
        ("sim:foo", "takes no target"),
        ("openai", "needs a target"),
        ("hf", "needs a target"),
        ("llamacpp:", "empty target"),
        ("openai:localhost:8000?model=m", "must be an http(s) URL"),
        ("llamacpp?n_parallel", "malformed options"),
        ("llamacpp?", "empty option list"),
        ("llamacpp?n_ctx=1&n_ctx=2", "given twice"),
    ],
)
def test_parse_spec_invalid_names_spec_and_forms(spec: str, why: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_spec(spec)
    message = str(info.value)
    assert why in message
    assert repr(spec) in message
    assert "openai:http://127.0.0.1:8000/v1?model=NAME" in message  # lists the valid forms


@pytest.mark.parametrize(
    "spec",
    [
        "openai:http://127.0.0.1:8000/v1?model=m&api_key=sk-SECRET",
        "openai:http://127.0.0.1:8000/v1?API_KEY=sk-SECRET&model=m",
        "openai:http://127.0.0.1:8000/v1?model=m&token=sk-SECRET",
        "openai:http://user:sk-SECRET@127.0.0.1:8000/v1?model=m",
    ],
)
def test_credentials_in_spec_are_rejected_without_echo(spec: str) -> None:
    with pytest.raises(ValueError, match="environment variable") as info:
        parse_spec(spec)
    assert "sk-SECRET" not in str(info.value)


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("openai:http://127.0.0.1:1/v1", "needs ?model=NAME"),
        ("openai:http://127.0.0.1:1/v1?model=m&concurency=4", "unknown option 'concurency'"),
        ("openai:http://127.0.0.1:1/v1?model=m&concurrency=zero", "option concurrency='zero'"),
        ("openai:http://127.0.0.1:1/v1?model=m&concurrency=0", "positive integer"),
        ("llamacpp?n_paralel=2", "unknown option 'n_paralel'"),
        ("hf:x?trust_remote_code=maybe", "boolean"),
    ],
)
def test_make_backend_rejects_bad_options(spec: str, why: str) -> None:
    with pytest.raises(ValueError, match="Valid forms") as info:
        make_backend(spec, cache=None)
    assert why in str(info.value)


def test_openai_spec_builds_cached_backend_at_default_path(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RPP_GYM_HOME", str(tmp_path / "home"))
    with FakeOpenAIServer() as server:
        backend = make_backend(f"openai:{server.base_url}?model=fake-model&concurrency=2&timeout=5")
        try:
            assert isinstance(backend, CachedBackend)
            assert backend.path == tmp_path / "home" / "llm-cache.sqlite"
            inner = backend.backend
            assert isinstance(inner, OpenAIBackend)
            assert (inner.concurrency, inner.timeout, inner.model) == (2, 5.0, "fake-model")
            first = backend.generate([LLMRequest.from_prompt(PROMPT)])
            again = backend.generate([LLMRequest.from_prompt(PROMPT)])
            assert first[0].text.startswith("1. Heat (1995)")
            assert (first[0].cached, again[0].cached) == (False, True)
            assert len(server.requests) == 1
        finally:
            backend.close()


def test_cache_none_and_explicit_path(tmp_path) -> None:
    with FakeOpenAIServer() as server:
        plain = make_backend(f"openai:{server.base_url}?model=m", cache=None)
        assert isinstance(plain, OpenAIBackend)
        wrapped = make_backend(f"openai:{server.base_url}?model=m", cache=tmp_path / "c.sqlite")
        assert isinstance(wrapped, CachedBackend) and wrapped.path == tmp_path / "c.sqlite"
        # a ready backend passes through unless an explicit cache path is given
        assert make_backend(plain) is plain
        assert make_backend(plain, cache=None) is plain
        rewrapped = make_backend(plain, cache=tmp_path / "d.sqlite")
        assert isinstance(rewrapped, CachedBackend) and rewrapped.backend is plain
        assert make_backend(wrapped, cache=tmp_path / "e.sqlite") is wrapped
        wrapped.close()
        rewrapped.close()
        plain.close()


def test_sim_is_never_cached(monkeypatch) -> None:
    import rpp_gym.llm.sim

    seen: dict[str, object] = {}

    def fake_from_options(options, world):
        seen.update(options=options, world=world)
        return "sim-backend"

    monkeypatch.setattr(rpp_gym.llm.sim.SimLLM, "from_options", staticmethod(fake_from_options))
    world: Any = object()
    assert make_backend("sim?temperature=0.5", world=world) == "sim-backend"
    assert seen == {"options": {"temperature": "0.5"}, "world": world}


def test_api_key_only_from_env_never_in_identity_repr_or_pickle(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-SECRET")
    monkeypatch.setenv("RPP_GYM_API_KEY", "sk-rpp-SECRET")
    with FakeOpenAIServer() as server:
        backend = make_backend(f"openai:{server.base_url}?model=m", cache=tmp_path / "c.sqlite")
        try:
            assert isinstance(backend, CachedBackend)
            backend.generate([LLMRequest.from_prompt(PROMPT)])
            # RPP_GYM_API_KEY wins over OPENAI_API_KEY
            assert server.headers[0]["authorization"] == "Bearer sk-rpp-SECRET"
            for text in (backend.identity, repr(backend), repr(backend.backend), pickle.dumps(backend)):
                assert "SECRET" not in str(text)
            assert b"SECRET" not in (tmp_path / "c.sqlite").read_bytes()
        finally:
            backend.close()
    monkeypatch.delenv("RPP_GYM_API_KEY")
    with FakeOpenAIServer() as server:
        with OpenAIBackend(server.base_url, "m") as backend:
            backend.generate([LLMRequest.from_prompt(PROMPT)])
        assert server.headers[0]["authorization"] == "Bearer sk-openai-SECRET"
