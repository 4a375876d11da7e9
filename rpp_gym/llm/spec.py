"""Backend specs: one string names an LLM backend, e.g. ``"llamacpp"`` or ``"openai:URL?model=M"``.

A spec is ``SCHEME[:TARGET][?KEY=VALUE&...]``:

==============================================  ==================================================
spec                                            backend
==============================================  ==================================================
``sim``, ``sim?temperature=0.2&seed=3``         :class:`~rpp_gym.llm.sim.SimLLM` (never cached)
``llamacpp``                                    embedded llama.cpp, default model SmolLM2-135M
``llamacpp:/path/model.gguf?n_parallel=4``      embedded llama.cpp serving that GGUF file
``openai:http://HOST:PORT/v1?model=NAME``       any OpenAI-compatible endpoint (vLLM, Ollama, ...)
``hf:NAME_OR_PATH?device=auto``                 transformers in-process
``vllm:NAME``                                   vLLM in-process
==============================================  ==================================================

API keys are never part of a spec: the ``openai`` backend reads ``RPP_GYM_API_KEY`` or
``OPENAI_API_KEY`` from the environment, so specs can be logged, stored in configs and used in
cache keys safely.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rpp_gym.llm.base import LLMBackend

if TYPE_CHECKING:
    from rpp_gym.data.bundle import DataBundle

__all__ = ["SCHEMES", "default_cache_path", "make_backend", "parse_spec"]

VALID_FORMS = (
    "sim",
    "sim?KEY=VALUE&...",
    "llamacpp",
    "llamacpp:/path/model.gguf?n_parallel=4&n_ctx=8192",
    "openai:http://127.0.0.1:8000/v1?model=NAME&concurrency=8&timeout=60",
    "hf:NAME_OR_PATH?device=auto&dtype=bfloat16&batch_size=16",
    "vllm:NAME?tensor_parallel_size=1",
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(value: str) -> bool:
    low = value.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"expected a boolean (true/false), got {value!r}")


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError(f"expected a positive number, got {value!r}")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(f"expected an integer >= 0, got {value!r}")
    return number


_Converter = Callable[[str], Any]

_OPTIONS: dict[str, dict[str, _Converter]] = {
    "sim": {},  # validated by SimLLM.from_options
    "llamacpp": {
        "n_parallel": _positive_int,
        "n_ctx": _positive_int,
        "n_threads": _positive_int,
        "n_gpu_layers": int,
        "timeout": _positive_float,
        "max_retries": _non_negative_int,
    },
    "openai": {
        "model": str,
        "concurrency": _positive_int,
        "timeout": _positive_float,
        "max_retries": _non_negative_int,
    },
    "hf": {
        "device": str,
        "dtype": str,
        "batch_size": _positive_int,
        "trust_remote_code": _bool,
    },
    "vllm": {
        "tensor_parallel_size": _positive_int,
        "gpu_memory_utilization": _positive_float,
        "max_model_len": _positive_int,
        "max_num_seqs": _positive_int,
        "dtype": str,
        "quantization": str,
        "seed": int,
        "enforce_eager": _bool,
        "trust_remote_code": _bool,
        "enable_prefix_caching": _bool,
    },
}
SCHEMES: tuple[str, ...] = tuple(_OPTIONS)
"""The known spec schemes."""

_TARGET: dict[str, Literal["none", "optional", "required"]] = {
    "sim": "none",
    "llamacpp": "optional",
    "openai": "required",
    "hf": "required",
    "vllm": "required",
}
_SECRET_KEYS = re.compile(r"(^|[?&:])(api[_-]?key|apikey|key|token|secret|password)=", re.IGNORECASE)


def _spec_error(spec: str, why: str) -> ValueError:
    forms = "\n".join(f"  {form}" for form in VALID_FORMS)
    return ValueError(f"invalid LLM backend spec {spec!r}: {why}. Valid forms:\n{forms}")


def parse_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """Split a backend spec into ``(scheme, target, options)``; pure, no I/O.

    Option values stay strings here; :func:`make_backend` converts them and rejects unknown keys.

    Args:
        spec: ``SCHEME[:TARGET][?KEY=VALUE&...]``.

    Returns:
        The scheme, the target (``""`` when absent) and the options.

    Raises:
        ValueError: Unknown scheme, missing or unexpected target, malformed or repeated option,
            or a credential in the spec. The message names the spec and lists the valid forms.

    Examples:
        >>> parse_spec("sim")
        ('sim', '', {})
        >>> parse_spec("sim?temperature=0.2&seed=3")
        ('sim', '', {'temperature': '0.2', 'seed': '3'})
        >>> parse_spec("llamacpp:/models/llama-2-7b.Q4_K_M.gguf?n_parallel=4")
        ('llamacpp', '/models/llama-2-7b.Q4_K_M.gguf', {'n_parallel': '4'})
        >>> parse_spec("openai:http://127.0.0.1:8000/v1?model=Qwen/Qwen2.5-7B-Instruct&concurrency=16")
        ('openai', 'http://127.0.0.1:8000/v1', {'model': 'Qwen/Qwen2.5-7B-Instruct', 'concurrency': '16'})
        >>> parse_spec("hf:HuggingFaceTB/SmolLM2-135M-Instruct?device=cpu")
        ('hf', 'HuggingFaceTB/SmolLM2-135M-Instruct', {'device': 'cpu'})
        >>> parse_spec("gpt4")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: invalid LLM backend spec 'gpt4': unknown scheme 'gpt4' (known: sim, ...). Valid forms:
          sim
          sim?KEY=VALUE&...
          llamacpp
          llamacpp:/path/model.gguf?n_parallel=4&n_ctx=8192
          openai:http://127.0.0.1:8000/v1?model=NAME&concurrency=8&timeout=60
          hf:NAME_OR_PATH?device=auto&dtype=bfloat16&batch_size=16
          vllm:NAME?tensor_parallel_size=1
    """
    if not isinstance(spec, str):
        raise TypeError(f"an LLM backend spec must be a string, got {type(spec).__name__}: {spec!r}")
    if _SECRET_KEYS.search(spec):
        # Do not echo the spec: it may hold the secret itself.
        raise ValueError(
            "an LLM backend spec must not contain credentials (found an api_key/token option); "
            "set the RPP_GYM_API_KEY or OPENAI_API_KEY environment variable instead"
        )
    head, sep, query = spec.strip().partition("?")
    scheme, colon, target = head.partition(":")
    scheme = scheme.strip().lower()
    if scheme not in _OPTIONS:
        raise _spec_error(spec, f"unknown scheme {scheme!r} (known: {', '.join(SCHEMES)})")
    need = _TARGET[scheme]
    if need == "none" and colon:
        raise _spec_error(spec, f"{scheme!r} takes no target after ':'")
    if need == "required" and not target:
        raise _spec_error(spec, f"{scheme!r} needs a target after ':'")
    if colon and not target:
        raise _spec_error(spec, "empty target after ':'")
    options: dict[str, str] = {}
    if sep:
        if not query:
            raise _spec_error(spec, "empty option list after '?'")
        try:
            pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise _spec_error(spec, f"malformed options {query!r} (expected KEY=VALUE&KEY=VALUE)") from None
        for key, value in pairs:
            if key in options:
                raise _spec_error(spec, f"option {key!r} given twice")
            if not key:
                raise _spec_error(spec, "an option has an empty name")
            options[key] = value
    if scheme == "openai":
        url = urllib.parse.urlsplit(target)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise _spec_error(spec, f"the openai target must be an http(s) URL, got {target!r}")
        if url.username or url.password:
            raise ValueError(
                "an LLM backend spec must not contain credentials (found user:password@ in the URL); "
                "set the RPP_GYM_API_KEY or OPENAI_API_KEY environment variable instead"
            )
    return scheme, target, options


def _convert(spec: str, scheme: str, options: Mapping[str, str]) -> dict[str, Any]:
    table = _OPTIONS[scheme]
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key not in table:
            known = ", ".join(sorted(table)) or "none"
            raise _spec_error(spec, f"unknown option {key!r} for {scheme!r} (known: {known})")
        try:
            out[key] = table[key](value)
        except ValueError as e:
            raise _spec_error(spec, f"option {key}={value!r}: {e}") from None
    return out


def default_cache_path() -> Path:
    """Where the response cache lives by default: ``$RPP_GYM_HOME/llm-cache.sqlite``."""
    from rpp_gym.data.fetch import cache_home

    return cache_home() / "llm-cache.sqlite"


def make_backend(
    spec: str | LLMBackend,
    *,
    world: DataBundle | None = None,
    cache: str | Path | None = "default",
) -> LLMBackend:
    """Build the LLM backend a spec names, wrapped in the response cache unless it is ``sim``.

    Args:
        spec: A spec string (see the module docstring) or a ready backend. A ready backend is
            returned as it is, unless ``cache`` is an explicit path, in which case it is wrapped.
        world: The env's dataset; only ``sim`` uses it.
        cache: ``"default"``: real backends get the shared cache at :func:`default_cache_path`;
            ``None``: no cache; a path: the cache file to use.

    Returns:
        The backend. Close it with ``backend.close()`` when done (closing a cached backend
        closes the wrapped one too).

    Raises:
        ValueError: The spec is malformed, names an unknown scheme or option, or holds a
            credential.
    """
    from rpp_gym.llm.cache import CachedBackend

    if not isinstance(spec, str):
        if not isinstance(spec, LLMBackend):
            raise TypeError(f"spec must be a spec string or an LLMBackend, got {type(spec).__name__}")
        if cache is None or cache == "default" or isinstance(spec, CachedBackend):
            return spec
        return CachedBackend(spec, cache)

    scheme, target, raw = parse_spec(spec)
    if scheme == "sim":
        from rpp_gym.llm.sim import SimLLM

        return SimLLM.from_options(raw, world)

    options = _convert(spec, scheme, raw)
    backend: LLMBackend
    if scheme == "llamacpp":
        from rpp_gym.llm.llamacpp import LlamaCppBackend

        backend = LlamaCppBackend(target or None, **options)
    elif scheme == "openai":
        from rpp_gym.llm.openai_backend import OpenAIBackend

        if "model" not in options:
            raise _spec_error(spec, "the openai backend needs ?model=NAME (the name the server serves)")
        backend = OpenAIBackend(target, **options)
    elif scheme == "hf":
        from rpp_gym.llm.hf import HFBackend

        backend = HFBackend(target, **options)
    else:
        from rpp_gym.llm.vllm_backend import VLLMBackend

        backend = VLLMBackend(target, **options)

    if cache is None:
        return backend
    path = default_cache_path() if cache == "default" else Path(cache)
    return CachedBackend(backend, path)
