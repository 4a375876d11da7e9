"""``rpp-gym bench``: run the benchmark scripts under ``benchmarks/`` (from a source checkout)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCHMARKS = {
    "env": "bench_env.py",
    "llm": "bench_llm.py",
    "load": "bench_load.py",
    "traditional": "bench_traditional.py",
    "learning": "bench_learning.py",
    "rpp-plus": "bench_rpp_plus.py",
}


def cmd_bench(args: argparse.Namespace) -> int:
    root = Path(__file__).resolve().parents[2] / "benchmarks"
    if not root.is_dir():
        raise FileNotFoundError(f"benchmarks/ not found next to the package ({root}); run from a source checkout")
    names = args.names or ["env"]
    for name in names:
        if name not in BENCHMARKS:
            raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
        print(f"== {name} ({BENCHMARKS[name]})", flush=True)
        code = subprocess.call([sys.executable, str(root / BENCHMARKS[name])])
        if code:
            return code
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    b = sub.add_parser("bench", help="speed, memory, LLM throughput and learning benchmarks")
    b.add_argument("names", nargs="*", help=f"which: {', '.join(BENCHMARKS)} (default: env)")
    b.set_defaults(func=cmd_bench)
