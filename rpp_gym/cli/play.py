"""``rpp-gym play``: you are the four agents. Pick the sentences, see the prompt, the answer, the reward."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

import numpy as np

from rpp_gym.prompts.bank import PATTERNS


def _menu(env: Any, out: TextIO) -> None:
    bank = env.unwrapped.bank
    core = env.unwrapped.core
    out.write("\nChoose one option per pattern:\n")
    hist = ", ".join(
        f"{i}: {'+' if core.config.history_mode == 'increment' else ''}{c}" for i, c in enumerate(core.history_choices)
    )
    out.write(f"  history    {hist} {'items' if core.config.history_mode == 'increment' else 'items shown'}\n")
    for p in PATTERNS[1:]:
        for i, s in enumerate(bank.sentences(p)):
            text = s.text.replace("{n}", str(core.config.n_candidates)) or "(no sentence)"
            out.write(f"  {p if i == 0 else '':<10} {i}: {text}\n")


def _read_action(inp: TextIO, out: TextIO, nvec: np.ndarray) -> np.ndarray | None:
    while True:
        out.write("\naction (4 numbers, history role reasoning format, e.g. '1 0 3 0'; q to quit) > ")
        out.flush()
        line = inp.readline()
        if not line or line.strip().lower() in ("q", "quit", "exit"):
            return None
        parts = line.replace(",", " ").split()
        try:
            action = np.array([int(x) for x in parts], dtype=np.int64)
        except ValueError:
            out.write(f"  '{line.strip()}' is not four numbers; try e.g. '1 0 3 0'\n")
            continue
        if action.shape != (4,) or (action < 0).any() or (action >= nvec).any():
            out.write(f"  need 4 numbers within {[f'0..{n - 1}' for n in nvec]}\n")
            continue
        return action


def cmd_play(args: argparse.Namespace, inp: TextIO | None = None, out: TextIO | None = None) -> int:
    import gymnasium as gym

    inp = inp or sys.stdin
    out = out or sys.stdout
    kwargs: dict[str, Any] = {"render_mode": "ansi"}
    if args.llm:
        kwargs["llm"] = args.llm
    env = gym.make(args.env, **kwargs)
    try:
        options = {"split": args.split, **({"user_id": args.user} if args.user else {})}
        _, info = env.reset(seed=args.seed, options=options)
        core = env.unwrapped.core
        ds = core.bundle.dataset
        history = core.bundle.split.history(int(core.user[0]))
        out.write(
            f"{args.env}: user {info['user_id']} ({args.split} pool), {len(history)} past items; "
            f"{core.config.rounds} rounds\n"
        )
        out.write("most recent past items: " + "; ".join(ds.item_text[i] for i in history[-5:]) + "\n")
        total = 0.0
        for _ in range(core.config.rounds):
            _menu(env, out)
            action = _read_action(inp, out, env.action_space.nvec)
            if action is None:
                out.write("bye\n")
                break
            _, reward, terminated, _, info = env.step(action)
            total += reward
            out.write("\n" + env.render())
            ranked = [ds.item_text[ds.item_ids.index(i)] for i in info["ranking"]]
            marks = [
                f"{k + 1}. {t}{'   <-- held-out item' if info['ranking'][k] == info['target'] else ''}"
                for k, t in enumerate(ranked)
            ]
            out.write("parsed ranking:\n  " + "\n  ".join(marks or ["(nothing parsed)"]) + "\n")
            out.write(f"total reward so far {total:.3f}\n")
            if terminated:
                out.write(f"episode over: mean NDCG@{core.config.k} {total / core.config.rounds:.3f}\n")
                break
    finally:
        env.close()
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("play", help="pick the four sentences yourself and see what the LLM does")
    p.add_argument("--env", default="RPP-MovieLens-Sim-v0")
    p.add_argument("--llm", default=None, help="backend spec overriding the env's")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument("--user", default=None, help="user id from the split (default: a random one)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_play)
