"""RPP+: an LLM rewrites the chosen sentences, and good rewrites become new actions.

The paper (Mao et al., TOIS 2025) describes RPP+'s refinement only at a high level; the design
here (slots, validation, replacement, scopes, the refine prompt) is this project's. The spec is
:class:`RefineWrapper`'s docstring; the parts:

* :class:`RefineConfig`: every knob, one frozen dataclass (``gym.make`` keyword arguments).
* :func:`render_refine_prompt`, :func:`clean_rewrite`, :func:`validate_rewrite`,
  :func:`refined_sentence`: pure functions from the chosen sentence to a new bank entry.
* :class:`BankRefiner`: the core's step hook; after every committed step it sends one batch of
  refine requests (all users of a vector env together) and places the accepted rewrites.
* :class:`RefineWrapper`, :func:`make_refine_env`, :func:`make_refine_vector_env`: how envs get
  it (the registered ``RPP-Plus-*`` ids use the last two).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt

from rpp_gym.envs.core import BANK_SCOPES, INVALID_ACTIONS, SlotBank
from rpp_gym.llm.base import LLMBackend, LLMRequest, SamplingParams
from rpp_gym.llm.sim_refine import RefineContext, refined_id
from rpp_gym.prompts.bank import SENTENCE_PATTERNS, Sentence, SentenceBank

if TYPE_CHECKING:
    from rpp_gym.envs.core import RPPCore
    from rpp_gym.envs.vector import RPPVectorEnv

__all__ = [
    "PURPOSES",
    "REJECT_REASONS",
    "BankRefiner",
    "RefineConfig",
    "RefineWrapper",
    "attach_refiner",
    "clean_rewrite",
    "load_slot_bank",
    "make_refine_env",
    "make_refine_vector_env",
    "refined_sentence",
    "render_refine_prompt",
    "save_bank",
    "to_template",
    "validate_rewrite",
]

REJECT_REASONS: tuple[str, ...] = (
    "empty",
    "multiline",
    "too_short",
    "too_long",
    "placeholder",
    "refusal",
    "looks_like_answer",
    "mentions_reward",
    "duplicate",
    "missing_candidate_count",
    "missing_ranking",
    "no_free_slot",
)
"""Why a rewrite is discarded: :func:`validate_rewrite`'s codes, in the order they are checked,
then ``no_free_slot`` (the pattern is full of sentences that may not be replaced)."""

PURPOSES: Mapping[str, str] = {
    "role": "it tells the assistant which role to play while it ranks the {items}.",
    "reasoning": "it tells the assistant how to reason about the user's history before it ranks the {items}.",
    "format": "it tells the assistant how to write its answer: a ranking of all {n} candidate {items} that a "
    "program will read.",
}
"""What each sentence pattern is for, as the refine prompt explains it."""

_RANKING = re.compile(r"\b(rank\w*|order\w*|sort\w*|priorit\w*)", re.IGNORECASE)
_REFUSAL = re.compile(r"^(i'?m sorry|i am sorry|sorry,|i can(?:no|')t|as an ai)", re.IGNORECASE)
_ANSWER = re.compile(r"^\s*(\[\d+\]|\d+\s*[.)]\s)")
_REWARD = re.compile(r"ndcg|\breward", re.IGNORECASE)
_COUNTED = (
    "candidate|item|option|title|choice|entr|line|number|movie|film|song|track|artist|album|game|book|product"
)
_LABEL = re.compile(
    r"^(?:new|rewritten|revised|improved|updated)?\s*(?:sentence|version|rewrite)\s*:\s*", re.IGNORECASE
)
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "`": "`", "*": "*"}


@dataclass(frozen=True)
class RefineConfig:
    """Everything that defines RPP+'s refinement (keyword arguments of ``RefineWrapper``)."""

    refiner: Any = None
    """The LLM that rewrites: a backend spec (``"sim"``, ``"llamacpp"``, ``"openai:URL?model=M"``)
    or a backend object; None uses the env's own backend. Specs get the env's response cache."""
    capacity: int | Mapping[str, int] = 16
    """Action indices per sentence pattern: one number (a bank already bigger keeps its size) or
    ``{pattern: slots}``. Ignored when ``bank_file`` is given (the file's capacity is used)."""
    scope: str = "episode"
    """``"episode"``: each user starts from the original banks; ``"global"``: one bank grows
    across users (and across the users of a vector env) and can be saved and reloaded."""
    every: int = 1
    """Ask for rewrites after every ``every``-th round of an episode; 0 never asks (a trained
    ``bank_file`` used as it is)."""
    patterns: tuple[str, ...] = ("role", "reasoning", "format")
    """Patterns whose chosen sentences are rewritten."""
    invalid_action: str = "raise"
    """Choosing an empty slot raises a ``ValueError`` (``"raise"``) or uses the pattern's default."""
    replace_originals: bool = False
    """When a pattern is full, original sentences may be replaced too (the default slot never is)."""
    min_trials: int = 3
    """A sentence is replaced only after it was chosen this often (a fair trial); until one qualifies,
    rewrites for a full pattern are discarded (``no_free_slot``)."""
    bank_file: str | None = None
    """Start from a bank saved with ``RefineWrapper.save_bank`` instead of the original bank."""
    update_stats: bool = True
    """Record every step's reward in the chosen slots' running means (shown in the observation).
    False keeps the bank's statistics as loaded too: with ``every=0`` and a global ``bank_file``,
    each user then sees exactly the trained bank, whatever the other users did (how a trained
    global bank is evaluated)."""
    temperature: float = 0.0
    """Refiner sampling temperature (0: greedy)."""
    max_tokens: int = 96
    """Generation cap of a rewrite."""
    min_chars: int = 12
    """Shortest accepted rewrite."""
    max_chars: int = 300
    """Longest accepted rewrite."""
    history_titles: int = 5
    """Most recent shown history items the refine prompt lists."""

    def __post_init__(self) -> None:
        if self.scope not in BANK_SCOPES:
            raise ValueError(f"scope={self.scope!r}; choose one of {BANK_SCOPES}")
        if self.invalid_action not in INVALID_ACTIONS:
            raise ValueError(f"invalid_action={self.invalid_action!r}; choose one of {INVALID_ACTIONS}")
        object.__setattr__(self, "patterns", tuple(self.patterns))
        unknown = [p for p in self.patterns if p not in SENTENCE_PATTERNS]
        if unknown:
            raise ValueError(f"patterns {unknown} cannot be refined; choose from {SENTENCE_PATTERNS}")
        if self.every < 0:
            raise ValueError(f"every={self.every} must be >= 0 (0: never refine)")
        if self.min_trials < 0:
            raise ValueError(f"min_trials={self.min_trials} must be >= 0")
        if not 1 <= self.min_chars <= self.max_chars:
            raise ValueError(f"need 1 <= min_chars ({self.min_chars}) <= max_chars ({self.max_chars})")
        if isinstance(self.capacity, Mapping):
            object.__setattr__(self, "capacity", dict(self.capacity))


REFINE_KEYS: frozenset[str] = frozenset(f.name for f in fields(RefineConfig))
"""The keyword arguments that belong to :class:`RefineConfig` (the rest go to the env)."""


# ---- pure functions: prompt, cleaning, validation ---------------------------------------------


def render_refine_prompt(
    bank: SentenceBank,
    pattern: str,
    sentence: str,
    history_titles: Sequence[str],
    reward: float,
    k: int,
    n_candidates: int,
) -> str:
    """The refine prompt: the chosen sentence, its purpose, the user's recent items, the reward.

    >>> from rpp_gym.prompts.bank import load_bank
    >>> print(render_refine_prompt(load_bank("movie"), "role", "Act as a film expert.", ["Heat (1995)"], 0.5, 10, 10))
    You are improving one sentence of a prompt that asks an assistant to rank 10 candidate movies for a user.
    What the sentence is for: it tells the assistant which role to play while it ranks the movies.
    The movies the user watched most recently: Heat (1995).
    With this sentence, the movie the user chose next scored NDCG@10 = 0.50 (1.00 is best, 0.00 means ranked too low).
    <BLANKLINE>
    Sentence: Act as a film expert.
    <BLANKLINE>
    Rewrite the sentence so that the ranking suits this user better. Reply with the new sentence only, on one \
line, without quotes or explanations.
    """
    items, item = bank.item_plural, bank.item_noun
    purpose = PURPOSES[pattern].format(items=items, n=n_candidates)
    history = ", ".join(history_titles) if history_titles else "none are shown"
    keep = f" It must still ask for a ranking of all {n_candidates} candidates." if pattern == "format" else ""
    return "\n".join(
        [
            f"You are improving one sentence of a prompt that asks an assistant to rank {n_candidates} candidate "
            f"{items} for a user.",
            f"What the sentence is for: {purpose}",
            f"The {items} the user {bank.history_verb} most recently: {history}.",
            f"With this sentence, the {item} the user chose next scored NDCG@{k} = {reward:.2f} (1.00 is best, "
            "0.00 means ranked too low).",
            "",
            f"Sentence: {sentence}",
            "",
            f"Rewrite the sentence so that the ranking suits this user better.{keep} Reply with the new sentence "
            "only, on one line, without quotes or explanations.",
        ]
    )


def clean_rewrite(text: str) -> str:
    """The sentence in an LLM's answer: first line that is not a preamble, labels and quotes removed.

    >>> clean_rewrite('Sure! Here is the rewritten sentence:\\n\\n"Act as a film critic."\\nThis is better.')
    'Act as a film critic.'
    >>> clean_rewrite("New sentence: Think about my latest movies.")
    'Think about my latest movies.'
    >>> clean_rewrite("  ")
    ''
    """
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    lines = [line for line in lines if not line.endswith(":")]
    if not lines:
        return ""
    line = _LABEL.sub("", lines[0]).strip()
    while len(line) >= 2 and _QUOTES.get(line[0]) == line[-1]:
        line = line[1:-1].strip()
    return line


def _norm(text: str) -> str:
    return " ".join(text.casefold().split()).rstrip(" .!\"'")


def validate_rewrite(
    pattern: str,
    text: str,
    bank: SentenceBank | Sequence[Sentence | str | None],
    n_candidates: int,
    *,
    min_chars: int = 12,
    max_chars: int = 300,
) -> str | None:
    """Why a rewrite cannot join the bank, or None when it can.

    Checked in order (the codes of :data:`REJECT_REASONS`): ``empty``; ``multiline``;
    ``too_short`` / ``too_long`` (``min_chars`` / ``max_chars``); ``placeholder`` (braces: the
    bank's own placeholders are filled in before the LLM sees a sentence); ``refusal`` ("I'm
    sorry", "As an AI"); ``looks_like_answer`` (starts like a ranking, ``1.`` or ``[1]``);
    ``mentions_reward`` (NDCG or the reward: the refine prompt's words, meaningless to the
    ranker); ``duplicate`` (equal, ignoring case, spacing and final punctuation, to a sentence of
    the pattern as the prompt shows it); and for ``format`` sentences, which must keep asking for
    a ranking of every candidate: ``missing_candidate_count`` (``all N`` or ``N <things>``, e.g.
    "10 candidates" or "10 movies", with N = ``n_candidates`` in digits) and
    ``missing_ranking`` (a word such as rank, order, sort or priority).

    Args:
        pattern: ``"role"``, ``"reasoning"`` or ``"format"``.
        text: The rewrite as the LLM wrote it (the candidate count as a number).
        bank: The bank, or the pattern's current sentences (None entries are empty slots).
        n_candidates: Candidates per ranking (what ``{n}`` stands for).
        min_chars: Shortest accepted rewrite.
        max_chars: Longest accepted rewrite.

    >>> from rpp_gym.prompts.bank import load_bank
    >>> bank = load_bank("movie")
    >>> validate_rewrite("format", "Rank all 10 candidates, one per line, best first.", bank, 10) is None
    True
    >>> validate_rewrite("format", "Rank all the candidates, one per line.", bank, 10)
    'missing_candidate_count'
    >>> validate_rewrite("role", "act as a seasoned film expert", bank, 10)
    'duplicate'
    """
    if pattern not in SENTENCE_PATTERNS:
        raise ValueError(f"unknown sentence pattern {pattern!r}; expected one of {SENTENCE_PATTERNS}")
    s = text.strip()
    if not s:
        return "empty"
    if "\n" in s:
        return "multiline"
    if len(s) < min_chars:
        return "too_short"
    if len(s) > max_chars:
        return "too_long"
    if "{" in s or "}" in s:
        return "placeholder"
    if _REFUSAL.match(s):
        return "refusal"
    if _ANSWER.match(s):
        return "looks_like_answer"
    if _REWARD.search(s):
        return "mentions_reward"
    existing = bank.sentences(pattern) if isinstance(bank, SentenceBank) else bank
    key, n = _norm(s), str(n_candidates)
    for other in existing:
        other_text = other.text if isinstance(other, Sentence) else other
        if other_text is not None and _norm(other_text.replace("{n}", n)) == key:
            return "duplicate"
    if pattern == "format":
        nouns = _COUNTED
        if isinstance(bank, SentenceBank):
            nouns = "|".join([re.escape(bank.item_noun), re.escape(bank.item_plural), _COUNTED])
        counted = rf"\ball\s+{n}(?!\d)|(?<![\d@.]){n}\s+(?:[\w-]+\s+)?(?:{nouns})"
        if not re.search(counted, s, re.IGNORECASE):
            return "missing_candidate_count"
        if not _RANKING.search(s):
            return "missing_ranking"
    return None


def to_template(text: str, n_candidates: int) -> str:
    """The bank form of a rewrite: the candidate count becomes ``{n}`` again.

    >>> to_template("Rank all 10 candidates, not 100.", 10)
    'Rank all {n} candidates, not 100.'
    """
    return re.sub(rf"(?<!\d){n_candidates}(?!\d)", "{n}", text)


def refined_sentence(parent: Sentence, text: str, n_candidates: int) -> Sentence:
    """The bank entry of an accepted rewrite: id ``<parent id>~<hash>``, the parent's traits.

    >>> from rpp_gym.prompts.bank import load_bank
    >>> s = refined_sentence(load_bank("movie").format[0], "Rank all 10 candidates, best first.", 10)
    >>> s.id, s.text, s.traits["layout"]
    ('numbered~9f6f58', 'Rank all {n} candidates, best first.', 'index_title')
    """
    template = to_template(text, n_candidates)
    return Sentence(refined_id(parent.id, template), template, parent.traits)


def save_bank(env: Any, path: str | Path) -> Path:
    """Write the bank of an RPP+ env (single, vector or PettingZoo view; slot 0's) for ``bank_file=``.

    In global scope this is the bank every user shares, with its running means: train with it,
    save it, and evaluate with ``bank_file=path`` (``every=0`` to keep it fixed).
    """
    core = getattr(env, "core", None) or env.unwrapped.core
    if not core.masked:
        raise ValueError("this env has fixed banks (no RPP+ refinement); there is no grown bank to save")
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(core.bank_of(0).to_dict(), indent=1, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:  # a crash leaves the previous file or the new one, never half of one
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def freeze_bank(env: Any) -> None:
    """Stop an RPP+ env's bank from changing: no more rewrites and no more statistics updates.

    What a learner that grew a global bank does before it trains on it (``Args.refine_steps``):
    from then on the env is the one the bank will be evaluated in (``bank_file=..., every=0,
    update_stats=False``), observations included. Idempotent.
    """
    core = getattr(env, "core", None) or env.unwrapped.core
    if not core.masked or core.refiner is None:
        raise ValueError("this env has fixed banks (no RPP+ refinement); there is no bank to freeze")
    if core.update_stats:  # not frozen yet (callers may ask after every step)
        core.refiner.freeze()
        core.update_stats = False


def load_slot_bank(path: str | Path) -> SlotBank:
    """Read a bank written by :func:`save_bank` (or :meth:`RefineWrapper.save_bank`)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"bank file {str(path)!r} not found; write one with RefineWrapper.save_bank(path)")
    return SlotBank.from_dict(json.loads(path.read_text(encoding="utf-8")), str(path))


# ---- the step hook -------------------------------------------------------------------------


@dataclass
class _Job:
    row: int
    slot: int
    pattern: str
    index: int
    parent: Sentence
    prior: float


class BankRefiner:
    """The core's step hook: rewrite the chosen sentences, validate, place the good ones.

    Args:
        config: The refinement settings.
        backend: The refiner LLM.
        owns_backend: Close ``backend`` when the env closes.

    Attributes:
        totals: Counters over the refiner's life: ``asked``, ``accepted`` and one per reason of
            :data:`REJECT_REASONS`.
    """

    def __init__(self, config: RefineConfig, backend: LLMBackend, owns_backend: bool = False) -> None:
        self.config = config
        self.backend = backend
        self.owns_backend = owns_backend
        self.sampling = SamplingParams(temperature=config.temperature, max_tokens=config.max_tokens)
        self.totals: Counter[str] = Counter()

    def freeze(self) -> None:
        """Ask for no more rewrites (``every=0`` from now on). See :func:`freeze_bank`."""
        self.config = dataclasses.replace(self.config, every=0, update_stats=False)

    def after_step(
        self,
        core: RPPCore,
        slots: list[int],
        actions: npt.NDArray[np.int64],
        rewards: npt.NDArray[np.float64],
        infos: list[dict[str, Any]],
    ) -> None:
        """Refine the sentences the stepped slots chose; one backend batch for all of them."""
        cfg = self.config
        jobs: list[_Job] = []
        for row, slot in enumerate(slots):
            infos[row]["refine"] = {
                "asked": 0,
                "accepted": 0,
                "rejected": dict.fromkeys(REJECT_REASONS, 0),
                "rewrites": [],
            }
            rnd = int(core.round[slot])
            finished = rnd >= core.config.rounds
            if cfg.every == 0 or rnd % cfg.every or (finished and core.scope == "episode"):
                continue  # in episode scope a rewrite after the last round could never be used
            bank = core.bank_of(slot)
            for pattern in cfg.patterns:
                index = int(actions[row, SENTENCE_PATTERNS.index(pattern) + 1])
                parent = bank.sentence(pattern, index)
                if parent.text.strip():  # the empty "no role" has nothing to rewrite
                    jobs.append(_Job(row, slot, pattern, index, parent, float(bank.means(pattern)[index])))
        if not jobs:
            return
        requests = [self._request(core, job, float(rewards[job.row])) for job in jobs]
        completions = self.backend.generate(requests)
        n = core.config.n_candidates
        for job, completion in zip(jobs, completions, strict=True):
            report = infos[job.row]["refine"]
            text = clean_rewrite(completion.text)
            bank = core.bank_of(job.slot)
            current = bank.sentences[job.pattern]
            reason = validate_rewrite(job.pattern, text, current, n, min_chars=cfg.min_chars, max_chars=cfg.max_chars)
            entry: dict[str, Any] = {"pattern": job.pattern, "parent": job.parent.id, "text": text, "reason": reason}
            if reason is None:
                sentence = refined_sentence(job.parent, text, n)
                target: int | None = None
                if any(s is not None and s.id == sentence.id for s in current):
                    reason = "duplicate"
                else:
                    target = bank.victim(job.pattern, cfg.replace_originals, cfg.min_trials)
                    reason = "no_free_slot" if target is None else None
                if target is not None:
                    old = current[target]
                    core.put_sentence(job.slot, job.pattern, target, sentence, job.prior, refresh=False)
                    entry.update(id=sentence.id, slot=target, replaced=None if old is None else old.id)
                    report["accepted"] += 1
                    self.totals["accepted"] += 1
                entry["reason"] = reason
            if reason is not None:
                report["rejected"][reason] += 1
                self.totals[reason] += 1
            report["asked"] += 1
            report["rewrites"].append(entry)
        self.totals["asked"] += len(jobs)

    def _request(self, core: RPPCore, job: _Job, reward: float) -> LLMRequest:
        n = core.config.n_candidates
        user = int(core.user[job.slot])
        rnd = int(core.round[job.slot])
        history = core.bundle.split.history(user)
        shown = int(core.hist_len[job.slot])
        recent = history[len(history) - shown :][-self.config.history_titles :] if shown else history[:0]
        titles = [core.bundle.dataset.item_text[j] for j in recent]
        parent_text = job.parent.text.replace("{n}", str(n))
        ctx = RefineContext(
            pattern=job.pattern,
            parent=core.bank_of(job.slot).info(job.pattern, job.index),
            parent_text=parent_text,
            user=user,
            round=rnd,
            reward=reward,
            n_candidates=n,
        )
        prompt = render_refine_prompt(core.bank, job.pattern, parent_text, titles, reward, core.config.k, n)
        seed = zlib.crc32(f"{job.pattern}\x1f{job.parent.id}\x1f{user}\x1f{rnd}".encode())
        return LLMRequest.from_prompt(prompt, self.sampling, seed, ctx)

    def close(self) -> None:
        if self.owns_backend:
            self.backend.close()


def attach_refiner(core: RPPCore, config: RefineConfig) -> BankRefiner:
    """Give ``core`` growing banks and a :class:`BankRefiner` (before its first reset).

    The env views must re-read their spaces afterwards (``env.refresh_spaces()``).
    """
    from rpp_gym.llm.spec import make_backend

    template = None
    if config.bank_file is not None:
        template = load_slot_bank(config.bank_file)
        if template.base != core.bank:
            raise ValueError(
                f"bank file {config.bank_file!r} grew from the {template.base.domain!r} bank "
                f"{template.base.source or ''} but this env uses a different {core.bank.domain!r} bank; "
                "load it into an env with the same bank="
            )
    core.set_capacity(config.capacity, config.scope, template)
    core.invalid_action = config.invalid_action
    core.update_stats = config.update_stats
    if config.refiner is None:
        refiner = BankRefiner(config, core.backend)
    else:
        backend = make_backend(config.refiner, world=core.bundle, cache=core.config.cache)
        refiner = BankRefiner(config, backend, owns_backend=isinstance(config.refiner, str))
    core.refiner = refiner
    core.owns_refiner = True
    return refiner


# ---- the wrapper and the entry points ----------------------------------------------------------


class RefineWrapper(gym.Wrapper[np.ndarray, np.ndarray, np.ndarray, np.ndarray]):
    """RPP+: after each step an LLM rewrites the chosen sentences; good rewrites become actions.

    This is this project's design (the paper describes RPP+ only at a high level).

    ## Description

    After the agents choose and the step is scored, the refiner LLM is asked, once per chosen
    sentence of ``patterns`` (not the empty "no role"), to rewrite it for this user. The refine
    prompt (:func:`render_refine_prompt`) shows the sentence, what its pattern is for, the
    user's most recent shown items and the reward just obtained. The answer is cleaned
    (:func:`clean_rewrite`) and validated (:func:`validate_rewrite`: non-empty, length bounds,
    not a duplicate, and a format sentence still asks for a ranking of all N candidates);
    invalid rewrites are discarded and counted. An accepted rewrite is a new sentence with id
    ``<parent id>~<hash of its text>`` and its parent's traits.

    A rewrite goes to the first empty slot of its pattern; when the pattern is full it replaces
    the slot with the lowest running mean reward (ties: the oldest) among those chosen at least
    ``min_trials`` times, never an original sentence (unless ``replace_originals``) and never
    the pattern's default; when none qualifies it is discarded (``no_free_slot``). A slot's
    running mean is the mean reward of the steps that chose it; a new rewrite starts from its
    parent's mean as a prior until it is chosen.

    The banks live in the env's :class:`~rpp_gym.envs.core.RPPCore` and the refiner is the
    core's step hook, so the single env, the vector env (the refine requests of all users form
    one backend batch per step) and the PettingZoo view behave the same. Wrapping configures
    the wrapped env in place (``env.unwrapped`` is RPP+ afterwards); wrap it before its first
    reset.

    ## Action Space

    ``MultiDiscrete([n_history, cap_role, cap_reasoning, cap_format])`` (``[3, 16, 16, 16]`` with
    the movie bank and ``capacity=16``); the original sentences keep their indices. Choosing an
    empty slot raises a ``ValueError`` (``invalid_action="raise"``) or uses the pattern's
    default (``"default"``). :meth:`action_masks` is the flat mask ``bool[sum(nvec)]``
    (sb3-contrib's ``MaskablePPO``); the vector env's ``action_masks()`` has one row per env.

    ## Observation Space

    The plain env's features, then the bank's statistics, then the same mask as 0/1 floats:
    ``Box(-1, 1, (2d + 6 + 2 * sum(nvec) + 2 * S,), float32)`` with ``S = sum(nvec[1:])`` the
    sentence slots, 268 with the defaults. ``obs[core.stats_slice]`` holds, for every sentence
    slot (role, then reasoning, then format), its running mean reward (its ``prior``, the
    parent's mean, until chosen; 0 when empty), then its trials ``min(log(1 + n) / log(1001),
    1)``; in episode scope they are this user's own, in global scope every user's. The mask is
    ``obs[core.mask_slice]`` (the last ``sum(nvec)`` entries). Without the statistics a policy
    could not tell a good rewrite from a bad one in the slots it has not tried: they are what a
    learned policy needs to exploit refinement. The previous-action one-hot is sized by the
    action space.

    ## Scope

    ``scope="episode"``: every episode (user) starts from the original banks (or ``bank_file``);
    in a vector env each user has its own bank. No rewrite is asked after an episode's last
    round. ``scope="global"``: one bank, shared by all users of a vector env, grows across
    episodes; :meth:`save_bank` writes it (with the running means) and ``bank_file=`` starts a
    new env from it (``every=0`` uses it without further rewrites). :meth:`grown_bank` is it as
    a plain bank for any RPP env (``gym.make("RPP-MovieLens-Sim-v0", bank=...)``).

    ## Rewards

    Unchanged (NDCG@k of the held-out item); the refiner's answers do not enter the reward.

    ## Info

    The step info gains ``refine``: ``asked``, ``accepted``, ``rejected`` (a count per code of
    :data:`REJECT_REASONS`) and ``rewrites`` (per request: ``pattern``, ``parent`` id, cleaned
    ``text``, ``reason`` (None when accepted) and, when placed, ``id``, ``slot`` and
    ``replaced``). ``empty_slot_replaced`` says which patterns' empty slots were mapped to the
    default. ``refiner.totals`` counts over the env's life.

    ## The simulator

    With the ``sim`` backend the rewrite text is deterministic, and a refined sentence's effect
    (per-user direction, a quality term that can help or hurt, strictness) is derived from its
    parent and its id as documented in :mod:`rpp_gym.llm.sim_refine`.

    ## Arguments

    ``env`` (an RPP env, not reset yet), then :class:`RefineConfig` as keyword arguments:
    ``refiner`` (None: the env's backend), ``capacity``, ``scope``, ``every``, ``patterns``,
    ``invalid_action``, ``replace_originals``, ``min_trials``, ``bank_file``, ``temperature``, ``max_tokens``,
    ``min_chars``, ``max_chars``, ``history_titles``. ``gym.make("RPP-Plus-MovieLens-Sim-v0",
    scope="global", rounds=5)`` takes them alongside the env's.

    ## Version History

    * v0: initial release.
    """

    def __init__(self, env: gym.Env[Any, Any], config: RefineConfig | None = None, **kwargs: Any) -> None:
        if config is not None and kwargs:
            raise TypeError("pass either config= or RefineConfig keyword arguments, not both")
        super().__init__(env)
        self.config = config if config is not None else RefineConfig(**kwargs)
        base = env.unwrapped
        core = getattr(base, "core", None)
        if core is None or not hasattr(base, "refresh_spaces"):
            raise TypeError(f"RefineWrapper wraps an RPP env (RPPEnv); got {type(base).__name__}")
        self.refiner = attach_refiner(core, self.config)
        base.refresh_spaces()
        self._action_space = None  # read the refreshed spaces through the wrapped env
        self._observation_space = None

    @property
    def core(self) -> RPPCore:
        """The wrapped env's batched core (banks, masks, backend)."""
        return self.env.unwrapped.core  # type: ignore[attr-defined]

    @property
    def slot_bank(self) -> SlotBank:
        """The current bank: sentences per slot with their running means."""
        return self.core.bank_of(0)

    def action_masks(self) -> npt.NDArray[np.bool_]:
        """Flat validity mask ``bool[sum(nvec)]``: which action indices hold a sentence now."""
        return self.core.action_masks([0])[0]

    def grown_bank(self) -> SentenceBank:
        """The current sentences as a plain bank, usable as ``bank=`` of any RPP env."""
        return self.slot_bank.bank()

    def save_bank(self, path: str | Path) -> Path:
        """Write the current bank (sentences, slots, running means) for ``bank_file=``."""
        return save_bank(self, path)


def _split(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    refine = {k: v for k, v in kwargs.items() if k in REFINE_KEYS}
    return refine, {k: v for k, v in kwargs.items() if k not in REFINE_KEYS}


def make_refine_env(render_mode: str | None = None, backend: LLMBackend | None = None, **kwargs: Any) -> RefineWrapper:
    """Entry point of the ``RPP-Plus-*`` ids: an ``RPPEnv`` in a :class:`RefineWrapper`.

    Args:
        render_mode: As ``RPPEnv``.
        backend: As ``RPPEnv``.
        **kwargs: :class:`RefineConfig` fields and :class:`~rpp_gym.envs.config.RPPConfig`
            fields; a name that is neither is a ``TypeError``.
    """
    from rpp_gym.envs.rpp_env import RPPEnv

    refine, env_kwargs = _split(kwargs)
    return RefineWrapper(RPPEnv(render_mode=render_mode, backend=backend, **env_kwargs), **refine)


def make_refine_vector_env(num_envs: int = 1, **kwargs: Any) -> RPPVectorEnv:
    """Vector entry point of the ``RPP-Plus-*`` ids: an ``RPPVectorEnv`` with growing banks.

    Args:
        num_envs: Users stepped together; their rankings form one backend batch per step, and
            their refine requests one more.
        **kwargs: :class:`RefineConfig` fields and ``RPPVectorEnv``'s arguments.

    The returned env's ``core.refiner`` is the :class:`BankRefiner`; in global scope
    :func:`save_bank` writes the grown bank.
    """
    from rpp_gym.envs.vector import RPPVectorEnv

    refine, env_kwargs = _split(kwargs)
    config = RefineConfig(**refine)
    env = RPPVectorEnv(num_envs=num_envs, **env_kwargs)
    attach_refiner(env.core, config)
    env.refresh_spaces()
    return env
