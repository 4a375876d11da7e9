"""Does refinement pay? RPP+ (growing banks) against RPP (fixed banks) on the simulator.

Run: ``.venv/bin/python benchmarks/bench_rpp_plus.py`` (about 30 minutes on 2 cores, a third of
it the bandits; ``--quick`` for a smoke run of a few minutes). Prints one table; ``--out``
writes the numbers as JSON.

Protocol (``RPP-MovieLens-Sim-v0`` vs ``RPP-Plus-MovieLens-Sim-v0``, 15 rounds, NDCG@10; a
user's score is the mean over rounds). Each seed ``s`` is a different simulated world
(``llm="sim?seed=s"``: other per-user sentence affinities and other rewrite qualities) and a
different stream of training users:

* **best fixed**: the joint action with the best mean over the *train* users (exhaustive search
  of the 675 prompts of the fixed banks), scored on the *test* users. The strongest task-wise
  prompt RPP's banks allow.
* **bandit (RPP)**: Thompson sampling per pattern over the fixed banks' sentences (one Gaussian
  posterior per sentence, shared by all users), online on ``--episodes`` train users, 50 at a
  time; then its greedy prompt is scored on the test users.
* **bandit (RPP+)**: the same learner on ``RPP-Plus-MovieLens-Sim-v0`` with ``scope="global"``:
  after every step the simulated refiner rewrites the chosen sentences and good rewrites join
  the (capacity-16) banks; a rewrite never tried is sampled around its parent's mean. The grown
  bank is saved and its greedy prompt is scored on the test users with the bank frozen
  (``bank_file=..., every=0``). Refinement settings ``--every 5 --min-trials 5``: with 50 users
  per step in one global bank, rewriting every round (``every=1``) brings 150 rewrites per step
  into 33 free slots, faster than they can be tried (measured on seed 0: test 0.714 with
  ``every=1, min_trials=3`` against 0.807 with 5/5; the RPP bandit gets 0.708).

* **MAPPO agent (RPP)**: the RPP agent (``rpp_gym.agents.rpp``, ``algo="mappo"``, 32 users per
  update) trained for ``--timesteps`` transitions on the fixed banks, scored greedily.
* **MAPPO agent (RPP+ slots, no rewrites)**: the same agent on ``RPP-Plus-MovieLens-Sim-v0``
  with ``every=0``: the masked 16-slot action space and the bigger observation, but no
  rewrite ever enters the bank. It isolates the cost of the RPP+ interface from the effect of
  refinement.
* **MAPPO agent (RPP+)**: the same agent in global scope (``--every 5 --min-trials 5``) with
  ``refine_steps=--refine-steps``: the agent's own choices are rewritten during its first
  60,000 transitions, then the bank is frozen and it learns the rest on it; scored on the
  test users with that bank frozen. (Refining throughout instead, the agent scored 0.754-0.762
  on seed 0 against 0.779 on the fixed banks: slot indices that keep changing meaning are
  more than a neural policy can follow.)

Results: see ``README.md`` (*Benchmarks*) and the closing note of issue 6, with the machine.

Pass criteria (issue 6: RPP+ beats RPP on the simulator by exploiting good rewrites), means
over 3 seeds: the RPP+ bandit's test score exceeds both the RPP bandit's and the best fixed
prompt's; the RPP+ agent's exceeds the RPP agent's and the no-rewrites ablation's.

``--part bandit`` or ``--part agent`` runs one half; ``--seeds`` splits the seeds over processes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt

import rpp_gym  # noqa: F401  (registers the ids)
from rpp_gym.agents.baselines import FixedPolicy
from rpp_gym.agents.search import best_fixed_prompt
from rpp_gym.envs.refine import save_bank
from rpp_gym.evaluation import evaluate
from rpp_gym.llm.sim_refine import lineage
from rpp_gym.prompts.bank import PATTERNS, SENTENCE_PATTERNS

PLAIN = "RPP-MovieLens-Sim-v0"
PLUS = "RPP-Plus-MovieLens-Sim-v0"
EVAL_SEED = 0
WIDTH = 50


class ThompsonPrompt:
    """Per pattern, Thompson sampling over the sentences now in the bank, shared by all users.

    A sentence's posterior is ``N(mean, sigma^2 / (n + 1))`` over its rewards; a sentence never
    tried takes the mean of its closest tried ancestor (a rewrite starts where its parent is),
    else the mean of all rewards.
    """

    def __init__(self, seed: int, sigma: float = 0.35) -> None:
        self.rng = np.random.default_rng(seed)
        self.sigma = sigma
        self.n: dict[tuple[str, str], int] = defaultdict(int)
        self.total: dict[tuple[str, str], float] = defaultdict(float)
        self.grand = [0, 0.0]

    def _arms(self, core: Any, slot: int, pattern: str) -> tuple[npt.NDArray[np.int64], list[str]]:
        if pattern == "history":
            return np.arange(len(core.history_choices)), [str(i) for i in range(len(core.history_choices))]
        sentences = core.bank_of(slot).sentences[pattern]
        index = [i for i, s in enumerate(sentences) if s is not None]
        return np.array(index), [sentences[i].id for i in index]

    def _posterior(self, pattern: str, ids: list[str]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        prior = self.grand[1] / max(self.grand[0], 1)
        means, counts = np.empty(len(ids)), np.empty(len(ids), dtype=np.int64)
        for k, sid in enumerate(ids):
            n = self.n[(pattern, sid)]
            counts[k] = n
            if n:
                means[k] = self.total[(pattern, sid)] / n
                continue
            means[k] = prior
            for ancestor in reversed(lineage(sid)[:-1]):
                if self.n[(pattern, ancestor)]:
                    means[k] = self.total[(pattern, ancestor)] / self.n[(pattern, ancestor)]
                    break
        return means, counts

    def act(self, core: Any, slots: list[int]) -> npt.NDArray[np.int64]:
        actions = np.zeros((len(slots), len(PATTERNS)), dtype=np.int64)
        for j, pattern in enumerate(PATTERNS):
            cache: dict[int, Any] = {}
            for row, slot in enumerate(slots):
                bank = id(core.bank_of(slot))
                if bank not in cache:
                    index, ids = self._arms(core, slot, pattern)
                    cache[bank] = (index, *self._posterior(pattern, ids))
                index, means, counts = cache[bank]
                draw = means + self.sigma / np.sqrt(counts + 1) * self.rng.standard_normal(len(means))
                actions[row, j] = index[int(np.argmax(draw))]
        return actions

    def update(self, info: dict[str, Any], rewards: npt.NDArray[np.float64]) -> None:
        for row, reward in enumerate(rewards):
            self.n[("history", str(int(info["action"]["history"][row])))] += 1
            self.total[("history", str(int(info["action"]["history"][row])))] += float(reward)
            for pattern in SENTENCE_PATTERNS:
                key = (pattern, str(info["sentence_ids"][pattern][row]))
                self.n[key] += 1
                self.total[key] += float(reward)
            self.grand[0] += 1
            self.grand[1] += float(reward)

    def greedy(self, core: Any, min_count: int = 30) -> npt.NDArray[np.int64]:
        """The joint action of the best-mean sentences tried at least ``min_count`` times."""
        out = np.zeros(len(PATTERNS), dtype=np.int64)
        for j, pattern in enumerate(PATTERNS):
            index, ids = self._arms(core, 0, pattern)
            means, counts = self._posterior(pattern, ids)
            means = np.where(counts >= min_count, means, -np.inf)
            out[j] = index[int(np.argmax(means))]
        return out


def run_bandit(
    env_id: str, seed: int, episodes: int, bank_path: Path | None, **refine: Any
) -> tuple[npt.NDArray[np.int64], dict[str, Any]]:
    """Online Thompson sampling on ``episodes`` train users; returns its greedy prompt and stats."""
    kwargs: dict[str, Any] = {"llm": f"sim?seed={seed}", "split": "train"}
    if env_id == PLUS:
        kwargs.update(scope="global", **refine)
    vec = gym.make_vec(env_id, num_envs=WIDTH, **kwargs)
    core = vec.unwrapped.core
    learner = ThompsonPrompt(seed)
    rewards_seen: list[float] = []
    start = time.perf_counter()
    for block in range(max(1, episodes // WIDTH)):
        vec.reset(seed=seed * 100_003 + block)
        for _ in range(core.config.rounds):
            actions = learner.act(core, list(range(WIDTH)))
            _, rewards, _, _, info = vec.step(actions)
            learner.update(info, rewards)
            rewards_seen.extend(rewards.tolist())
    action = learner.greedy(core)
    stats: dict[str, Any] = {"train_wall_s": time.perf_counter() - start}
    n = len(rewards_seen)
    stats["train_reward_last_quarter"] = float(np.mean(rewards_seen[3 * n // 4 :]))
    if env_id == PLUS and bank_path is not None:
        save_bank(vec, bank_path)
        refiner = core.refiner
        stats["refine_totals"] = dict(refiner.totals)
        stats["prompt_ids"] = {p: core.bank_of(0).sentence(p, int(action[j])).id for j, p in enumerate(PATTERNS) if j}
    vec.close()
    return action, stats


def test_scores(env_id: str, action: npt.ArrayLike, seed: int, **env_kwargs: Any) -> npt.NDArray[np.float64]:
    kwargs = {"llm": f"sim?seed={seed}", **env_kwargs}
    return evaluate(FixedPolicy(action), env_id, split="test", seed=EVAL_SEED, env_kwargs=kwargs).per_user()


def run_agent(
    env_id: str, seed: int, timesteps: int, algo: str, refine_steps: int = 0, **refine: Any
) -> tuple[float, dict[str, Any]]:
    """The RPP agent trained on ``env_id`` (train users) and scored greedily on the test users."""
    from rpp_gym.agents.rpp import Args, train

    env_kwargs: dict[str, Any] = {"llm": f"sim?seed={seed}", **refine}
    result = train(
        Args(exp_name=f"{algo}-{env_id}", env_id=env_id, env_kwargs=env_kwargs, algo=algo, seed=seed,
             total_timesteps=timesteps, refine_steps=refine_steps)
    )
    res = evaluate(result.policy(), env_id, split="test", seed=EVAL_SEED, env_kwargs=result.eval_env_kwargs)
    tail = result.curve[-max(1, len(result.curve) // 10) :]
    stats = {"train_wall_s": result.wall_s, "train_reward_last_10pct": float(np.mean(tail))}
    return float(res.per_user().mean()), stats


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--episodes", type=int, default=2000, help="train users the bandits learn from, per run")
    p.add_argument("--search-users", type=int, default=200, help="train users of the exhaustive best-fixed search")
    p.add_argument("--workers", type=int, default=None, help="processes for the exhaustive search")
    p.add_argument("--every", type=int, default=5, help="RPP+: rewrite after every this many rounds")
    p.add_argument("--min-trials", type=int, default=5, help="RPP+: trials before a rewrite may be replaced")
    p.add_argument("--part", default="all", choices=["all", "bandit", "agent"], help="which half to run")
    p.add_argument("--agent-algo", default="mappo", choices=["mappo", "a2c"], help="the RPP agent's update rule")
    p.add_argument("--agent-scope", default="global", choices=["episode", "global"], help="RPP+ bank scope")
    p.add_argument("--refine-steps", type=int, default=60_000,
                   help="global scope: the agent refines for its first N transitions, then learns on the frozen bank")
    p.add_argument("--timesteps", type=int, default=300_000, help="agent training budget (user-rounds) per run")
    p.add_argument("--quick", action="store_true", help="1 seed, 500 episodes, 50 search users, 30k agent steps")
    p.add_argument("--out", help="write the results as JSON here")
    a = p.parse_args()
    if a.quick:
        a.seeds, a.episodes, a.search_users = a.seeds[:1], 500, 50
        a.timesteps, a.refine_steps = min(a.timesteps, 30_000), min(a.refine_steps, 10_000)

    rows: dict[str, list[float]] = defaultdict(list)
    notes: dict[str, list[Any]] = defaultdict(list)
    tmp = Path(tempfile.mkdtemp(prefix="rpp-plus-bench-"))
    agent = a.agent_algo.upper() if a.agent_algo == "mappo" else "RPP (a2c)"
    for seed in a.seeds:
        t0 = time.perf_counter()
        if a.part in ("all", "bandit"):
            search = best_fixed_prompt(
                PLAIN,
                split="train",
                n_users=a.search_users,
                seed=EVAL_SEED,
                env_kwargs={"llm": f"sim?seed={seed}"},
                workers=a.workers,
            )
            rows["best fixed (RPP banks)"].append(float(test_scores(PLAIN, search.best_action, seed).mean()))
            notes["best fixed (RPP banks)"].append({"action": search.best_action.tolist(), "search_s": search.wall_s})
            action, stats = run_bandit(PLAIN, seed, a.episodes, None)
            rows["bandit (RPP)"].append(float(test_scores(PLAIN, action, seed).mean()))
            notes["bandit (RPP)"].append({"action": action.tolist(), **stats})
            bank = tmp / f"bank-{seed}.json"
            action, stats = run_bandit(PLUS, seed, a.episodes, bank, every=a.every, min_trials=a.min_trials)
            rows["bandit (RPP+)"].append(
                float(test_scores(PLUS, action, seed, scope="global", bank_file=str(bank), every=0).mean())
            )
            notes["bandit (RPP+)"].append({"action": action.tolist(), **stats})
        if a.part in ("all", "agent"):
            refine: dict[str, Any] = {"scope": a.agent_scope}
            if a.agent_scope == "global":
                refine.update(every=a.every, min_trials=a.min_trials, refine_steps=a.refine_steps)
            runs = (
                (f"{agent} agent (RPP)", PLAIN, {}),
                (f"{agent} agent (RPP+ slots, no rewrites)", PLUS, {"scope": a.agent_scope, "every": 0}),
                (f"{agent} agent (RPP+)", PLUS, refine),
            )
            for name, env_id, kwargs in runs:
                score, stats = run_agent(env_id, seed, a.timesteps, a.agent_algo, **kwargs)
                rows[name].append(score)
                notes[name].append(stats)
        print(
            f"seed {seed}: "
            + ", ".join(f"{k} {v[-1]:.4f}" for k, v in rows.items())
            + f" ({time.perf_counter() - t0:.0f}s)",
            flush=True,
        )

    print(f"\n{'method':<42} {'test NDCG@10 (mean over seeds)':>32}   per seed")
    for name, scores in rows.items():
        print(f"{name:<42} {np.mean(scores):>32.4f}   {' '.join(f'{s:.4f}' for s in scores)}")
    ok = True
    if a.part in ("all", "bandit"):
        plus, plain, fixed = (np.mean(rows[k]) for k in ("bandit (RPP+)", "bandit (RPP)", "best fixed (RPP banks)"))
        passed = plus > plain and plus > fixed
        ok &= passed
        print(f"\nbandit: RPP+ {plus:.4f} vs RPP {plain:.4f}, best fixed {fixed:.4f}: {'PASS' if passed else 'FAIL'}")
    if a.part in ("all", "agent"):
        plus, plain, slots = (np.mean(rows[k]) for k in (runs[2][0], runs[0][0], runs[1][0]))
        passed = plus > plain and plus > slots
        ok &= passed
        print(f"{agent} agent: RPP+ {plus:.4f} vs RPP {plain:.4f}, RPP+ slots without rewrites {slots:.4f}: "
              f"{'PASS' if passed else 'FAIL'}")
    if a.out:
        Path(a.out).write_text(json.dumps({"rows": rows, "notes": notes, "args": vars(a)}, indent=1, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
