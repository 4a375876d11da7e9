"""Real-LLM stepping: batched vector env vs sequential envs vs the server directly (issue 3).

With the embedded llama.cpp backend (SmolLM2-135M, ``n_parallel=N``) and no response cache:

* **direct**: N ranking prompts sent straight to the backend as one concurrent batch;
* **batched**: one step of ``gym.make_vec("RPP-MovieLens-v0", num_envs=N)`` (one LLM batch);
* **sequential**: one step of each of N single envs, one after another.

Each mode runs on fresh users (different seeds) ``--reps`` times; throughput is requests per
second, compared as ratios within this run. Also reports the env's own share of step time (all
but waiting for the model) and the tokens one 15-round episode costs.

Where the batching gain can come from: the same prompts sent to the server one at a time and
all at once, first cut at one generated token (prompt evaluation only), then in full. On a CPU
prompt evaluation is compute-bound and already batched within one request, so concurrency can
only speed up the decoding part; the split bounds the batched/sequential ratio.

Run: ``.venv/bin/python benchmarks/bench_llm_env.py [--n 4] [--reps 3]``.
"""

from __future__ import annotations

import argparse
import os
import time

import gymnasium as gym
import numpy as np

import rpp_gym  # noqa: F401

ENV_ID = "RPP-MovieLens-v0"
ACTION = np.array([1, 1, 1, 4])


class Timed:
    """Wraps a backend and accumulates the time spent inside ``generate``."""

    def __init__(self, inner):  # type: ignore[no-untyped-def]
        self.inner, self.seconds, self.requests, self.captured = inner, 0.0, 0, []

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)

    def generate(self, requests):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        out = self.inner.generate(requests)
        self.seconds += time.perf_counter() - start
        self.requests += len(requests)
        self.captured = list(requests)
        self.tokens = sum(c.prompt_tokens + c.completion_tokens for c in out)
        return out


class Recorder:
    """A stand-in backend that keeps the requests and answers "1" (no model involved)."""

    identity = "recorder"

    def __init__(self) -> None:
        self.requests: list = []

    def generate(self, requests):  # type: ignore[no-untyped-def]
        from rpp_gym.llm.base import Completion

        self.requests.extend(requests)
        return [Completion("1") for _ in requests]

    def close(self) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: the backend's)")
    a = ap.parse_args()
    n = a.n
    spec = f"llamacpp?n_parallel={n}" + (f"&n_threads={a.threads}" if a.threads else "")
    kwargs = {"llm": spec, "cache": None, "max_tokens": a.max_tokens}
    print(f"machine: {os.cpu_count()} CPUs; {spec}, greedy, max_tokens={a.max_tokens}, {a.reps} reps\n")

    from rpp_gym.llm.spec import make_backend

    backend = make_backend(spec, cache=None)  # one server for every mode, started before timing
    timed = Timed(backend)
    direct_s = batched_s = seq_s = 0.0
    backend_in_batched = 0.0
    tokens_per_step = []
    for rep in range(a.reps):
        # batched vector env
        vec = gym.make_vec(ENV_ID, num_envs=n, backend=timed, **kwargs)
        timed.seconds = 0.0
        vec.reset(seed=100 + rep)
        start = time.perf_counter()
        vec.step(np.tile(ACTION, (n, 1)))
        batched_s += time.perf_counter() - start
        backend_in_batched += timed.seconds
        tokens_per_step.append(timed.tokens / n)
        vec.close()
        # direct: the same kind of prompts (fresh users), built by an env whose "LLM" only records
        recorder = Recorder()
        rec = gym.make_vec(ENV_ID, num_envs=n, backend=recorder, **kwargs)
        rec.reset(seed=300 + rep)
        rec.step(np.tile(ACTION, (n, 1)))
        rec.close()
        start = time.perf_counter()
        backend.generate(recorder.requests)
        direct_s += time.perf_counter() - start
        # sequential single envs
        envs = [gym.make(ENV_ID, backend=backend, **kwargs) for _ in range(n)]
        for i, env in enumerate(envs):
            env.reset(seed=400 + 10 * rep + i)
        start = time.perf_counter()
        for env in envs:
            env.step(ACTION)
        seq_s += time.perf_counter() - start
        for env in envs:
            env.close()

    # where the gain can come from: prompt evaluation vs decoding, one at a time vs all at once
    import dataclasses

    def fresh_prompts(seed: int, cap: int) -> list:  # type: ignore[type-arg]
        # new users each time: llama.cpp reuses a slot's cached prompt prefix, so never resend one
        rec_backend = Recorder()
        env = gym.make_vec(ENV_ID, num_envs=n, backend=rec_backend, **kwargs)
        env.reset(seed=seed)
        env.step(np.tile(ACTION, (n, 1)))
        env.close()
        return [dataclasses.replace(r, sampling=dataclasses.replace(r.sampling, max_tokens=cap))
                for r in rec_backend.requests]

    split = {}
    for i, (label, cap) in enumerate(
        (("prompt only (max_tokens=1)", 1), (f"full (max_tokens={a.max_tokens})", a.max_tokens))
    ):
        reqs = fresh_prompts(600 + 2 * i, cap)
        start = time.perf_counter()
        for r in reqs:
            backend.generate([r])
        one_by_one = time.perf_counter() - start
        reqs = fresh_prompts(601 + 2 * i, cap)
        start = time.perf_counter()
        backend.generate(reqs)
        together = time.perf_counter() - start
        split[label] = (one_by_one, together)

    total = n * a.reps
    rows = [
        ("direct to the server (concurrent)", total / direct_s),
        ("batched vector env (one LLM batch per step)", total / batched_s),
        ("sequential single envs", total / seq_s),
    ]
    for name, rps in rows:
        print(f"{name:<46} {rps:6.2f} requests/s")
    print()
    print(f"batched / direct      {rows[1][1] / rows[0][1]:5.2f}  (target >= 0.90)")
    print(f"batched / sequential  {rows[1][1] / rows[2][1]:5.2f}  (target >= 1.5)")
    print("\nN fresh prompts to the server directly (seconds for all of them):")
    for label, (one_by_one, together) in split.items():
        print(f"  {label:<28} one at a time {one_by_one:6.2f}  all at once {together:6.2f}  "
              f"ratio {one_by_one / together:4.2f}")
    prompt_share = split["prompt only (max_tokens=1)"][0] / list(split.values())[1][0]
    print(f"  prompt evaluation is {prompt_share:.0%} of a one-at-a-time request's time")
    overhead = 1 - backend_in_batched / batched_s
    print(f"env's own share of batched step time {overhead:.2%}  (target < 2%)")
    backend.close()
    per_episode = 15 * float(np.mean(tokens_per_step))
    print(f"tokens per 15-round episode (prompt + completion) ~{per_episode:,.0f}")


if __name__ == "__main__":
    main()
