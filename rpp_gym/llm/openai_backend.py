"""``openai``: any OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp server, OpenAI itself).

The official ``openai`` client does the HTTP work: connection pooling, timeouts, and retries with
exponential backoff on connection errors, timeouts, 408/409/429 and 5xx responses, honouring
``Retry-After``. This module adds what an env needs on top:

- a plain synchronous :meth:`OpenAIBackend.generate` that sends the *whole batch concurrently*
  (at most ``concurrency`` requests in flight), on a private event loop in a background thread,
  so it works inside Gymnasium envs, vector-env workers and Jupyter alike;
- strict answers: after the client's retries, or on a malformed response (bad JSON, no
  choices, no message content) it raises :class:`~rpp_gym.llm.base.LLMBackendError` naming the
  endpoint, the model and the last error. It never makes up an answer.

The API key comes only from the environment (``RPP_GYM_API_KEY``, else ``OPENAI_API_KEY``; a
placeholder for local servers that need none). It is never stored in a spec, the identity, the
repr or a cache key.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from rpp_gym.llm.base import Completion, LLMBackendError, LLMRequest

__all__ = ["OpenAIBackend", "api_key_from_env"]

_T = TypeVar("_T")
_RETRYABLE_STATUS = {408, 409, 429}


def api_key_from_env() -> str:
    """The API key to send: ``RPP_GYM_API_KEY``, else ``OPENAI_API_KEY``, else ``"EMPTY"``.

    Local servers (vLLM, llama.cpp, Ollama) accept any key; ``"EMPTY"`` is their usual placeholder.
    """
    return os.environ.get("RPP_GYM_API_KEY") or os.environ.get("OPENAI_API_KEY") or "EMPTY"


class _LoopThread:
    """A private asyncio event loop running forever in a daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the loop and wait for its result (Ctrl-C cancels it)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


def _shutdown(runner: _LoopThread, client: Any) -> None:
    """Close the HTTP client on its loop, then stop the loop (also run by a weakref finalizer)."""
    if not runner.loop.is_closed() and runner.thread.is_alive():
        try:
            if client is not None:
                runner.run(client.close())
            runner.run(runner.loop.shutdown_default_executor())
        except Exception:
            pass
    runner.stop()


class OpenAIBackend:
    """Chat completions from an OpenAI-compatible HTTP endpoint, a batch at a time.

    Example:
        >>> backend = OpenAIBackend("http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-7B-Instruct")  # doctest: +SKIP
        >>> backend.generate([LLMRequest.from_prompt("Rank these movies: ...")])  # doctest: +SKIP
        [Completion(text='1. Heat (1995)\\n2. ...', finish_reason='stop', prompt_tokens=412, ...)]

    Args:
        base_url: The endpoint's base URL, e.g. ``http://127.0.0.1:8000/v1``.
        model: The model name the server serves (vLLM: ``--served-model-name``).
        concurrency: Most requests in flight at once; size it to what the server batches
            (vLLM: hundreds; llama.cpp: its ``n_parallel`` slots).
        timeout: Seconds one HTTP attempt may take (connect, each read, write).
        max_retries: Retries per request after the first attempt, with exponential backoff
            (0.5 s doubling, at most 8 s, or the server's ``Retry-After`` up to 2 minutes).
        identity: Override the cache identity (default ``openai:BASE_URL?model=MODEL``).
        extra_body: Extra JSON fields for every request, e.g. ``{"top_k": 20}`` for vLLM.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 4,
        identity: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency={concurrency} must be at least 1")
        if not timeout > 0:
            raise ValueError(f"timeout={timeout} must be positive (seconds)")
        if max_retries < 0:
            raise ValueError(f"max_retries={max_retries} must be >= 0")
        if not model:
            raise ValueError("model must name the model the endpoint serves, e.g. model='Qwen/Qwen2.5-7B-Instruct'")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.concurrency = concurrency
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.extra_body = dict(extra_body or {})
        self._identity = identity or f"openai:{self.base_url}?model={model}"
        self._lock = threading.Lock()
        self._closed = False
        self._pid = -1
        self._runner: _LoopThread | None = None
        self._client: Any = None
        self._semaphore: asyncio.Semaphore | None = None
        self._finalizer: weakref.finalize | None = None
        self._start()

    # ---- lifecycle -------------------------------------------------------------------------

    def _start(self) -> None:
        """Start the loop thread and the client (again, in a forked child)."""
        try:
            import openai
        except ImportError as e:  # pragma: no cover - openai is a core dependency
            raise ImportError('the openai backend needs the openai package: pip install "rpp-gym"') from e

        runner = _LoopThread(name=f"rpp-gym-openai-{self.base_url}")

        async def build() -> tuple[Any, asyncio.Semaphore]:
            client = openai.AsyncOpenAI(
                base_url=self.base_url,
                api_key=api_key_from_env(),
                timeout=self.timeout,
                max_retries=self.max_retries,
            )
            return client, asyncio.Semaphore(self.concurrency)

        self._client, self._semaphore = runner.run(build())
        self._runner = runner
        self._pid = os.getpid()
        self._finalizer = weakref.finalize(self, _shutdown, runner, self._client)

    def close(self) -> None:
        """Close the HTTP client and stop the loop thread; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._finalizer is not None and self._pid == os.getpid():
                self._finalizer()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r}, "
            f"concurrency={self.concurrency}, timeout={self.timeout:g}, max_retries={self.max_retries})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # A copy in another process opens its own connections (the key is re-read from its env).
        return (
            _rebuild,
            (
                type(self),
                (self.base_url, self.model),
                {
                    "concurrency": self.concurrency,
                    "timeout": self.timeout,
                    "max_retries": self.max_retries,
                    "identity": self._identity,
                    "extra_body": self.extra_body,
                },
            ),
        )

    # ---- the protocol ----------------------------------------------------------------------

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def where(self) -> str:
        """Endpoint and model, as error messages name them."""
        return f"OpenAI-compatible endpoint {self.base_url} (model {self.model!r})"

    def generate(self, requests: Sequence[LLMRequest]) -> list[Completion]:
        """Complete every request, all concurrently (at most ``concurrency`` in flight).

        Raises:
            LLMBackendError: A request failed after the client's retries, or a response was
                malformed. The other requests of the batch are cancelled.
        """
        if self._closed:
            raise LLMBackendError(f"{self.where}: the backend is closed")
        if not requests:
            return []
        with self._lock:
            if self._pid != os.getpid():
                # A forked child inherits no threads: give it its own loop and connections.
                self._start()
            assert self._runner is not None
            runner = self._runner
        return runner.run(self._generate_all(requests))

    # ---- internals -------------------------------------------------------------------------

    async def _generate_all(self, requests: Sequence[LLMRequest]) -> list[Completion]:
        tasks = [asyncio.ensure_future(self._one(request)) for request in requests]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            pending = [task for task in tasks if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return [task.result() for task in tasks]

    async def _one(self, request: LLMRequest) -> Completion:
        assert self._semaphore is not None
        sampling = request.sampling
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(message) for message in request.messages],
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        if sampling.stop:
            kwargs["stop"] = list(sampling.stop)
        if request.seed is not None:
            kwargs["seed"] = int(request.seed)
        if self.extra_body:
            kwargs["extra_body"] = self.extra_body
        async with self._semaphore:
            start = time.perf_counter()
            try:
                response = await self._client.chat.completions.create(**kwargs)
            except Exception as e:
                raise LLMBackendError(f"{self.where}: {self._describe(e)}") from e
            latency = time.perf_counter() - start
        return self._completion(response, latency)

    def _describe(self, error: Exception) -> str:
        import openai

        retries = f"after {self.max_retries} retries" if self.max_retries else "(retries disabled)"
        if isinstance(error, openai.APITimeoutError):
            return f"request timed out (timeout={self.timeout:g} s) {retries}"
        if isinstance(error, openai.APIConnectionError):
            cause = error.__cause__ or error.__context__
            detail = f": {type(cause).__name__}: {cause}" if cause is not None else ""
            return f"connection failed {retries}{detail}"
        if isinstance(error, openai.APIStatusError):
            status = error.status_code
            retried = status in _RETRYABLE_STATUS or status >= 500
            tail = f" {retries}" if retried else ""
            hint = ""
            if status in (401, 403):
                hint = "; set the RPP_GYM_API_KEY or OPENAI_API_KEY environment variable"
            elif status == 404:
                hint = f"; check the base URL and that the server serves model {self.model!r}"
            return f"HTTP {status}{tail}: {error.message}{hint}"
        return f"malformed response ({type(error).__name__}: {error})"

    def _completion(self, response: Any, latency: float) -> Completion:
        try:
            choices = response.choices
            if not choices:
                raise LLMBackendError(f"{self.where}: the response has no choices")
            choice = choices[0]
            message = choice.message
            content = None if message is None else message.content
            if not isinstance(content, str):
                raise LLMBackendError(
                    f"{self.where}: the response has no message content "
                    f"(finish_reason={getattr(choice, 'finish_reason', None)!r})"
                )
            usage = response.usage
            prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0) if usage is not None else 0
            completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0) if usage is not None else 0
            finish_reason = choice.finish_reason or "stop"
        except LLMBackendError:
            raise
        except (AttributeError, TypeError, ValueError) as e:
            raise LLMBackendError(f"{self.where}: malformed response ({type(e).__name__}: {e})") from e
        return Completion(
            text=content,
            finish_reason=str(finish_reason),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=latency,
        )


def _rebuild(cls: type[_T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> _T:
    return cls(*args, **kwargs)
