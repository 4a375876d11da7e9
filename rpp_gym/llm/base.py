"""The LLM boundary: one small protocol that takes a batch and returns a batch.

Everything above this module (the env, the vector env, the agents, the CLI) depends only on
:class:`LLMBackend`, :class:`LLMRequest` and :class:`Completion`. Provider SDKs are imported
lazily inside the backends that need them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Completion",
    "LLMBackend",
    "LLMBackendError",
    "LLMRequest",
    "Message",
    "SamplingParams",
]

Message = Mapping[str, str]
"""One chat message, ``{"role": "user" | "system" | "assistant", "content": "..."}``."""


class LLMBackendError(RuntimeError):
    """A backend could not produce a completion (after its retries, if any).

    Never caught and replaced by a made-up answer: an LLM error is an error.
    """


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings; every field is part of a response-cache key."""

    temperature: float = 0.0
    """0 means greedy decoding."""
    top_p: float = 1.0
    """Nucleus sampling mass (ignored when greedy)."""
    max_tokens: int = 256
    """Upper bound on generated tokens; a ranking of 10 titles needs about 150."""
    stop: tuple[str, ...] = ()
    """Stop strings."""

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature={self.temperature} is negative; use 0 for greedy decoding")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p} must be in (0, 1]")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens={self.max_tokens} must be at least 1")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class LLMRequest:
    """One prompt for one env (one user at one round).

    Attributes:
        messages: The chat messages sent to the model (the rendered prompt as one user message).
        sampling: Decoding settings.
        seed: Optional per-request seed. Real backends forward it to servers that accept one;
            the simulated backend draws all its randomness from it. Ignored in cache keys when
            decoding is greedy.
        meta: Structured context that only the simulated backend reads (see
            :class:`rpp_gym.llm.sim.RankingContext`). Never sent to a real model, never part of a
            cache key.
    """

    messages: tuple[Message, ...]
    sampling: SamplingParams = SamplingParams()
    seed: int | None = None
    meta: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def from_prompt(
        cls, prompt: str, sampling: SamplingParams | None = None, seed: int | None = None, meta: Any = None
    ) -> LLMRequest:
        """A request with the prompt as a single user message."""
        return cls(({"role": "user", "content": prompt},), sampling or SamplingParams(), seed, meta)

    @property
    def prompt(self) -> str:
        """The concatenated message contents (what a plain-completion model would see)."""
        return "\n\n".join(m["content"] for m in self.messages)


@dataclass(frozen=True)
class Completion:
    """What a backend returns for one request."""

    text: str
    finish_reason: str = "stop"
    """``"stop"``, ``"length"`` (cut at max_tokens) or a provider-specific reason."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    """Wall time attributed to this request (for a batch: the batch time)."""
    cached: bool = False
    """True when served from a response cache."""


@runtime_checkable
class LLMBackend(Protocol):
    """A batch of requests in, one completion per request out, in the same order.

    Implementations must raise :class:`LLMBackendError` rather than return a fabricated answer.
    """

    @property
    def identity(self) -> str:
        """A stable string naming the backend and model (part of every cache key)."""
        ...

    def generate(self, requests: Sequence[LLMRequest]) -> list[Completion]:
        """Complete every request; ``len(result) == len(requests)``."""
        ...

    def close(self) -> None:
        """Release servers, threads and memory; safe to call twice."""
        ...
