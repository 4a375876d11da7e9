"""A response cache that makes real-LLM runs replayable: SQLite, shared by processes, durable.

:class:`CachedBackend` wraps any backend. For a batch it looks every request up by key, sends
only the misses to the wrapped backend (as *one* batch, duplicates sent once), stores their
answers in one transaction, and returns hits with ``cached=True``.

The key is the sha256 of canonical JSON over the backend's identity, its model, every field of
the sampling parameters, the seed (dropped for greedy decoding, where it changes nothing) and the
messages. ``LLMRequest.meta`` is never part of it. A sampled request (temperature > 0) without a
seed has no single right answer to replay, so it is refused with a :class:`ValueError`.

The file is SQLite in WAL mode: readers never block, writers queue up behind ``busy_timeout``,
so the env workers of a vector env (separate processes) can share one file. Each batch is one
transaction: a process killed mid-write leaves the batch either fully stored or absent, never a
half-written entry. Commits use ``synchronous=NORMAL``: they survive a crash of the process; a
power cut may lose the last batches but cannot corrupt the file.

The module also has the functions behind ``rpp-gym cache``: :func:`cache_stats`,
:func:`export_cache` (a shareable JSONL data set of prompt/answer pairs; the cache holds no
credentials) and :func:`prune_cache`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rpp_gym.llm.base import Completion, LLMBackend, LLMRequest

__all__ = ["CachedBackend", "cache_key", "cache_stats", "export_cache", "prune_cache"]

SCHEMA_VERSION = 1
_BUSY_TIMEOUT_MS = 60_000
_CHUNK = 500  # keys per SELECT ... IN (...), below SQLite's parameter limit
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS completions (
        key        TEXT PRIMARY KEY,
        backend    TEXT NOT NULL,
        model      TEXT,
        request    TEXT NOT NULL,
        completion TEXT NOT NULL,
        created    REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS completions_backend ON completions (backend)",
    "CREATE INDEX IF NOT EXISTS completions_created ON completions (created)",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

# Connections inherited through fork() must be neither used nor closed in the child (closing
# can checkpoint or delete the parent's WAL); they are parked here for the child's lifetime.
_FORK_ORPHANS: list[sqlite3.Connection] = []


def _model_of(backend: LLMBackend) -> str | None:
    model = getattr(backend, "model", None)
    return None if model is None else str(model)


def _request_doc(identity: str, model: str | None, request: LLMRequest) -> dict[str, Any]:
    sampling = dataclasses.asdict(request.sampling)
    sampling["stop"] = list(request.sampling.stop)
    return {
        "backend": identity,
        "model": model,
        "sampling": sampling,
        "seed": None if request.sampling.greedy else request.seed,
        "messages": [{str(k): str(v) for k, v in message.items()} for message in request.messages],
    }


def _canonical(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def cache_key(identity: str, model: str | None, request: LLMRequest) -> str:
    """The cache key of ``request`` sent to the backend ``identity`` serving ``model``.

    The seed only counts when decoding samples; ``meta`` never counts.

    >>> from rpp_gym.llm.base import SamplingParams
    >>> a = LLMRequest.from_prompt("rank these", seed=1)
    >>> b = LLMRequest.from_prompt("rank these", seed=2)
    >>> cache_key("llamacpp:m.gguf", "m", a) == cache_key("llamacpp:m.gguf", "m", b)  # greedy
    True
    >>> hot = SamplingParams(temperature=0.7)
    >>> a, b = (LLMRequest.from_prompt("rank these", hot, seed=s) for s in (1, 2))
    >>> cache_key("llamacpp:m.gguf", "m", a) == cache_key("llamacpp:m.gguf", "m", b)
    False
    >>> len(cache_key("x", None, a))
    64
    """
    return hashlib.sha256(_canonical(_request_doc(identity, model, request)).encode()).hexdigest()


def _completion_doc(completion: Completion) -> str:
    return _canonical(
        {
            "text": completion.text,
            "finish_reason": completion.finish_reason,
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "latency_s": completion.latency_s,
        }
    )


def _connect(path: Path, *, create: bool) -> sqlite3.Connection:
    """Open the cache file in WAL mode (creating file and schema when ``create``)."""
    if not create and not path.is_file():
        raise FileNotFoundError(f"no LLM response cache at {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        while True:  # schema setup can meet SQLITE_BUSY that the busy handler does not cover
            try:
                if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
                    raise sqlite3.OperationalError(f"could not switch {path} to WAL mode")
                conn.execute("PRAGMA synchronous = NORMAL")
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise RuntimeError(
                        f"the LLM cache {path} has schema version {version}, newer than this rpp-gym "
                        f"understands ({SCHEMA_VERSION}); upgrade rpp-gym or use another cache file"
                    )
                if create and version < SCHEMA_VERSION:
                    with _transaction(conn):
                        for statement in _SCHEMA:
                            conn.execute(statement)
                break
            except sqlite3.OperationalError as e:
                busy = "locked" in str(e) or "busy" in str(e)
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class CachedBackend:
    """Serve repeated requests from a SQLite file; only misses reach the wrapped backend.

    Example:
        >>> backend = CachedBackend(LlamaCppBackend(), "runs/llm-cache.sqlite")  # doctest: +SKIP
        >>> backend.generate(requests)  # misses go to llama.cpp and are stored  # doctest: +SKIP
        >>> backend.generate(requests)  # all hits, cached=True, no llama.cpp call  # doctest: +SKIP
        >>> backend.stats()  # doctest: +SKIP
        {'hits': 16, 'misses': 16, 'prompt_tokens': 9120, 'completion_tokens': 1904, 'hit_rate': 0.5}

    Args:
        backend: The backend to wrap; closed by :meth:`close`.
        path: The cache file (created with its folder if missing).
    """

    def __init__(self, backend: LLMBackend, path: str | Path) -> None:
        self.backend = backend
        self.path = Path(path).expanduser()
        self.model = _model_of(backend)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = _connect(self.path, create=True)
        self._pid = os.getpid()
        self._closed = False
        self.hits = 0
        self.misses = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    @property
    def identity(self) -> str:
        """The wrapped backend's identity (the cache is transparent)."""
        return self.backend.identity

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.backend!r}, path={str(self.path)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.backend, self.path))

    def __enter__(self) -> CachedBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, float]:
        """Counters of this instance.

        Returns:
            ``hits`` (duplicates within a batch count as hits), ``misses`` (requests sent to the
            wrapped backend), ``prompt_tokens`` and ``completion_tokens`` (spent by those misses)
            and ``hit_rate``.
        """
        with self._lock:
            total = self.hits + self.misses
            return {
                "hits": self.hits,
                "misses": self.misses,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "hit_rate": self.hits / total if total else 0.0,
            }

    def close(self) -> None:
        """Close the file and the wrapped backend; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conn, self._conn = self._conn, None
            if conn is not None and self._pid == os.getpid():
                conn.close()
        self.backend.close()

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError(f"the LLM cache {self.path} is closed")
        if self._pid != os.getpid():  # forked: park the parent's connection, open our own
            if self._conn is not None:
                _FORK_ORPHANS.append(self._conn)
            self._conn = _connect(self.path, create=True)
            self._pid = os.getpid()
        assert self._conn is not None
        return self._conn

    def generate(self, requests: Sequence[LLMRequest]) -> list[Completion]:
        """Complete every request, from the cache where possible.

        Raises:
            ValueError: A request samples (temperature > 0) without a seed.
            LLMBackendError: From the wrapped backend; nothing of that batch is stored.
        """
        for i, request in enumerate(requests):
            if not request.sampling.greedy and request.seed is None:
                raise ValueError(
                    f"request {i} samples (temperature={request.sampling.temperature:g}) without a seed, "
                    f"so its answer cannot be cached and replayed; give every sampled LLMRequest a seed "
                    f"(e.g. drawn from the env's np_random) or disable the cache (cache=None)"
                )
        if not requests:
            return []
        identity, model = self.backend.identity, self.model
        docs = [_request_doc(identity, model, request) for request in requests]
        keys = [hashlib.sha256(_canonical(doc).encode()).hexdigest() for doc in docs]

        start = time.perf_counter()
        with self._lock:
            found = self._lookup(self._connection(), set(keys))
        lookup_s = time.perf_counter() - start

        first_index: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key not in found and key not in first_index:
                first_index[key] = i
        fresh: dict[str, Completion] = {}
        if first_index:
            missing = list(first_index.values())
            answers = self.backend.generate([requests[i] for i in missing])
            if len(answers) != len(missing):
                raise RuntimeError(
                    f"backend {identity} returned {len(answers)} completions for {len(missing)} requests"
                )
            fresh = {keys[i]: answer for i, answer in zip(missing, answers, strict=True)}
            rows = [
                (keys[i], identity, model, _canonical(docs[i]), _completion_doc(fresh[keys[i]]), time.time())
                for i in missing
            ]
            with self._lock:
                conn = self._connection()
                with _transaction(conn):
                    conn.executemany(
                        "INSERT OR IGNORE INTO completions (key, backend, model, request, completion, created) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        rows,
                    )

        out: list[Completion] = []
        hits = 0
        sent: set[str] = set()
        for key in keys:
            if key in fresh and key not in sent:
                sent.add(key)
                out.append(fresh[key])
            elif key in fresh:  # a duplicate inside the batch, answered by the one call
                hits += 1
                out.append(dataclasses.replace(fresh[key], cached=True, latency_s=0.0))
            else:
                hits += 1
                out.append(dataclasses.replace(found[key], cached=True, latency_s=lookup_s))
        with self._lock:
            self.hits += hits
            self.misses += len(fresh)
            self.prompt_tokens += sum(c.prompt_tokens for c in fresh.values())
            self.completion_tokens += sum(c.completion_tokens for c in fresh.values())
        return out

    @staticmethod
    def _lookup(conn: sqlite3.Connection, keys: set[str]) -> dict[str, Completion]:
        found: dict[str, Completion] = {}
        wanted = list(keys)
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(f"SELECT key, completion FROM completions WHERE key IN ({marks})", chunk)
            for key, text in rows:
                found[key] = Completion(**json.loads(text))
        return found


# --------------------------------------------------------------------------- maintenance


def cache_stats(path: str | Path) -> dict[str, Any]:
    """What a cache file holds: entries, size, time span and per-backend counts and tokens.

    Raises:
        FileNotFoundError: There is no cache at ``path``.
    """
    path = Path(path).expanduser()
    conn = _connect(path, create=False)
    try:
        rows = conn.execute(
            "SELECT backend, COUNT(*), "
            "SUM(json_extract(completion, '$.prompt_tokens')), "
            "SUM(json_extract(completion, '$.completion_tokens')), MIN(created), MAX(created) "
            "FROM completions GROUP BY backend ORDER BY backend"
        ).fetchall()
    finally:
        conn.close()
    size = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    return {
        "path": str(path),
        "size_bytes": size,
        "entries": sum(r[1] for r in rows),
        "oldest": min((r[4] for r in rows), default=None),
        "newest": max((r[5] for r in rows), default=None),
        "backends": {r[0]: {"entries": r[1], "prompt_tokens": r[2] or 0, "completion_tokens": r[3] or 0} for r in rows},
    }


def export_cache(path: str | Path, out_jsonl: str | Path) -> int:
    """Write every entry as one JSON line: backend, model, sampling, seed, messages, completion.

    The result is a shareable data set of prompt/answer pairs (the cache never holds credentials).

    Returns:
        The number of entries written.
    """
    conn = _connect(Path(path).expanduser(), create=False)
    out = Path(out_jsonl).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            rows = conn.execute("SELECT key, request, completion, created FROM completions ORDER BY created, key")
            for key, request, completion, created in rows:
                doc = {"key": key, **json.loads(request), "completion": json.loads(completion), "created": created}
                f.write(json.dumps(doc, ensure_ascii=False) + "\n")
                count += 1
        os.replace(tmp, out)
    finally:
        conn.close()
        tmp.unlink(missing_ok=True)
    return count


def prune_cache(path: str | Path, older_than_days: float | None = None, backend: str | None = None) -> int:
    """Delete entries older than ``older_than_days`` and/or of backends whose identity starts with
    ``backend`` (e.g. ``"llamacpp:"``); with both, only entries matching both.

    Returns:
        The number of entries deleted.

    Raises:
        ValueError: Neither filter was given (to drop everything, delete the file).
    """
    if older_than_days is None and backend is None:
        raise ValueError("prune_cache needs older_than_days= and/or backend=; to drop everything, delete the file")
    where: list[str] = []
    args: list[Any] = []
    if older_than_days is not None:
        where.append("created < ?")
        args.append(time.time() - older_than_days * 86400)
    if backend is not None:
        where.append("substr(backend, 1, ?) = ?")
        args += [len(backend), backend]
    conn = _connect(Path(path).expanduser(), create=False)
    try:
        with _transaction(conn):
            deleted = conn.execute(f"DELETE FROM completions WHERE {' AND '.join(where)}", args).rowcount
    finally:
        conn.close()
    return int(deleted)
