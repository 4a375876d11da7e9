"""``rpp-gym demo`` (what ``make demo`` runs): the project's main job, end to end.

1. trains RPP's four agents (MAPPO variant by default, ``--algo rpp`` for the paper's A2C) on the
   simulated LLM, on the train users, and the same agents as RPP+ (a global bank of refined
   sentences grown during the first fifth of the budget, then frozen; ``--no-plus`` skips it);
2. evaluates every baseline, RPP and RPP+ on the 200 test users with the simulator, and on the
   first few test users with the embedded real LLM (llama.cpp + SmolLM2-135M-Instruct);
3. prints the comparison table and leaves it, with CSV/JSON and plots, in ``runs/demo/``.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

SIM_ENV = "RPP-MovieLens-Sim-v0"
PLUS_ENV = "RPP-Plus-MovieLens-Sim-v0"
REAL_ENV = "RPP-MovieLens-v0"
PLUS_REFINE = '{"scope": "global", "every": 5, "min_trials": 5}'
"""RPP+ settings of the demo (those of ``benchmarks/bench_rpp_plus.py``)."""


def _train(args: argparse.Namespace, name: str, extra: list[str]) -> int:
    """Train one demo run with ``rpp-gym train`` (its own parser: every option keeps its default)."""
    from rpp_gym.cli import build_parser

    run_dir = Path(args.out) / name
    if args.retrain and (run_dir / "config.json").exists():
        shutil.rmtree(run_dir)  # the demo's own run: a retrain starts over (train alone would resume it)
    elif (run_dir / "config.json").exists() and (run_dir / "agent.pt").exists():
        print(f"      {run_dir} already trained; reusing it (pass --retrain to train again)")
        return 0
    argv = ["train", "--algo", args.algo, "--steps", str(args.steps), "--seed", str(args.seed), "--num-envs", "32",
            "--out", str(run_dir), *extra, *(["--quiet"] if args.quiet else [])]
    train_args = build_parser().parse_args(argv)
    return int(train_args.func(train_args))


def cmd_demo(args: argparse.Namespace) -> int:
    from rpp_gym.cli.evaluate import DEFAULT_METHODS, run_comparison

    start = time.perf_counter()
    out = Path(args.out)
    runs = [str(out / "rpp")]
    steps = 2 if args.plus else 1
    print(f"[1/{steps + 1}] training RPP ({args.algo}) on {SIM_ENV} ({args.steps:,} user-rounds) -> {runs[0]}")
    code = _train(args, "rpp", ["--env", SIM_ENV])
    if code:
        return code
    if args.plus:
        runs.append(str(out / "rpp-plus"))
        refine_steps = args.steps // 5
        print(f"[2/{steps + 1}] training RPP+ ({args.algo}) on {PLUS_ENV} ({args.steps:,} user-rounds, refining "
              f"during the first {refine_steps:,}) -> {runs[1]}")
        code = _train(args, "rpp-plus", ["--env", PLUS_ENV, "--env-kwargs", PLUS_REFINE,
                                         "--refine-steps", str(refine_steps)])
        if code:
            return code
    methods = [*DEFAULT_METHODS.split(","), *runs]  # what `rpp-gym compare` compares, plus the runs
    groups: list = [(f"{SIM_ENV} (sim)", SIM_ENV, {}, None)]
    if args.real_users:
        # A 135M model on 2 CPU cores answers about one prompt per 1.5-3 s: the real-LLM column
        # uses a few users, a few rounds and the prompt methods (the response cache makes reruns free).
        real = {"rounds": args.real_rounds, "max_tokens": 160, "llm": f"llamacpp?n_threads={args.threads}"}
        label = f"{REAL_ENV} (llamacpp SmolLM2-135M, {args.real_users} users x {args.real_rounds} rounds)"
        groups.append((label, REAL_ENV, real, args.real_users, ["random", "llmrank", "best-fixed", *runs]))
    print(f"[{steps + 1}/{steps + 1}] evaluating {len(methods)} methods on {', '.join(g[0] for g in groups)}")
    run_comparison(methods, groups, "test", args.seed, out, quick=args.quick, progress=not args.quiet)
    print()
    print((out / "comparison.md").read_text())
    print(f"tables and plots in {out}/ ({time.perf_counter() - start:.0f}s in all)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    d = sub.add_parser("demo", help="the main job: train RPP, compare it with every baseline, table and plots")
    d.add_argument(
        "--algo",
        default="mappo",
        choices=("rpp", "mappo"),
        help="rpp: the paper's A2C update; mappo: the clipped-surrogate variant (learns more per step)",
    )
    d.add_argument("--steps", type=int, default=480_000, help="RPP training budget in user-rounds")
    d.add_argument("--real-users", type=int, default=6, help="test users evaluated with the real LLM (0: none)")
    d.add_argument("--real-rounds", type=int, default=3, help="rounds per user with the real LLM")
    d.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quick", action="store_true", help="short BPR/SASRec training")
    d.add_argument("--plus", action=argparse.BooleanOptionalAction, default=True, help="also train and compare RPP+")
    d.add_argument("--retrain", action="store_true", help="delete the demo's runs in --out and train them again")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)
