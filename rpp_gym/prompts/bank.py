"""Sentence banks: the choices each agent has, loaded from a JSON file per domain.

A prompt is built from four patterns (:data:`PATTERNS`). Three of them (role-playing,
reasoning guidance, output format) are sentences picked from a bank; the fourth (history
records) is a number of history items. A bank is data, never code: the packaged banks live in
``rpp_gym/prompts/banks/<domain>.json`` and users can load their own file with the same schema.

Schema (``schema_version`` 1)::

    {
      "schema_version": 1,
      "domain": "movie", "item_noun": "movie", "item_plural": "movies", "history_verb": "watched",
      "templates": {"history_intro": "...", "history_empty": "...",
                    "candidates_intro": "... {n} candidate movies ..."},
      "history": {"increments": [0, 1, 2], "lengths": [3, 10, 20]},
      "role": [{"id": "none", "text": "", "traits": {"kind": "none"}}, ...],
      "reasoning": [{"id": "...", "text": "...",
                     "traits": {"history_weight": "whole", "verbose": false}}, ...],
      "format": [{"id": "...", "text": "... all {n} candidates ...",
                  "traits": {"layout": "index_title", "strictness": 0.6}}, ...],
      "defaults": {"history": 0, "role": 0, "reasoning": 0, "format": 0}
    }

Texts may use ``{item}``, ``{items}`` and ``{history_verb}``; they are replaced by the bank's
``item_noun``, ``item_plural`` and ``history_verb`` when the file is loaded, so one wording can
serve several domains. ``{n}`` (the number of candidates) is filled in when a prompt is
rendered; ``candidates_intro`` and every format sentence must contain it.

Trait values are checked against :data:`TRAIT_VALUES`; the simulated LLM reads them.

>>> bank = load_bank("movie")
>>> bank.action_sizes()
(3, 5, 9, 5)
>>> bank.role[0].id, bank.role[0].text
('none', '')
>>> bank.reasoning[3].traits["history_weight"], bank.format[3].traits["layout"]
('recent', 'index')
>>> load_bank(bank_to_json(bank)) == bank  # a JSON string is accepted too
True
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "HISTORY_MODES",
    "PATTERNS",
    "SENTENCE_PATTERNS",
    "TRAIT_VALUES",
    "BankError",
    "Sentence",
    "SentenceBank",
    "available_banks",
    "bank_from_dict",
    "bank_to_dict",
    "bank_to_json",
    "load_bank",
]

PATTERNS: tuple[str, ...] = ("history", "role", "reasoning", "format")
"""The four prompt patterns, in the order of the joint action vector."""

SENTENCE_PATTERNS: tuple[str, ...] = ("role", "reasoning", "format")
"""The patterns whose choices are sentences (history chooses a number of items)."""

HISTORY_MODES: tuple[str, ...] = ("increment", "absolute")
"""``increment``: the history action adds 0, 1, 2... items per round (the paper's mode);
``absolute``: it picks a history length directly."""

SCHEMA_VERSION = 1

TRAIT_VALUES: Mapping[str, Mapping[str, tuple[Any, ...] | type]] = {
    "role": {"kind": ("none", "expert", "recommender", "ranker", "enthusiast", "other")},
    "reasoning": {
        "history_weight": ("none", "recent", "whole", "preference"),
        "verbose": bool,
    },
    "format": {
        "layout": ("index_title", "index", "title", "prose"),
        "strictness": float,
    },
}
"""Required traits per sentence pattern: a tuple lists the allowed values, ``bool`` means
true/false, ``float`` means a number in [0, 1]."""

TEMPLATE_KEYS: tuple[str, ...] = ("history_intro", "history_empty", "candidates_intro")
"""Templates every bank defines; ``candidates_intro`` must contain ``{n}``."""

_TOP_KEYS = frozenset(
    {
        "schema_version",
        "domain",
        "item_noun",
        "item_plural",
        "history_verb",
        "templates",
        "history",
        "role",
        "reasoning",
        "format",
        "defaults",
    }
)
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")
_BANKS_PACKAGE = "rpp_gym.prompts"
_BANKS_DIR = "banks"


class BankError(ValueError):
    """A sentence bank file or a sentence is invalid; the message names the file and the fix."""


class _FrozenMap(Mapping[str, Any]):
    """A read-only, hashable, picklable mapping (sentence traits, templates, defaults)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data = dict(data or {})

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return repr(self._data)

    def __getstate__(self) -> dict[str, Any]:
        return self._data

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._data = state


@dataclass(frozen=True)
class Sentence:
    """One choice of a sentence pattern.

    >>> Sentence("plain", "Rank them.", {"history_weight": "none", "verbose": False}).traits
    {'history_weight': 'none', 'verbose': False}
    """

    id: str
    """Stable identifier, unique within its pattern (used in logs, info dicts and plots)."""
    text: str
    """The sentence as the LLM sees it; may contain ``{n}`` (number of candidates)."""
    traits: Mapping[str, Any] = dataclasses.field(default_factory=_FrozenMap)
    """Structured description of the sentence (see :data:`TRAIT_VALUES`); read-only."""

    def __post_init__(self) -> None:
        if not isinstance(self.traits, _FrozenMap):
            object.__setattr__(self, "traits", _FrozenMap(self.traits))


@dataclass(frozen=True)
class SentenceBank:
    """All choices of the four patterns for one domain. Immutable and picklable.

    Build one with :func:`load_bank`; the constructor validates like the loader does.
    """

    domain: str
    """Domain name, e.g. ``"movie"``."""
    item_noun: str
    """Singular item noun, e.g. ``"movie"``."""
    item_plural: str
    """Plural item noun, e.g. ``"movies"``."""
    history_verb: str
    """Past-tense interaction verb, e.g. ``"watched"``."""
    templates: Mapping[str, str]
    """Fixed prompt text: ``history_intro``, ``history_empty``, ``candidates_intro``."""
    role: tuple[Sentence, ...]
    """Role-playing sentences; by convention index 0 is the empty "no role"."""
    reasoning: tuple[Sentence, ...]
    """Reasoning-guidance sentences."""
    format: tuple[Sentence, ...]
    """Output-format sentences; each contains ``{n}``."""
    history_increments: tuple[int, ...] = (0, 1, 2)
    """History choices in ``increment`` mode: items added to the shown history per round."""
    history_lengths: tuple[int, ...] = (3, 10, 20)
    """History choices in ``absolute`` mode: number of most recent items shown."""
    defaults: Mapping[str, int] = dataclasses.field(default_factory=_FrozenMap)
    """Per pattern, the index of the default choice (missing patterns default to 0)."""
    source: str = dataclasses.field(default="", compare=False, repr=False)
    """Where the bank came from (a file path), named in error messages; not compared."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "templates", _FrozenMap(self.templates))
        object.__setattr__(self, "defaults", _FrozenMap({p: 0 for p in PATTERNS} | dict(self.defaults)))
        for name in ("role", "reasoning", "format", "history_increments", "history_lengths"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _validate_bank(self, self.source or f"bank {self.domain!r}")

    def sentences(self, pattern: str) -> tuple[Sentence, ...]:
        """The sentences of one sentence pattern (``role``, ``reasoning`` or ``format``).

        Raises:
            ValueError: for ``history`` (it has numbers, see :meth:`history_choices`) or an
                unknown pattern.
        """
        if pattern in SENTENCE_PATTERNS:
            return getattr(self, pattern)
        if pattern == "history":
            raise ValueError(
                "the history pattern has no sentences; use bank.history_choices(mode) or bank.n_choices('history')"
            )
        raise ValueError(f"unknown pattern {pattern!r}; expected one of {PATTERNS}")

    def history_choices(self, mode: str = "increment") -> tuple[int, ...]:
        """The history choices for a history mode (see :data:`HISTORY_MODES`)."""
        if mode == "increment":
            return self.history_increments
        if mode == "absolute":
            return self.history_lengths
        raise ValueError(f"unknown history mode {mode!r}; expected one of {HISTORY_MODES}")

    def n_choices(self, pattern: str, history_mode: str = "increment") -> int:
        """Number of choices (actions) of one pattern."""
        if pattern == "history":
            return len(self.history_choices(history_mode))
        return len(self.sentences(pattern))

    def action_sizes(self, history_mode: str = "increment") -> tuple[int, ...]:
        """Choices per pattern in :data:`PATTERNS` order: a ``MultiDiscrete`` ``nvec``."""
        return tuple(self.n_choices(p, history_mode) for p in PATTERNS)

    def index_of(self, pattern: str, sentence_id: str) -> int:
        """Index of the sentence with id ``sentence_id`` in a sentence pattern."""
        for i, s in enumerate(self.sentences(pattern)):
            if s.id == sentence_id:
                return i
        ids = [s.id for s in self.sentences(pattern)]
        raise KeyError(f"no {pattern} sentence with id {sentence_id!r} in bank {self.domain!r}; ids: {ids}")

    def with_sentence(self, pattern: str, sentence: Sentence) -> SentenceBank:
        """A new bank with ``sentence`` appended to a sentence pattern (RPP+ rewrites).

        Raises:
            BankError: if the id already exists or the traits/text are invalid.

        >>> bank = load_bank("movie")
        >>> s = Sentence("expert_v2", "Act as a film critic.", bank.role[1].traits)
        >>> bigger = bank.with_sentence("role", s)
        >>> len(bigger.role), len(bank.role), bigger.role[-1].id
        (6, 5, 'expert_v2')
        """
        if not isinstance(sentence, Sentence):
            raise TypeError(f"with_sentence expects a Sentence, got {type(sentence).__name__}")
        grown = (*self.sentences(pattern), sentence)
        if pattern == "role":
            return dataclasses.replace(self, role=grown)
        if pattern == "reasoning":
            return dataclasses.replace(self, reasoning=grown)
        return dataclasses.replace(self, format=grown)


def _fail(where: str, problem: str, fix: str) -> BankError:
    return BankError(f"{where}: {problem}; {fix}")


def _check_placeholders(text: str, where: str, allowed: tuple[str, ...]) -> None:
    for ph in _PLACEHOLDER.findall(text):
        if ph not in allowed:
            raise _fail(
                where,
                f"unknown placeholder {ph} in {text!r}",
                f"only {', '.join(allowed) or 'no placeholders'} may remain after loading "
                "({item}, {items} and {history_verb} are filled in by the loader)",
            )


def _validate_sentence(pattern: str, s: Sentence, where: str) -> None:
    if not isinstance(s.id, str) or not s.id or any(c.isspace() for c in s.id):
        raise _fail(where, f"sentence id {s.id!r} is empty or contains whitespace", "use a short slug id")
    if not isinstance(s.text, str):
        raise _fail(where, f"text must be a string, got {type(s.text).__name__}", "quote the sentence")
    if not s.text.strip() and pattern != "role":
        raise _fail(where, "text is empty", "only a role sentence may be empty (the 'no role' choice)")
    _check_placeholders(s.text, where, ("{n}",))
    if pattern == "format" and "{n}" not in s.text:
        raise _fail(
            where,
            f"format sentence {s.text!r} lacks the {{n}} placeholder",
            "mention the number of candidates, e.g. 'Rank all {n} candidates ...'",
        )
    schema = TRAIT_VALUES[pattern]
    unknown = sorted(set(s.traits) - set(schema))
    if unknown:
        raise _fail(where, f"unknown trait(s) {unknown}", f"{pattern} traits are {sorted(schema)}")
    for key, allowed in schema.items():
        if key not in s.traits:
            raise _fail(where, f"missing trait {key!r}", f'add "{key}": {_describe(allowed)}')
        value = s.traits[key]
        if allowed is bool:
            ok = isinstance(value, bool)
        elif allowed is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0
        else:
            ok = isinstance(allowed, tuple) and value in allowed
        if not ok:
            raise _fail(where, f"trait {key}={value!r} is not allowed", f"use {_describe(allowed)}")
    if pattern == "role" and (s.traits["kind"] == "none") != (not s.text.strip()):
        raise _fail(
            where,
            f"role kind {s.traits['kind']!r} with text {s.text!r}",
            "the empty role must have kind 'none' and only it",
        )


def _describe(allowed: tuple[Any, ...] | type) -> str:
    if allowed is bool:
        return "true or false"
    if allowed is float:
        return "a number between 0 and 1"
    assert isinstance(allowed, tuple)
    return "one of " + ", ".join(json.dumps(v) for v in allowed)


def _validate_bank(bank: SentenceBank, where: str) -> None:
    for key in ("domain", "item_noun", "item_plural", "history_verb"):
        value = getattr(bank, key)
        if not isinstance(value, str) or not value.strip():
            raise _fail(where, f"{key} is {value!r}", f'set "{key}" to a non-empty string')
    missing = [k for k in TEMPLATE_KEYS if k not in bank.templates]
    if missing:
        raise _fail(where, f"templates {missing} are missing", f"define all of {list(TEMPLATE_KEYS)}")
    unknown = sorted(set(bank.templates) - set(TEMPLATE_KEYS))
    if unknown:
        raise _fail(where, f"unknown templates {unknown}", f"the templates are {list(TEMPLATE_KEYS)}")
    for key, text in bank.templates.items():
        if not isinstance(text, str) or not text.strip():
            raise _fail(f"{where}, template {key}", f"text is {text!r}", "write a non-empty sentence")
        _check_placeholders(text, f"{where}, template {key}", ("{n}",))
    if "{n}" not in bank.templates["candidates_intro"]:
        raise _fail(
            f"{where}, template candidates_intro",
            "the {n} placeholder is missing",
            "say how many candidates follow, e.g. 'Now there are {n} candidate movies ...'",
        )
    for pattern in SENTENCE_PATTERNS:
        sentences = getattr(bank, pattern)
        if not sentences:
            raise _fail(where, f"the {pattern} bank is empty", f"give at least one {pattern} sentence")
        seen: set[str] = set()
        for i, s in enumerate(sentences):
            at = f"{where}, {pattern}[{i}]" + (f" (id {s.id!r})" if isinstance(s, Sentence) else "")
            if not isinstance(s, Sentence):
                raise _fail(at, f"expected a Sentence, got {type(s).__name__}", "build it with Sentence(...)")
            if s.id in seen:
                raise _fail(at, f"duplicate id {s.id!r}", f"give every {pattern} sentence a unique id")
            seen.add(s.id)
            _validate_sentence(pattern, s, at)
    for name in ("history_increments", "history_lengths"):
        values = getattr(bank, name)
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
            raise _fail(where, f"{name} is {values!r}", "give a non-empty list of non-negative integers")
        if len(set(values)) != len(values):
            raise _fail(where, f"{name} {values!r} has repeated values", "list each choice once")
    unknown = sorted(set(bank.defaults) - set(PATTERNS))
    if unknown:
        raise _fail(where, f"defaults name unknown patterns {unknown}", f"the patterns are {list(PATTERNS)}")
    for pattern, index in bank.defaults.items():
        if pattern == "history":
            size = min(len(bank.history_increments), len(bank.history_lengths))
        else:
            size = len(getattr(bank, pattern))
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < size:
            raise _fail(where, f"defaults.{pattern}={index!r} is out of range", f"use an index in [0, {size})")


def _expect(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise _fail(where, f"key {key!r} is missing", f'add "{key}" (see the schema in rpp_gym.prompts.bank)')
    value = data[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise _fail(where, f"{key!r} must be a JSON {names}, got {type(value).__name__}", "fix its type")
    return value


def bank_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> SentenceBank:
    """Build and validate a bank from its JSON-like dict form.

    Args:
        data: The decoded JSON object (schema in this module's docstring).
        source: Where it came from, used in error messages (a file path).

    Raises:
        BankError: naming ``source``, the offending pattern/sentence and the fix.
    """
    if not isinstance(data, Mapping):
        raise _fail(source, f"expected a JSON object, got {type(data).__name__}", "wrap the bank in {...}")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise _fail(source, f"unknown key(s) {unknown}", f"allowed keys are {sorted(_TOP_KEYS)}")
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise _fail(source, f"schema_version {version!r} is not supported", f"use {SCHEMA_VERSION}")
    names = {k: _expect(data, k, str, source) for k in ("domain", "item_noun", "item_plural", "history_verb")}

    def fill(text: Any) -> Any:
        if not isinstance(text, str):
            return text
        return (
            text.replace("{items}", names["item_plural"])
            .replace("{item}", names["item_noun"])
            .replace("{history_verb}", names["history_verb"])
        )

    templates = _expect(data, "templates", Mapping, source)
    history = _expect(data, "history", Mapping, source)
    bad = sorted(set(history) - {"increments", "lengths"})
    if bad:
        raise _fail(source, f"unknown history key(s) {bad}", "history has 'increments' and 'lengths'")
    increments = _expect(history, "increments", list, f"{source}, history")
    lengths = _expect(history, "lengths", list, f"{source}, history")
    sentences: dict[str, tuple[Sentence, ...]] = {}
    for pattern in SENTENCE_PATTERNS:
        items = _expect(data, pattern, list, source)
        out = []
        for i, item in enumerate(items):
            where = f"{source}, {pattern}[{i}]"
            if not isinstance(item, Mapping):
                raise _fail(where, f"expected an object, got {type(item).__name__}", 'write {"id", "text", "traits"}')
            extra = sorted(set(item) - {"id", "text", "traits"})
            if extra:
                raise _fail(where, f"unknown key(s) {extra}", 'a sentence has only "id", "text" and "traits"')
            sid = _expect(item, "id", str, where)
            text = _expect(item, "text", str, f"{where} (id {sid!r})")
            traits = _expect(item, "traits", Mapping, f"{where} (id {sid!r})")
            out.append(Sentence(sid, fill(text), traits))
        sentences[pattern] = tuple(out)
    defaults = data.get("defaults", {})
    if not isinstance(defaults, Mapping):
        raise _fail(source, "'defaults' must be an object", 'write e.g. {"role": 0, "format": 0}')
    return SentenceBank(
        domain=names["domain"],
        item_noun=names["item_noun"],
        item_plural=names["item_plural"],
        history_verb=names["history_verb"],
        templates={k: fill(v) for k, v in templates.items()},
        role=sentences["role"],
        reasoning=sentences["reasoning"],
        format=sentences["format"],
        history_increments=tuple(increments),
        history_lengths=tuple(lengths),
        defaults=defaults,
        source=source,
    )


def bank_to_dict(bank: SentenceBank) -> dict[str, Any]:
    """The JSON-ready dict form of a bank (inverse of :func:`bank_from_dict`)."""

    def sentence(s: Sentence) -> dict[str, Any]:
        return {"id": s.id, "text": s.text, "traits": dict(s.traits)}

    return {
        "schema_version": SCHEMA_VERSION,
        "domain": bank.domain,
        "item_noun": bank.item_noun,
        "item_plural": bank.item_plural,
        "history_verb": bank.history_verb,
        "templates": dict(bank.templates),
        "history": {"increments": list(bank.history_increments), "lengths": list(bank.history_lengths)},
        **{p: [sentence(s) for s in bank.sentences(p)] for p in SENTENCE_PATTERNS},
        "defaults": dict(bank.defaults),
    }


def bank_to_json(bank: SentenceBank) -> str:
    """Serialize a bank; ``load_bank`` of the written file (or of the string) gives it back."""
    return json.dumps(bank_to_dict(bank), indent=2, ensure_ascii=False) + "\n"


def available_banks() -> tuple[str, ...]:
    """Domains with a packaged bank file, e.g. ``("movie",)``."""
    folder = resources.files(_BANKS_PACKAGE).joinpath(_BANKS_DIR)
    return tuple(sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json")))


@functools.cache
def _load_packaged(domain: str) -> SentenceBank:
    resource = resources.files(_BANKS_PACKAGE).joinpath(_BANKS_DIR, f"{domain}.json")
    return _from_text(resource.read_text(encoding="utf-8"), f"packaged bank {domain}.json")


def _from_text(text: str, source: str) -> SentenceBank:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise _fail(source, f"invalid JSON ({e})", "fix the syntax (a JSON linter shows where)") from None
    return bank_from_dict(data, source)


def load_bank(domain_or_path: str | Path) -> SentenceBank:
    """Load a packaged bank by domain name, or a user bank from a JSON file.

    Args:
        domain_or_path: A packaged domain (see :func:`available_banks`), a path to a JSON bank
            file, or the JSON text itself (as written by :func:`bank_to_json`).

    Raises:
        BankError: if the file is invalid (the message names the file, the pattern and the fix).
        FileNotFoundError: if the name is neither a packaged domain nor an existing file.
    """
    if isinstance(domain_or_path, str):
        if domain_or_path.lstrip().startswith("{"):
            return _from_text(domain_or_path, "<json string>")
        if domain_or_path in available_banks():
            return _load_packaged(domain_or_path)
    path = Path(domain_or_path).expanduser()
    if path.is_file():
        return _from_text(path.read_text(encoding="utf-8"), str(path))
    raise FileNotFoundError(
        f"no sentence bank {str(domain_or_path)!r}: it is neither a packaged domain "
        f"{list(available_banks())} nor an existing JSON file; pass a domain name or a path to a bank file"
    )
