"""Evaluate a prompt policy on every user of a split, on the same candidates for every method.

Each user of the split is one episode. Candidates and their shown orders come from the
evaluation seed alone (the env draws them in the same order whatever the policy does), so all
methods evaluated with the same seed see identical candidate lists.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from rpp_gym.agents.baselines import Policy

__all__ = ["EvalResult", "UserBatch", "evaluate", "split_users", "user_batches"]

METRIC_KEYS = ("ndcg@1", "ndcg@5", "ndcg@10", "hit@1", "hit@5", "hit@10", "mrr")


@dataclass
class EvalResult:
    """Per-user, per-round metrics of one policy.

    Attributes:
        name: Policy name.
        user_ids: Users in evaluation order.
        metrics: ``{metric: float[n_users, rounds]}``.
        parse_ok: ``bool[n_users, rounds]``, the answer parsed into a ranking of every candidate
            (its complement is the parse-failure rate: answers that lost, repeated or invented
            items, or could not be read).
        tokens: Prompt plus completion tokens over the whole evaluation.
        actions: ``int[n_users, rounds, 4]`` chosen actions.
    """

    name: str
    user_ids: list[str]
    metrics: dict[str, npt.NDArray[np.float64]]
    parse_ok: npt.NDArray[np.bool_]
    tokens: int = 0
    wall_s: float = 0.0
    actions: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros((0, 0, 4), dtype=np.int64))

    def per_user(self, metric: str = "ndcg@10") -> npt.NDArray[np.float64]:
        """Each user's mean over rounds."""
        return self.metrics[metric].mean(axis=1)

    def summary(self) -> dict[str, float]:
        """Mean over users (of each user's mean over rounds), with a 95% half-width for NDCG@10."""
        out = {k: float(v.mean()) for k, v in self.metrics.items()}
        per_user = self.per_user("ndcg@10")
        out["ndcg@10_ci95"] = float(1.96 * per_user.std(ddof=1) / np.sqrt(len(per_user))) if len(per_user) > 1 else 0.0
        out["parse_failure_rate"] = float(1 - self.parse_ok.mean())
        out["tokens"] = float(self.tokens)
        return out


def split_users(
    env_id: str, split: str, n_users: int | None, env_kwargs: dict[str, Any]
) -> tuple[list[str], Any]:
    """The first ``n_users`` users of ``split`` (all when None), in pool order, and the env's data bundle."""
    import gymnasium as gym

    env = gym.make_vec(env_id, num_envs=1, **env_kwargs)
    try:
        bundle = env.unwrapped.core.bundle  # type: ignore[attr-defined]
    finally:
        env.close()
    if split not in bundle.pools:
        raise KeyError(f"unknown split {split!r}; choose one of {list(bundle.pools)}")
    pool = bundle.pools[split]
    return [bundle.dataset.user_ids[i] for i in pool][: n_users or len(pool)], bundle


class UserBatch(NamedTuple):
    """One vector-env batch of an evaluation: rows ``lo .. lo + real`` of the results."""

    lo: int
    real: int
    user_ids: list[str]
    """``width`` users: the ``real`` ones, then repeats of the last (results dropped)."""
    seed: int
    """The batch's reset seed."""


def user_batches(users: list[str], width: int, seed: int) -> Iterator[UserBatch]:
    """The batching rule every evaluation shares, so all of them see the same candidates.

    Users go ``width`` at a time in order; a short last batch is padded with repeats of its
    last user; the batch starting at user ``lo`` is reset with ``seed + lo``.

    >>> [tuple(b) for b in user_batches(["a", "b", "c"], 2, 10)]
    [(0, 2, ['a', 'b'], 10), (2, 1, ['c', 'c'], 12)]
    """
    for lo in range(0, len(users), width):
        chunk = list(users[lo : lo + width])
        real = len(chunk)
        yield UserBatch(lo, real, chunk + [chunk[-1]] * (width - real), seed + lo)


def evaluate(
    policy: Policy,
    env_id: str = "RPP-MovieLens-Sim-v0",
    *,
    split: str = "test",
    n_users: int | None = None,
    seed: int = 0,
    batch_size: int = 200,
    env_kwargs: dict[str, Any] | None = None,
) -> EvalResult:
    """Roll ``policy`` out once per user of ``split`` with the batched vector env.

    A policy with a ``begin(user_ids)`` method is told the users of each batch before it acts.

    Users are processed ``batch_size`` at a time (one LLM batch per round); a short last batch
    is padded with repeats of its last user whose results are dropped.
    """
    import time

    import gymnasium as gym

    env_kwargs = dict(env_kwargs or {})
    users, _ = split_users(env_id, split, n_users, env_kwargs)
    width = min(batch_size, len(users))
    env = gym.make_vec(env_id, num_envs=width, **env_kwargs)
    rounds = env.unwrapped.config.rounds  # type: ignore[attr-defined]
    metrics = {k: np.zeros((len(users), rounds)) for k in METRIC_KEYS}
    parse_ok = np.zeros((len(users), rounds), dtype=bool)
    actions_log = np.zeros((len(users), rounds, 4), dtype=np.int64)
    tokens = 0
    start = time.perf_counter()
    try:
        for lo, real, chunk, batch_seed in user_batches(users, width, seed):
            obs, _ = env.reset(seed=batch_seed, options={"split": split, "user_id": chunk})
            if hasattr(policy, "begin"):
                policy.begin(chunk)  # policies that act per user learn whose episodes these are
            for t in range(rounds):
                actions = np.asarray(policy.act(obs), dtype=np.int64)
                obs, _, _, _, info = env.step(actions)
                actions_log[lo : lo + real, t] = actions[:real]
                for k in METRIC_KEYS:
                    metrics[k][lo : lo + real, t] = info["metrics"][k][:real]
                parse_ok[lo : lo + real, t] = info["parse"]["complete"][:real]
                llm = info["llm"]
                tokens += int(np.sum(llm["prompt_tokens"][:real]) + np.sum(llm["completion_tokens"][:real]))
    finally:
        env.close()
    return EvalResult(policy.name, users, metrics, parse_ok, tokens, time.perf_counter() - start, actions_log)
