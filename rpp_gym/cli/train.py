"""``rpp-gym train``: RPP / MAPPO (rpp_gym.agents.rpp) or a Stable-Baselines3 algorithm, into a run directory.

Progress bar with live reward and NDCG, TensorBoard logs under ``OUT/tb``, periodic evaluation
on the valid users, checkpoints, and a ``config.json`` that reproduces the run. Ctrl-C saves a
checkpoint and exits; running the same command again resumes from it.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import time
from pathlib import Path
from typing import Any

import numpy as np

from rpp_gym.envs.registration import is_plus
from rpp_gym.runs import (
    RPP_ALGOS,
    RUN_FORMAT,
    SB3_ALGOS,
    ensure_writable,
    load_run_config,
    sb3_class,
    write_json_atomic,
)

ALGOS = RPP_ALGOS + SB3_ALGOS


class Progress:
    """A tqdm bar over environment steps plus ``progress.csv`` and TensorBoard scalars."""

    def __init__(self, out: Path, total: int, initial: int, enabled: bool = True) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=total, initial=initial, unit="step", desc="train", disable=not enabled, dynamic_ncols=True
        )
        self.path = out / "progress.csv"
        new = not self.path.exists()
        self.file = self.path.open("a", newline="")
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(["steps", "reward", "eval_ndcg@10", "wall_s"])
        self.start = time.perf_counter()
        self.tb: Any = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb" / "rpp-gym"))
        except ImportError:  # pragma: no cover - tensorboard is a dependency
            self.tb = None

    def update(self, steps: int, reward: float, ndcg1: float | None = None, eval_ndcg: float | None = None) -> None:
        self.bar.update(max(0, steps - self.bar.n))
        post = {"reward": f"{reward:.3f}"}
        if ndcg1 is not None:
            post["ndcg@1"] = f"{ndcg1:.3f}"
        if eval_ndcg is not None:
            post["valid"] = f"{eval_ndcg:.3f}"
        self.bar.set_postfix(post, refresh=False)
        self.writer.writerow(
            [
                steps,
                f"{reward:.6f}",
                "" if eval_ndcg is None else f"{eval_ndcg:.6f}",
                f"{time.perf_counter() - self.start:.1f}",
            ]
        )
        self.file.flush()
        if self.tb is not None:
            self.tb.add_scalar("train/reward_ndcg@10", reward, steps)
            if ndcg1 is not None:
                self.tb.add_scalar("train/ndcg@1", ndcg1, steps)
            if eval_ndcg is not None:
                self.tb.add_scalar("eval/valid_ndcg@10", eval_ndcg, steps)

    def close(self) -> None:
        self.bar.close()
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def _config(args: argparse.Namespace, out: Path, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    import rpp_gym

    command = [
        f"--{k} {v}"
        for k, v in (
            ("env", args.env),
            ("algo", args.algo),
            ("llm", args.llm),
            ("steps", args.steps),
            ("seed", args.seed),
            ("num-envs", args.num_envs),
            ("refine-steps", args.refine_steps or None),
            ("out", out),
        )
        if v is not None
    ]
    if args.env_kwargs:
        command.insert(-1, f"--env-kwargs {shlex.quote(json.dumps(args.env_kwargs))}")
    return {
        "format": RUN_FORMAT,
        "rpp_gym": rpp_gym.__version__,
        "name": out.name,
        "env_id": args.env,
        "algo": args.algo,
        "llm": args.llm,
        "steps": args.steps,
        "seed": args.seed,
        "num_envs": args.num_envs,
        "eval_every": args.eval_every,
        "eval_users": args.eval_users,
        "env_kwargs": env_kwargs,
        "refine_steps": args.refine_steps,
        "command": "rpp-gym train " + " ".join(command),
    }


def _prepare_out(args: argparse.Namespace, env_kwargs: dict[str, Any]) -> tuple[Path, dict[str, Any], bool]:
    out = Path(args.out)
    ensure_writable(out)
    config = _config(args, out, env_kwargs)
    if (out / "config.json").exists():
        old = load_run_config(out)
        old.setdefault("refine_steps", 0)  # runs written before the option existed
        for key in ("env_id", "algo", "llm", "seed", "num_envs", "env_kwargs", "refine_steps"):
            if old.get(key) != config.get(key):
                raise ValueError(
                    f"{out} holds a run with {key}={old.get(key)!r}, not {config.get(key)!r}; "
                    "pass a new --out, or the same settings to resume it"
                )
        resumed = any((out / f).exists() for f in ("agent.pt", "model.zip"))
    else:
        resumed = False
    config["status"] = "training"
    write_json_atomic(out / "config.json", config)
    return out, config, resumed


def cmd_train(args: argparse.Namespace) -> int:
    if args.algo not in ALGOS:
        raise ValueError(f"unknown --algo {args.algo!r}; choose one of {', '.join(ALGOS)}")
    import gymnasium as gym

    gym.spec(args.env)  # an unknown id fails here with Gymnasium's own message
    env_kwargs = {**(args.env_kwargs or {}), **({"llm": args.llm} if args.llm else {})}
    if args.refine_steps and not (is_plus(args.env) and env_kwargs.get("scope") == "global"):
        raise ValueError(
            f"--refine-steps {args.refine_steps} grows and then freezes a global RPP+ bank; train on an "
            "RPP-Plus-* id with --env-kwargs '{\"scope\": \"global\"}', or drop --refine-steps"
        )
    if args.num_envs is None:
        args.num_envs = 32 if args.algo in RPP_ALGOS else 8
    out, _, resumed = _prepare_out(args, env_kwargs)
    try:
        if args.algo in RPP_ALGOS:
            steps = _train_rpp(args, out, env_kwargs, resumed)
        else:
            steps = _train_sb3(args, out, env_kwargs, resumed)
    except KeyboardInterrupt:
        _finish(out, "interrupted")
        print(f"\ninterrupted: checkpoint saved in {out}; run the same command again to resume")
        return 130
    _finish(out, "done", steps)
    print(f"trained {steps:,} steps; run saved in {out} (evaluate it: rpp-gym evaluate {out} --split test)")
    return 0


def _finish(out: Path, status: str, steps: int | None = None) -> None:
    config = load_run_config(out)  # the trainers may have added facts (nvec, mask_start)
    config["status"] = status
    if steps is not None:
        config["trained_steps"] = steps
    if (out / "bank.json").is_file():
        config["bank_file"] = "bank.json"  # RPP+ global scope: the grown bank the policy acts in
    write_json_atomic(out / "config.json", config)


def _eval_valid(policy: Any, args: argparse.Namespace, env_kwargs: dict[str, Any], live_env: Any) -> float:
    """Mean NDCG@10 on the first valid users; an RPP+ run in global scope on a snapshot of its live bank."""
    from rpp_gym.agents.rpp import live_eval_env_kwargs
    from rpp_gym.evaluation import evaluate

    with live_eval_env_kwargs(live_env, env_kwargs) as kwargs:
        res = evaluate(policy, args.env, split="valid", n_users=args.eval_users, seed=0, env_kwargs=kwargs)
    return float(res.per_user().mean())


def _train_rpp(args: argparse.Namespace, out: Path, env_kwargs: dict[str, Any], resumed: bool) -> int:
    from rpp_gym.agents.rpp import Args, RPPPolicy, train

    targs = Args(
        exp_name=out.name,
        seed=args.seed,
        env_id=args.env,
        env_kwargs=env_kwargs,
        algo="a2c" if args.algo == "rpp" else "mappo",
        total_timesteps=args.steps,
        num_envs=args.num_envs,
        save_path=str(out / "agent.pt"),
        refine_steps=args.refine_steps,
    )
    progress = Progress(out, args.steps, 0, enabled=not args.quiet)
    next_eval = [args.eval_every]

    def callback(event: dict[str, Any]) -> None:
        eval_ndcg = None
        if args.eval_every and event["seen"] >= next_eval[0]:
            policy = RPPPolicy(event["agent"], True, name=out.name)
            eval_ndcg = _eval_valid(policy, args, env_kwargs, event["env"])
            event["agent"].train()
            next_eval[0] += args.eval_every
        progress.update(event["seen"], event["reward"], event.get("ndcg@1"), eval_ndcg)

    try:
        result = train(targs, callback=callback, resume_from=out / "agent.pt" if resumed else None)
    finally:
        progress.close()
    return int(result.curve_steps[-1]) if result.curve_steps else 0


def _train_sb3(args: argparse.Namespace, out: Path, env_kwargs: dict[str, Any], resumed: bool) -> int:
    import gymnasium as gym
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

    from rpp_gym.agents.sb3 import FlattenJointAction, SB3Policy, make_sb3_vec_env
    from rpp_gym.envs.refine import freeze_bank, save_bank

    cls = sb3_class(args.algo)
    nvec = None
    if args.algo == "dqn":

        def make() -> gym.Env:
            return FlattenJointAction(gym.make(args.env, **env_kwargs))

        vec: Any = VecMonitor(DummyVecEnv([make for _ in range(args.num_envs)]))
        vec.seed(args.seed)
        nvec = vec.envs[0].joint_nvec.tolist() if hasattr(vec, "envs") else None
        nvec = nvec or np.asarray(gym.make(args.env, **env_kwargs).action_space.nvec).tolist()
    else:
        if resumed and env_kwargs.get("scope") == "global" and is_plus(args.env):
            if not (out / "bank.json").is_file():  # the model's slot indices refer to that bank
                raise FileNotFoundError(
                    f"{out} was trained on a global RPP+ bank but {out / 'bank.json'} is missing; its slot "
                    "indices mean nothing without it: retrain in a new --out"
                )
            env_kwargs = {**env_kwargs, "bank_file": str(out / "bank.json")}
        vec = make_sb3_vec_env(args.env, n_envs=args.num_envs, seed=args.seed, **env_kwargs)
    config = load_run_config(out)
    core = vec.unwrapped.core if hasattr(vec.unwrapped, "core") else None
    global_bank = core is not None and core.masked and core.scope == "global"
    if nvec is not None or (core is not None and core.masked):
        if nvec is not None:
            config["nvec"] = nvec
        if core is not None and core.masked:
            config["mask_start"] = int(core.mask_slice.start)
        write_json_atomic(out / "config.json", config)
    model_path = out / "model.zip"
    if resumed and model_path.exists():
        model = cls.load(model_path, env=vec, device="cpu", tensorboard_log=str(out / "tb"))
        print(f"resuming {out} from {model.num_timesteps:,} steps")
    else:
        kwargs: dict[str, Any] = {"n_steps": 15} if args.algo in ("ppo", "a2c", "maskable-ppo") else {}
        if args.algo in ("ppo", "maskable-ppo"):
            kwargs["batch_size"] = max(15, 15 * args.num_envs // 2)
        model = cls("MlpPolicy", vec, seed=args.seed, device="cpu", tensorboard_log=str(out / "tb"), **kwargs)
    remaining = max(0, args.steps - model.num_timesteps)
    progress = Progress(out, args.steps, model.num_timesteps, enabled=not args.quiet)

    class Callback(BaseCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.rewards: list[float] = []
            self.ndcg1: list[float] = []
            self.next_eval = (model.num_timesteps // args.eval_every + 1) * args.eval_every if args.eval_every else 0
            self.next_save = model.num_timesteps + args.save_every

        def _on_step(self) -> bool:
            if args.refine_steps and self.num_timesteps >= args.refine_steps:
                freeze_bank(vec)  # grown enough: from now on learn on a fixed bank
            self.rewards.extend(np.asarray(self.locals["rewards"]).tolist())
            for info in self.locals.get("infos", []):
                m = info.get("metrics")
                if m is not None:
                    self.ndcg1.append(float(m["ndcg@1"]))
            eval_ndcg = None
            if args.eval_every and self.num_timesteps >= self.next_eval:
                policy = SB3Policy(self.model, out.name, nvec=nvec, mask_start=config.get("mask_start"))
                eval_ndcg = _eval_valid(policy, args, env_kwargs, vec)
                self.next_eval += args.eval_every
            if self.num_timesteps >= self.next_save:
                save()
                self.next_save += args.save_every
            if len(self.rewards) >= 15 * args.num_envs or eval_ndcg is not None:
                progress.update(
                    self.num_timesteps,
                    float(np.mean(self.rewards)) if self.rewards else 0.0,
                    float(np.mean(self.ndcg1)) if self.ndcg1 else None,
                    eval_ndcg,
                )
                self.rewards, self.ndcg1 = [], []
            return True

    def save() -> None:
        model.save(model_path)
        if global_bank:
            save_bank(vec, out / "bank.json")

    try:
        model.learn(remaining, callback=Callback(), reset_num_timesteps=not resumed, tb_log_name="sb3")
        save()
    except KeyboardInterrupt:
        save()
        raise
    finally:
        progress.close()
        vec.close()
    return int(model.num_timesteps)


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"--env-kwargs {text!r} is not JSON ({exc.msg}); e.g. '{{\"rounds\": 10}}'"
        raise argparse.ArgumentTypeError(msg) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"--env-kwargs {text!r} must be a JSON object, e.g. '{{\"rounds\": 10}}'")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    t = sub.add_parser("train", help="train RPP/MAPPO or an SB3 algorithm into a run directory")
    t.add_argument("--env", default="RPP-MovieLens-Sim-v0")
    t.add_argument("--algo", default="rpp", help=f"one of {', '.join(ALGOS)}")
    t.add_argument("--llm", default=None, help="backend spec overriding the env's (e.g. sim, llamacpp)")
    t.add_argument(
        "--env-kwargs",
        type=_json_object,
        default=None,
        help='more env keyword arguments as JSON, e.g. \'{"rounds": 10}\' or, for RPP-Plus-* ids, '
        '\'{"scope": "global", "every": 5, "min_trials": 5}\'',
    )
    t.add_argument("--steps", type=int, default=300_000, help="environment steps (user-rounds) in total")
    t.add_argument(
        "--refine-steps",
        type=int,
        default=0,
        help="RPP+ with a global bank: refine during the first N steps, then freeze the bank and keep training",
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--num-envs", type=int, default=None, help="users stepped together (default: 32 RPP, 8 SB3)")
    t.add_argument("--eval-every", type=int, default=0, help="evaluate on the valid users every N steps (0: never)")
    t.add_argument("--eval-users", type=int, default=200)
    t.add_argument("--save-every", type=int, default=20_000, help="checkpoint every N steps (SB3)")
    t.add_argument("--out", default="runs/rpp", help="run directory (resumed if it holds the same run)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)
