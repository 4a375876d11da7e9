"""The simulated LLM as RPP+'s refiner, and what a refined sentence does in the simulator.

This is this project's design (the paper describes RPP+'s refinement only at a high level).

Refine requests
===============
RPP+ (:mod:`rpp_gym.envs.refine`) asks the LLM to rewrite a chosen sentence for a user. Its
requests carry a :class:`RefineContext` in ``LLMRequest.meta``; :class:`~rpp_gym.llm.sim.SimLLM`
answers them with :func:`answer_refine`, deterministically from ``(seed, pattern, parent id,
user, round)``:

- with probability ``malformed_rate`` the answer is unusable: half of those are empty, half
  echo the parent sentence unchanged (both are rejected by the env's validation, so the
  rejection counters move on the simulator too);
- otherwise the answer is the parent sentence (as the prompt showed it, ``{n}`` filled in) with
  one modifier clause from :data:`CLAUSES` appended (a clause the parent does not already have),
  e.g. ``"Act as a seasoned film expert, paying special attention to what I enjoyed lately."``.
  A format sentence keeps its candidate count and ranking words, so it stays valid.

Refined sentences
=================
The env names a refined sentence ``"<parent id>~<6 hex digits of the text's CRC-32>"``
(:func:`refined_id`), so the id says its whole lineage (``"history~3f2a01~91bc0d"`` is a rewrite
of a rewrite of ``history``) and the same text always gets the same id. The env copies the
parent's traits; the simulator derives the rest from the id alone, level by level from the
original sentence (``x_0``) down to the sentence (``x_k``), with every draw seeded by
``(SimConfig.seed, pattern, id of x_j)``:

1. **Direction** (per-user affinity, :mod:`rpp_gym.llm.sim` step 3):
   ``p(x_j) = rho * p(x_{j-1}) + sqrt(1 - rho^2) * z_j`` with ``z_j ~ N(0, I)``. It has the same
   ``N(0, I)`` distribution as an original's direction; a rewrite keeps ``rho`` of its parent's
   taste for users and gets a new component.
2. **Quality**: ``q(x_0) = 0`` and ``q(x_j) = clip(q(x_{j-1}) + delta_j, -quality_cap,
   quality_cap)`` with ``delta_j ~ N(quality_mean, quality_std)``. The ranking's gain is
   multiplied by ``exp(quality_gain * (q(role) + q(reasoning) + q(format)))``. With the
   defaults (mean -0.1, std 0.3) 37% of rewrites improve on their parent, 9% by more than 0.3
   (a gain factor above 1.35), and most are neutral-to-worse: a rewrite can help or hurt, and
   iterating on good rewrites climbs to at most ``exp(quality_gain * quality_cap)`` = 1.65 per
   sentence (2.7 and 0.61 are the default factors of a chain with all three sentences at the
   upper or lower bound).
3. **Strictness** (format sentences): with probability ``strictness_change`` a level moves it
   by ``U(-strictness_step, strictness_step)``, clipped to ``[0, 1]``, changing the failure
   rates (:mod:`rpp_gym.llm.sim` step 5). Other traits (layout, history weighting, verbosity,
   role kind) are the parent's.

Original sentences (ids without ``~``) are untouched: the simulator of fixed banks is unchanged.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from rpp_gym.llm.base import Completion, LLMRequest

if TYPE_CHECKING:
    from rpp_gym.llm.sim import SentenceInfo, SimLLM

__all__ = [
    "CLAUSES",
    "REFINED_SEP",
    "RefineContext",
    "RefineSimConfig",
    "answer_refine",
    "lineage",
    "quality",
    "refined_direction",
    "refined_id",
    "refined_strictness",
]

REFINED_SEP = "~"
"""Separates a refined sentence's id from its parent's."""

CLAUSES: tuple[str, ...] = (
    "paying special attention to what I enjoyed lately",
    "keeping my most recent tastes in mind",
    "with a focus on the genres I return to most",
    "while weighing my long-term favourites",
    "and favour well-loved classics",
    "and think about what I would pick tonight",
    "treating my history as a guide to my mood",
    "and be decisive about the top choices",
    "and consider how each option fits my style",
    "keeping popularity in mind",
    "with an eye for hidden gems",
    "and stay consistent with my past choices",
    "and prefer options close to my latest pick",
    "thinking carefully about each candidate",
    "and be brief and precise",
    "the way a trusted friend would",
)
"""Modifier clauses the simulated refiner appends to a sentence."""


@dataclass(frozen=True)
class RefineSimConfig:
    """Parameters of refined sentences in the simulator (see the module docstring).

    Set them in a spec with a ``refine_`` prefix: ``sim?refine_quality_gain=2``.
    """

    rho: float = 0.8
    """Correlation of a rewrite's direction with its parent's (1: same per-user affinities)."""
    quality_mean: float = -0.1
    """Mean quality change per rewrite (slightly negative: most rewrites are no better)."""
    quality_std: float = 0.3
    """Standard deviation of the quality change per rewrite."""
    quality_cap: float = 0.5
    """Quality is clipped to ``[-quality_cap, quality_cap]``."""
    quality_gain: float = 1.0
    """The ranking's gain is multiplied by ``exp(quality_gain * total quality)``."""
    strictness_change: float = 0.2
    """Probability that a format rewrite changes its strictness."""
    strictness_step: float = 0.3
    """Largest strictness change of one rewrite."""
    malformed_rate: float = 0.1
    """Probability that the simulated refiner answers with an unusable rewrite (empty or an echo)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.rho <= 1.0:
            raise ValueError(f"refine rho={self.rho} must be in [0, 1]")
        for name in ("strictness_change", "malformed_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"refine {name}={getattr(self, name)} must be a probability in [0, 1]")
        for name in ("quality_std", "quality_cap", "strictness_step"):
            if getattr(self, name) < 0:
                raise ValueError(f"refine {name}={getattr(self, name)} must be >= 0")


@dataclass(frozen=True)
class RefineContext:
    """What a refine request is about (``LLMRequest.meta``); only the simulator reads it.

    Attributes:
        pattern: ``"role"``, ``"reasoning"`` or ``"format"``.
        parent: The chosen sentence being rewritten.
        parent_text: Its text as the prompt showed it (``{n}`` filled in).
        user: User index in the dataset.
        round: The episode's round after the step that asked (1-based).
        reward: The reward that step got.
        n_candidates: Candidates per ranking.
    """

    pattern: str
    parent: SentenceInfo
    parent_text: str
    user: int
    round: int
    reward: float
    n_candidates: int


# ---- ids -------------------------------------------------------------------------------------


def refined_id(parent_id: str, template: str) -> str:
    """The id of a rewrite of ``parent_id`` whose text (with ``{n}``) is ``template``.

    >>> refined_id("expert", "Act as a film critic.")
    'expert~4abe0a'
    >>> lineage(refined_id("expert~4abe0a", "Act as a film critic, briefly."))  # doctest: +ELLIPSIS
    ['expert', 'expert~4abe0a', 'expert~4abe0a~...']
    """
    return f"{parent_id}{REFINED_SEP}{zlib.crc32(template.encode()) & 0xFFFFFF:06x}"


def lineage(sentence_id: str) -> list[str]:
    """Ids from the original sentence down to ``sentence_id``.

    >>> lineage("history~3f2a01~91bc0d")
    ['history', 'history~3f2a01', 'history~3f2a01~91bc0d']
    >>> lineage("history")
    ['history']
    """
    parts = sentence_id.split(REFINED_SEP)
    return [REFINED_SEP.join(parts[: i + 1]) for i in range(len(parts))]


def _rng(seed: int, what: str, pattern: str, sentence_id: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(f"{seed}\x1frefine-{what}\x1f{pattern}\x1f{sentence_id}".encode()))


# ---- derived traits ----------------------------------------------------------------------------


def refined_direction(
    root: npt.NDArray[np.float64], seed: int, pattern: str, sentence_id: str, cfg: RefineSimConfig
) -> npt.NDArray[np.float64]:
    """The direction ``p(x_k)`` of a refined sentence, from its original's direction ``root``."""
    p = root
    mix = math.sqrt(max(0.0, 1.0 - cfg.rho**2))
    for level in lineage(sentence_id)[1:]:
        z = _rng(seed, "direction", pattern, level).standard_normal(len(root))
        p = cfg.rho * p + mix * z
    return p


@functools.lru_cache(maxsize=65536)
def quality(seed: int, pattern: str, sentence_id: str, cfg: RefineSimConfig) -> float:
    """The quality ``q`` of a sentence (0 for an original).

    >>> quality(0, "role", "expert", RefineSimConfig())
    0.0
    """
    q = 0.0
    for level in lineage(sentence_id)[1:]:
        delta = cfg.quality_mean + cfg.quality_std * float(_rng(seed, "quality", pattern, level).standard_normal())
        q = min(max(q + delta, -cfg.quality_cap), cfg.quality_cap)
    return q


def refined_strictness(seed: int, sentence_id: str, strictness: float, cfg: RefineSimConfig) -> float:
    """The strictness of a refined format sentence whose original has ``strictness``."""
    s = strictness
    for level in lineage(sentence_id)[1:]:
        u = _rng(seed, "strictness", "format", level).random(2)
        if u[0] < cfg.strictness_change:
            s = min(max(s + cfg.strictness_step * (2 * u[1] - 1), 0.0), 1.0)
    return s


def quality_factor(
    seed: int, sentences: Sequence[Sequence[SentenceInfo]], cfg: RefineSimConfig
) -> npt.NDArray[np.float64]:
    """Per request, ``exp(quality_gain * total quality)`` of its chosen sentences (1 for originals)."""
    out = np.ones(len(sentences))
    for i, chosen in enumerate(sentences):
        total = sum(quality(seed, s.pattern, s.id, cfg) for s in chosen if REFINED_SEP in s.id)
        if total:
            out[i] = math.exp(cfg.quality_gain * total)
    return out


# ---- the simulated refiner -------------------------------------------------------------------


def _rewrite(ctx: RefineContext, seed: int, cfg: RefineSimConfig) -> str:
    key = f"{seed}\x1frewrite\x1f{ctx.pattern}\x1f{ctx.parent.id}\x1f{ctx.user}\x1f{ctx.round}"
    u = np.random.default_rng(zlib.crc32(key.encode())).random(3)
    if u[0] < cfg.malformed_rate:
        return "" if u[1] < 0.5 else ctx.parent_text
    fresh = [c for c in CLAUSES if c not in ctx.parent_text] or list(CLAUSES)
    clause = fresh[int(u[2] * len(fresh))]
    return f"{ctx.parent_text.rstrip(' .')}, {clause}."


def answer_refine(sim: SimLLM, requests: Sequence[LLMRequest]) -> list[Completion]:
    """The simulator's answers to refine requests (``meta`` a :class:`RefineContext`)."""
    out = []
    for request in requests:
        ctx = request.meta
        text = _rewrite(ctx, sim.config.seed, sim.refine_config)
        out.append(
            Completion(
                text=text,
                finish_reason="stop",
                prompt_tokens=len(request.prompt) // 4,
                completion_tokens=len(text) // 4,
                latency_s=0.0,
            )
        )
    return out
