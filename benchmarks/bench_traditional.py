"""Traditional recommenders on ML-1M: training time and test NDCG@1/5/10 (issue 5).

Run: ``.venv/bin/python benchmarks/bench_traditional.py [--threads 1] [--seed 0] [--quick]``.
Each model is fitted on the training interactions of ML-1M (every interaction except each
user's held-out last one) and scored on the candidate lists that
``rpp_gym.evaluation.evaluate(..., "RPP-MovieLens-Sim-v0", split="test", seed=0)`` uses: the 200
test users, each with the held-out item and 9 unseen negatives. ``--quick`` uses the short
schedules of ``tests/test_traditional.py``.

On a shared 2-core machine pass ``--threads 1`` (the default): two torch threads competing with
other jobs were measured about 70x slower per training step than one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

import rpp_gym  # noqa: F401
from rpp_gym.agents.traditional import BPRMF, Popularity, SASRec
from rpp_gym.data.bundle import load_bundle
from rpp_gym.evaluation_candidates import evaluate_scorer

ENV_ID = "RPP-MovieLens-Sim-v0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads while fitting")
    parser.add_argument("--seed", type=int, default=0, help="training seed (the evaluation seed is 0)")
    parser.add_argument("--quick", action="store_true", help="the tests' short schedules")
    args = parser.parse_args()

    print(
        f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, torch {torch.__version__}, "
        f"python {sys.version.split()[0]}, fit threads {args.threads}\n"
    )
    start = time.perf_counter()
    bundle = load_bundle("movielens-1m")
    print(
        f"ML-1M: {bundle.dataset.n_users} users, {bundle.dataset.n_items} items, "
        f"{bundle.dataset.n_interactions} interactions (loaded in {time.perf_counter() - start:.1f} s)\n"
    )
    models: list[Popularity | BPRMF | SASRec]
    if args.quick:
        models = [
            Popularity(),
            BPRMF(epochs=3, lr=1e-2, num_threads=args.threads),
            SASRec(epochs=3, lr=5e-3, windows_per_user=1, num_threads=args.threads),
        ]
    else:
        models = [Popularity(), BPRMF(num_threads=args.threads), SASRec(num_threads=args.threads)]

    header = f"{'model':<12} {'fit s':>7} {'NDCG@1':>7} {'NDCG@5':>7} {'NDCG@10':>8} {'±95%':>6} {'HR@5':>6} {'MRR':>6}"
    rows, base = [], None
    for model in models:
        model.fit(bundle, seed=args.seed)
        result = evaluate_scorer(model, ENV_ID, split="test", seed=0)
        s = result.summary()
        per_user = result.per_user("ndcg@10")
        base = per_user if base is None else base
        d = per_user - base
        paired = (
            ""
            if d.std() == 0
            else f"  vs popularity: {d.mean():+.3f} (paired t {d.mean() / (d.std(ddof=1) / np.sqrt(len(d))):.1f})"
        )
        rows.append(
            f"{model.name:<12} {model.fit_s:>7.1f} {s['ndcg@1']:>7.3f} {s['ndcg@5']:>7.3f} {s['ndcg@10']:>8.3f} "
            f"{s['ndcg@10_ci95']:>6.3f} {s['hit@5']:>6.3f} {s['mrr']:>6.3f}{paired}"
        )
        print(f"fitted {model.name} in {model.fit_s:.1f} s; config: {getattr(model, 'config', '-')}", flush=True)
    print(f"\n{header}\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
