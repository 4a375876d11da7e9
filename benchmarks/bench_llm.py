"""Benchmark the embedded llama.cpp backend and the response cache.

Measures, with the default SmolLM2-135M-Instruct (or ``--model PATH.gguf``):

1. **Concurrency**: N ranking prompts (10 candidate titles each) sent one at a time vs. as one
   batch (all in flight, llama.cpp's continuous batching over ``n_parallel`` slots). Every
   measurement uses fresh prompts, so llama.cpp's prompt cache does not flatter either mode.
2. **Cache**: the latency of a cache hit vs. the llama.cpp call it replaces.

Usage::

    python benchmarks/bench_llm.py [--model PATH.gguf] [--n 4] [--reps 3] [--n-threads 2]

The machine's load average is printed with the results: llama.cpp on a busy CPU is much slower.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from rpp_gym.llm import CachedBackend, LLMRequest, SamplingParams
from rpp_gym.llm.llamacpp import LlamaCppBackend

TITLES = [
    "Heat (1995)", "Fargo (1996)", "Toy Story (1995)", "Casino (1995)", "Babe (1995)", "Se7en (1995)",
    "Clueless (1995)", "Braveheart (1995)", "Apollo 13 (1995)", "Jumanji (1995)", "Alien (1979)",
    "The Matrix (1999)", "Blade Runner (1982)", "Titanic (1997)", "Goodfellas (1990)", "Psycho (1960)",
    "Vertigo (1958)", "Amelie (2001)", "Memento (2000)", "Gattaca (1997)", "Twelve Monkeys (1995)",
    "Contact (1997)", "Ronin (1998)", "Rushmore (1998)",
]  # fmt: skip


def ranking_prompt(k: int) -> str:
    """A ranking prompt like the env's: a role, a short history, 10 candidates, a format line."""
    history = [TITLES[(k * 5 + j) % len(TITLES)] for j in range(4)]
    candidates = [TITLES[(k * 7 + 3 + j) % len(TITLES)] for j in range(10)]
    lines = "\n".join(f"[{i}] {title}" for i, title in enumerate(candidates, 1))
    return (
        f"You are a movie recommender (session {k}).\n"
        f"The user recently watched: {', '.join(history)}.\n"
        f"Rank the following 10 candidate movies by how likely the user is to watch them next:\n{lines}\n"
        "Answer with all 10 titles as a numbered list, one per line, like '1. Title (Year)'."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="GGUF file (default: SmolLM2-135M-Instruct Q4_1)")
    parser.add_argument("--n", type=int, default=4, help="prompts per measurement (default 4)")
    parser.add_argument("--n-parallel", type=int, default=4, help="llama.cpp slots (default 4)")
    parser.add_argument("--n-threads", type=int, default=None, help="llama.cpp threads (default: half the CPUs)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each measurement (default 3)")
    parser.add_argument("--max-tokens", type=int, default=160, help="answer budget (default 160)")
    args = parser.parse_args()

    sampling = SamplingParams(max_tokens=args.max_tokens)
    load_before = os.getloadavg()
    start = time.perf_counter()
    backend = LlamaCppBackend(args.model, n_parallel=args.n_parallel, n_threads=args.n_threads)
    startup = time.perf_counter() - start
    counter = iter(range(10**6))

    def fresh(n: int) -> list[LLMRequest]:
        return [LLMRequest.from_prompt(ranking_prompt(next(counter)), sampling) for _ in range(n)]

    try:
        backend.generate(fresh(1))  # warm-up
        seq_times, conc_times, seq_tokens, conc_tokens, single_latency = [], [], [], [], []
        for _ in range(args.reps):
            t = time.perf_counter()
            answers = [backend.generate([r])[0] for r in fresh(args.n)]
            seq_times.append(time.perf_counter() - t)
            seq_tokens.append(sum(a.completion_tokens for a in answers))
            single_latency += [a.latency_s for a in answers]
            t = time.perf_counter()
            answers = backend.generate(fresh(args.n))
            conc_times.append(time.perf_counter() - t)
            conc_tokens.append(sum(a.completion_tokens for a in answers))
        prompt_tokens = answers[0].prompt_tokens

        with tempfile.TemporaryDirectory() as tmp:
            cache = CachedBackend(backend, Path(tmp) / "bench-cache.sqlite")
            one, batch = fresh(1), fresh(args.n)
            t = time.perf_counter()
            cache.generate(one)
            miss_s = time.perf_counter() - t
            cache.generate(batch)
            hit_one, hit_batch = [], []
            for _ in range(300):
                t = time.perf_counter()
                assert cache.generate(one)[0].cached
                hit_one.append(time.perf_counter() - t)
                t = time.perf_counter()
                assert all(c.cached for c in cache.generate(batch))
                hit_batch.append(time.perf_counter() - t)
            cache_stats = cache.stats()
            cache.close()  # also closes the llama.cpp backend (closing twice is fine)
    finally:
        backend.close()

    seq, conc = statistics.median(seq_times), statistics.median(conc_times)
    llama_one = statistics.median(single_latency)
    hit1, hitn = statistics.median(hit_one), statistics.median(hit_batch)
    seq_rate = f"{args.n / seq:.2f} req/s, {statistics.median(seq_tokens) / seq:.0f} tok/s"
    conc_rate = f"{args.n / conc:.2f} req/s, {statistics.median(conc_tokens) / conc:.0f} tok/s"
    rows = [
        ("server start (model load)", f"{startup:.2f} s", ""),
        ("prompt size (tokens)", f"{prompt_tokens}", f"answers up to {args.max_tokens} tokens"),
        (f"{args.n} prompts one at a time", f"{seq:.2f} s", seq_rate),
        (f"{args.n} prompts concurrently", f"{conc:.2f} s", conc_rate),
        ("throughput ratio concurrent/sequential", f"{seq / conc:.2f}x", ""),
        ("llama.cpp call, one request", f"{llama_one * 1e3:.0f} ms", "median over the one-at-a-time runs"),
        ("cache miss (llama.cpp + store)", f"{miss_s * 1e3:.0f} ms", ""),
        ("cache hit, one request", f"{hit1 * 1e3:.3f} ms", f"median of 300; {llama_one / hit1:,.0f}x faster"),
        (f"cache hit, batch of {args.n}", f"{hitn * 1e3:.3f} ms", f"{hitn / args.n * 1e3:.3f} ms per request"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print(f"\nbench_llm: {backend.model}, n_parallel={args.n_parallel}, n_threads={backend.config.n_threads}, "
          f"{os.cpu_count()} CPUs, reps={args.reps}")  # fmt: skip
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}\n")
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>12}  {note}")
    print(f"\n  cache counters: {cache_stats}")


if __name__ == "__main__":
    main()
