"""The ``rpp-gym`` command line (also ``python -m rpp_gym``).

Commands: ``train``, ``evaluate``, ``compare``, ``play``, ``demo``, ``data fetch|info``,
``cache stats|export|prune``, ``bench``. Every error a user can cause is one line with the fix,
not a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rpp_gym.cli import bench, cache, data, demo, evaluate, play, train

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rpp-gym", description="Reinforced prompt personalization for LLM recommendation (Gymnasium suite)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    train.add_parser(sub)
    evaluate.add_parsers(sub)
    play.add_parser(sub)
    demo.add_parser(sub)
    data.add_parser(sub)
    cache.add_parser(sub)
    bench.add_parser(sub)
    return parser


def _one_line(exc: BaseException) -> str:
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return str(msg).strip().splitlines()[0] if str(msg).strip() else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    evaluate.finalize(args)
    import gymnasium

    import rpp_gym  # noqa: F401  (registers the envs)
    from rpp_gym.llm.base import LLMBackendError

    try:
        return int(args.func(args))
    except (
        KeyError,
        ValueError,
        TypeError,
        FileNotFoundError,
        PermissionError,
        RuntimeError,
        LLMBackendError,
        gymnasium.error.Error,
    ) as exc:
        print(f"rpp-gym: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rpp-gym: interrupted", file=sys.stderr)
        return 130
