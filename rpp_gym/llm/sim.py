"""``sim``: a simulated LLM ranker, deterministic and grounded in the data's collaborative signal.

The simulator receives the same :class:`~rpp_gym.llm.base.LLMRequest` batch a real backend gets
and answers with *text*, which the env parses with the same parser it uses for real models. It
reads the request's structured :class:`RankingContext` (``request.meta``) instead of the prompt
text, so it is fast (tens of thousands of requests per second on one core) and exactly
reproducible.

The model
=========
For a request showing user ``u`` the history items ``h_1..h_L`` (oldest first) and candidates
``c_1..c_n``:

1. **Taste.** ``t = normalize(sum_j w_j v[h_j])`` over the *shown* history, where ``v`` are the
   unit item factors of the training interactions (the held-out item never enters them). The
   weights follow the reasoning sentence's ``history_weight`` trait:

   - ``"recent"``: ``w_j = recency ** (L - j)`` (the latest item weighs most);
   - ``"whole"``: ``w_j = 1``;
   - ``"preference"``: ``w_j = exp(preference_sharpness * v[h_j] . e_u)``: the items most
     typical of the user's long-term taste ``e_u``;
   - ``"none"``: no history use; ``t = 0``.

   With no history shown, ``t = 0`` whatever the reasoning says.
2. **Utility.** ``s_c = similarity_weight * (t . v[c]) + popularity_weight * pop[c]``.
3. **Per-user prompt affinity.** Every sentence ``x`` gets a fixed direction ``p_x ~ N(0, I)``
   seeded by ``(config.seed, pattern, sentence id)``; user ``u``'s affinity to it is
   ``a(u, x) = tanh(affinity_scale * e_u . p_x)``, a fixed function of the user's collaborative
   embedding ``e_u``, which is also in the env's observation (so an agent can learn it). The
   empty "no role" sentence has affinity 0. The ranking's sharpness is
   ``gain = exp(role_gain * a(u, role) + reasoning_gain * a(u, reasoning))``.
4. **Ranking.** A Plackett-Luce draw: sort ``gain * s_c / temperature + Gumbel noise``. The
   noise comes from a counter-based hash of ``(request.seed, candidate position)``, so each
   request is reproducible on its own, whatever batch it arrives in.
5. **Answer text and its failures.** The format sentence's ``layout`` trait decides the text:
   ``"index_title"`` (``"1. Title"`` lines), ``"index"`` (candidate numbers only), ``"title"``
   (bare titles) or ``"prose"`` (titles inside sentences). Five failure events each happen with
   probability ``failure_scale * base_rate[event] * (1 - strictness_effect * strictness)
   * (1 + prompt_tokens / length_scale) * (verbose_factor if the reasoning is verbose)``
   (clipped to ``[0, max_failure]``), where ``strictness`` is the format sentence's trait:

   - ``preamble``: a chatty first line (the parser usually survives it);
   - ``truncate``: the list stops after a uniformly drawn 3..n-1 items (the rest, perhaps the
     target, are unranked);
   - ``duplicate``: one item after the first is replaced by a repeat of an earlier one;
   - ``echo``: one item is replaced by a title from the shown history;
   - ``invent``: one item is replaced by an invented title.

   Longer prompts (more history) therefore help the taste estimate but raise failure rates.

RPP+ refine requests (``request.meta`` a :class:`~rpp_gym.llm.sim_refine.RefineContext`) are
answered by :func:`rpp_gym.llm.sim_refine.answer_refine`; a refined sentence (an id with ``~``)
gets a direction, a quality term multiplying the gain and (format) a strictness derived from
its parent, as documented in :mod:`rpp_gym.llm.sim_refine`. Original sentences are unaffected.

Token counts are estimated as ``len(text) / 4``; ``latency_s`` is 0 (a simulated model has no
latency, and keeping wall time out of ``info`` keeps the env exactly deterministic).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from rpp_gym.llm.base import Completion, LLMBackendError, LLMRequest

if TYPE_CHECKING:
    from rpp_gym.data.bundle import DataBundle

__all__ = ["RankingContext", "SentenceInfo", "SimConfig", "SimLLM"]

REFINED_SEP = "~"
"""In a sentence id, separates an RPP+ rewrite from its parent (see :mod:`rpp_gym.llm.sim_refine`)."""

FAILURE_EVENTS = ("preamble", "truncate", "duplicate", "echo", "invent")
LAYOUTS = ("index_title", "index", "title", "prose")
HISTORY_WEIGHTS = ("none", "recent", "whole", "preference")


@dataclass(frozen=True)
class SentenceInfo:
    """What the simulator knows about one chosen sentence."""

    pattern: str
    id: str
    traits: Mapping[str, Any] = field(default_factory=dict)
    empty: bool = False


@dataclass(frozen=True)
class RankingContext:
    """The structured choice behind a rendered prompt (``LLMRequest.meta``).

    Attributes:
        user: User index in the dataset.
        history: Shown history item indices, oldest first.
        candidates: Candidate item indices in the shown order.
        role, reasoning, format: The chosen sentences.
        prompt_chars: Length of the rendered prompt (drives length-dependent failures).
    """

    user: int
    history: npt.NDArray[np.int32]
    candidates: npt.NDArray[np.int32]
    role: SentenceInfo
    reasoning: SentenceInfo
    format: SentenceInfo
    prompt_chars: int


@dataclass(frozen=True)
class SimConfig:
    """Parameters of the simulated ranker (see the module docstring for the model)."""

    seed: int = 0
    """Seeds the sentence directions ``p_x`` (the per-user affinities); not the env seed."""
    similarity_weight: float = 1.0
    """Weight of taste-candidate similarity in the utility."""
    popularity_weight: float = 0.25
    """Weight of (log) popularity in the utility."""
    temperature: float = 0.3
    """Plackett-Luce temperature: lower means the utility decides more of the ranking."""
    recency: float = 0.75
    """Per-step decay of the ``"recent"`` history weighting."""
    preference_sharpness: float = 4.0
    """Sharpness of the ``"preference"`` history weighting."""
    affinity_scale: float = 1.5
    """Scale inside ``tanh`` of the user-sentence affinity."""
    role_gain: float = 0.6
    """How strongly role affinity sharpens (or blurs) the ranking."""
    reasoning_gain: float = 1.0
    """How strongly reasoning affinity sharpens (or blurs) the ranking."""
    base_rate: Mapping[str, float] = field(
        default_factory=lambda: {"preamble": 0.30, "truncate": 0.10, "duplicate": 0.08, "echo": 0.06, "invent": 0.05}
    )
    """Failure probability per event at strictness 0 and an empty prompt."""
    strictness_effect: float = 0.8
    """A format sentence of strictness 1 cuts every failure rate by this fraction."""
    length_scale: float = 400.0
    """Prompt tokens at which failure rates double."""
    verbose_factor: float = 1.5
    """Failure multiplier when the reasoning sentence asks for step-by-step reasoning."""
    max_failure: float = 0.9
    """Upper clip of any failure probability."""
    failure_scale: float = 1.0
    """Multiplies every failure rate (0 gives a perfectly formatted ranker, e.g. ``sim?failure_scale=0``)."""

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature={self.temperature} must be positive")
        unknown = set(self.base_rate) - set(FAILURE_EVENTS)
        if unknown:
            raise ValueError(f"unknown failure events {sorted(unknown)}; known: {FAILURE_EVENTS}")


# --------------------------------------------------------------------------------------------
# counter-based noise: every draw is a pure function of (seed, stream, index)

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64 finaliser, vectorised."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def _uniform(seeds: npt.NDArray[np.uint64], stream: int, n: int) -> npt.NDArray[np.float64]:
    """``float64[len(seeds), n]`` uniforms in (0, 1)."""
    with np.errstate(over="ignore"):
        base = _mix(seeds[:, None] + _GOLD * np.uint64(stream + 1))
        x = _mix(base + np.arange(1, n + 1, dtype=np.uint64)[None, :] * _GOLD)
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def _direction(seed: int, pattern: str, sentence_id: str, dim: int) -> npt.NDArray[np.float64]:
    key = zlib.crc32(f"{seed}\x1f{pattern}\x1f{sentence_id}".encode())
    return np.random.default_rng(key).standard_normal(dim)


_INVENTED_A = ("Midnight", "Silent", "Broken", "Golden", "Last", "Hidden", "Crimson", "Electric")
_INVENTED_B = ("Harbor", "Promise", "Frontier", "Garden", "Signal", "Kingdom", "Echo", "Summer")
_PREAMBLES = (
    "Sure! Here is my ranking of the candidates:",
    "Based on your watching history, here is the ranked list:",
    "Certainly. After considering your preferences, I would rank them as follows.",
)


class SimLLM:
    """The simulated LLM ranker. See the module docstring for the documented model.

    Args:
        world: The data bundle (item factors, popularity, user embeddings, item texts).
        config: Model parameters.
    """

    def __init__(self, world: DataBundle, config: SimConfig | None = None, refine: Any = None) -> None:
        from rpp_gym.llm.sim_refine import RefineSimConfig

        self.world = world
        self.config = config or SimConfig()
        self.refine_config: RefineSimConfig = refine or RefineSimConfig()
        """Parameters of refined sentences (RPP+), see :mod:`rpp_gym.llm.sim_refine`."""
        self._titles = world.dataset.item_text
        self._directions: dict[tuple[str, str], npt.NDArray[np.float64]] = {}
        self.calls = 0

    @classmethod
    def from_options(cls, options: Mapping[str, str], world: DataBundle | None) -> SimLLM:
        """Build from a spec's options, e.g. ``sim?temperature=0.2&seed=3``."""
        if world is None:
            raise ValueError("the sim backend needs the env's dataset; create it through an env or pass world=")
        from rpp_gym.llm.sim_refine import RefineSimConfig

        types = {f.name: f.type for f in fields(SimConfig)}
        refine_keys = {f"refine_{f.name}": f.name for f in fields(RefineSimConfig)}
        refine = RefineSimConfig(**{refine_keys[k]: float(v) for k, v in options.items() if k in refine_keys})
        options = {k: v for k, v in options.items() if k not in refine_keys}
        kwargs: dict[str, Any] = {}
        for key, value in options.items():
            if key not in types or key == "base_rate":
                known = sorted([*(k for k in types if k != "base_rate"), *refine_keys])
                raise ValueError(f"unknown sim option {key!r}; known: {known}")
            kwargs[key] = int(value) if key == "seed" else float(value)
        return cls(world, SimConfig(**kwargs), refine)

    @property
    def identity(self) -> str:
        return f"sim(seed={self.config.seed})"

    def close(self) -> None:
        """Nothing to release."""

    # ---- the model -----------------------------------------------------------------------

    def affinity(self, users: npt.NDArray[np.int64], sentence: SentenceInfo) -> npt.NDArray[np.float64]:
        """``a(u, x)`` for the given users and one sentence (0 for an empty sentence)."""
        if sentence.empty:
            return np.zeros(len(users))
        key = (sentence.pattern, sentence.id)
        p = self._directions.get(key)
        if p is None:
            p = self._directions[key] = _direction(
                self.config.seed, sentence.pattern, sentence.id, self.world.user_emb.shape[1]
            )
            if REFINED_SEP in sentence.id:  # an RPP+ rewrite: derived from its original's direction
                from rpp_gym.llm.sim_refine import lineage, refined_direction

                root = _direction(self.config.seed, sentence.pattern, lineage(sentence.id)[0], len(p))
                p = self._directions[key] = refined_direction(
                    root, self.config.seed, sentence.pattern, sentence.id, self.refine_config
                )
        return np.tanh(self.config.affinity_scale * (self.world.user_emb[users] @ p))

    def _taste(self, ctxs: Sequence[RankingContext], users: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        cfg, vecs = self.config, self.world.item_vecs
        b, d = len(ctxs), vecs.shape[1]
        h = max((len(c.history) for c in ctxs), default=0)
        if h == 0:
            return np.zeros((b, d))
        items = np.zeros((b, h), dtype=np.int64)
        weights = np.zeros((b, h))
        for i, c in enumerate(ctxs):
            n = len(c.history)
            if n == 0:
                continue
            items[i, h - n :] = c.history
            mode = c.reasoning.traits.get("history_weight", "whole")
            if mode == "recent":
                weights[i, h - n :] = cfg.recency ** np.arange(n - 1, -1, -1)
            elif mode == "whole":
                weights[i, h - n :] = 1.0
            elif mode == "preference":
                sim = vecs[c.history] @ self.world.user_emb[c.user]
                weights[i, h - n :] = np.exp(cfg.preference_sharpness * (sim - sim.max()))
            elif mode != "none":
                raise LLMBackendError(f"unknown history_weight trait {mode!r}; known: {HISTORY_WEIGHTS}")
        taste = np.einsum("bh,bhd->bd", weights, vecs[items])
        norm = np.linalg.norm(taste, axis=1, keepdims=True)
        return np.divide(taste, norm, out=np.zeros_like(taste), where=norm > 0)

    def rank(self, requests: Sequence[LLMRequest]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The simulated ranking (positions in shown order, best first) of each request.

        Also returns the request's uniform draws: ``n`` for the Gumbel noise, then one per failure
        event, then eight that place the failures.
        """
        ctxs = [self._context(r) for r in requests]
        n = len(ctxs[0].candidates)
        if any(len(c.candidates) != n for c in ctxs):
            raise LLMBackendError("the sim backend needs the same number of candidates in every request of a batch")
        cfg = self.config
        users = np.fromiter((c.user for c in ctxs), dtype=np.int64, count=len(ctxs))
        cands = np.stack([c.candidates for c in ctxs]).astype(np.int64)
        seeds = np.fromiter((self._seed(r) for r in requests), dtype=np.uint64, count=len(ctxs))
        taste = self._taste(ctxs, users)
        sims = np.einsum("bd,bnd->bn", taste, self.world.item_vecs[cands])
        utility = cfg.similarity_weight * sims + cfg.popularity_weight * self.world.popularity[cands]
        gain = np.ones(len(ctxs))
        for pattern, scale in (("role", cfg.role_gain), ("reasoning", cfg.reasoning_gain)):
            # group by sentence so each direction is used in one vectorised product
            by_id: dict[str, list[int]] = {}
            for i, c in enumerate(ctxs):
                by_id.setdefault(getattr(c, pattern).id, []).append(i)
            for idx in by_id.values():
                rows = np.asarray(idx)
                gain[rows] *= np.exp(scale * self.affinity(users[rows], getattr(ctxs[idx[0]], pattern)))
        if any(REFINED_SEP in s.id for c in ctxs for s in (c.role, c.reasoning, c.format)):
            from rpp_gym.llm.sim_refine import quality_factor

            chosen = [(c.role, c.reasoning, c.format) for c in ctxs]
            gain *= quality_factor(cfg.seed, chosen, self.refine_config)
        draws = _uniform(seeds, 0, n + len(FAILURE_EVENTS) + 8)
        gumbel = -np.log(-np.log(draws[:, :n]))
        logits = gain[:, None] * utility / cfg.temperature + gumbel
        return np.argsort(-logits, axis=1, kind="stable"), draws

    def failure_probabilities(self, ctx: RankingContext) -> dict[str, float]:
        """The documented per-event failure probabilities for one request."""
        cfg = self.config
        strict = float(ctx.format.traits.get("strictness", 0.5))
        if REFINED_SEP in ctx.format.id:
            from rpp_gym.llm.sim_refine import refined_strictness

            strict = refined_strictness(cfg.seed, ctx.format.id, strict, self.refine_config)
        verbose = bool(ctx.reasoning.traits.get("verbose", False))
        scale = (1 - cfg.strictness_effect * strict) * (1 + ctx.prompt_chars / 4 / cfg.length_scale)
        scale *= (cfg.verbose_factor if verbose else 1.0) * cfg.failure_scale
        return {e: float(min(max(cfg.base_rate.get(e, 0.0) * scale, 0.0), cfg.max_failure)) for e in FAILURE_EVENTS}

    # ---- the backend protocol -----------------------------------------------------------

    def generate(self, requests: Sequence[LLMRequest]) -> list[Completion]:
        """Answer a batch of ranking requests with text."""
        if not requests:
            return []
        from rpp_gym.llm.sim_refine import RefineContext, answer_refine

        refine = [i for i, r in enumerate(requests) if isinstance(r.meta, RefineContext)]
        if refine:  # RPP+ refine requests (see rpp_gym.llm.sim_refine), possibly mixed with rankings
            answers: list[Completion | None] = [None] * len(requests)
            for i, c in zip(refine, answer_refine(self, [requests[i] for i in refine]), strict=True):
                answers[i] = c
            rest = [i for i in range(len(requests)) if answers[i] is None]
            if not rest:
                self.calls += 1
            for i, c in zip(rest, SimLLM.generate(self, [requests[i] for i in rest]), strict=True):
                answers[i] = c
            return [a for a in answers if a is not None]
        self.calls += 1
        orders, draws = self.rank(requests)
        n = orders.shape[1]
        u_event = draws[:, n : n + len(FAILURE_EVENTS)]
        u_pick = draws[:, n + len(FAILURE_EVENTS) :]
        texts = []
        for i, req in enumerate(requests):
            ctx = req.meta
            probs = self.failure_probabilities(ctx)
            events = {e for j, e in enumerate(FAILURE_EVENTS) if u_event[i, j] < probs[e]}
            texts.append(self._write(ctx, orders[i].tolist(), events, u_pick[i], n))
        return [
            Completion(
                text=t,
                finish_reason="stop",
                prompt_tokens=r.meta.prompt_chars // 4,
                completion_tokens=len(t) // 4,
                latency_s=0.0,
            )
            for r, t in zip(requests, texts, strict=True)
        ]

    def _context(self, request: LLMRequest) -> RankingContext:
        ctx = request.meta
        if not isinstance(ctx, RankingContext):
            raise LLMBackendError(
                "the sim backend answers ranking requests built by an rpp_gym env (request.meta must be a "
                f"RankingContext, got {type(ctx).__name__}); for free-form prompts use a real backend"
            )
        return ctx

    @staticmethod
    def _seed(request: LLMRequest) -> int:
        if request.seed is not None:
            return int(request.seed) & 0xFFFFFFFFFFFFFFFF
        return zlib.crc32(request.prompt.encode())

    def _write(
        self, ctx: RankingContext, order: list[int], events: set[str], u: npt.NDArray[np.float64], n: int
    ) -> str:
        titles = self._titles
        cands = ctx.candidates
        # entries: ("cand", position) or ("text", title)
        entries: list[tuple[str, Any]] = [("cand", p) for p in order]
        if "truncate" in events and n > 3:
            entries = entries[: 3 + int(u[0] * (n - 3))]
        if "duplicate" in events and len(entries) > 1:
            j = 1 + int(u[1] * (len(entries) - 1))
            entries[j] = entries[int(u[2] * j)]
        if "echo" in events and len(ctx.history):
            j = int(u[3] * len(entries))
            entries[j] = ("text", titles[int(ctx.history[int(u[4] * len(ctx.history))])])
        if "invent" in events:
            j = int(u[5] * len(entries))
            year = 1950 + int(u[6] * 50)
            entries[j] = ("text", f"{_INVENTED_A[int(u[7] * 8)]} {_INVENTED_B[j % 8]} ({year})")
        layout = ctx.format.traits.get("layout", "index_title")
        names = [titles[int(cands[v])] if k == "cand" else v for k, v in entries]
        if layout == "index_title":
            lines = [f"{r}. {t}" for r, t in enumerate(names, 1)]
        elif layout == "index":
            # an invented or echoed item has no candidate number: the model writes the title instead
            lines = [str(v + 1) if k == "cand" else t for (k, v), t in zip(entries, names, strict=True)]
        elif layout == "title":
            lines = names
        elif layout == "prose":
            body = ", then ".join(names)
            lines = [f"I think you would enjoy {body} in that order."]
        else:
            raise LLMBackendError(f"unknown format layout {layout!r}; known: {LAYOUTS}")
        if "preamble" in events or layout == "prose":
            lines.insert(0, _PREAMBLES[int(u[0] * len(_PREAMBLES))])
        return "\n".join(lines)
