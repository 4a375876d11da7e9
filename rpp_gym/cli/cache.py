"""``rpp-gym cache stats|export|prune``: the persistent LLM response cache."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _path(args: argparse.Namespace) -> Path:
    from rpp_gym.llm.spec import default_cache_path

    path = Path(args.cache) if args.cache else Path(default_cache_path())
    if not path.exists():
        raise FileNotFoundError(f"no response cache at {path}; run an env with a real LLM first, or pass --cache PATH")
    return path


def cmd_stats(args: argparse.Namespace) -> int:
    from rpp_gym.llm.cache import cache_stats

    print(json.dumps(cache_stats(_path(args)), indent=2, default=str))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from rpp_gym.llm.cache import export_cache

    n = export_cache(_path(args), args.out)
    print(f"exported {n:,} (prompt, answer) pairs to {args.out}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from rpp_gym.llm.cache import prune_cache

    removed = prune_cache(_path(args), older_than_days=args.older_than_days, backend=args.backend)
    print(f"removed {removed:,} entries")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    c = sub.add_parser("cache", help="inspect, export or prune the LLM response cache")
    c.add_argument("--cache", default=None, help="cache file (default: $RPP_GYM_HOME/llm-cache.sqlite)")
    cs = c.add_subparsers(dest="cache_command", required=True)
    cs.add_parser("stats", help="entries, hits, tokens per backend").set_defaults(func=cmd_stats)
    e = cs.add_parser("export", help="write (prompt, answer) pairs as JSON lines")
    e.add_argument("out")
    e.set_defaults(func=cmd_export)
    p = cs.add_parser("prune", help="delete entries")
    p.add_argument("--older-than-days", type=float, default=None)
    p.add_argument("--backend", default=None, help="only entries of this backend identity")
    p.set_defaults(func=cmd_prune)
