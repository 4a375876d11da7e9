"""``rpp-gym evaluate`` and ``rpp-gym compare``: every method on the same users, candidates and LLM."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rpp_gym.evaluation import EvalResult
from rpp_gym.methods import BUILTIN_METHODS, MethodContext, run_method
from rpp_gym.runs import ensure_writable

DEFAULT_METHODS = "random,llmrank,fewshot-5,fewshot-20,best-fixed,oracle,popularity,bpr,sasrec"


def _env_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"llm": args.llm} if getattr(args, "llm", None) else {}


def _print_summary(res: EvalResult) -> None:
    s = res.summary()
    print(f"{res.name}: {len(res.user_ids)} users")
    for k in ("ndcg@1", "ndcg@5", "ndcg@10", "hit@1", "hit@5", "hit@10", "mrr"):
        extra = f" ± {s['ndcg@10_ci95']:.4f} (95% CI over users)" if k == "ndcg@10" else ""
        print(f"  {k:<8} {s[k]:.4f}{extra}")
    print(f"  parse failures {s['parse_failure_rate']:.1%}  tokens {int(s['tokens']):,}  wall {res.wall_s:.1f}s")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rpp_gym.cli.report import write_evaluation
    from rpp_gym.runs import load_run_config

    target = args.target
    env_id = args.env
    if Path(target).is_dir():
        config = load_run_config(target)
        env_id = env_id or config["env_id"]
        out = Path(args.out or target)
    else:
        out = Path(args.out or f"runs/eval-{target.replace(':', '_').replace(',', '-')}")
    ensure_writable(out)
    ctx = MethodContext(
        env_id=env_id or "RPP-MovieLens-Sim-v0",
        split=args.split,
        n_users=args.users,
        seed=args.seed,
        env_kwargs=_env_kwargs(args),
    )
    res = run_method(target, ctx)
    _print_summary(res)
    json_path, csv_path = write_evaluation(res, out, f"eval-{args.split}")
    print(f"wrote {json_path} and {csv_path}")
    return 0


def run_comparison(
    methods: list[str],
    groups: list[tuple[Any, ...]],
    split: str,
    seed: int,
    out: Path,
    quick: bool = False,
    progress: bool = True,
) -> dict[str, dict[str, EvalResult]]:
    """Evaluate every method in every column group ``(label, env_id, env_kwargs, n_users[, methods])``.

    A group's optional fifth element restricts it to those methods (e.g. a slow real LLM).
    """
    from rpp_gym.cli.report import plot_all, read_curve, write_comparison

    rows: dict[str, dict[str, EvalResult]] = {m: {} for m in methods}
    labels: dict[str, str] = {}
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None  # type: ignore[assignment]
    jobs = [(m, g[:4]) for g in groups for m in methods if len(g) < 5 or m in g[4]]  # type: ignore[misc]
    bar = tqdm(jobs, desc="compare", unit="method", disable=not progress) if tqdm else jobs
    for method, (label, env_id, env_kwargs, n_users) in bar:
        llm = env_kwargs.get("llm") or _spec_llm(env_id)
        labels[label] = f"LLM `{llm}`"
        if method == "oracle" and not str(llm).startswith("sim"):
            continue  # the oracle exists only for the simulator
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(f"{method} on {label}")
        ctx = MethodContext(env_id=env_id, split=split, n_users=n_users, seed=seed, env_kwargs=env_kwargs, quick=quick)
        rows[method][label] = run_method(method, ctx)
        rows[method][label].name = _display_name(method)
    rows = {_display_name(m): per for m, per in rows.items() if per}
    write_comparison(rows, labels, out)
    first = groups[0][0]
    results = {m: per[first] for m, per in rows.items() if first in per}
    curves = {}
    for m in methods:
        if Path(m).is_dir():
            curve = read_curve(Path(m))
            if curve:
                curves[_display_name(m)] = curve
    bank = _bank(groups[0][1], groups[0][2])
    plot_all(results, "best-fixed" if "best-fixed" in results else None, curves, bank, out)
    return rows


def _spec_llm(env_id: str) -> str:
    import gymnasium as gym

    return str(gym.spec(env_id).kwargs.get("llm"))


def _bank(env_id: str, env_kwargs: dict[str, Any]) -> Any:
    import gymnasium as gym

    env = gym.make(env_id, **env_kwargs)
    try:
        return env.unwrapped.bank
    finally:
        env.close()


def _display_name(method: str) -> str:
    path = Path(method)
    if path.is_dir() and (path / "config.json").exists():
        from rpp_gym.envs.registration import is_plus
        from rpp_gym.runs import load_run_config

        config = load_run_config(path)
        label = "RPP" if config["algo"] == "rpp" else config["algo"].upper()
        return f"{label}{'+' if is_plus(config['env_id']) else ''} ({path.name})"
    return method


def cmd_compare(args: argparse.Namespace) -> int:
    out = Path(args.out)
    ensure_writable(out)
    methods = [m for m in args.methods.split(",") if m] + list(args.runs or [])
    for m in methods:
        if m not in BUILTIN_METHODS and not m.startswith(("fixed:", "fewshot-")) and not Path(m).is_dir():
            raise ValueError(
                f"unknown method {m!r}; use one of {', '.join(BUILTIN_METHODS)}, fixed:H,R,Q,F, "
                "fewshot-K, or a run directory"
            )
    groups = [(env_id, env_id, _env_kwargs(args), args.users) for env_id in args.env]
    if args.real_users:
        groups.append((f"{args.env[0]} [{args.real_llm}]", args.env[0], {"llm": args.real_llm}, args.real_users))
    rows = run_comparison(methods, groups, args.split, args.seed, out, quick=args.quick)
    print((out / "comparison.md").read_text())
    print(f"wrote {out}/comparison.md, comparison.csv, comparison.json and plots ({len(rows)} methods)")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    e = sub.add_parser("evaluate", help="NDCG@1/5/10, hit@k, MRR with confidence intervals; CSV and JSON")
    e.add_argument("target", help=f"a run directory, or a method: {', '.join(BUILTIN_METHODS)}, fixed:H,R,Q,F")
    e.add_argument("--env", default=None, help="env id (default: the run's, or RPP-MovieLens-Sim-v0)")
    e.add_argument("--split", default="test", choices=("train", "valid", "test"))
    e.add_argument("--users", type=int, default=None, help="first N users of the split (default: all)")
    e.add_argument("--seed", type=int, default=0, help="evaluation seed: candidates and shown orders")
    e.add_argument("--llm", default=None, help="backend spec overriding the env's (e.g. llamacpp, sim)")
    e.add_argument("--out", default=None, help="output folder (default: the run directory)")
    e.set_defaults(func=cmd_evaluate)

    c = sub.add_parser("compare", help="every method on the same users and candidates: table, CSV, plots")
    c.add_argument("--env", action="append", default=None, help="env id; repeat for one column group per dataset")
    c.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated (default: {DEFAULT_METHODS})")
    c.add_argument("--runs", nargs="*", default=[], help="run directories written by `rpp-gym train`")
    c.add_argument("--split", default="test", choices=("train", "valid", "test"))
    c.add_argument("--users", type=int, default=None)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--llm", default=None, help="backend spec for every group")
    c.add_argument("--real-llm", default="llamacpp", help="backend of the extra real-LLM column group")
    c.add_argument("--real-users", type=int, default=0, help="also evaluate on the first N users with --real-llm")
    c.add_argument("--quick", action="store_true", help="short training for BPR/SASRec (smoke runs)")
    c.add_argument("--out", default="runs/compare")
    c.set_defaults(func=cmd_compare)


def finalize(args: argparse.Namespace) -> None:
    if getattr(args, "env", None) is None and args.func is cmd_compare:
        args.env = ["RPP-MovieLens-Sim-v0"]
