"""Parse an LLM's answer into a ranking of candidate positions. Never raises.

The answer is read line by line. Bullets and markdown (``-``, ``*``, ``**``, ``#``, ``>``) are
stripped; a leading number (``3.``, ``3)``, ``3:``, ``[3]``, ``Rank 3:``) followed by text is a
rank ordinal and the text names the candidate; a number alone (``3``, ``3.``, ``[3]``) is a
1-based candidate index. Titles match when their normalized forms (:func:`normalize_title`) are
equal, or when one contains the other as whole words and the shorter side has at least 4
characters; the match that starts earliest in the line wins, then the longest. A line with
several items separated by commas, ``;`` or ``>`` (``3, 1, 2`` or ``Heat, Casino``) is split,
and so is a numbered list written on one line (``1. Heat 2. Casino``); a short label before a
colon (``Answer: 3, 1, 2``) is skipped. A numbered last line that stops mid-title (the answer ran
out of tokens) is matched by prefix. When no line names a candidate, candidate titles found
anywhere in the text are ranked by first appearance (prose answers). Repeated candidates are
kept at their first occurrence and counted as duplicates.

Lines that name no candidate are counted: ``echoed_history`` (a history title),
``hallucinated`` (an item-like line: a short numbered/bulleted line, or one ending in a year),
``out_of_range`` (an index outside ``1..n``) or ``unknown_lines`` (prose, headers, preamble, a
numbered line whose title was cut off).

>>> cands = ["Toy Story (1995)", "Heat (1995)", "Matrix, The (1999)"]
>>> r = parse_ranking("Here you go:\\n1. The Matrix\\n2. Toy Story (1995)\\n3. Toy Story", cands)
>>> r.order, r.duplicates, r.unknown_lines, r.complete
((2, 0), 1, 1, False)
>>> complete_ranking(r.order, len(cands))
(2, 0, 1)
>>> parse_ranking("[2]\\n[3]\\n[1]", cands).order
(1, 2, 0)
>>> parse_ranking("2, 3, 1", cands).order
(1, 2, 0)
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ParseResult", "complete_ranking", "normalize_title", "parse_ranking"]


@dataclass(frozen=True)
class ParseResult:
    """A parsed ranking and what the parser saw on the way.

    Attributes:
        order: Candidate positions (0-based, in the order shown in the prompt), best first,
            each at most once.
        recognized: Distinct candidates recognized (``len(order)``).
        duplicates: Mentions of a candidate that was already ranked.
        unknown_lines: Lines that are neither items nor candidates (prose, headers, preamble,
            a numbered line whose title is missing).
        hallucinated: Item-like lines or list entries that match no candidate nor history item.
        echoed_history: Lines or entries that name an item of the user's history.
        out_of_range: Candidate indices outside ``1..n``.
        n_candidates: Number of candidates in the prompt.
        prose_fallback: True if the ranking came from titles found anywhere in prose because
            no line named a candidate.
    """

    order: tuple[int, ...]
    recognized: int
    duplicates: int
    unknown_lines: int
    hallucinated: int
    echoed_history: int
    out_of_range: int
    n_candidates: int
    prose_fallback: bool = False

    @property
    def complete(self) -> bool:
        """Whether every candidate was ranked."""
        return self.n_candidates > 0 and self.recognized == self.n_candidates

    @property
    def success(self) -> bool:
        """Whether at least one candidate was ranked."""
        return self.recognized > 0

    def as_dict(self) -> dict[str, int | bool]:
        """The counters and flags (not the order), e.g. for an env's ``info``."""
        return {
            "recognized": self.recognized,
            "duplicates": self.duplicates,
            "unknown_lines": self.unknown_lines,
            "hallucinated": self.hallucinated,
            "echoed_history": self.echoed_history,
            "out_of_range": self.out_of_range,
            "n_candidates": self.n_candidates,
            "prose_fallback": self.prose_fallback,
            "complete": self.complete,
            "success": self.success,
        }


def complete_ranking(order: Sequence[int], n: int) -> tuple[int, ...]:
    """Append the unranked positions, in shown order, to a partial ranking.

    Invalid or repeated entries of ``order`` are dropped. This is an optional policy: the
    paper gives no credit for a target the LLM did not rank.

    >>> complete_ranking((3, 1), 5)
    (3, 1, 0, 2, 4)
    """
    seen: set[int] = set()
    out: list[int] = []
    for p in order:
        if isinstance(p, int) and 0 <= p < n and p not in seen:
            seen.add(p)
            out.append(p)
    out.extend(i for i in range(n) if i not in seen)
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Title normalization

_PARENS = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")
_PAREN_INNER = re.compile(r"\(([^()]*)\)")
_NON_WORD = re.compile(r"[\W_]+")
_TRAILING_ARTICLES = frozenset("the a an la le les l il el lo los las das der die gli un une des det den".split())
_LEADING_ARTICLES = frozenset({"the", "a", "an"})
_APOSTROPHES = str.maketrans("", "", "'\u2018\u2019`\u00b4")


def _normalize(text: str, drop_parens: bool = True) -> str:
    t = text.lower()
    if not t.isascii():
        t = "".join(c for c in unicodedata.normalize("NFKD", t) if not unicodedata.combining(c))
    if drop_parens and ("(" in t or "[" in t):
        t = _PARENS.sub(" ", t)
    t = t.translate(_APOSTROPHES)
    if "&" in t:
        t = t.replace("&", " and ")
    t = t.rstrip(' \t"!?.:;-')
    head, sep, tail = t.rpartition(",")
    if sep and tail.strip() in _TRAILING_ARTICLES:
        t = head
    words = [w for w in _NON_WORD.split(t) if w]
    if len(words) > 1 and words[0] in _LEADING_ARTICLES:
        del words[0]
    return " ".join(words)


@functools.lru_cache(maxsize=1 << 16)
def normalize_title(title: str) -> str:
    """A comparison key for item titles.

    Lowercases, drops parenthesized parts (years, alternative titles), accents, apostrophes and
    punctuation, moves a trailing article (``"Matrix, The"``) away and drops a leading English
    article.

    >>> normalize_title("Matrix, The (1999)"), normalize_title('"The Matrix"')
    ('matrix', 'matrix')
    >>> normalize_title("Schindler's List (1993)"), normalize_title("Cité des enfants perdus, La")
    ('schindlers list', 'cite des enfants perdus')
    """
    if not isinstance(title, str):
        return ""
    return _normalize(title)


# ---------------------------------------------------------------------------------------------
# Line syntax

_BULLETS = "-*\u2022+\u2013\u2014\u00b7"
_MARKUP = _BULLETS + "#>"
_PREFIX_WORDS = ("candidate", "rank", "number", "no.", "item", "option", "top")
_PREFIX_INITIALS = frozenset(w[0] for w in _PREFIX_WORDS) | frozenset(w[0].upper() for w in _PREFIX_WORDS)
_SEPARATORS = ".):]"
_REST_STRIP = " \t-\u2013\u2014:.)]"
_LIST_SEPARATORS = (";", ">", "\u2192")
_CONJUNCTIONS = ("and then ", "followed by ", "and ", "then ", "or ")
_YEAR = re.compile(r"\(\d{4}\)\s*$")
_INLINE_ORDINAL = re.compile(r"(?:^|\s)(\d{1,2})[.)](?=\s|$)")


def _strip_markup(line: str) -> tuple[str, bool]:
    """Remove bullets and emphasis; return the text and whether a bullet was present."""
    first = line[0]
    if first in _MARKUP:
        # "#" headers, "> " quotes and "**bold**" lines are decoration, not list bullets.
        bullet = first in _BULLETS and not line.startswith("**")
        line = line.lstrip(_MARKUP + " \t")
    else:
        bullet = False
    if "*" in line:
        line = line.replace("*", "")
    if "`" in line:
        line = line.replace("`", "")
    return line.strip(), bullet


def _leading_number(text: str) -> tuple[int | None, str, bool]:
    """Split ``"3. Title"`` into ``(3, "Title", False)``; ``"[3] X"`` gives ``(3, "X", True)``.

    Returns ``(None, text, False)`` when the text does not start with a number.
    """
    i = 0
    end = len(text)
    explicit = False
    head = text[:10].lower() if text[:1] in _PREFIX_INITIALS else ""
    for word in _PREFIX_WORDS if head else ():
        if head.startswith(word):
            j = len(word)
            while j < end and text[j] in " #:.":
                j += 1
            if j < end and "0" <= text[j] <= "9":
                i = j
                explicit = word == "candidate"
            break
    if i < end and text[i] in "[(":
        explicit = True
        i += 1
    j = i
    while j < end and "0" <= text[j] <= "9":
        j += 1
    if j == i or j - i > 6:
        return None, text, False
    k = j
    while k < end and text[k] in _SEPARATORS:
        k += 1
    if k == j and k < end and not text[k].isspace():
        return None, text, False  # "3D", "1995s": part of a word, not a number
    return int(text[i:j]), text[k:].lstrip(_REST_STRIP).rstrip(), explicit


def _blank(text: str) -> bool:
    return not any(c.isalnum() for c in text)


def _bare_number(text: str) -> int | None:
    """The number of ``"3"``, ``"[3]"``, ``"(3)."``, ``"#3"``, ``"Candidate 3"``, else None."""
    if not text:
        return None
    num, rest, _ = _leading_number(text.lstrip("#"))
    return num if num is not None and _blank(rest) else None


def _looks_like_item(text: str, prefixed: bool) -> bool:
    """A short title-like entry (counted as hallucinated) rather than prose."""
    if not text or text.endswith(":"):
        return False
    if _YEAR.search(text):
        return len(text) <= 120
    if not prefixed or text[0].islower() or text[-1] in ".!?":
        return False
    return text.count(" ") < 8


# ---------------------------------------------------------------------------------------------
# Matching


@functools.lru_cache(maxsize=1 << 16)
def _title_keys(title: str) -> tuple[str, ...]:
    """The normalized title, then normalized alternative titles given in parentheses.

    >>> _title_keys("City of Lost Children, The (Cit\u00e9 des enfants perdus, La) (1995)")
    ('city of lost children', 'cite des enfants perdus')
    """
    key = normalize_title(title)
    keys = [key] if key else []
    if "(" in title:
        for inner in _PAREN_INNER.findall(title):
            inner = inner.strip()
            if inner[:7].lower().startswith(("a.k.a.", "aka ")):
                inner = inner.partition(" ")[2] if inner[:4].lower() == "aka " else inner[6:]
            alias = normalize_title(inner)
            if len(alias) >= 4 and not alias.isdigit() and alias not in keys:
                keys.append(alias)
    return tuple(keys)


class _Titles:
    """Lookup structures for one list of titles (built once per call)."""

    __slots__ = ("entries", "exact", "norm")

    def __init__(self, titles: Sequence[str]) -> None:
        self.exact: dict[str, tuple[int, ...]] = {}
        self.norm: dict[str, tuple[int, ...]] = {}
        # (" key ", len(key), words in key, index, lowercased raw title)
        self.entries: list[tuple[str, int, int, int, str]] = []
        for i, title in enumerate(titles):
            if not isinstance(title, str):
                continue
            raw = title.strip()
            self.exact[raw] = (*self.exact.get(raw, ()), i)
            for key in _title_keys(raw):
                self.norm[key] = (*self.norm.get(key, ()), i)
                self.entries.append((f" {key} ", len(key), key.count(" ") + 1, i, raw.lower()))

    def lookup(self, text: str) -> tuple[int, ...] | None:
        """Candidates whose title equals ``text`` (raw, then normalized)."""
        hit = self.exact.get(text)
        if hit is None:
            hit = self.norm.get(normalize_title(text))
        return hit

    def fuzzy(self, text: str, loose: bool, used: set[int]) -> int | None:
        """Best containment match; ``loose`` allows long residual text (explanations).

        Titles shorter than 4 characters ("Up") only match inside a longer text when written
        exactly as listed (``"Up (2009)"``).
        """
        key = normalize_title(text)
        if not key:
            return None
        hit = self.norm.get(key)
        if hit is not None:
            return _first_unused(hit, used)
        padded = f" {key} "
        n_words = key.count(" ") + 1
        lowered = ""
        best: tuple[int, int, bool, int, int] | None = None
        for entry, length, words, i, raw in self.entries:
            if entry in padded:
                if length < 4:
                    lowered = lowered or text.lower()
                    if raw not in lowered:
                        continue
                if not loose and n_words - words > 3:
                    continue
                rank = (padded.index(entry), -length, i in used, 0, i)
            elif len(key) >= 4 and padded in entry:
                rank = (0, -len(key), i in used, length - len(key), i)
            else:
                continue
            if best is None or rank < best:
                best = rank
        return None if best is None else best[-1]

    def truncated(self, text: str, used: set[int]) -> int | None:
        """The shortest unused title that starts with ``text`` (at least 4 characters)."""
        key = normalize_title(text)
        if len(key) < 4:
            return None
        best: tuple[int, int] | None = None
        for entry, length, _, i, _ in self.entries:
            if i not in used and entry.startswith(f" {key}") and (best is None or (length, i) < best):
                best = (length, i)
        return None if best is None else best[1]


def _first_unused(indices: tuple[int, ...], used: set[int]) -> int:
    for i in indices:
        if i not in used:
            return i
    return indices[0]


class _Parser:
    """Mutable state of one ``parse_ranking`` call."""

    def __init__(self, candidates: Sequence[str], history: Sequence[str]) -> None:
        self.n = len(candidates)
        self.cands = _Titles(candidates)
        self._history_titles = history
        self._history: _Titles | None = None
        self.order: list[int] = []
        self.used: set[int] = set()
        self.duplicates = 0
        self.unknown = 0
        self.hallucinated = 0
        self.echoed = 0
        self.out_of_range = 0
        self.titled = False  # seen "ordinal + title" lines: a final bare ordinal is cut off
        self.at_last = False  # parsing the answer's last line (where truncation happens)

    # -- outcomes ---------------------------------------------------------------------------
    def add(self, index: int) -> None:
        if index in self.used:
            self.duplicates += 1
        else:
            self.used.add(index)
            self.order.append(index)

    def add_number(self, number: int) -> None:
        if 1 <= number <= self.n:
            self.add(number - 1)
        else:
            self.out_of_range += 1

    def unmatched(self, text: str, prefixed: bool) -> None:
        if self.is_history(text, prefixed):
            self.echoed += 1
        elif _looks_like_item(text, prefixed):
            self.hallucinated += 1
        else:
            self.unknown += 1

    def is_history(self, text: str, loose: bool) -> bool:
        if not self._history_titles or not text:
            return False
        if self._history is None:
            self._history = _Titles(self._history_titles)
        if self._history.lookup(text) is not None:
            return True
        return self._history.fuzzy(text, loose, set()) is not None

    # -- lines ------------------------------------------------------------------------------
    def line(self, raw: str, last: bool = False) -> None:
        text, bullet = _strip_markup(raw)
        if not text:
            return
        self.at_last = last
        if self.resolve(text, bullet, allow_label=True):
            return
        num, rest, _ = _leading_number(text)
        item = text if num is None else rest or text
        prefixed = bullet or num is not None
        if last and prefixed and not self.is_history(item, True):
            cut = self.cands.truncated(item, self.used)  # the answer ran out of tokens mid-title
            if cut is not None:
                self.add(cut)
                return
        self.unmatched(item, prefixed)

    def resolve(self, text: str, bullet: bool, allow_label: bool) -> bool:
        """Record what ``text`` names; False (and nothing recorded) if it names nothing."""
        num, rest, explicit = _leading_number(text)
        cands = self.cands
        # Fast path: "3", "3. Exact Title", "Exact Title".
        if num is not None:
            if _blank(rest):
                if self.titled and self.at_last and not explicit:
                    self.unknown += 1  # a final "3." after "1. Title" lines: cut off mid-entry
                else:
                    self.add_number(num)
                return True
            hit = cands.lookup(rest)
            if hit is not None:
                self.titled = True
                self.add(_first_unused(hit, self.used))
                return True
        hit = cands.lookup(text)  # also titles that start with a number ("12 Angry Men")
        if hit is not None:
            self.add(_first_unused(hit, self.used))
            return True
        if num is not None:
            inner = _bare_number(rest)
            if inner is not None:  # "1. [3]", "1: 3"
                self.add_number(inner)
                return True
        if allow_label and self.resolve_inline(text):
            return True
        if ("," in text or any(s in text for s in _LIST_SEPARATORS)) and self.resolve_list(text):
            return True
        prefixed = bullet or num is not None
        best = cands.fuzzy(rest if num is not None else text, prefixed, self.used)
        if best is None and num is not None:  # "2001: A Space Odyssey - a classic"
            best = cands.fuzzy(text, prefixed, self.used)
        if best is not None:
            self.titled = self.titled or num is not None
            self.add(best)
            return True
        if explicit and num is not None:  # "[3] garbled title": trust the index
            self.add_number(num)
            return True
        if allow_label and ":" in text:  # "Answer: Heat", "Final ranking: 3, 1, 2"
            label, _, tail = text.partition(":")
            if tail.strip() and label.count(" ") < 4:
                return self.resolve(tail.strip(), bullet, allow_label=False)
        return False

    def resolve_inline(self, text: str) -> bool:
        """Split ``"1. Heat 2. Casino 3. Up"`` (a list without line breaks) into its items."""
        found = [(m.start(1), int(m.group(1))) for m in _INLINE_ORDINAL.finditer(text)]
        if len(found) < 2 or any(b != a + 1 for (_, a), (_, b) in itertools.pairwise(found)):
            return False
        last = self.at_last
        starts = [start for start, _ in found]
        head = text[: starts[0]].strip()
        if head:
            self.line(head)
        ends = [*starts[1:], len(text)]
        for a, b in zip(starts, ends, strict=True):
            self.line(text[a:b].strip(), last=last and b == len(text))
        return True

    def resolve_list(self, text: str) -> bool:
        """Split a one-line list; commit only if at least two entries name candidates."""
        for sep in _LIST_SEPARATORS:
            if sep in text:
                text = text.replace(sep, ",")
        tokens: list[str] = []
        for token in text.split(","):
            token = token.strip()
            low = token[:12].lower()
            for conj in _CONJUNCTIONS:
                if low.startswith(conj):
                    token = token[len(conj) :].lstrip()
                    break
            if not token:
                continue
            if tokens and (
                normalize_title(token) in _TRAILING_ARTICLES or (token[0] == "(" and not normalize_title(token))
            ):
                tokens[-1] = f"{tokens[-1]}, {token}"  # "Matrix, The (1999)" split by the comma
            else:
                tokens.append(token)
        if len(tokens) < 2:
            return False
        if ":" in tokens[0]:
            label, _, tail = tokens[0].rpartition(":")
            if _bare_number(tail.strip()) is not None or label.count(" ") < 4:
                tokens[0] = tail.strip() or tokens[0]
        entries: list[tuple[str, int | str]] = []  # ("index", i) | ("number", k) | ("miss", text)
        cands = self.cands
        skip = False
        named = 0
        for t, token in enumerate(tokens):
            if skip:
                skip = False
                continue
            token, _ = _strip_markup(token)
            number = _bare_number(token)
            if number is not None:
                entries.append(("number", number))
                named += 1
                continue
            if t + 1 < len(tokens):  # a title with a comma inside ("Good, the Bad and the Ugly")
                hit = cands.lookup(f"{token}, {tokens[t + 1]}")
                if hit is not None:
                    entries.append(("index", _first_unused(hit, self.used)))
                    named += 1
                    skip = True
                    continue
            num, rest, _ = _leading_number(token)
            best = cands.fuzzy(rest if num is not None and rest else token, True, self.used)
            if best is None and num is not None:
                best = cands.fuzzy(token, True, self.used)
            if best is None:
                entries.append(("miss", rest if num is not None and rest else token))
            else:
                entries.append(("index", best))
                named += 1
        if named < 2:
            return False
        if not any(kind == "number" for kind, _ in entries):
            found = self.scan(text)
            if len(found) > len({value for kind, value in entries if kind == "index"}):
                # Sentences separated by commas ("X first, since Y and Z are weaker"): the
                # clauses are not items, so rank every title by where it appears.
                for i in found:
                    self.add(i)
                return True
        for kind, value in entries:
            if kind == "number":
                assert isinstance(value, int)
                self.add_number(value)
            elif kind == "index":
                assert isinstance(value, int)
                self.add(value)
            else:
                assert isinstance(value, str)
                self.unmatched(value, True)
        return True

    def scan(self, text: str) -> list[int]:
        """Candidates whose titles appear anywhere in ``text``, by first appearance."""
        normalized = f" {_normalize(text, drop_parens=False)} "
        lowered = text.lower()
        found: list[tuple[int, int, int]] = []
        for entry, length, _, i, raw in self.cands.entries:
            # Very short titles ("Up", "9") count only when written exactly as listed.
            if length < 4 and raw not in lowered:
                continue
            pos = normalized.find(entry)
            while pos >= 0:
                found.append((pos, -length, i))
                pos = normalized.find(entry, pos + 1)
        found.sort()
        order: list[int] = []
        claimed: list[tuple[int, int]] = []
        for pos, neg_length, i in found:
            if i in order or any(start <= pos < stop for start, stop in claimed):
                continue  # "Toy Story" inside an already found "Toy Story 2"
            claimed.append((pos, pos - neg_length + 1))
            order.append(i)
        return order


def parse_ranking(
    answer: str,
    candidate_titles: Sequence[str],
    history_titles: Sequence[str] = (),
) -> ParseResult:
    """Parse an answer into candidate positions, best first. Never raises.

    Args:
        answer: The LLM's text (``None`` or non-strings are treated as an empty answer).
        candidate_titles: The candidates in the order shown in the prompt.
        history_titles: The history shown in the prompt; lines naming them count as
            ``echoed_history`` instead of ``hallucinated``.

    Returns:
        The ranking and counters; ``order`` may be partial or empty.

    >>> cands = ["Heat (1995)", "Casino (1995)", "Se7en (1995)"]
    >>> r = parse_ranking("**Ranking:**\\n- Casino\\n- Avatar (2009)\\n- Goldeneye (1995)", cands, ["GoldenEye (1995)"])
    >>> r.order, r.hallucinated, r.echoed_history, r.unknown_lines
    ((1,), 1, 1, 1)
    >>> parse_ranking("I would pick Se7en first, then Heat.", cands).order
    (2, 0)
    """
    if not isinstance(answer, str):
        answer = "" if answer is None else str(answer)
    try:
        candidates = tuple(candidate_titles)
        history = tuple(history_titles or ())
    except TypeError:
        candidates, history = (), ()
    parser = _Parser(candidates, history)
    if parser.n:
        lines = [s for s in (raw.strip() for raw in answer.splitlines()) if s]
        for i, raw in enumerate(lines, 1 - len(lines)):
            parser.line(raw, last=i == 0)
        fallback = not parser.order and bool(answer.strip())
        if fallback:
            for i in parser.scan(answer):
                parser.add(i)
    else:
        fallback = False
    return ParseResult(
        order=tuple(parser.order),
        recognized=len(parser.order),
        duplicates=parser.duplicates,
        unknown_lines=parser.unknown,
        hallucinated=parser.hallucinated,
        echoed_history=parser.echoed,
        out_of_range=parser.out_of_range,
        n_candidates=parser.n,
        prose_fallback=fallback and bool(parser.order),
    )
