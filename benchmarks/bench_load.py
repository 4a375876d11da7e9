"""Load time of the Last.fm, Games and custom loaders at the real datasets' sizes (issue 7).

The real files cannot be fetched on every machine (GroupLens is not reachable from the project's
machines, and Amazon's review data has no stable download), so each format is synthesized at the
published scale, with realistic field contents, and loaded through the same path as the real
data (``load_dataset(name, data_dir=...)``):

- HetRec Last.fm, like ``hetrec2011-lastfm-2k.zip``: 1,892 users, 17,632 artists, 92,834
  user-artist pairs, 186,479 tag assignments;
- RecBole Last.fm: the same data as ``lastfm.inter`` + ``lastfm.item`` + the tagging file;
- LLMRank Games, ``Games.{train,valid,test}.inter`` + ``Games.item``: 50,547 users, 16,859
  items, about 389,718 items in sequences (5 to 50 per user);
- Amazon 2018, ``Video_Games_5.json.gz`` + ``meta_Video_Games.json.gz``: 55,223 users, 17,408
  reviewed items, about 497,577 reviews with review texts, 84,893 products in the metadata;
- custom CSV, ``interactions.csv`` + ``items.csv`` at MovieLens-1M's size: 6,040 users, 3,883
  items, 1,000,209 rows (random draws: repeated pairs collapse, so fewer interactions).

For each: the parse (``load_dataset``, best of ``--repeat``), the first bundle build (parse,
leave-one-out, SVD features, processed cache written) and a warm bundle load (the processed
cache, as a new process sees it). MovieLens-1M from the asset cache, when present, is timed
the same way as a reference for how loaded the machine is.

Run: ``.venv/bin/python benchmarks/bench_load.py [--only lastfm,games-amazon] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rpp_gym.data.dataset import Dataset

WORDS = (
    "great fun game graphics story controller play price works fine kids love boring online "
    "multiplayer level boss quest worth money disc arrived quickly recommend classic sequel"
).split()


def _titles(rng: np.random.Generator, n: int, prefix: str) -> list[str]:
    words = np.array(WORDS)
    return [f"{prefix} {' '.join(rng.choice(words, size=rng.integers(1, 5)))} {i}".title() for i in range(n)]


def _popular(rng: np.random.Generator, n_items: int, size: int, skew: float = 0.6) -> np.ndarray:
    """Item draws with a long tail (a shuffled Zipf-like popularity, as in real interaction data)."""
    weights = rng.permutation(1.0 / np.arange(1, n_items + 1) ** skew)
    return rng.choice(n_items, size=size, p=weights / weights.sum())


def _distinct(rng: np.random.Generator, n_items: int, n: int) -> np.ndarray:
    """``n`` distinct popular items, in the order they were drawn."""
    picked: dict[int, None] = {}
    while len(picked) < n:
        picked.update(dict.fromkeys(_popular(rng, n_items, 2 * n + 5).tolist()))
    return np.fromiter(picked, dtype=np.int64, count=len(picked))[:n]


# --------------------------------------------------------------------------- synthesizers


def write_hetrec(folder: Path, seed: int = 0) -> None:
    """1,892 users, 17,632 artists, 92,834 user-artist pairs, 186,479 tag assignments."""
    rng = np.random.default_rng(seed)
    n_users, n_artists, n_pairs, n_tags = 1892, 17632, 92834, 186479
    folder.mkdir(parents=True, exist_ok=True)
    names = _titles(rng, n_artists, "The")
    (folder / "artists.dat").write_text(
        "id\tname\turl\tpictureURL\n"
        + "".join(
            f"{a + 1}\t{n}\thttp://www.last.fm/music/{n.replace(' ', '+')}\thttp://userserve-ak.last.fm/serve/252/{a}.jpg\n"
            for a, n in enumerate(names)
        ),
        encoding="utf-8",
    )
    counts = np.full(n_users, n_pairs // n_users)
    counts[: n_pairs - counts.sum()] += 1
    users, artists = [], []
    for u, c in enumerate(counts):
        users.append(np.full(c, u + 2))
        artists.append(_distinct(rng, n_artists, int(c)) + 1)
    user_col, artist_col = np.concatenate(users), np.concatenate(artists)
    weights = rng.lognormal(6, 1.5, size=len(user_col)).astype(np.int64) + 1
    (folder / "user_artists.dat").write_text(
        "userID\tartistID\tweight\n"
        + "".join(
            f"{u}\t{a}\t{w}\n" for u, a, w in zip(user_col.tolist(), artist_col.tolist(), weights.tolist(), strict=True)
        ),
        encoding="utf-8",
    )
    rows = rng.integers(len(user_col), size=n_tags)  # most tags are on listened artists ...
    tag_users, tag_artists = user_col[rows], artist_col[rows]
    other = rng.random(n_tags) < 0.3  # ... some on others
    tag_artists[other] = rng.integers(1, n_artists + 1, size=int(other.sum()))
    stamps = rng.integers(1_104_537_600_000, 1_304_208_000_000, size=n_tags)  # 2005-2011, milliseconds
    tag_ids = rng.integers(1, 11947, size=n_tags)
    (folder / "user_taggedartists-timestamps.dat").write_text(
        "userID\tartistID\ttagID\ttimestamp\n"
        + "".join(
            f"{u}\t{a}\t{t}\t{s}\n"
            for u, a, t, s in zip(
                tag_users.tolist(), tag_artists.tolist(), tag_ids.tolist(), stamps.tolist(), strict=True
            )
        ),
        encoding="utf-8",
    )


def write_recbole_lastfm(folder: Path, hetrec: Path) -> None:
    """RecBole's LastFM atomic files of the HetRec data, with the tagging file beside them."""
    folder.mkdir(parents=True, exist_ok=True)
    pairs = (hetrec / "user_artists.dat").read_text(encoding="utf-8").splitlines()[1:]
    (folder / "lastfm.inter").write_text(
        "user_id:token\tartist_id:token\tweight:float\ttag_value:token_seq\n"
        + "".join(f"{line}.0\trock indie\n" for line in pairs),
        encoding="utf-8",
    )
    artists = (hetrec / "artists.dat").read_text(encoding="utf-8").splitlines()[1:]
    (folder / "lastfm.item").write_text(
        "artist_id:token\tname:token\turl:token\tpicture_url:token\n" + "\n".join(artists) + "\n", encoding="utf-8"
    )
    shutil.copy(hetrec / "user_taggedartists-timestamps.dat", folder)


def _sequences(rng: np.random.Generator, n_users: int, n_items: int, total: int) -> list[np.ndarray]:
    """Per-user distinct item sequences, at least 5 long, summing to about ``total``."""
    extra = rng.geometric(1 / (total / n_users - 4), size=n_users) - 1
    lengths = np.minimum(5 + extra, 50)
    return [_distinct(rng, n_items, n) for n in lengths.tolist()]


def write_llmrank_games(folder: Path, seed: int = 0) -> None:
    """LLMRank's Games: 50,547 users, 16,859 items, ~389,718 interactions, capped at 50 per user."""
    rng = np.random.default_rng(seed)
    n_users, n_items, total = 50547, 16859, 389718
    folder.mkdir(parents=True, exist_ok=True)
    titles = _titles(rng, n_items, "Game")
    (folder / "Games.item").write_text(
        "item_id:token\ttitle:token_seq\n" + "".join(f"{i}\t{t} - PlayStation 4\n" for i, t in enumerate(titles)),
        encoding="utf-8",
    )
    head = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    train, valid, test = [head], [head], [head]
    for u, seq in enumerate(_sequences(rng, n_users, n_items, total)):
        s = [str(i) for i in seq.tolist()]
        valid.append(f"{u}\t{' '.join(s[:-1])}\t{s[-1]}\n")  # LLMRank's script: last item in .valid
        test.append(f"{u}\t{' '.join(s[:-2])}\t{s[-2]}\n")
        head_items = s[:-3]
        for i in range(1, len(head_items)):
            train.append(f"{u}\t{' '.join(head_items[:i])}\t{head_items[i]}\n")
        train.append(f"{u}\t{' '.join(head_items)}\t{s[-3]}\n")
    for name, rows in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"Games.{name}.inter").write_text("".join(rows), encoding="utf-8")


def write_amazon_games(folder: Path, seed: int = 0) -> None:
    """Amazon 2018 Video Games 5-core: 55,223 users, 17,408 items, 497,577 reviews; 84,893 products."""
    rng = np.random.default_rng(seed)
    n_users, n_items, n_reviews, n_products = 55223, 17408, 497577, 84893
    folder.mkdir(parents=True, exist_ok=True)
    asins = [f"B{int(x):09d}" for x in rng.choice(10**9, size=n_products, replace=False)]
    titles = _titles(rng, n_products, "Game")
    with gzip.open(folder / "meta_Video_Games.json.gz", "wt", encoding="utf-8", compresslevel=1) as f:
        for k, (asin, title) in enumerate(zip(asins, titles, strict=True)):
            meta = {
                "category": ["Video Games", "PC", "Games"],
                "tech1": "",
                "description": [" ".join(rng.choice(WORDS, size=40))],
                "fit": "",
                "title": "" if k % 50 == 0 else title,  # 2% without a title, as in the real file
                "also_buy": asins[k + 1 : k + 6],
                "image": [],
                "tech2": "",
                "brand": "Sega",
                "feature": ["Fun for the whole family"],
                "rank": ["2,349 in Video Games ("],
                "also_view": [],
                "main_cat": "Video Games",
                "similar_item": "",
                "date": "",
                "price": "$19.99",
                "asin": asin,
            }
            f.write(json.dumps(meta) + "\n")
    reviewed = [asins[k] for k in range(n_products) if k % 50][:n_items]
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(20, 200))) for _ in range(2000)]
    seqs = _sequences(rng, n_users, n_items, n_reviews)
    with gzip.open(folder / "Video_Games_5.json.gz", "wt", encoding="utf-8", compresslevel=1) as f:
        for u, seq in enumerate(seqs):
            start = int(rng.integers(1_200_000_000, 1_500_000_000))
            for k, item in enumerate(seq.tolist()):
                review = {
                    "overall": 5.0,
                    "verified": True,
                    "reviewTime": "10 17, 2015",
                    "reviewerID": f"A{u:012d}",
                    "asin": reviewed[item],
                    "reviewerName": "Gamer",
                    "reviewText": texts[(u + k) % len(texts)],
                    "summary": "Five Stars",
                    "unixReviewTime": start + 86_400 * k,
                }
                f.write(json.dumps(review) + "\n")


def write_custom_csv(folder: Path, seed: int = 0) -> None:
    """MovieLens-1M's size in the custom format: 6,040 users, 3,883 items, 1,000,209 rows."""
    rng = np.random.default_rng(seed)
    n_users, n_items, n_rows = 6040, 3883, 1000209
    folder.mkdir(parents=True, exist_ok=True)
    titles = _titles(rng, n_items, "Film")
    (folder / "items.csv").write_text(
        "item,text\n" + "".join(f'm{i},"{t}, Part {i % 3}"\n' for i, t in enumerate(titles)), encoding="utf-8"
    )
    users = rng.integers(n_users, size=n_rows)
    users[:n_users] = np.arange(n_users)
    items = _popular(rng, n_items, n_rows)
    stamps = rng.integers(956_703_932, 1_046_454_590, size=n_rows)
    (folder / "interactions.csv").write_text(
        "user,item,timestamp,rating\n"
        + "".join(
            f"u{u},m{i},{s},4\n" for u, i, s in zip(users.tolist(), items.tolist(), stamps.tolist(), strict=True)
        ),
        encoding="utf-8",
    )
    (folder / "dataset.json").write_text('{"name": "custom-1m", "domain": "movie"}\n')


# --------------------------------------------------------------------------- timing


def _best(fn: Callable[[], Dataset], repeat: int) -> tuple[float, Dataset]:
    """The best wall time of ``repeat`` calls (at least one), and the last result."""
    times = []
    for _ in range(max(repeat, 1)):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return min(times), value


def _size(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) / 2**20


def measure(name: str, folder: Path | None, repeat: int) -> dict[str, object]:
    from rpp_gym.data import bundle as bundle_module
    from rpp_gym.data.loaders import load_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the synthetic data drops title-less items on purpose
        parse, ds = _best(lambda: load_dataset(name, data_dir=folder), repeat)
        bundle_module._MEMO.clear()
        start = time.perf_counter()
        bundle = bundle_module.load_bundle(name, folder)
        first = time.perf_counter() - start
        bundle_module._MEMO.clear()
        start = time.perf_counter()
        bundle_module.load_bundle(name, folder)
        warm = time.perf_counter() - start
    hist = bundle.split.history_lengths()
    eligible = int((ds.lengths() >= bundle.options.min_interactions).sum())
    return {
        "name": name,
        "users": ds.n_users,
        "items": ds.n_items,
        "interactions": ds.n_interactions,
        "eligible": eligible,
        "hist_median": float(np.median(hist)),
        "mb": _size(folder) if folder is not None else float("nan"),
        "parse_s": parse,
        "bundle_first_s": first,
        "bundle_warm_s": warm,
    }


CASES: dict[str, tuple[str, Callable[[Path], None]]] = {
    "lastfm": ("lastfm", write_hetrec),
    "lastfm-recbole": ("lastfm", lambda d: write_recbole_lastfm(d, d.parent / "lastfm")),
    "games": ("games", write_llmrank_games),
    "games-amazon": ("games", write_amazon_games),
    "custom": ("custom", write_custom_csv),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(CASES), help=f"comma-separated subset of {list(CASES)}")
    parser.add_argument("--repeat", type=int, default=3, help="parse repeats (best is reported)")
    parser.add_argument("--keep", type=Path, default=None, help="write the synthetic files here and keep them")
    args = parser.parse_args()
    wanted = [c for c in args.only.split(",") if c]
    unknown = sorted(set(wanted) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    root = args.keep or Path(tempfile.mkdtemp(prefix="rpp-bench-load-"))
    home = Path(tempfile.mkdtemp(prefix="rpp-bench-home-"))
    real_home = os.environ.get("RPP_GYM_HOME")
    os.environ["RPP_GYM_HOME"] = str(home)  # processed caches go to a scratch home
    rows = []
    try:
        if "lastfm-recbole" in wanted and "lastfm" not in wanted:
            wanted.insert(0, "lastfm")  # the RecBole files are made from the HetRec ones
        for case in wanted:
            name, writer = CASES[case]
            folder = root / case
            start = time.perf_counter()
            if not folder.is_dir() or not any(folder.iterdir()):
                writer(folder)
            made = time.perf_counter() - start
            row = measure(name, folder, args.repeat)
            row["case"], row["synth_s"] = case, made
            rows.append(row)
            print(f"  {case}: synthesized in {made:.1f} s, parsed in {row['parse_s']:.2f} s", file=sys.stderr)
        from rpp_gym.data.specs import data_available

        if real_home is not None:
            os.environ["RPP_GYM_HOME"] = real_home
        else:
            del os.environ["RPP_GYM_HOME"]
        ok, why = data_available("movielens-1m")
        if ok and "cached" in why:  # a reference, only if already cached (never downloaded here)
            os.environ["RPP_GYM_HOME"] = str(home)
            shutil.copytree(Path(why.split("cached in ", 1)[1]).parent.parent, home / "assets", dirs_exist_ok=True)
            row = measure("movielens-1m", None, args.repeat)
            row["case"], row["synth_s"] = "movielens-1m (real, reference)", 0.0
            rows.append(row)
    finally:
        shutil.rmtree(home, ignore_errors=True)
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\nload times on {os.cpu_count()} cores (shared machine: compare rows within this run)\n")
    print(
        "| case | users | items | interactions | eligible (>=5) | median history | files MB | parse s | "
        "first bundle s | warm bundle s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['case']} | {r['users']:,} | {r['items']:,} | {r['interactions']:,} | {r['eligible']:,} | "
            f"{r['hist_median']:.0f} | {r['mb']:.1f} | {r['parse_s']:.2f} | {r['bundle_first_s']:.2f} | "
            f"{r['bundle_warm_s']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
