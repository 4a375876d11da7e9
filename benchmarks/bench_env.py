"""Env speed, simulator throughput, load times and memory (issue: core environment).

Run: ``.venv/bin/python benchmarks/bench_env.py`` (or ``make bench``). Prints one table; figures
are compared as ratios within this run because these machines are shared and noisy.

Targets: single ``RPP-MovieLens-Sim-v0`` env >= 1/50 of ``CartPole-v1`` steps/s; ``make_vec``
of 64 >= 5,000 steps/s in total; sim >= 20,000 ranking requests/s batched on one core; ML-1M
load < 5 s warm, < 30 s cold; one env < 400 MB RSS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np

import rpp_gym  # noqa: F401

ENV_ID = "RPP-MovieLens-Sim-v0"


def steps_per_second(env: gym.Env, seconds: float = 3.0) -> float:
    env.reset(seed=0)
    actions = [env.action_space.sample() for _ in range(1024)]
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for a in actions[:256]:
            _, _, term, trunc, _ = env.step(a)
            n += 1
            if term or trunc:
                env.reset()
    return n / (time.perf_counter() - start)


def vec_steps_per_second(num_envs: int, seconds: float = 3.0) -> float:
    env = gym.make_vec(ENV_ID, num_envs=num_envs)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    nvec = env.single_action_space.nvec
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step((rng.random((num_envs, len(nvec))) * nvec).astype(np.int64))
        n += num_envs
    env.close()
    return n / (time.perf_counter() - start)


def sim_requests_per_second(batch: int = 1024, seconds: float = 3.0) -> float:
    """Build a batch of real ranking requests by stepping a vector env, then time the sim alone."""
    env = gym.make_vec(ENV_ID, num_envs=batch)
    env.reset(seed=0)
    core = env.unwrapped.core
    captured = []
    original = core.backend.generate

    def capture(requests):  # type: ignore[no-untyped-def]
        captured.extend(requests)
        return original(requests)

    core.backend.generate = capture
    env.step(np.tile([1, 1, 3, 4], (batch, 1)))
    core.backend.generate = original
    sim = core.backend
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        sim.generate(captured)
        n += len(captured)
    env.close()
    return n / (time.perf_counter() - start)


def load_times_and_rss() -> dict[str, float]:
    """Cold (raw files -> arrays) and warm (processed cache) loads, and one env's RSS, in fresh processes."""
    code = r"""
import json, time, resource, sys
from pathlib import Path
start = time.perf_counter()
from rpp_gym.data import bundle as B
if sys.argv[1] == "cold":
    import rpp_gym.data.fetch as F
    import tempfile, os
    # point the processed cache at an empty folder so the arrays are rebuilt from the raw files
    tmp = tempfile.mkdtemp()
    real_home = F.cache_home()
    os.makedirs(tmp + "/assets", exist_ok=True)
    os.symlink(real_home / "assets" / "movielens-1m", tmp + "/assets/movielens-1m")
    os.environ["RPP_GYM_HOME"] = tmp
t0 = time.perf_counter()
b = B.load_bundle("movielens-1m")
load = time.perf_counter() - t0
import gymnasium as gym, rpp_gym
env = gym.make("RPP-MovieLens-Sim-v0")
env.reset(seed=0)
for _ in range(100):
    if env.step(env.action_space.sample())[2]:
        env.reset()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"load_s": load, "rss_mb": rss}))
"""
    out = {}
    for mode in ("cold", "warm"):
        res = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, check=True)
        out[mode] = json.loads(res.stdout.strip().splitlines()[-1])
    return {"cold_load_s": out["cold"]["load_s"], "warm_load_s": out["warm"]["load_s"], "rss_mb": out["warm"]["rss_mb"]}


def main() -> None:
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}\n")
    cart = steps_per_second(gym.make("CartPole-v1"))
    rpp_env = gym.make(ENV_ID)
    single = steps_per_second(rpp_env)
    rpp_env.close()
    vec64 = vec_steps_per_second(64)
    sim_rps = sim_requests_per_second()
    loads = load_times_and_rss()
    rows = [
        ("CartPole-v1 steps/s (reference)", f"{cart:,.0f}", ""),
        (f"{ENV_ID} single env steps/s", f"{single:,.0f}", f"1/{cart / single:.0f} of CartPole (target <= 1/50)"),
        ("make_vec(64) steps/s total", f"{vec64:,.0f}", "target >= 5,000"),
        ("sim ranking requests/s (batch 1024)", f"{sim_rps:,.0f}", "target >= 20,000"),
        ("ML-1M bundle load, cold (raw files)", f"{loads['cold_load_s']:.1f} s", "target < 30 s"),
        ("ML-1M bundle load, warm (processed cache)", f"{loads['warm_load_s']:.2f} s", "target < 5 s"),
        ("one env, max RSS after 100 steps", f"{loads['rss_mb']:.0f} MB", "target < 400 MB"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>12}  {note}")


if __name__ == "__main__":
    main()
