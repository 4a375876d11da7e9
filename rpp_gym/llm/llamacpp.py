"""``llamacpp``: an embedded llama.cpp server, in this process, serving a GGUF model on loopback.

The ``xllamacpp`` wheel runs llama.cpp's own HTTP server (continuous batching over
``n_parallel`` slots, prompt caching) on its own threads inside the Python process; nothing is
compiled and no subprocess is started. :class:`LlamaCppBackend` talks to it over
``http://127.0.0.1:<free port>/v1`` through :class:`~rpp_gym.llm.openai_backend.OpenAIBackend`,
so a batch of requests fills the server's slots concurrently.

Servers are shared: every backend with the same model file and server settings in one process
uses one server (a refcounted registry). The server stops when its last backend closes, or at
interpreter exit. Stopping means dropping the last reference to the ``xllamacpp.Server``
object: its destructor terminates llama.cpp's task loop, stops the HTTP listener and joins the
threads (tens of milliseconds); ``xllamacpp`` has no explicit ``stop()``.

Context: llama.cpp splits ``n_ctx`` evenly across the ``n_parallel`` slots, so one request may
use ``n_ctx / n_parallel`` tokens (prompt plus answer). The default gives each slot 2048 tokens,
enough for a ranking prompt with a long history and a 256-token answer.

Forked workers (``AsyncVectorEnv`` with the ``fork`` start method) that inherit a backend keep
using the parent's server over HTTP and never stop it; with ``spawn``, a backend is pickled and
each worker starts its own server.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rpp_gym.llm.base import Completion, LLMBackendError, LLMRequest
from rpp_gym.llm.openai_backend import OpenAIBackend

__all__ = [
    "DEFAULT_CTX_PER_SLOT",
    "LlamaCppBackend",
    "LlamaCppConfig",
    "LlamaCppServer",
    "acquire_server",
    "default_model_path",
    "default_threads",
    "release_server",
    "running_servers",
]

DEFAULT_CTX_PER_SLOT = 2048
"""Default context tokens per slot (``n_ctx = n_parallel * DEFAULT_CTX_PER_SLOT``)."""


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """Half the CPUs this process may use (at least 1).

    Half the logical CPUs is about the physical cores (hyper-threads do not speed up llama.cpp's
    matrix work) and leaves room for the env and the agent. llama.cpp's threads wait on each
    other at every layer, so when another process takes a core they stall: measured on a loaded
    2-core machine, 2 threads took 52-169 s for 4 ranking answers where 1 thread took 8-9 s
    (idle, 2 threads are about 1.4x faster than 1).
    """
    return max(1, _cpu_count() // 2)


def default_model_path() -> Path:
    """The default GGUF model (SmolLM2-135M-Instruct Q4_1), fetched into the asset cache."""
    from rpp_gym.data.fetch import fetch
    from rpp_gym.data.specs import SMOLLM2_135M_Q4_1

    fetched = fetch(SMOLLM2_135M_Q4_1)
    ggufs = sorted(path for name, path in fetched.files.items() if name.endswith(".gguf"))
    if len(ggufs) != 1:
        raise LLMBackendError(f"asset {SMOLLM2_135M_Q4_1.name} has {len(ggufs)} GGUF files, expected 1")
    return ggufs[0]


@dataclass(frozen=True)
class LlamaCppConfig:
    """Everything that makes two servers different; equal configs share one server."""

    model_path: str
    """Absolute path of the GGUF file."""
    n_ctx: int
    """Total context tokens, split evenly across the slots."""
    n_parallel: int
    """Slots: requests decoded together (continuous batching)."""
    n_threads: int
    """CPU threads for generation and prompt processing (see :func:`default_threads`)."""
    n_gpu_layers: int | None = None
    """Layers offloaded to a GPU (None: xllamacpp's default, all layers when a GPU exists)."""
    verbose: bool = False
    """Let llama.cpp log to stderr (it is silenced otherwise)."""

    @classmethod
    def build(
        cls,
        model_path: str | Path,
        *,
        n_parallel: int = 4,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        n_gpu_layers: int | None = None,
        verbose: bool = False,
    ) -> LlamaCppConfig:
        """A config with defaults filled in and the model path checked."""
        path = Path(model_path).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(
                f"GGUF model file {path} not found; pass the path of a .gguf file, or use the spec "
                f"'llamacpp' for the default SmolLM2-135M-Instruct model"
            )
        if n_parallel < 1:
            raise ValueError(f"n_parallel={n_parallel} must be at least 1")
        n_ctx = n_ctx if n_ctx is not None else n_parallel * DEFAULT_CTX_PER_SLOT
        if n_ctx < n_parallel * 256:
            raise ValueError(
                f"n_ctx={n_ctx} leaves {n_ctx // n_parallel} tokens per slot for n_parallel={n_parallel}; "
                f"llama.cpp splits n_ctx across slots, give at least {n_parallel * 1024} for ranking prompts"
            )
        return cls(str(path), n_ctx, n_parallel, n_threads or default_threads(), n_gpu_layers, verbose)


class LlamaCppServer:
    """One embedded llama.cpp HTTP server on ``127.0.0.1`` (prefer :func:`acquire_server`).

    Args:
        config: Model and server settings.
        startup_timeout: Seconds to wait for the model to load and ``/health`` to answer.

    Raises:
        ImportError: ``xllamacpp`` is not installed.
        LLMBackendError: llama.cpp could not load the model or did not become healthy.
    """

    def __init__(self, config: LlamaCppConfig, *, startup_timeout: float = 300.0) -> None:
        try:
            import xllamacpp
        except ImportError as e:
            raise ImportError('the llamacpp backend needs xllamacpp: pip install "rpp-gym[llamacpp]"') from e
        self.config = config
        params = xllamacpp.CommonParams()
        params.model.path = config.model_path
        params.n_ctx = config.n_ctx
        params.n_parallel = config.n_parallel
        params.cpuparams.n_threads = config.n_threads
        params.cpuparams_batch.n_threads = config.n_threads
        if config.n_gpu_layers is not None:
            params.n_gpu_layers = config.n_gpu_layers
        params.hostnames = ["127.0.0.1"]
        params.port = 0  # the OS picks a free port; listening_address reports it
        params.ui = False
        params.verbosity = 3 if config.verbose else -1  # -1 silences llama.cpp's stderr log
        start = time.perf_counter()
        try:
            self._server: Any = xllamacpp.Server(params)  # returns once the model is loaded
        except Exception as e:
            hint = "" if config.verbose else " (create it with verbose=True to see llama.cpp's log)"
            raise LLMBackendError(
                f"llama.cpp could not start serving {config.model_path} with n_ctx={config.n_ctx}, "
                f"n_parallel={config.n_parallel}: {e}{hint}"
            ) from e
        address = str(self._server.listening_address).rstrip("/")
        if not address or address.endswith(":0"):
            self.stop()
            raise LLMBackendError(f"llama.cpp reported no listening address ({address!r})")
        self.address = address
        self.base_url = f"{address}/v1"
        self._wait_healthy(startup_timeout - (time.perf_counter() - start))
        self.startup_s = time.perf_counter() - start

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + max(timeout, 1.0)
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.address}/health", timeout=5) as response:
                    if json.loads(response.read() or b"{}").get("status") == "ok":
                        return
                    last = "status is not ok"
            except (urllib.error.URLError, OSError, ValueError) as e:
                last = f"{type(e).__name__}: {e}"
            time.sleep(0.05)
        self.stop()
        raise LLMBackendError(f"the embedded llama.cpp server at {self.address} did not become healthy ({last})")

    @property
    def running(self) -> bool:
        """True until :meth:`stop`."""
        return self._server is not None

    def stop(self) -> None:
        """Stop the server; safe to call twice.

        ``xllamacpp.Server`` has no stop method: dropping the last reference runs its C++
        destructor, which ends llama.cpp's task loop, stops the HTTP listener and joins the
        threads (tens of milliseconds).
        """
        self._server = None

    def __repr__(self) -> str:
        state = self.base_url if self.running else "stopped"
        return (
            f"{type(self).__name__}({Path(self.config.model_path).name}, n_parallel={self.config.n_parallel}, {state})"
        )


# --------------------------------------------------------------------------- shared servers

_registry: dict[LlamaCppConfig, tuple[LlamaCppServer, int]] = {}
_registry_lock = threading.Lock()
_fork_orphans: list[Any] = []


def acquire_server(config: LlamaCppConfig) -> LlamaCppServer:
    """The running server for ``config``, started on first use; pair with :func:`release_server`."""
    with _registry_lock:
        entry = _registry.get(config)
        if entry is None:
            server = LlamaCppServer(config)
            _registry[config] = (server, 1)
            return server
        server, users = entry
        _registry[config] = (server, users + 1)
        return server


def release_server(server: LlamaCppServer) -> None:
    """Drop one user of ``server``; the last one stops it."""
    with _registry_lock:
        entry = _registry.get(server.config)
        if entry is None or entry[0] is not server:
            server.stop()
            return
        users = entry[1] - 1
        if users > 0:
            _registry[server.config] = (server, users)
            return
        del _registry[server.config]
    server.stop()


def running_servers() -> dict[LlamaCppConfig, int]:
    """Running shared servers and how many backends use each (for diagnostics and tests)."""
    with _registry_lock:
        return {config: users for config, (_, users) in _registry.items()}


@atexit.register
def _stop_all() -> None:
    with _registry_lock:
        servers = [server for server, _ in _registry.values()]
        _registry.clear()
    for server in servers:
        server.stop()


def _forget_servers_in_child() -> None:
    # A forked child has none of the server's threads. Destroying the inherited C++ object
    # would join threads that do not exist here, so keep it alive forever instead; the child
    # still reaches the parent's server over HTTP.
    global _registry_lock
    _registry_lock = threading.Lock()
    for server, _ in _registry.values():
        if server._server is not None:
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(server._server))
            _fork_orphans.append(server._server)
            server._server = None
    _registry.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_servers_in_child)


# --------------------------------------------------------------------------- the backend


class LlamaCppBackend:
    """A GGUF model served by an embedded llama.cpp server (shared per model and settings).

    Example:
        >>> backend = LlamaCppBackend()  # SmolLM2-135M-Instruct Q4_1, fetched on first use  # doctest: +SKIP
        >>> backend = LlamaCppBackend("~/models/llama-2-7b-chat.Q4_K_M.gguf", n_parallel=8)  # doctest: +SKIP

    Args:
        model_path: A GGUF file; None: the default SmolLM2-135M-Instruct Q4_1.
        n_parallel: Slots, i.e. requests decoded together; also the requests kept in flight.
        n_ctx: Total context, split across slots (default ``n_parallel * 2048``).
        n_threads: CPU threads (default :func:`default_threads`: half the CPUs, at least 1).
        n_gpu_layers: Layers to offload to a GPU (default: xllamacpp's choice).
        timeout: Seconds one request may take (queueing behind other slots included).
        max_retries: Retries of a failed HTTP request.
        verbose: Let llama.cpp log to stderr.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_parallel: int = 4,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        n_gpu_layers: int | None = None,
        timeout: float = 600.0,
        max_retries: int = 1,
        verbose: bool = False,
    ) -> None:
        path = Path(model_path).expanduser() if model_path is not None else default_model_path()
        self.config = LlamaCppConfig.build(
            path, n_parallel=n_parallel, n_ctx=n_ctx, n_threads=n_threads, n_gpu_layers=n_gpu_layers, verbose=verbose
        )
        self._args = (model_path,)
        self._kwargs = {
            "n_parallel": n_parallel,
            "n_ctx": n_ctx,
            "n_threads": n_threads,
            "n_gpu_layers": n_gpu_layers,
            "timeout": timeout,
            "max_retries": max_retries,
            "verbose": verbose,
        }
        resolved = Path(self.config.model_path)
        self.model = resolved.name
        self._identity = f"llamacpp:{resolved.name}:{resolved.stat().st_size}"
        self._lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()
        self.server: LlamaCppServer = acquire_server(self.config)
        try:
            self._client = OpenAIBackend(
                self.server.base_url,
                self.model,
                concurrency=self.config.n_parallel,
                timeout=timeout,
                max_retries=max_retries,
                identity=self._identity,
            )
        except BaseException:
            release_server(self.server)
            raise

    @property
    def identity(self) -> str:
        """``llamacpp:<file name>:<file size>`` (no port, no path: stable across runs and machines)."""
        return self._identity

    def generate(self, requests: Sequence[LLMRequest]) -> list[Completion]:
        """Complete every request; up to ``n_parallel`` are decoded together.

        Raises:
            LLMBackendError: The server failed or a prompt did not fit its slot's context.
        """
        if self._closed:
            raise LLMBackendError(f"llamacpp backend ({self.model}) is closed")
        try:
            return self._client.generate(requests)
        except LLMBackendError as e:
            hint = ""
            if "context" in str(e).lower():
                per_slot = self.config.n_ctx // self.config.n_parallel
                hint = (
                    f"; each of the {self.config.n_parallel} slots holds n_ctx/n_parallel = {per_slot} tokens, "
                    f"raise n_ctx (e.g. llamacpp:PATH?n_ctx={2 * self.config.n_ctx})"
                )
            raise LLMBackendError(f"embedded llama.cpp ({self.model}): {e}{hint}") from e

    def close(self) -> None:
        """Close the connections and release the shared server; safe to call twice.

        In a forked child the server belongs to the parent and is left running.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._client.close()
        if self._pid == os.getpid():
            release_server(self.server)

    def __enter__(self) -> LlamaCppBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model!r}, n_parallel={self.config.n_parallel}, n_ctx={self.config.n_ctx})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self._args, self._kwargs))


def _rebuild(args: tuple[Any, ...], kwargs: dict[str, Any]) -> LlamaCppBackend:
    return LlamaCppBackend(*args, **kwargs)
