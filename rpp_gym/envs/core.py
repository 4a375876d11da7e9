"""The batched core shared by the single env, the vector env and the PettingZoo view.

One ``RPPCore`` holds ``num_slots`` episodes side by side (one user each). A step is the list in
DESIGN.md: compose every slot's prompt, send them all to the backend as ONE batch, parse each
answer, score it. Nothing here knows whether it is driven by ``RPPEnv`` (one slot) or
``RPPVectorEnv`` (N slots), so there is one implementation of the step.

The core also owns the sentence banks behind the actions. Each slot reads its sentences from a
:class:`SlotBank` (``capacity`` action indices per pattern, some of them possibly empty). With
fixed banks every slot shares one ``SlotBank`` equal to the bank and nothing is masked. RPP+
(:mod:`rpp_gym.envs.refine`) calls :meth:`RPPCore.set_capacity` before the first reset: the
action space becomes ``capacity`` per pattern, a validity mask says which indices hold a
sentence (:meth:`RPPCore.action_masks`, and appended to the observation), and a step hook
(``core.refiner``) may add sentences after every committed step, for all views at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from gymnasium import spaces

from rpp_gym.data.bundle import DataBundle, load_bundle
from rpp_gym.data.dataset import Dataset
from rpp_gym.envs.config import RPPConfig
from rpp_gym.llm.base import LLMBackend, LLMRequest, SamplingParams
from rpp_gym.llm.sim import RankingContext, SentenceInfo
from rpp_gym.metrics import metrics_for_rank
from rpp_gym.prompts.bank import PATTERNS, SENTENCE_PATTERNS, Sentence, SentenceBank, bank_to_dict, load_bank
from rpp_gym.prompts.parse import complete_ranking, parse_ranking
from rpp_gym.prompts.render import render_prompt

__all__ = ["BANK_SCOPES", "INVALID_ACTIONS", "RPPCore", "SlotBank", "StepHook", "StepOutcome"]

TOP_ITEMS = 3
"""How many of the LLM's top-ranked items the observation summarises."""

TRIALS_SCALE = float(np.log1p(1000))
"""RPP+ observation: a slot's trials enter as ``min(log(1 + count) / log(1001), 1)`` (1 from 1000 trials)."""

BANK_SCOPES: tuple[str, ...] = ("episode", "global")
"""``episode``: every episode starts from the template bank (each slot its own copy);
``global``: all slots share one bank that persists across episodes."""

INVALID_ACTIONS: tuple[str, ...] = ("raise", "default")
"""What choosing an empty slot does: raise a ``ValueError`` or use the pattern's default."""


@dataclass
class StepOutcome:
    """What one batched step produced, per slot."""

    rewards: npt.NDArray[np.float64]
    terminated: npt.NDArray[np.bool_]
    infos: list[dict[str, Any]]
    draws: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]
    """The shown candidate orders and request seeds used; pass them back to re-ask the same question."""


class StepHook(Protocol):
    """Something the core calls after every committed step (RPP+'s refiner)."""

    def after_step(
        self,
        core: RPPCore,
        slots: list[int],
        actions: npt.NDArray[np.int64],
        rewards: npt.NDArray[np.float64],
        infos: list[dict[str, Any]],
    ) -> None:
        """Called once per committed ``core.step`` with the stepped slots, their (used) joint
        actions, rewards and infos (which it may extend)."""
        ...

    def close(self) -> None:
        """Release what the hook owns (e.g. its own LLM backend)."""
        ...


_PROMPT_BANKS: dict[tuple[int, Sentence, Sentence, Sentence], tuple[SentenceBank, SentenceBank]] = {}
_PROMPT_BANK_CACHE = 4096


class SlotBank:
    """The sentences behind one bank's action indices: ``capacity`` slots per sentence pattern.

    Slot ``i`` of a pattern holds a :class:`~rpp_gym.prompts.bank.Sentence` or is empty
    (``None``). The base bank's sentences fill the first slots and are flagged ``original``.
    Each slot keeps the running mean of the rewards of the steps that chose it, or its
    ``prior`` until it has been chosen; RPP+ replaces the slot with the lowest mean when a
    pattern is full (:meth:`victim`).

    >>> from rpp_gym.prompts.bank import load_bank
    >>> slots = SlotBank(load_bank("movie"), {"role": 7, "reasoning": 9, "format": 5})
    >>> slots.mask("role").tolist()
    [True, True, True, True, True, False, False]
    >>> slots.victim("role")
    5
    >>> slots.bank().role == load_bank("movie").role  # what prompts are rendered from
    True

    Args:
        base: The bank whose sentences fill the first slots.
        capacity: Slots per sentence pattern, each at least the base bank's size.
    """

    def __init__(self, base: SentenceBank, capacity: Mapping[str, int]) -> None:
        self.base = base
        self.capacity = {p: int(capacity[p]) for p in SENTENCE_PATTERNS}
        self.sentences: dict[str, list[Sentence | None]] = {}
        self.original: dict[str, npt.NDArray[np.bool_]] = {}
        self.reward_sum: dict[str, npt.NDArray[np.float64]] = {}
        self.count: dict[str, npt.NDArray[np.int64]] = {}
        self.prior: dict[str, npt.NDArray[np.float64]] = {}
        self.born: dict[str, npt.NDArray[np.int64]] = {}
        for p in SENTENCE_PATTERNS:
            originals, cap = base.sentences(p), self.capacity[p]
            if cap < len(originals):
                raise ValueError(
                    f"capacity {cap} for {p} is smaller than the bank's {len(originals)} {p} sentences; "
                    f"use at least {len(originals)}"
                )
            self.sentences[p] = [*originals, *([None] * (cap - len(originals)))]
            self.original[p] = np.arange(cap) < len(originals)
            self.reward_sum[p] = np.zeros(cap)
            self.count[p] = np.zeros(cap, dtype=np.int64)
            self.prior[p] = np.zeros(cap)
            self.born[p] = np.zeros(cap, dtype=np.int64)
        self.version = 0
        self._clock = 0
        self._compact: tuple[int, SentenceBank, dict[str, npt.NDArray[np.int64]]] | None = None
        self._infos: dict[str, list[SentenceInfo | None]] = {
            p: [self._info(p, s) for s in self.sentences[p]] for p in SENTENCE_PATTERNS
        }

    @staticmethod
    def _info(pattern: str, s: Sentence | None) -> SentenceInfo | None:
        return None if s is None else SentenceInfo(pattern, s.id, s.traits, empty=not s.text.strip())

    def copy(self) -> SlotBank:
        """An independent copy (sentences are immutable and shared)."""
        new = object.__new__(SlotBank)
        new.base, new.capacity, new.version, new._clock = self.base, dict(self.capacity), self.version, self._clock
        new._compact = self._compact
        new.sentences = {p: list(v) for p, v in self.sentences.items()}
        new._infos = {p: list(v) for p, v in self._infos.items()}
        for name in ("original", "reward_sum", "count", "prior", "born"):
            setattr(new, name, {p: v.copy() for p, v in getattr(self, name).items()})
        return new

    # ---- reading ---------------------------------------------------------------------------

    def mask(self, pattern: str) -> npt.NDArray[np.bool_]:
        """``bool[capacity]``: which slots of ``pattern`` hold a sentence."""
        return np.fromiter((s is not None for s in self.sentences[pattern]), dtype=bool, count=self.capacity[pattern])

    def sentence(self, pattern: str, index: int) -> Sentence:
        """The sentence in a slot; a ``ValueError`` for an empty one."""
        s = self.sentences[pattern][index]
        if s is None:
            raise ValueError(f"{pattern} slot {index} is empty")
        return s

    def info(self, pattern: str, index: int) -> SentenceInfo:
        """What the simulated LLM is told about the sentence in a slot."""
        info = self._infos[pattern][index]
        if info is None:
            raise ValueError(f"{pattern} slot {index} is empty")
        return info

    def means(self, pattern: str) -> npt.NDArray[np.float64]:
        """Running mean reward per slot (``prior`` for slots never chosen; NaN for empty ones)."""
        count = self.count[pattern]
        mean = np.where(count > 0, self.reward_sum[pattern] / np.maximum(count, 1), self.prior[pattern])
        return np.where(self.mask(pattern), mean, np.nan)

    def bank(self) -> SentenceBank:
        """The filled slots as a plain :class:`SentenceBank` (slot order; defaults remapped).

        Reusable anywhere a bank is accepted, e.g. ``gym.make("RPP-MovieLens-Sim-v0", bank=...)``.
        """
        return self._compact_bank()[1]

    def prompt_bank(self, chosen: Mapping[str, Sentence]) -> SentenceBank:
        """A bank holding just the ``chosen`` sentence of each pattern (index 0), to render a prompt.

        Built (and validated) once per combination: cached on the base bank's behalf.
        """
        key = (id(self.base), chosen["role"], chosen["reasoning"], chosen["format"])
        hit = _PROMPT_BANKS.get(key)
        if hit is None or hit[0] is not self.base:
            if len(_PROMPT_BANKS) >= _PROMPT_BANK_CACHE:
                _PROMPT_BANKS.clear()
            bank = dataclasses.replace(self.base, role=(key[1],), reasoning=(key[2],), format=(key[3],), defaults={})
            hit = _PROMPT_BANKS[key] = (self.base, bank)
        return hit[1]

    def compact_index(self, pattern: str, index: int) -> int:
        """Index in :meth:`bank` of the sentence in slot ``index``."""
        return int(self._compact_bank()[2][pattern][index])

    def _compact_bank(self) -> tuple[int, SentenceBank, dict[str, npt.NDArray[np.int64]]]:
        if self._compact is None or self._compact[0] != self.version:
            where: dict[str, npt.NDArray[np.int64]] = {}
            filled: dict[str, tuple[Sentence, ...]] = {}
            defaults: dict[str, int] = {"history": int(self.base.defaults["history"])}
            for p in SENTENCE_PATTERNS:
                mask = self.mask(p)
                where[p] = np.where(mask, np.cumsum(mask) - 1, -1).astype(np.int64)
                filled[p] = tuple(s for s in self.sentences[p] if s is not None)
                d = int(self.base.defaults[p])
                defaults[p] = int(where[p][d]) if d < len(mask) and mask[d] else 0
            if self.version == 0:
                bank = self.base
            else:
                bank = dataclasses.replace(
                    self.base,
                    role=filled["role"],
                    reasoning=filled["reasoning"],
                    format=filled["format"],
                    defaults=defaults,
                )
            self._compact = (self.version, bank, where)
        return self._compact

    # ---- writing ---------------------------------------------------------------------------

    def put(
        self, pattern: str, index: int, sentence: Sentence | None, prior: float = 0.0, original: bool = False
    ) -> None:
        """Place ``sentence`` (None: clear) in a slot, with fresh statistics."""
        if not 0 <= index < self.capacity[pattern]:
            raise IndexError(f"{pattern} slot {index} is outside the capacity {self.capacity[pattern]}")
        if sentence is not None:
            clash = [i for i, s in enumerate(self.sentences[pattern]) if s is not None and s.id == sentence.id]
            if clash and clash != [index]:
                raise ValueError(f"{pattern} sentence id {sentence.id!r} is already in slot {clash[0]}")
            # validate before changing anything (a BankError names the sentence and the fix)
            self.prompt_bank({**{p: self.base.sentences(p)[0] for p in SENTENCE_PATTERNS}, pattern: sentence})
        self.sentences[pattern][index] = sentence
        self._infos[pattern][index] = self._info(pattern, sentence)
        self.original[pattern][index] = original and sentence is not None
        self.reward_sum[pattern][index] = 0.0
        self.count[pattern][index] = 0
        self.prior[pattern][index] = prior
        self._clock += 1
        self.born[pattern][index] = self._clock
        self.version += 1

    def record(self, pattern: str, index: int, reward: float) -> None:
        """Add one reward to a slot's running mean."""
        self.reward_sum[pattern][index] += reward
        self.count[pattern][index] += 1

    def victim(self, pattern: str, replace_originals: bool = False, min_trials: int = 0) -> int | None:
        """The slot a new sentence goes to: the first empty one, else the lowest running mean.

        Only slots chosen at least ``min_trials`` times may be replaced (a fair trial); original
        sentences never are unless ``replace_originals``, and the pattern's default slot never
        is. Ties go to the oldest slot. None when no slot may be replaced.
        """
        mask = self.mask(pattern)
        if not mask.all():
            return int(np.argmin(mask))
        allowed = np.ones(len(mask), dtype=bool) if replace_originals else ~self.original[pattern]
        allowed[int(self.base.defaults[pattern])] = False
        allowed &= self.count[pattern] >= min_trials
        if not allowed.any():
            return None
        means = np.where(allowed, self.means(pattern), np.inf)
        lowest = np.flatnonzero(means == means.min())
        return int(lowest[np.argmin(self.born[pattern][lowest])])

    # ---- files -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the base bank, the capacity and every slot with its statistics."""

        def slot(p: str, i: int) -> dict[str, Any] | None:
            s = self.sentences[p][i]
            if s is None:
                return None
            return {
                "id": s.id,
                "text": s.text,
                "traits": dict(s.traits),
                "original": bool(self.original[p][i]),
                "count": int(self.count[p][i]),
                "reward_sum": float(self.reward_sum[p][i]),
                "prior": float(self.prior[p][i]),
            }

        return {
            "slot_bank_version": 1,
            "base": bank_to_dict(self.base),
            "capacity": dict(self.capacity),
            "slots": {p: [slot(p, i) for i in range(self.capacity[p])] for p in SENTENCE_PATTERNS},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> SlotBank:
        """Inverse of :meth:`to_dict`; a ``ValueError`` names what is wrong."""
        from rpp_gym.prompts.bank import bank_from_dict

        if not isinstance(data, Mapping) or data.get("slot_bank_version") != 1:
            raise ValueError(f'{source}: not a slot bank file (expected "slot_bank_version": 1)')
        base = bank_from_dict(data["base"], f"{source}, base")
        out = cls(base, data["capacity"])
        for p in SENTENCE_PATTERNS:
            entries = data["slots"][p]
            if len(entries) != out.capacity[p]:
                raise ValueError(f"{source}: {p} has {len(entries)} slots but capacity {out.capacity[p]}")
            for i, e in enumerate(entries):
                out.sentences[p][i] = None if e is None else Sentence(e["id"], e["text"], e["traits"])
                out._infos[p][i] = cls._info(p, out.sentences[p][i])
                out.original[p][i] = bool(e and e["original"])
                out.count[p][i] = int(e["count"]) if e else 0
                out.reward_sum[p][i] = float(e["reward_sum"]) if e else 0.0
                out.prior[p][i] = float(e["prior"]) if e else 0.0
        out.version = 1
        out._compact_bank()  # validates every sentence
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SlotBank):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


def _default_init_history(dataset: Any) -> int:
    if isinstance(dataset, str):
        from rpp_gym.data.specs import get_spec

        return get_spec(dataset).init_history
    return 1


class RPPCore:
    """Episodes of ``num_slots`` users stepped together.

    Args:
        config: The env configuration.
        num_slots: Episodes held side by side.
        backend: An already-built backend to share (default: build from ``config.llm``).

    Attributes:
        masked: Whether :meth:`set_capacity` configured growing banks (masks in the observation).
        scope: ``"episode"`` or ``"global"`` (see :data:`BANK_SCOPES`).
        invalid_action: What an empty slot does when chosen (see :data:`INVALID_ACTIONS`).
        update_stats: Whether steps add their rewards to the chosen slots' running means.
        refiner: The step hook called after every committed step (RPP+), or None.
    """

    def __init__(self, config: RPPConfig, num_slots: int = 1, backend: LLMBackend | None = None) -> None:
        from rpp_gym.llm.spec import make_backend

        self.config = config
        self.num_slots = num_slots
        dataset = config.dataset
        if not isinstance(dataset, (str, Dataset)):
            raise TypeError(f"dataset={dataset!r} must be a dataset name or an rpp_gym.data.Dataset")
        self.bundle: DataBundle = load_bundle(dataset, config.data_dir, config.bundle_options)
        ds = self.bundle.dataset
        bank = config.bank if config.bank is not None else ds.domain
        self.bank: SentenceBank = bank if isinstance(bank, SentenceBank) else load_bank(bank)
        if config.history_mode == "increment":
            self.history_choices = tuple(self.bank.history_increments)
        else:
            self.history_choices = tuple(config.history_lengths or self.bank.history_lengths)
        self.init_history = (
            config.init_history if config.init_history is not None else _default_init_history(dataset)
        )
        self.sampling = SamplingParams(temperature=config.temperature, max_tokens=config.max_tokens)
        self.owns_backend = backend is None
        self.backend: LLMBackend = backend if backend is not None else make_backend(
            config.llm, world=self.bundle, cache=config.cache
        )
        self.masked = False
        self.scope = "global"
        self.invalid_action = "raise"
        self.update_stats = True
        self.refiner: StepHook | None = None
        self.owns_refiner = False
        b = num_slots
        d = self.bundle.user_emb.shape[1]
        self.user = np.full(b, -1, dtype=np.int64)
        self.candidates = np.zeros((b, config.n_candidates), dtype=np.int32)
        self.round = np.zeros(b, dtype=np.int64)
        self.hist_len = np.zeros(b, dtype=np.int64)
        self.prev_action = np.full((b, 4), -1, dtype=np.int64)
        self.prev_scores = np.zeros((b, 4), dtype=np.float32)  # reward, ndcg@1, ndcg@5, parse ok
        self.top_emb = np.zeros((b, d), dtype=np.float32)
        self.last_info: list[dict[str, Any] | None] = [None] * b
        sizes = {p: len(self.bank.sentences(p)) for p in SENTENCE_PATTERNS}
        self._configure(SlotBank(self.bank, sizes))

    def _configure(self, template: SlotBank) -> None:
        """Set the banks, the action space and the observation layout from a template bank."""
        self.template = template
        self.banks: list[SlotBank] = [template] * self.num_slots
        self.nvec = np.array(
            [len(self.history_choices), *(template.capacity[p] for p in SENTENCE_PATTERNS)], dtype=np.int64
        )
        self.action_space = spaces.MultiDiscrete(self.nvec)
        d = self.bundle.user_emb.shape[1]
        self._n_onehot = int(self.nvec.sum())
        self._onehot_offsets = np.concatenate([[0], np.cumsum(self.nvec)[:-1]]).astype(np.int64)
        self._n_stats = 2 * int(self.nvec[1:].sum()) if self.masked else 0
        self.obs_dim = 2 * d + 6 + self._n_onehot + (self._n_stats + self._n_onehot if self.masked else 0)
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(self.obs_dim,), dtype=np.float32)
        self._obs = np.zeros((self.num_slots, self.obs_dim), dtype=np.float32)

    # ---- banks and masks -------------------------------------------------------------------

    def set_capacity(
        self,
        capacity: int | Mapping[str, int],
        scope: str = "episode",
        template: SlotBank | None = None,
    ) -> None:
        """Give every sentence pattern ``capacity`` action indices, some empty (RPP+).

        The action space becomes ``MultiDiscrete([n_history, cap_role, cap_reasoning,
        cap_format])``, :meth:`action_masks` says which indices hold a sentence, and the
        observation gains the slot statistics and the mask bits (:attr:`stats_slice`,
        :attr:`mask_slice`). Call it before the first reset, then re-read the spaces
        (``env.refresh_spaces()``).

        Args:
            capacity: Slots per sentence pattern: one number for all of them (patterns with a
                bigger bank keep their size), or ``{pattern: slots}`` (missing patterns keep
                their bank's size).
            scope: ``"episode"``: every episode starts from ``template``; ``"global"``: all
                slots share ``template`` and it persists across episodes.
            template: The bank episodes start from (default: the env's bank in the first slots).

        Raises:
            RuntimeError: after the first reset.
            ValueError: for an unknown scope or pattern, or a capacity below a bank's size.
        """
        if (self.user >= 0).any():
            raise RuntimeError(
                "set_capacity() must be called before the first reset (wrap the env right after making it)"
            )
        if scope not in BANK_SCOPES:
            raise ValueError(f"scope={scope!r}; choose one of {BANK_SCOPES}")
        if template is None:
            sizes = {p: len(self.bank.sentences(p)) for p in SENTENCE_PATTERNS}
            if isinstance(capacity, Mapping):
                unknown = sorted(set(capacity) - set(SENTENCE_PATTERNS))
                if unknown:
                    raise ValueError(
                        f"capacity names unknown pattern(s) {unknown}; the sentence patterns are {SENTENCE_PATTERNS}"
                    )
                caps = {p: int(capacity.get(p, sizes[p])) for p in SENTENCE_PATTERNS}
            else:
                caps = {p: max(int(capacity), sizes[p]) for p in SENTENCE_PATTERNS}
            template = SlotBank(self.bank, caps)
        self.masked = True
        self.scope = scope
        self._configure(template)
        if scope == "episode":
            self.banks = [template.copy() for _ in range(self.num_slots)]

    def set_sentences(self, pattern: str, sentences: Sequence[Sentence | None]) -> None:
        """Replace the sentences of ``pattern`` in the template bank (and in every slot's bank).

        ``sentences`` fill the first slots, the rest are emptied; every sentence counts as
        original (never replaced by RPP+ unless configured). Only after :meth:`set_capacity`.
        """
        if not self.masked:
            raise RuntimeError("set_sentences() needs growing banks; call set_capacity() first")
        if pattern not in SENTENCE_PATTERNS:
            raise ValueError(f"unknown sentence pattern {pattern!r}; expected one of {SENTENCE_PATTERNS}")
        cap = self.template.capacity[pattern]
        if len(sentences) > cap:
            raise ValueError(f"{len(sentences)} {pattern} sentences do not fit the capacity {cap}")
        padded = [*sentences, *([None] * (cap - len(sentences)))]
        for bank in {id(b): b for b in [self.template, *self.banks]}.values():
            for i, s in enumerate(padded):
                bank.put(pattern, i, None)
                bank.put(pattern, i, s, original=True)
        for slot in range(self.num_slots):
            if self.user[slot] >= 0:
                self._write_obs(slot)

    def bank_of(self, slot: int = 0) -> SlotBank:
        """The bank slot ``slot`` reads its sentences from (shared by all slots in global scope)."""
        return self.banks[slot]

    def put_sentence(
        self, slot: int, pattern: str, index: int, sentence: Sentence, prior: float = 0.0, refresh: bool = True
    ) -> None:
        """Place a new sentence in ``slot``'s bank.

        ``refresh`` rewrites the bank block (statistics, mask bits) of every slot's observation;
        the refiner passes False and :meth:`refresh_masks` once after placing a whole batch.
        """
        self.banks[slot].put(pattern, index, sentence, prior)
        if refresh:
            self.refresh_masks()

    def refresh_masks(self) -> None:
        """Rewrite the bank block (slot statistics and mask bits) of every started slot's observation."""
        if self.masked:
            start = self.obs_dim - self._n_stats - self._n_onehot
            rows: dict[int, npt.NDArray[np.float32]] = {}  # global scope: one bank, one row
            for slot in np.flatnonzero(self.user >= 0).tolist():
                key = id(self.banks[slot])
                if key not in rows:
                    rows[key] = self._bank_row(slot)
                self._obs[slot, start:] = rows[key]

    def action_masks(self, slots: Sequence[int] | None = None) -> npt.NDArray[np.bool_]:
        """``bool[len(slots), sum(nvec)]``: per slot, which action indices of each pattern are valid.

        The history pattern is always fully valid; a sentence pattern's index is valid when its
        slot holds a sentence. All True for fixed banks.
        """
        slots = range(self.num_slots) if slots is None else slots
        return np.stack([self._mask_row(s) for s in slots]) if len(slots) else np.zeros((0, self._n_onehot), bool)

    def _mask_row(self, slot: int) -> npt.NDArray[np.bool_]:
        bank = self.banks[slot]
        return np.concatenate([np.ones(self.nvec[0], dtype=bool), *(bank.mask(p) for p in SENTENCE_PATTERNS)])

    def _bank_row(self, slot: int) -> npt.NDArray[np.float32]:
        """The RPP+ block of an observation: slot statistics, then the mask bits (see ``RefineWrapper``)."""
        bank = self.banks[slot]
        means = [np.nan_to_num(bank.means(p), nan=0.0) for p in SENTENCE_PATTERNS]
        trials = [np.minimum(np.log1p(bank.count[p]) / TRIALS_SCALE, 1.0) for p in SENTENCE_PATTERNS]
        return np.concatenate([*means, *trials, self._mask_row(slot)]).astype(np.float32)

    @property
    def stats_slice(self) -> slice | None:
        """Where the slot statistics sit in the observation (None without growing banks)."""
        if not self.masked:
            return None
        end = self.obs_dim - self._n_onehot
        return slice(end - self._n_stats, end)

    @property
    def _sentence_info(self) -> dict[str, list[SentenceInfo | None]]:
        """Slot 0's :class:`SentenceInfo` per pattern and action index (None: empty slot)."""
        return self.banks[0]._infos

    @property
    def mask_slice(self) -> slice | None:
        """Where the mask bits sit in the observation (None without growing banks)."""
        return slice(self.obs_dim - self._n_onehot, self.obs_dim) if self.masked else None

    # ---- episodes --------------------------------------------------------------------------

    def pool(self, split: str) -> npt.NDArray[np.int64]:
        if split not in self.bundle.pools:
            raise KeyError(f"unknown split {split!r}; choose one of {list(self.bundle.pools)}")
        return self.bundle.pools[split]

    def reset_slot(self, slot: int, rng: np.random.Generator, split: str, user_id: str | None = None) -> None:
        """Start a new episode in ``slot``: a user (drawn from ``split`` unless given) and candidates.

        In episode scope the slot's bank goes back to the template.
        """
        if user_id is not None:
            user = self.bundle.user_index(str(user_id), split)
        else:
            pool = self.pool(split)
            user = int(pool[rng.integers(len(pool))])
        bundle = self.bundle
        target = int(bundle.split.targets[user])
        negatives = self._negatives(rng, user)
        self.user[slot] = user
        self.candidates[slot, 0] = target
        self.candidates[slot, 1:] = negatives
        self.round[slot] = 0
        available = len(bundle.split.history(user))
        if self.config.history_mode == "increment":
            self.hist_len[slot] = min(self.init_history, available)
        else:
            self.hist_len[slot] = 0
        self.prev_action[slot] = -1
        self.prev_scores[slot] = 0.0
        self.top_emb[slot] = 0.0
        self.last_info[slot] = None
        if self.masked and self.scope == "episode":
            self.banks[slot] = self.template.copy()
        self._write_obs(slot)

    def reset_info(self, slot: int, split: str) -> dict[str, Any]:
        """What ``reset`` reports about the episode in ``slot``."""
        ds = self.bundle.dataset
        return {
            "user_id": ds.user_ids[int(self.user[slot])],
            "split": split,
            "history_len": int(self.hist_len[slot]),
            "candidates": [ds.item_ids[j] for j in self.candidates[slot]],
        }

    def _negatives(self, rng: np.random.Generator, user: int) -> npt.NDArray[np.int32]:
        from rpp_gym.data.protocol import sample_negatives

        return sample_negatives(rng, self.bundle.seen(user), self.bundle.negative_pool, self.config.n_candidates - 1)

    # ---- observation -----------------------------------------------------------------------

    def observations(self, slots: Sequence[int] | npt.NDArray[np.integer] | None = None) -> npt.NDArray[np.float32]:
        """The documented observation vector of each slot (see ``RPPEnv``'s docstring)."""
        return self._obs.copy() if slots is None else self._obs[np.asarray(slots)]

    def _write_obs(self, slot: int, bank_block: bool = True) -> None:
        """Refresh one slot's row of the observation matrix after a reset or a step.

        ``bank_block=False`` leaves the RPP+ block (slot statistics, mask) to one
        :meth:`refresh_masks` after the whole batch, which builds it once per bank.
        """
        row = self._obs[slot]
        d = self.bundle.user_emb.shape[1]
        n = self._n_onehot
        row[:d] = self.bundle.user_emb[self.user[slot]]
        row[d] = self.round[slot] / self.config.rounds
        row[d + 1] = min(self.hist_len[slot] / max(self.config.history_cap, 1), 1.0)
        one_hot = row[d + 2 : d + 2 + n]
        one_hot[:] = 0.0
        if self.prev_action[slot, 0] >= 0:
            one_hot[self._onehot_offsets + self.prev_action[slot]] = 1.0
        row[d + 2 + n : d + 6 + n] = self.prev_scores[slot]
        row[d + 6 + n : 2 * d + 6 + n] = np.clip(self.top_emb[slot], -1.0, 1.0)
        if self.masked and bank_block:
            row[2 * d + 6 + n :] = self._bank_row(slot)

    # ---- the step ----------------------------------------------------------------------------

    def check_actions(self, actions: Any, rows: int) -> npt.NDArray[np.int64]:
        """Validate ``rows`` joint actions; a ``ValueError`` names the bad value and the space."""
        arr = np.asarray(actions)
        if arr.size == rows * 4 and arr.ndim <= 2:
            arr = arr.reshape(rows, 4)
        integral = np.issubdtype(arr.dtype, np.integer) or (
            np.issubdtype(arr.dtype, np.floating) and bool(np.all(arr == np.round(arr)))
        )
        if arr.shape != (rows, 4) or not integral:
            raise ValueError(
                f"action {actions!r} must be {'4' if rows == 1 else f'{rows}x4'} integers "
                f"(history, role, reasoning, format) within MultiDiscrete({self.nvec.tolist()})"
            )
        arr = arr.astype(np.int64)
        bad = (arr < 0) | (arr >= self.nvec)
        if bad.any():
            slot, j = map(int, np.argwhere(bad)[0])
            raise ValueError(
                f"action {arr[slot].tolist()} is outside the action space: {PATTERNS[j]}={arr[slot, j]} "
                f"but that pattern has {self.nvec[j]} choices (0..{self.nvec[j] - 1})"
            )
        return arr

    def _apply_masks(self, acts: npt.NDArray[np.int64], slots: Sequence[int]) -> npt.NDArray[np.bool_]:
        """Handle actions on empty slots per :attr:`invalid_action`; returns which were replaced."""
        replaced = np.zeros(acts.shape, dtype=bool)
        if not self.masked:
            return replaced
        for i, slot in enumerate(slots):
            bank = self.banks[slot]
            for j, p in enumerate(SENTENCE_PATTERNS, 1):
                if bank.sentences[p][acts[i, j]] is not None:
                    continue
                if self.invalid_action == "raise":
                    valid = np.flatnonzero(bank.mask(p)).tolist()
                    raise ValueError(
                        f"action {acts[i].tolist()} chooses {p} slot {acts[i, j]}, which is empty (valid {p} "
                        f"slots now: {valid}); sample with action_masks() (MaskablePPO does) or pass "
                        "invalid_action='default'"
                    )
                acts[i, j] = int(self.bank.defaults[p])
                replaced[i, j] = True
        return replaced

    def draw(self, rng: np.random.Generator, rows: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The randomness of one step: each row's shown candidate order and its request seed.

        ``step`` calls this when not given ``draws``; callers that need to ask a counterfactual
        question before stepping draw first and pass the same draws to both.
        """
        orders = np.argsort(rng.random((rows, self.config.n_candidates)), axis=1)
        seeds = rng.integers(0, 2**63, size=rows)
        return orders, seeds

    def step(
        self,
        actions: Any,
        rng: np.random.Generator | None,
        slots: Sequence[int] | None = None,
        *,
        commit: bool = True,
        draws: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None,
    ) -> StepOutcome:
        """Step the given slots (default: all) with one joint action each; one backend batch.

        Args:
            actions: One joint action per slot.
            rng: Draws the shown candidate order and the request seeds (unused when ``draws``
                is given).
            slots: Which slots to step.
            commit: False scores the actions without changing any episode state (a
                counterfactual question, e.g. for per-agent credit).
            draws: ``(orders, seeds)`` from an earlier outcome, to show the candidates in the
                same order with the same request seeds.
        """
        slots = list(range(self.num_slots)) if slots is None else list(slots)
        acts = self.check_actions(actions, len(slots))
        if (self.user[slots] < 0).any():
            raise RuntimeError("step() called before reset(); call reset() first")
        if (self.round[slots] >= self.config.rounds).any():
            raise RuntimeError("the episode is over; call reset() before step()")
        replaced = self._apply_masks(acts, slots)

        n = self.config.n_candidates
        titles = self.bundle.dataset.item_text
        # 1. compose (nothing is committed until the backend has answered)
        new_len = np.empty(len(slots), dtype=np.int64)
        shown = np.empty((len(slots), n), dtype=np.int32)
        if draws is None:
            if rng is None:
                raise ValueError("step() needs an rng unless draws=(orders, seeds) are given")
            draws = self.draw(rng, len(slots))
        orders, seeds = draws
        requests, prompts, hist_titles_all, cand_titles_all = [], [], [], []
        for i, slot in enumerate(slots):
            user = int(self.user[slot])
            history = self.bundle.split.history(user)
            choice = self.history_choices[acts[i, 0]]
            if self.config.history_mode == "increment":
                length = min(int(self.hist_len[slot]) + choice, len(history))
            else:
                length = min(choice, len(history))
            new_len[i] = length
            shown_hist = history[len(history) - length :] if length else history[:0]
            shown[i] = self.candidates[slot, orders[i]]
            hist_titles = [titles[j] for j in shown_hist]
            cand_titles = [titles[j] for j in shown[i]]
            bank = self.banks[slot]
            if bank.version == 0:  # untouched: the original bank's indices
                r, q, f = (int(a) for a in acts[i, 1:])
                prompt = render_prompt(self.bank, r, q, f, hist_titles, cand_titles)
            else:
                chosen = {p: bank.sentence(p, int(acts[i, j])) for j, p in enumerate(SENTENCE_PATTERNS, 1)}
                prompt = render_prompt(bank.prompt_bank(chosen), 0, 0, 0, hist_titles, cand_titles)
            ctx = RankingContext(
                user=user,
                history=shown_hist,
                candidates=shown[i],
                role=bank.info("role", int(acts[i, 1])),
                reasoning=bank.info("reasoning", int(acts[i, 2])),
                format=bank.info("format", int(acts[i, 3])),
                prompt_chars=len(prompt),
            )
            requests.append(LLMRequest.from_prompt(prompt, self.sampling, int(seeds[i]), ctx))
            prompts.append(prompt)
            hist_titles_all.append(hist_titles)
            cand_titles_all.append(cand_titles)

        # 2. the LLM, one batch (the only slow part; an error leaves every slot untouched)
        completions = self.backend.generate(requests)
        if len(completions) != len(requests):
            from rpp_gym.llm.base import LLMBackendError

            raise LLMBackendError(f"backend returned {len(completions)} completions for {len(requests)} requests")

        # 3. parse and score, then commit
        rewards = np.zeros(len(slots))
        infos: list[dict[str, Any]] = []
        k = self.config.k
        for i, slot in enumerate(slots):
            comp = completions[i]
            parsed = parse_ranking(comp.text, cand_titles_all[i], hist_titles_all[i])
            order = parsed.order
            if self.config.unranked == "append":
                order = complete_ranking(order, n)
            target_pos = int(np.flatnonzero(orders[i] == 0)[0])
            rank = order.index(target_pos) if target_pos in order else None
            metrics = metrics_for_rank(rank, ks=tuple(sorted({1, 5, 10, k})))
            reward = float(metrics[f"ndcg@{k}"])
            rewards[i] = reward
            ranked_items = [int(shown[i, p]) for p in order]
            if not commit:
                infos.append({"metrics": metrics, "answer": comp.text, "parse": parsed.as_dict()})
                continue
            self.hist_len[slot] = new_len[i]
            self.round[slot] += 1
            self.prev_action[slot] = acts[i]
            self.prev_scores[slot] = (reward, metrics["ndcg@1"], metrics["ndcg@5"], float(parsed.success))
            top = ranked_items[:TOP_ITEMS]
            self.top_emb[slot] = self.bundle.item_vecs[top].mean(axis=0) if top else 0.0
            bank = self.banks[slot]
            picked = [bank.sentence(p, int(acts[i, j])) for j, p in enumerate(SENTENCE_PATTERNS, 1)]
            if self.masked and self.update_stats:
                for j, p in enumerate(SENTENCE_PATTERNS, 1):
                    bank.record(p, int(acts[i, j]), reward)
            self._write_obs(slot, bank_block=False)  # refresh_masks() below writes it
            info = {
                "user_id": self.bundle.dataset.user_ids[int(self.user[slot])],
                "round": int(self.round[slot]),
                "history_len": int(new_len[i]),
                "action": {p: int(a) for p, a in zip(PATTERNS, acts[i], strict=True)},
                "sentences": {
                    p: s.text.replace("{n}", str(n)) for p, s in zip(SENTENCE_PATTERNS, picked, strict=True)
                },
                "sentence_ids": {p: s.id for p, s in zip(SENTENCE_PATTERNS, picked, strict=True)},
                "prompt": prompts[i],
                "answer": comp.text,
                "candidates": [self.bundle.dataset.item_ids[j] for j in shown[i]],
                "ranking": [self.bundle.dataset.item_ids[j] for j in ranked_items],
                "target": self.bundle.dataset.item_ids[int(self.candidates[slot, 0])],
                "target_pos": target_pos,
                "target_rank": -1 if rank is None else rank,
                "metrics": metrics,
                "parse": parsed.as_dict(),
                "llm": {
                    "finish_reason": comp.finish_reason,
                    "prompt_tokens": comp.prompt_tokens,
                    "completion_tokens": comp.completion_tokens,
                    "latency_s": comp.latency_s,
                    "cached": comp.cached,
                },
            }
            if self.masked:
                info["empty_slot_replaced"] = {p: bool(replaced[i, j]) for j, p in enumerate(PATTERNS) if j}
            stats = getattr(self.backend, "stats", None)
            if callable(stats):
                info["cache"] = stats()
            self.last_info[slot] = info
            infos.append(info)
        if commit and self.refiner is not None:
            self.refiner.after_step(self, slots, acts, rewards, infos)
        if commit and self.masked:  # the running means moved (in global scope, for every slot)
            self.refresh_masks()
        terminated = self.round[slots] >= self.config.rounds
        return StepOutcome(rewards, terminated, infos, (orders, seeds))

    def close(self) -> None:
        if self.owns_refiner and self.refiner is not None:
            self.refiner.close()
        if self.owns_backend:
            self.backend.close()
