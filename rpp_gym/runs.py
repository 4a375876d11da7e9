"""Run directories written by ``rpp-gym train``: config, checkpoint, learning curve, logs.

::

    runs/NAME/
      config.json      everything needed to reproduce the run (and to refuse an incompatible one)
      agent.pt         RPP / MAPPO checkpoint (rpp_gym.agents.rpp), or
      model.zip        a Stable-Baselines3 model
      bank.json        RPP+ with scope="global": the grown bank the policy's slot indices refer to
      progress.csv     learning curve: transitions seen, mean reward, (eval NDCG@10)
      tb/              TensorBoard logs
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "RPP_ALGOS",
    "RUN_FORMAT",
    "SB3_ALGOS",
    "load_run_config",
    "load_run_policy",
    "run_eval_env",
    "write_json_atomic",
]

RUN_FORMAT = 1
"""Bump when a run directory's layout changes incompatibly."""
RPP_ALGOS = ("rpp", "mappo")
SB3_ALGOS = ("ppo", "a2c", "maskable-ppo", "dqn")


def ensure_writable(out: Path) -> None:
    """Create ``out`` and prove it is writable, or raise a ``PermissionError`` saying what to pass."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise PermissionError(f"cannot write to {out} ({exc.strerror}); pass --out DIR somewhere writable") from None


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so a crash leaves either the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_run_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``config.json``; a missing, foreign or newer-format run is a ``ValueError`` with the fix."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.json); train one with `rpp-gym train`")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); retrain or restore the file") from None
    fmt = config.get("format")
    if fmt != RUN_FORMAT:
        raise ValueError(
            f"{run_dir} was written by an incompatible rpp-gym (run format {fmt!r}, this version reads "
            f"{RUN_FORMAT}); retrain it with this version or use the rpp-gym {config.get('rpp_gym', '?')} that wrote it"
        )
    return config


def load_run_policy(run_dir: str | os.PathLike[str], deterministic: bool = True) -> Any:
    """The trained policy of a run directory, behind the ``name``/``act(obs)`` policy protocol."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    algo = config["algo"]
    name = config.get("name", run_dir.name)
    if algo in RPP_ALGOS:
        from rpp_gym.agents.rpp import load_policy

        return load_policy(run_dir / "agent.pt", deterministic=deterministic, name=name)
    if algo in SB3_ALGOS:
        from rpp_gym.agents.sb3 import SB3Policy

        model = sb3_class(algo).load(run_dir / "model.zip", device="cpu")
        nvec = config.get("nvec") if algo == "dqn" else None
        mask_start = config.get("mask_start") if algo == "maskable-ppo" else None
        return SB3Policy(model, name, nvec=nvec, deterministic=deterministic, mask_start=mask_start)
    raise ValueError(f"{run_dir}: unknown algo {algo!r} in config.json; known: {RPP_ALGOS + SB3_ALGOS}")


EVAL_OVERRIDES = frozenset({"llm", "cache", "rounds", "max_tokens", "temperature"})
"""Env settings a comparison sets for every method alike; a run's other settings travel with it."""


def run_eval_env(run_dir: str | os.PathLike[str], env_id: str) -> tuple[str, dict[str, Any]]:
    """Where a run is evaluated when asked for ``env_id``: ``(env id, extra env kwargs)``.

    The extra kwargs are the run's own training settings (``--env-kwargs``) except those in
    :data:`EVAL_OVERRIDES`, which the evaluation decides. A run trained on fixed banks is
    evaluated on ``env_id``. An RPP+ run (trained on an ``RPP-Plus-*`` id) acts in slots of
    growing banks, so it is evaluated on the RPP+ variant of ``env_id`` (same data, users,
    candidates and ranking LLM); a global-scope run on its saved ``bank.json``, frozen
    (``every=0, update_stats=False``).

    Raises:
        FileNotFoundError: A global-scope RPP+ run without its ``bank.json``.
    """
    from rpp_gym.envs.registration import is_plus, plus_variant

    config = load_run_config(run_dir)
    extra = {k: v for k, v in config.get("env_kwargs", {}).items() if k not in EVAL_OVERRIDES}
    if not is_plus(config["env_id"]):
        return env_id, extra
    if extra.get("scope") == "global":
        bank = Path(run_dir) / config.get("bank_file", "bank.json")
        if not bank.is_file():
            raise FileNotFoundError(
                f"{run_dir} was trained on a global RPP+ bank but {bank} is missing; its slot indices mean "
                "nothing without it: retrain it"
            )
        extra.update(bank_file=str(bank), every=0, update_stats=False)
    return plus_variant(env_id), extra


def sb3_class(algo: str) -> Any:
    """The Stable-Baselines3 (or sb3-contrib) class for an algo name."""
    if algo == "maskable-ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    import stable_baselines3 as sb3

    return {"ppo": sb3.PPO, "a2c": sb3.A2C, "dqn": sb3.DQN}[algo]
