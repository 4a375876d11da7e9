"""Bring your own data: a minimal file format, and a Python API, for any domain.

The format is a folder with two files and an optional third::

    my-data/
      interactions.csv   user,item,timestamp      one row per interaction
      items.csv          item,text                one row per item: the text the LLM reads
      dataset.json       {"name": "my-shop", "domain": "music"}     optional

- Both tables start with a header row. ``interactions`` needs the columns ``user``,
  ``item`` and ``timestamp`` (also accepted: ``user_id``, ``item_id``, ``time``); ``items``
  needs ``item`` (or ``item_id``) and ``text`` (or ``title``, ``name``). Other columns (a
  rating, a genre) are ignored, in any order.
- ``.csv`` files are comma separated with standard CSV quoting (quote a text that holds a
  comma: ``"Crosby, Stills & Nash"``); ``.tsv`` files are tab separated with no quoting at all
  (a ``"`` is an ordinary character). Both are utf-8 (a byte-order mark is fine).
- ``timestamp`` only has to order a user's interactions: a number (Unix seconds,
  milliseconds, a step counter) or an ISO 8601 date or date-time (``2024-05-01``,
  ``2024-05-01T12:30:00Z``); one kind per file.
- ``dataset.json`` may set ``name`` (default ``"custom"``), ``domain`` (the sentence bank the
  env uses unless ``bank=`` is given: ``"movie"``, ``"music"``, ``"game"``, or the name of
  your own bank; default ``"movie"``, with a warning) and ``description``.

The canonical rules of :mod:`rpp_gym.data.loaders` apply: each user's items are ordered by
timestamp (ties by item order), a repeated (user, item) pair is kept at its first time,
interactions on items missing from ``items`` and items with an empty text are dropped with
a warning. Users with few interactions stay in the dataset but only those with at least
``min_interactions`` (5) are eligible for the train/valid/test pools; the env's pools take
600 users by default, so pass ``pool_sizes=`` for a small dataset.

Use it with ``gym.make("RPP-Custom-v0", data_dir="my-data")`` (add ``llm="sim"`` for the
simulated ranker), or build a :class:`~rpp_gym.data.dataset.Dataset` in Python with
:func:`from_interactions` and pass ``dataset=``:

>>> ds = from_interactions(
...     [("ann", "a", 1), ("ann", "b", 2), ("bob", "b", 1), ("bob", "c", 5), ("bob", "a", 3)],
...     {"a": "Abbey Road", "b": "Blue Train", "c": "Kind of Blue"},
...     name="jazz", domain="music",
... )
>>> ds.user_ids, [ds.item_text[i] for i in ds.sequence(1)]
(('ann', 'bob'), ['Blue Train', 'Abbey Road', 'Kind of Blue'])
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from rpp_gym.data.dataset import Dataset
from rpp_gym.data.loaders import _build, _header_columns, _named_columns, _require, _text_columns

__all__ = [
    "INTERACTION_COLUMNS",
    "ITEM_COLUMNS",
    "METADATA_KEYS",
    "from_interactions",
    "load_custom",
    "read_metadata",
    "write_custom",
]

INTERACTION_COLUMNS: dict[str, tuple[str, ...]] = {
    "user": ("user", "user_id"),
    "item": ("item", "item_id"),
    "timestamp": ("timestamp", "time"),
}
"""Required columns of ``interactions.csv`` and the header names accepted for each."""

ITEM_COLUMNS: dict[str, tuple[str, ...]] = {"item": ("item", "item_id"), "text": ("text", "title", "name")}
"""Required columns of ``items.csv`` and the header names accepted for each."""

METADATA_KEYS: tuple[str, ...] = ("name", "domain", "description")
"""Keys ``dataset.json`` may hold; any other key is an error (a typo would otherwise be ignored)."""

_EXTENSIONS = {".csv": ",", ".tsv": "\t"}


def _table(folder: Path, stem: str) -> tuple[Path, str]:
    found = [folder / f"{stem}{ext}" for ext in _EXTENSIONS if (folder / f"{stem}{ext}").is_file()]
    if len(found) > 1:
        raise ValueError(f"{folder} holds both {found[0].name} and {found[1].name}; keep one of them")
    if not found:
        _require(
            folder / f"{stem}.csv",
            "see rpp_gym.data.custom for the format (interactions.csv: user,item,timestamp; items.csv: item,text)",
        )
    return found[0], _EXTENSIONS[found[0].suffix]


def _read(path: Path, sep: str, wanted: dict[str, tuple[str, ...]]) -> pd.DataFrame:
    header = _header_columns(path, sep, "utf-8")
    columns = _named_columns(path, header, wanted, sep)
    quoting = csv.QUOTE_MINIMAL if sep == "," else csv.QUOTE_NONE
    return _text_columns(path, columns, sep, "utf-8", quoting)


def _timestamps(values: pd.Series, where: str) -> npt.NDArray[np.float64]:
    """Numbers as they are; ISO 8601 dates as seconds since 1970. One kind per file."""
    stripped = values.str.strip()
    numbers = pd.to_numeric(stripped, errors="coerce")
    if numbers.notna().all():
        return numbers.to_numpy(dtype=np.float64)
    if numbers.notna().any():
        row = int(np.flatnonzero(numbers.isna().to_numpy())[0])
        raise ValueError(
            f"{where}: data row {row + 1} has timestamp {values.iloc[row]!r}, but other rows hold numbers; "
            "use numbers (or ISO 8601 dates) in the whole file"
        )
    dates = pd.to_datetime(stripped, errors="coerce", utc=True, format="ISO8601")
    bad = dates.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{where}: data row {row + 1} has timestamp {values.iloc[row]!r}, which is neither a number nor an "
            "ISO 8601 date (e.g. 1714557600 or 2024-05-01T10:00:00Z); fix that row"
        )
    return dates.to_numpy(dtype="datetime64[ns]").astype(np.int64) / 1e9


def read_metadata(folder: str | Path) -> dict[str, str]:
    """The ``dataset.json`` of a custom data folder (empty if there is none), validated.

    Raises:
        ValueError: The file is not a JSON object of strings with keys in :data:`METADATA_KEYS`.
    """
    path = Path(folder).expanduser() / "dataset.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f'{path} is not valid JSON ({e}); write e.g. {{"domain": "music"}}') from None
    if not isinstance(meta, dict):
        raise ValueError(f'{path} must hold a JSON object, e.g. {{"domain": "music"}}; got {type(meta).__name__}')
    unknown = sorted(set(meta) - set(METADATA_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; the keys are {list(METADATA_KEYS)}")
    for key, value in meta.items():
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{path}: {key!r} must be a non-empty string, got {value!r}")
    return {k: v.strip() for k, v in meta.items()}


def load_custom(
    directory: str | Path,
    name: str | None = None,
    domain: str | None = None,
    *,
    default_name: str = "custom",
    default_domain: str | None = None,
) -> Dataset:
    """Load a folder in the custom format (see this module's docstring).

    Args:
        directory: Folder with ``interactions.csv``/``.tsv``, ``items.csv``/``.tsv`` and
            optionally ``dataset.json``.
        name: Dataset name; overrides ``dataset.json``.
        domain: Sentence-bank domain; overrides ``dataset.json``.
        default_name: Name when neither ``name`` nor ``dataset.json`` gives one.
        default_domain: Domain when neither ``domain`` nor ``dataset.json`` gives one; None
            means ``"movie"`` with a warning that says how to choose.

    Returns:
        The canonical dataset.

    Raises:
        FileNotFoundError: A table is missing.
        ValueError: A table lacks a required column, is not utf-8, has an empty user or item,
            an unparseable timestamp, or ``dataset.json`` is invalid; the message names the
            file, the row and the fix.
    """
    folder = Path(directory).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; pass the folder that holds interactions.csv and items.csv")
    meta = read_metadata(folder)
    inter_path, inter_sep = _table(folder, "interactions")
    item_path, item_sep = _table(folder, "items")
    items = _read(item_path, item_sep, ITEM_COLUMNS)
    inter = _read(inter_path, inter_sep, INTERACTION_COLUMNS)
    if inter.empty:
        raise ValueError(f"{inter_path} holds no interactions (only a header?)")
    chosen = domain or meta.get("domain") or default_domain
    if chosen is None:
        warnings.warn(
            f"{folder}: no domain given, so prompts use the 'movie' sentence bank; set \"domain\" in "
            'dataset.json ("music", "game", ...) or pass bank= to the env',
            stacklevel=2,
        )
        chosen = "movie"
    return _from_columns(
        name or meta.get("name") or default_name,
        chosen,
        users=inter["user"],
        items=inter["item"],
        timestamps=_timestamps(inter["timestamp"], str(inter_path)),
        item_ids=items["item"].tolist(),
        item_text=items["text"].tolist(),
        item_file=item_path,
        inter_file=inter_path,
    )


def _from_columns(
    name: str,
    domain: str,
    *,
    users: Iterable[Any],
    items: Iterable[Any],
    timestamps: npt.ArrayLike,
    item_ids: list[str],
    item_text: list[str],
    item_file: Path,
    inter_file: Path,
) -> Dataset:
    ids = [str(i).strip() for i in item_ids]
    texts = [" ".join(str(t).split()) for t in item_text]
    textless = [i for i, t in zip(ids, texts, strict=True) if not t]
    if textless:
        warnings.warn(
            f"{item_file}: {len(textless)} item(s) have an empty text (e.g. {textless[0]!r}); they and their "
            "interactions are dropped, since the LLM could not read them",
            stacklevel=3,
        )
        keep = [k for k, t in enumerate(texts) if t]
        ids, texts = [ids[k] for k in keep], [texts[k] for k in keep]
    if not ids:
        raise ValueError(f"{item_file} holds no item with a text")
    return _build(
        name,
        domain,
        item_ref=ids,
        item_key=ids,
        item_text=texts,
        users=np.asarray([str(u) for u in users], dtype=object),
        items=np.asarray([str(i) for i in items], dtype=object),
        timestamps=np.asarray(timestamps, dtype=np.float64),
        item_file=item_file,
        inter_file=inter_file,
    )


def from_interactions(
    interactions: pd.DataFrame | Iterable[tuple[Any, Any, float]],
    item_text: Mapping[Any, str],
    *,
    name: str = "custom",
    domain: str = "movie",
) -> Dataset:
    """Build a :class:`~rpp_gym.data.dataset.Dataset` from (user, item, timestamp) triples and item texts.

    The canonical rules apply as for files (see this module's docstring). For data already
    in index form, :meth:`Dataset.from_sequences` is the lower-level alternative.

    Args:
        interactions: A DataFrame with columns ``user``, ``item``, ``timestamp``, or an
            iterable of ``(user, item, timestamp)``; ids may be any value (they become
            strings), timestamps any numbers that order a user's interactions.
        item_text: Item id -> the text the LLM reads.
        name: Dataset name.
        domain: Sentence-bank domain (``"movie"``, ``"music"``, ``"game"`` or your bank's).

    Returns:
        The canonical dataset.
    """
    if isinstance(interactions, pd.DataFrame):
        missing = [c for c in ("user", "item", "timestamp") if c not in interactions.columns]
        if missing:
            raise ValueError(f"interactions lack column(s) {missing}; it has {list(interactions.columns)}")
        users, items = interactions["user"].tolist(), interactions["item"].tolist()
        stamps = pd.to_numeric(interactions["timestamp"], errors="raise").to_numpy(dtype=np.float64)
    else:
        rows = list(interactions)
        bad = next((r for r in rows if len(r) != 3), None)
        if bad is not None:
            raise ValueError(f"each interaction must be (user, item, timestamp), got {bad!r}")
        users, items = [r[0] for r in rows], [r[1] for r in rows]
        stamps = np.asarray([r[2] for r in rows], dtype=np.float64)
    if not len(users):
        raise ValueError("no interactions given")
    return _from_columns(
        name,
        domain,
        users=users,
        items=items,
        timestamps=stamps,
        item_ids=[str(k) for k in item_text],
        item_text=list(item_text.values()),
        item_file=Path("<item_text>"),
        inter_file=Path("<interactions>"),
    )


def write_custom(dataset: Dataset, directory: str | Path, *, sep: str = ",") -> Path:
    """Write a dataset in the custom format; :func:`load_custom` reads it back equal.

    Timestamps are the positions in each user's sequence (0, 1, ...).

    Args:
        dataset: The dataset to write.
        directory: Folder to create or fill.
        sep: ``","`` (``.csv`` files) or ``"\\t"`` (``.tsv`` files).

    Returns:
        The folder.
    """
    ext = {",": ".csv", "\t": ".tsv"}.get(sep)
    if ext is None:
        raise ValueError(f"sep={sep!r}; use ',' (csv) or '\\t' (tsv)")
    folder = Path(directory).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    lengths = dataset.lengths()
    positions = np.arange(dataset.n_interactions) - np.repeat(dataset.offsets[:-1], lengths)
    users = np.repeat(np.asarray(dataset.user_ids, dtype=object), lengths)
    items = np.asarray(dataset.item_ids, dtype=object)[dataset.items]
    if sep == ",":
        pd.DataFrame({"user": users, "item": items, "timestamp": positions}).to_csv(
            folder / "interactions.csv", index=False
        )
        pd.DataFrame({"item": dataset.item_ids, "text": dataset.item_text}).to_csv(folder / "items.csv", index=False)
    else:  # no quoting in .tsv: written by hand, so quotes stay ordinary characters
        for field in (*dataset.user_ids, *dataset.item_ids, *dataset.item_text):
            if "\t" in field or "\n" in field or "\r" in field:
                raise ValueError(f"{field!r} holds a tab or a line break, which a .tsv file cannot hold; use sep=','")
        rows = (f"{u}\t{i}\t{t}\n" for u, i, t in zip(users, items, positions.tolist(), strict=True))
        (folder / "interactions.tsv").write_text("user\titem\ttimestamp\n" + "".join(rows), encoding="utf-8")
        rows = (f"{i}\t{t}\n" for i, t in zip(dataset.item_ids, dataset.item_text, strict=True))
        (folder / "items.tsv").write_text("item\ttext\n" + "".join(rows), encoding="utf-8")
    meta = {"name": dataset.name, "domain": dataset.domain}
    (folder / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return folder
