"""LLM backends behind one protocol, a spec string to pick one, and a response cache.

>>> from rpp_gym.llm import make_backend  # doctest: +SKIP
>>> backend = make_backend("llamacpp")  # embedded llama.cpp + SmolLM2-135M, cached  # doctest: +SKIP

Backend classes are imported on first access, so ``import rpp_gym.llm`` loads no provider SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rpp_gym.llm.base import (
    Completion,
    LLMBackend,
    LLMBackendError,
    LLMRequest,
    Message,
    SamplingParams,
)
from rpp_gym.llm.cache import CachedBackend, cache_stats, export_cache, prune_cache
from rpp_gym.llm.spec import make_backend, parse_spec

if TYPE_CHECKING:
    from rpp_gym.llm.hf import HFBackend
    from rpp_gym.llm.llamacpp import LlamaCppBackend, LlamaCppServer
    from rpp_gym.llm.openai_backend import OpenAIBackend
    from rpp_gym.llm.sim import SimLLM
    from rpp_gym.llm.vllm_backend import VLLMBackend

__all__ = [
    "CachedBackend",
    "Completion",
    "HFBackend",
    "LLMBackend",
    "LLMBackendError",
    "LLMRequest",
    "LlamaCppBackend",
    "LlamaCppServer",
    "Message",
    "OpenAIBackend",
    "SamplingParams",
    "SimLLM",
    "VLLMBackend",
    "cache_stats",
    "export_cache",
    "make_backend",
    "parse_spec",
    "prune_cache",
]

_LAZY = {
    "HFBackend": "rpp_gym.llm.hf",
    "LlamaCppBackend": "rpp_gym.llm.llamacpp",
    "LlamaCppServer": "rpp_gym.llm.llamacpp",
    "OpenAIBackend": "rpp_gym.llm.openai_backend",
    "SimLLM": "rpp_gym.llm.sim",
    "VLLMBackend": "rpp_gym.llm.vllm_backend",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
