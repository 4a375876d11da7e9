"""Exhaustive prompt search: the best fixed (task-wise) prompt and the per-user oracle.

Both baselines score *every* joint action (``3 * 5 * 9 * 5 = 675`` with the movie bank) held
fixed for a whole episode, for every user, exactly as :func:`rpp_gym.evaluation.evaluate` would
score :class:`~rpp_gym.agents.baselines.FixedPolicy` with the same split, seed and batch size:

1. :func:`episode_draws` replays ``evaluate``'s episodes (same batches, same seeds) once with a
   placeholder action and records each user's candidates and, per round, the shown order and the
   request seed. In the env these draws never depend on the actions, so every fixed action of a
   user is asked the same questions it would be asked by ``evaluate``.
2. :func:`score_actions` packs many ``(user, action)`` pairs into the slots of one wide
   :class:`~rpp_gym.envs.core.RPPCore` (the env's own step: render, one backend batch, parse,
   score) and steps them with those recorded draws, on several processes.

The per-user oracle (:func:`per_user_oracle`) picks each user's best fixed action. Picked and
scored on the same evaluation seed it is optimistic (the pick also fits that seed's sampling
noise); the fair number picks on ``select_seed`` and scores on another seed. It needs the
simulator (or a very patient real LLM): it is an upper bound for *fixed* prompts per user, not a
policy one could deploy.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt

import rpp_gym  # noqa: F401  (registers the env ids, also in worker processes)
from rpp_gym.envs.core import RPPCore
from rpp_gym.evaluation import split_users, user_batches

__all__ = [
    "EpisodeDraws",
    "OracleResult",
    "SearchResult",
    "best_fixed_prompt",
    "episode_draws",
    "joint_actions",
    "per_user_oracle",
    "score_actions",
]

SLOTS_PER_STEP = 2700
"""Target number of ``(user, action)`` slots stepped together (4 users x 675 actions)."""


def joint_actions(nvec: Sequence[int]) -> npt.NDArray[np.int64]:
    """Every joint action of ``MultiDiscrete(nvec)``, in row-major order.

    >>> joint_actions([2, 1, 1, 3]).tolist()
    [[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 2], [1, 0, 0, 0], [1, 0, 0, 1], [1, 0, 0, 2]]
    """
    return np.array(list(itertools.product(*(range(int(n)) for n in nvec))), dtype=np.int64).reshape(-1, len(nvec))


@dataclass
class EpisodeDraws:
    """The randomness of one evaluation, per user (what ``evaluate`` shows each user).

    Attributes:
        split: The user pool.
        user_ids: Users in evaluation order.
        candidates: ``int32[n_users, n_candidates]`` item indices (held-out item first).
        orders: ``int64[n_users, rounds, n_candidates]`` shown order of the candidates per round.
        seeds: ``int64[n_users, rounds]`` request seeds per round.
    """

    split: str
    user_ids: list[str]
    candidates: npt.NDArray[np.int32]
    orders: npt.NDArray[np.int64]
    seeds: npt.NDArray[np.int64]

    def subset(self, idx: npt.NDArray[np.int64] | slice) -> EpisodeDraws:
        users = np.asarray(self.user_ids, dtype=object)[idx].tolist()
        return EpisodeDraws(self.split, users, self.candidates[idx], self.orders[idx], self.seeds[idx])


def _core(env: gym.vector.VectorEnv) -> RPPCore:
    """The batched core behind an rpp-gym vector env."""
    core = getattr(env.unwrapped, "core", None)
    if not isinstance(core, RPPCore):
        raise TypeError(f"{env.unwrapped!r} is not an rpp-gym vector env (no RPPCore); search needs one")
    return core


def episode_draws(
    env_id: str = "RPP-MovieLens-Sim-v0",
    *,
    split: str = "test",
    n_users: int | None = None,
    seed: int = 0,
    batch_size: int = 200,
    env_kwargs: dict[str, Any] | None = None,
) -> EpisodeDraws:
    """Record the candidates, shown orders and request seeds ``evaluate`` would use.

    Arguments mean what they mean for :func:`rpp_gym.evaluation.evaluate` (same chunking into
    batches of ``batch_size`` users, batch ``i`` reset with ``seed + i * batch_size``).
    """
    env_kwargs = dict(env_kwargs or {})
    users, _ = split_users(env_id, split, n_users, env_kwargs)
    width = min(batch_size, len(users))
    env = gym.make_vec(env_id, num_envs=width, **env_kwargs)
    core = _core(env)
    rounds = core.config.rounds
    n = core.config.n_candidates
    candidates = np.zeros((len(users), n), dtype=np.int32)
    orders = np.zeros((len(users), rounds, n), dtype=np.int64)
    seeds = np.zeros((len(users), rounds), dtype=np.int64)
    placeholder = np.zeros((width, 4), dtype=np.int64)
    try:
        for lo, real, chunk, batch_seed in user_batches(users, width, seed):
            env.reset(seed=batch_seed, options={"split": split, "user_id": chunk})
            candidates[lo : lo + real] = core.candidates[:real]
            for t in range(rounds):
                # exactly the call RPPVectorEnv.step makes; only the draws are kept
                out = core.step(placeholder, env.unwrapped.np_random, slots=list(range(width)))
                orders[lo : lo + real, t] = out.draws[0][:real]
                seeds[lo : lo + real, t] = out.draws[1][:real]
    finally:
        env.close()
    return EpisodeDraws(split, users, candidates, orders, seeds)


def _score_chunk(
    env_id: str, env_kwargs: dict[str, Any], draws: EpisodeDraws, actions: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Mean reward over rounds of ``actions[u, a]`` for user ``u``: ``float64[n_users, n_actions]``."""
    n_users, n_actions = actions.shape[:2]
    per_step = max(1, min(n_users, SLOTS_PER_STEP // n_actions))
    width = per_step * n_actions
    env = gym.make_vec(env_id, num_envs=width, **env_kwargs)
    core = _core(env)
    rounds = core.config.rounds
    scratch = np.random.default_rng(0)  # reset_slot's own candidate draw is overwritten below
    scores = np.zeros((n_users, n_actions))
    try:
        for lo in range(0, n_users, per_step):
            users = np.arange(lo, min(lo + per_step, n_users))
            slots = list(range(len(users) * n_actions))
            owner = np.repeat(users, n_actions)  # slot -> user row
            for slot, u in zip(slots, owner.tolist(), strict=True):
                core.reset_slot(slot, scratch, draws.split, draws.user_ids[u])
                core.candidates[slot] = draws.candidates[u]
            acts = actions[users].reshape(-1, actions.shape[2])
            total = np.zeros(len(slots))
            for t in range(rounds):
                out = core.step(acts, None, slots=slots, draws=(draws.orders[owner, t], draws.seeds[owner, t]))
                total += out.rewards
            scores[users] = (total / rounds).reshape(len(users), n_actions)
    finally:
        env.close()
    return scores


def score_actions(
    actions: npt.ArrayLike,
    env_id: str = "RPP-MovieLens-Sim-v0",
    *,
    split: str = "test",
    n_users: int | None = None,
    seed: int = 0,
    batch_size: int = 200,
    env_kwargs: dict[str, Any] | None = None,
    workers: int | None = None,
    draws: EpisodeDraws | None = None,
) -> npt.NDArray[np.float64]:
    """Each user's mean reward (NDCG@k over the rounds) under each fixed joint action.

    The numbers equal ``evaluate(FixedPolicy(a), env_id, split=, n_users=, seed=,
    batch_size=, env_kwargs=).per_user()`` for every action ``a``, at a fraction of the cost.

    Args:
        actions: ``int[n_actions, 4]`` (the same actions for every user) or
            ``int[n_users, n_actions, 4]`` (per-user actions).
        env_id: A registered id.
        split: The user pool.
        n_users: The first ``n_users`` users of the pool (None: all).
        seed: The evaluation seed.
        batch_size: The ``evaluate`` batch size whose draws to reproduce.
        env_kwargs: Env keyword arguments; must be picklable when ``workers > 1``.
        workers: Processes (default: the CPU count, at most 8); 1 runs in this process.
        draws: Pre-recorded :func:`episode_draws` (skips recording them again).

    Returns:
        ``float64[n_users, n_actions]``.
    """
    env_kwargs = dict(env_kwargs or {})
    if draws is None:
        draws = episode_draws(
            env_id, split=split, n_users=n_users, seed=seed, batch_size=batch_size, env_kwargs=env_kwargs
        )
    n = len(draws.user_ids)
    acts = np.asarray(actions, dtype=np.int64)
    if acts.ndim == 2:
        acts = np.broadcast_to(acts, (n, *acts.shape))
    if acts.ndim != 3 or acts.shape[0] != n or acts.shape[2] != 4:
        raise ValueError(f"actions of shape {acts.shape} must be (n_actions, 4) or (n_users={n}, n_actions, 4)")
    workers = workers or min(os.cpu_count() or 1, 8)
    workers = max(1, min(workers, n))
    if workers == 1:
        return _score_chunk(env_id, env_kwargs, draws, acts)
    parts = np.array_split(np.arange(n), workers)
    # "fork" where available: workers inherit the loaded dataset and need no __main__ guard in
    # scripts; they only run numpy, so torch threads in the parent do not matter
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(workers, mp_context=mp.get_context(method)) as pool:
        futures = [
            pool.submit(_score_chunk, env_id, env_kwargs, draws.subset(p), np.ascontiguousarray(acts[p])) for p in parts
        ]
        return np.concatenate([f.result() for f in futures], axis=0)


@dataclass
class SearchResult:
    """Every fixed joint action scored on every user of a split.

    Attributes:
        split: The user pool searched.
        seed: The evaluation seed.
        user_ids: Users in evaluation order.
        actions: ``int64[n_actions, 4]``, the joint actions (all of them by default).
        scores: ``float64[n_users, n_actions]``, each user's mean reward under each action.
        wall_s: Seconds the search took.
    """

    split: str
    seed: int
    user_ids: list[str]
    actions: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float64]
    wall_s: float = 0.0

    @property
    def best_index(self) -> int:
        """Index of the action with the best mean over users (ties: the first)."""
        return int(np.argmax(self.scores.mean(axis=0)))

    @property
    def best_action(self) -> npt.NDArray[np.int64]:
        """The best fixed (task-wise) joint action on this split."""
        return self.actions[self.best_index].copy()

    def per_user(self, action: Sequence[int] | None = None) -> npt.NDArray[np.float64]:
        """Per-user scores of ``action`` (default: the best fixed action)."""
        if action is None:
            return self.scores[:, self.best_index].copy()
        match = np.flatnonzero((self.actions == np.asarray(action)).all(axis=1))
        if not len(match):
            raise KeyError(f"action {list(action)} was not searched")
        return self.scores[:, int(match[0])].copy()

    def oracle_index(self) -> npt.NDArray[np.int64]:
        """Each user's best action index (ties: the first)."""
        return np.argmax(self.scores, axis=1)


def _search(
    env_id: str, split: str, n_users: int | None, seed: int, batch_size: int,
    env_kwargs: dict[str, Any] | None, workers: int | None,
) -> SearchResult:
    start = time.perf_counter()
    env = gym.make_vec(env_id, num_envs=1, **dict(env_kwargs or {}))
    actions = joint_actions(env.single_action_space.nvec)  # type: ignore[attr-defined]
    env.close()
    draws = episode_draws(env_id, split=split, n_users=n_users, seed=seed, batch_size=batch_size, env_kwargs=env_kwargs)
    scores = score_actions(actions, env_id, env_kwargs=env_kwargs, workers=workers, draws=draws)
    return SearchResult(split, seed, draws.user_ids, actions, scores, time.perf_counter() - start)


def best_fixed_prompt(
    env_id: str = "RPP-MovieLens-Sim-v0",
    *,
    split: str = "train",
    n_users: int | None = None,
    seed: int = 0,
    batch_size: int = 200,
    env_kwargs: dict[str, Any] | None = None,
    workers: int | None = None,
) -> SearchResult:
    """Score all joint actions on ``split`` (default: the *train* users) to find the best fixed prompt.

    ``result.best_action`` is the strongest task-wise prompt; evaluate it on the test users with
    ``evaluate(FixedPolicy(result.best_action), split="test")``. Arguments as in
    :func:`score_actions`.
    """
    return _search(env_id, split, n_users, seed, batch_size, env_kwargs, workers)


@dataclass
class OracleResult:
    """Each user's best fixed joint action, picked on one seed and scored on another.

    Attributes:
        user_ids: Users in evaluation order.
        actions: ``int64[n_users, 4]``, each user's best fixed action on ``select_seed``.
        scores: ``float64[n_users]``, their mean reward on ``score_seed`` (the fair upper bound).
        optimistic_scores: ``float64[n_users]``, their mean reward on ``select_seed`` (picked and
            scored on the same draws: optimistic).
        search: The full search on ``select_seed``.
        select_seed: Seed the actions were picked on.
        score_seed: Seed they were scored on.
        wall_s: Seconds it took.
    """

    user_ids: list[str]
    actions: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float64]
    optimistic_scores: npt.NDArray[np.float64]
    search: SearchResult
    select_seed: int
    score_seed: int
    wall_s: float = 0.0


def per_user_oracle(
    env_id: str = "RPP-MovieLens-Sim-v0",
    *,
    split: str = "test",
    n_users: int | None = None,
    select_seed: int = 1,
    score_seed: int = 0,
    batch_size: int = 200,
    env_kwargs: dict[str, Any] | None = None,
    workers: int | None = None,
) -> OracleResult:
    """Per user, the best fixed joint action (exhaustive search) and its score.

    Picks on ``select_seed`` and scores on ``score_seed``, so ``scores`` is comparable with
    ``evaluate(policy, seed=score_seed)`` of any policy; pass the same seed twice for the
    optimistic same-draws bound (then ``scores == optimistic_scores``). Other arguments as in
    :func:`score_actions`.
    """
    start = time.perf_counter()
    search = _search(env_id, split, n_users, select_seed, batch_size, env_kwargs, workers)
    picks = search.actions[search.oracle_index()]
    optimistic = search.scores[np.arange(len(picks)), search.oracle_index()]
    if score_seed == select_seed:
        scores = optimistic.copy()
    else:
        scores = score_actions(
            picks[:, None, :], env_id, split=split, n_users=n_users, seed=score_seed,
            batch_size=batch_size, env_kwargs=env_kwargs, workers=workers,
        )[:, 0]
    return OracleResult(
        search.user_ids, picks, scores, optimistic, search, select_seed, score_seed, time.perf_counter() - start
    )
