"""The embedded llama.cpp server with the real SmolLM2-135M model (a few seconds on 2 CPU cores).

The model comes from the asset cache (``rpp_gym.data.fetch``), or from ``RPP_GYM_TEST_GGUF``;
the module is skipped when neither is available.
"""

from __future__ import annotations

import multiprocessing
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from rpp_gym.llm import CachedBackend, LLMRequest, SamplingParams, make_backend

pytestmark = pytest.mark.llm

pytest.importorskip("xllamacpp", reason="the llamacpp backend needs the xllamacpp wheel")

from rpp_gym.llm.llamacpp import LlamaCppBackend, running_servers  # noqa: E402

PROMPT = (
    "The user recently watched: Alien (1979), The Matrix (1999).\n"
    "Rank these candidate movies for the user:\n"
    "[1] Heat (1995)\n[2] Toy Story (1995)\n[3] Blade Runner (1982)\n"
    "Answer with a numbered list of titles."
)
SHORT = SamplingParams(max_tokens=24)


@pytest.fixture(scope="module")
def gguf() -> Path:
    env = os.environ.get("RPP_GYM_TEST_GGUF")
    if env:
        return Path(env)
    try:
        from rpp_gym.data.fetch import AssetError, fetch
        from rpp_gym.data.specs import SMOLLM2_135M_Q4_1
    except ImportError as e:
        pytest.skip(f"the asset fetcher is not available ({e})")
    try:
        fetched = fetch(SMOLLM2_135M_Q4_1)
    except AssetError as e:
        pytest.skip(f"SmolLM2-135M GGUF not in the cache and not fetchable: {str(e).splitlines()[0]}")
    return next(p for name, p in fetched.files.items() if name.endswith(".gguf"))


def _health(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"{address}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _child_generate(backend: LlamaCppBackend, queue) -> None:
    try:
        (answer,) = backend.generate([LLMRequest.from_prompt(PROMPT, SHORT)])
        backend.close()  # must leave the parent's server running
        queue.put(answer.completion_tokens)
    except BaseException as e:
        queue.put(repr(e))


def test_shared_server_answers_and_stops(gguf: Path, tmp_path: Path) -> None:
    before = dict(running_servers())
    one = LlamaCppBackend(gguf, n_parallel=2, n_ctx=4096)
    two = LlamaCppBackend(gguf, n_parallel=2, n_ctx=4096)
    try:
        assert one.server is two.server
        assert running_servers()[one.config] == 2
        assert one.identity == f"llamacpp:{gguf.name}:{gguf.stat().st_size}"
        assert "127.0.0.1" in one.server.base_url and str(one.server.base_url) not in one.identity

        answers = one.generate([LLMRequest.from_prompt(PROMPT, SHORT), LLMRequest.from_prompt(PROMPT + " ", SHORT)])
        for answer in answers:
            assert answer.text.strip()
            assert answer.prompt_tokens > 20
            assert 0 < answer.completion_tokens <= SHORT.max_tokens
            assert answer.finish_reason in ("stop", "length")
            assert answer.finish_reason != "length" or answer.completion_tokens == SHORT.max_tokens

        # a forked worker reuses the parent's server over HTTP and does not stop it
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_child_generate, args=(two, queue))
        child.start()
        assert isinstance(queue.get(timeout=120), int)
        child.join(timeout=60)
        assert child.exitcode == 0

        address = one.server.address
        one.close()
        one.close()
        assert running_servers()[two.config] == 1
        assert _health(address)
        assert two.generate([LLMRequest.from_prompt(PROMPT, SHORT)])[0].text.strip()
    finally:
        one.close()
        two.close()
    assert not _health(address)
    assert running_servers() == before

    # the spec form, cached: the second call is a hit
    backend = make_backend(f"llamacpp:{gguf}?n_parallel=1&n_ctx=2048", cache=tmp_path / "c.sqlite")
    try:
        assert isinstance(backend, CachedBackend)
        first = backend.generate([LLMRequest.from_prompt(PROMPT, SHORT)])
        again = backend.generate([LLMRequest.from_prompt(PROMPT, SHORT)])
        assert again[0].cached and again[0].text == first[0].text
    finally:
        backend.close()
    assert running_servers() == before


def test_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"GGUF model file .*nope\.gguf not found"):
        LlamaCppBackend(tmp_path / "nope.gguf")
