"""A real OpenAI-compatible HTTP server on loopback, with scriptable faults, for tests.

It answers ``POST /v1/chat/completions`` and ``GET /v1/models``. By default it *ranks*: it finds
the candidate lines ``[i] Title`` in the last user message and answers ``"1. Title"`` lines in
the order given, so env tests get a deterministic, parseable answer. Faults are queued with
:meth:`FakeOpenAIServer.push` (one per incoming request, first in first out) or made permanent
with :meth:`FakeOpenAIServer.always`.

Example:
    >>> with FakeOpenAIServer() as server:  # doctest: +SKIP
    ...     server.push(Fault("rate_limit", retry_after=0.1), Fault("server_error"))
    ...     backend = OpenAIBackend(server.base_url, server.model)
    ...     backend.generate([...])  # two retries, then the ranking
"""

from __future__ import annotations

import collections
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

__all__ = ["FAULT_KINDS", "FakeOpenAIServer", "Fault", "rank_candidates"]

FaultKind = Literal["rate_limit", "server_error", "slow", "drop", "malformed", "empty_choices", "no_content", "length"]
FAULT_KINDS: tuple[str, ...] = (
    "rate_limit",
    "server_error",
    "slow",
    "drop",
    "malformed",
    "empty_choices",
    "no_content",
    "length",
)

_CANDIDATE = re.compile(r"^\s*\[(\d+)\]\s*(.+?)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Fault:
    """What the server does to one request instead of answering normally.

    Attributes:
        kind: ``rate_limit`` (429 with ``Retry-After``), ``server_error`` (500), ``slow`` (sleep
            ``delay_s`` then answer, to trip client timeouts), ``drop`` (close the connection
            without a response), ``malformed`` (200 with broken JSON), ``empty_choices``
            (``"choices": []``), ``no_content`` (a message without content), ``length`` (the
            normal answer cut after two words with ``finish_reason: "length"``).
        retry_after: Seconds sent in ``Retry-After`` (``rate_limit`` and ``server_error``; None:
            no header, so the client falls back to exponential backoff).
        delay_s: Seconds to sleep (``slow`` only).
    """

    kind: FaultKind
    retry_after: float | None = 0.05
    delay_s: float = 5.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; known: {FAULT_KINDS}")


def rank_candidates(prompt: str) -> str:
    """The default answer: the prompt's ``[i] Title`` candidates as ``"1. Title"`` lines.

    >>> rank_candidates("Rank:\\n[1] Heat (1995)\\n[2] Fargo (1996)")
    '1. Heat (1995)\\n2. Fargo (1996)'
    >>> rank_candidates("no candidates here")
    'I cannot find any candidates.'
    """
    titles = [m.group(2) for m in _CANDIDATE.finditer(prompt)]
    if not titles:
        return "I cannot find any candidates."
    return "\n".join(f"{i}. {title}" for i, title in enumerate(titles, 1))


def _count_tokens(text: str) -> int:
    return len(text.split())


class FakeOpenAIServer:
    """An OpenAI-compatible server on ``127.0.0.1:<ephemeral port>``, in a background thread.

    Args:
        model: The model name ``/v1/models`` lists (requests may name any model).
        delay_s: Seconds every normal answer waits before responding (to measure overlap).
        answer: ``request body -> answer text``; default :func:`rank_candidates` of the last
            user message.

    Attributes:
        requests: JSON bodies of every chat request received, in arrival order.
        max_in_flight: The most chat requests the server was handling at the same time.
    """

    def __init__(
        self,
        *,
        model: str = "fake-model",
        delay_s: float = 0.0,
        answer: Callable[[dict[str, Any]], str] | None = None,
    ) -> None:
        self.model = model
        self.delay_s = delay_s
        self.answer = answer or (lambda body: rank_candidates(_last_user(body)))
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._faults: collections.deque[Fault] = collections.deque()
        self._always: Fault | None = None
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        """Bind an ephemeral port and serve in a daemon thread."""
        handler = type("_Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port; safe to call twice."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    # ---- scripting -------------------------------------------------------------------------

    def push(self, *faults: Fault | FaultKind) -> None:
        """Queue faults; each is applied to one incoming chat request, in order."""
        with self._lock:
            self._faults.extend(f if isinstance(f, Fault) else Fault(f) for f in faults)

    def always(self, fault: Fault | FaultKind | None) -> None:
        """Apply ``fault`` to every request (after the queue is empty); None: answer normally."""
        with self._lock:
            self._always = Fault(fault) if isinstance(fault, str) else fault

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else self._always

    def _enter(self, body: dict[str, Any], headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1


def _last_user(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request log lines."""

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            self.close_connection = True

    def _json(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(doc).encode(), headers)

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._json(200, {"object": "list", "data": [{"id": self.fake.model, "object": "model"}]})
        elif self.path.rstrip("/") in ("/health", "/v1/health"):
            self._json(200, {"status": "ok"})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._json(400, {"error": {"message": "request body is not JSON", "type": "invalid_request_error"}})
            return
        fake = self.fake
        fake._enter(body, {k.lower(): v for k, v in self.headers.items()})
        try:
            self._answer(body, fake._next_fault())
        finally:
            fake._leave()

    def _answer(self, body: dict[str, Any], fault: Fault | None) -> None:
        kind = fault.kind if fault else None
        if kind in ("rate_limit", "server_error"):
            assert fault is not None
            headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            if kind == "rate_limit":
                self._json(429, {"error": {"message": "rate limited", "type": "rate_limit"}}, headers)
            else:
                self._json(500, {"error": {"message": "internal error (scripted)", "type": "server_error"}}, headers)
            return
        if kind == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if kind == "malformed":
            self._send(200, b'{"id": "x", "choices": [{"message": {"content": "1. Heat')
            return
        delay = fault.delay_s if kind == "slow" and fault is not None else self.fake.delay_s
        if delay:
            time.sleep(delay)
        text = self.fake.answer(body)
        finish = "stop"
        max_tokens = body.get("max_tokens")
        words = text.split(" ")
        if kind == "length" or (isinstance(max_tokens, int) and _count_tokens(text) > max_tokens):
            keep = 2 if kind == "length" else max(int(max_tokens or 1), 1)
            text = " ".join(words[:keep])
            finish = "length"
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if kind == "no_content":
            message = {"role": "assistant"}
        choices = [] if kind == "empty_choices" else [{"index": 0, "message": message, "finish_reason": finish}]
        prompt_tokens = sum(_count_tokens(str(m.get("content") or "")) for m in body.get("messages") or [])
        self._json(
            200,
            {
                "id": f"chatcmpl-{len(self.fake.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model") or self.fake.model,
                "choices": choices,
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": _count_tokens(text),
                    "total_tokens": prompt_tokens + _count_tokens(text),
                },
            },
        )
