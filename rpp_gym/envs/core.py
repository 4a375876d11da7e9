"""The batched core shared by the single env, the vector env and the PettingZoo view.

One ``RPPCore`` holds ``num_slots`` episodes side by side (one user each). A step is the list in
DESIGN.md: compose every slot's prompt, send them all to the backend as ONE batch, parse each
answer, score it. Nothing here knows whether it is driven by ``RPPEnv`` (one slot) or
``RPPVectorEnv`` (N slots), so there is one implementation of the step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from gymnasium import spaces

from rpp_gym.data.bundle import DataBundle, load_bundle
from rpp_gym.data.dataset import Dataset
from rpp_gym.envs.config import RPPConfig
from rpp_gym.llm.base import LLMBackend, LLMRequest, SamplingParams
from rpp_gym.llm.sim import RankingContext, SentenceInfo
from rpp_gym.metrics import metrics_for_rank
from rpp_gym.prompts.bank import PATTERNS, SentenceBank, load_bank
from rpp_gym.prompts.parse import complete_ranking, parse_ranking
from rpp_gym.prompts.render import render_prompt

__all__ = ["RPPCore", "StepOutcome"]

TOP_ITEMS = 3
"""How many of the LLM's top-ranked items the observation summarises."""


@dataclass
class StepOutcome:
    """What one batched step produced, per slot."""

    rewards: npt.NDArray[np.float64]
    terminated: npt.NDArray[np.bool_]
    infos: list[dict[str, Any]]
    draws: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]
    """The shown candidate orders and request seeds used; pass them back to re-ask the same question."""


def _default_init_history(dataset: Any) -> int:
    if isinstance(dataset, str):
        from rpp_gym.data.specs import get_spec

        return get_spec(dataset).init_history
    return 1


class RPPCore:
    """Episodes of ``num_slots`` users stepped together.

    Args:
        config: The env configuration.
        num_slots: Episodes held side by side.
        backend: An already-built backend to share (default: build from ``config.llm``).
    """

    def __init__(self, config: RPPConfig, num_slots: int = 1, backend: LLMBackend | None = None) -> None:
        from rpp_gym.llm.spec import make_backend

        self.config = config
        self.num_slots = num_slots
        dataset = config.dataset
        if not isinstance(dataset, (str, Dataset)):
            raise TypeError(f"dataset={dataset!r} must be a dataset name or an rpp_gym.data.Dataset")
        self.bundle: DataBundle = load_bundle(dataset, config.data_dir, config.bundle_options)
        ds = self.bundle.dataset
        bank = config.bank if config.bank is not None else ds.domain
        self.bank: SentenceBank = bank if isinstance(bank, SentenceBank) else load_bank(bank)
        if config.history_mode == "increment":
            self.history_choices = tuple(self.bank.history_increments)
        else:
            self.history_choices = tuple(config.history_lengths or self.bank.history_lengths)
        self.init_history = (
            config.init_history if config.init_history is not None else _default_init_history(dataset)
        )
        self.nvec = np.array(
            [len(self.history_choices), len(self.bank.role), len(self.bank.reasoning), len(self.bank.format)],
            dtype=np.int64,
        )
        self.action_space = spaces.MultiDiscrete(self.nvec)
        d = self.bundle.user_emb.shape[1]
        self.obs_dim = 2 * d + 2 + int(self.nvec.sum()) + 4
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(self.obs_dim,), dtype=np.float32)
        self.sampling = SamplingParams(temperature=config.temperature, max_tokens=config.max_tokens)
        self.owns_backend = backend is None
        self.backend: LLMBackend = backend if backend is not None else make_backend(
            config.llm, world=self.bundle, cache=config.cache
        )
        self._sentence_info = {
            p: [
                SentenceInfo(p, s.id, s.traits, empty=not s.text.strip())
                for s in self.bank.sentences(p)
            ]
            for p in PATTERNS[1:]
        }
        b = num_slots
        self.user = np.full(b, -1, dtype=np.int64)
        self.candidates = np.zeros((b, config.n_candidates), dtype=np.int32)
        self.round = np.zeros(b, dtype=np.int64)
        self.hist_len = np.zeros(b, dtype=np.int64)
        self.prev_action = np.full((b, 4), -1, dtype=np.int64)
        self.prev_scores = np.zeros((b, 4), dtype=np.float32)  # reward, ndcg@1, ndcg@5, parse ok
        self.top_emb = np.zeros((b, d), dtype=np.float32)
        self.last_info: list[dict[str, Any] | None] = [None] * b
        self._n_onehot = int(self.nvec.sum())
        self._onehot_offsets = np.concatenate([[0], np.cumsum(self.nvec)[:-1]]).astype(np.int64)
        self._obs = np.zeros((b, self.obs_dim), dtype=np.float32)

    # ---- episodes --------------------------------------------------------------------------

    def pool(self, split: str) -> npt.NDArray[np.int64]:
        if split not in self.bundle.pools:
            raise KeyError(f"unknown split {split!r}; choose one of {list(self.bundle.pools)}")
        return self.bundle.pools[split]

    def reset_slot(self, slot: int, rng: np.random.Generator, split: str, user_id: str | None = None) -> None:
        """Start a new episode in ``slot``: a user (drawn from ``split`` unless given) and candidates."""
        if user_id is not None:
            user = self.bundle.user_index(str(user_id), split)
        else:
            pool = self.pool(split)
            user = int(pool[rng.integers(len(pool))])
        bundle = self.bundle
        target = int(bundle.split.targets[user])
        negatives = self._negatives(rng, user)
        self.user[slot] = user
        self.candidates[slot, 0] = target
        self.candidates[slot, 1:] = negatives
        self.round[slot] = 0
        available = len(bundle.split.history(user))
        if self.config.history_mode == "increment":
            self.hist_len[slot] = min(self.init_history, available)
        else:
            self.hist_len[slot] = 0
        self.prev_action[slot] = -1
        self.prev_scores[slot] = 0.0
        self.top_emb[slot] = 0.0
        self.last_info[slot] = None
        self._write_obs(slot)

    def reset_info(self, slot: int, split: str) -> dict[str, Any]:
        """What ``reset`` reports about the episode in ``slot``."""
        ds = self.bundle.dataset
        return {
            "user_id": ds.user_ids[int(self.user[slot])],
            "split": split,
            "history_len": int(self.hist_len[slot]),
            "candidates": [ds.item_ids[j] for j in self.candidates[slot]],
        }

    def _negatives(self, rng: np.random.Generator, user: int) -> npt.NDArray[np.int32]:
        from rpp_gym.data.protocol import sample_negatives

        return sample_negatives(rng, self.bundle.seen(user), self.bundle.negative_pool, self.config.n_candidates - 1)

    # ---- observation -----------------------------------------------------------------------

    def observations(self, slots: Sequence[int] | None = None) -> npt.NDArray[np.float32]:
        """The documented observation vector of each slot (see ``RPPEnv``'s docstring)."""
        return self._obs.copy() if slots is None else self._obs[np.asarray(slots)]

    def _write_obs(self, slot: int) -> None:
        """Refresh one slot's row of the observation matrix after a reset or a step."""
        row = self._obs[slot]
        d = self.bundle.user_emb.shape[1]
        row[:d] = self.bundle.user_emb[self.user[slot]]
        row[d] = self.round[slot] / self.config.rounds
        row[d + 1] = min(self.hist_len[slot] / max(self.config.history_cap, 1), 1.0)
        one_hot = row[d + 2 : d + 2 + self._n_onehot]
        one_hot[:] = 0.0
        if self.prev_action[slot, 0] >= 0:
            one_hot[self._onehot_offsets + self.prev_action[slot]] = 1.0
        row[d + 2 + self._n_onehot : d + 6 + self._n_onehot] = self.prev_scores[slot]
        row[d + 6 + self._n_onehot :] = np.clip(self.top_emb[slot], -1.0, 1.0)

    # ---- the step ----------------------------------------------------------------------------

    def check_actions(self, actions: Any, rows: int) -> npt.NDArray[np.int64]:
        """Validate ``rows`` joint actions; a ``ValueError`` names the bad value and the space."""
        arr = np.asarray(actions)
        if arr.size == rows * 4 and arr.ndim <= 2:
            arr = arr.reshape(rows, 4)
        integral = np.issubdtype(arr.dtype, np.integer) or (
            np.issubdtype(arr.dtype, np.floating) and bool(np.all(arr == np.round(arr)))
        )
        if arr.shape != (rows, 4) or not integral:
            raise ValueError(
                f"action {actions!r} must be {'4' if rows == 1 else f'{rows}x4'} integers "
                f"(history, role, reasoning, format) within MultiDiscrete({self.nvec.tolist()})"
            )
        arr = arr.astype(np.int64)
        bad = (arr < 0) | (arr >= self.nvec)
        if bad.any():
            slot, j = map(int, np.argwhere(bad)[0])
            raise ValueError(
                f"action {arr[slot].tolist()} is outside the action space: {PATTERNS[j]}={arr[slot, j]} "
                f"but that pattern has {self.nvec[j]} choices (0..{self.nvec[j] - 1})"
            )
        return arr

    def draw(self, rng: np.random.Generator, rows: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The randomness of one step: each row's shown candidate order and its request seed.

        ``step`` calls this when not given ``draws``; callers that need to ask a counterfactual
        question before stepping draw first and pass the same draws to both.
        """
        orders = np.argsort(rng.random((rows, self.config.n_candidates)), axis=1)
        seeds = rng.integers(0, 2**63, size=rows)
        return orders, seeds

    def step(
        self,
        actions: Any,
        rng: np.random.Generator | None,
        slots: Sequence[int] | None = None,
        *,
        commit: bool = True,
        draws: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None,
    ) -> StepOutcome:
        """Step the given slots (default: all) with one joint action each; one backend batch.

        Args:
            actions: One joint action per slot.
            rng: Draws the shown candidate order and the request seeds (unused when ``draws``
                is given).
            slots: Which slots to step.
            commit: False scores the actions without changing any episode state (a
                counterfactual question, e.g. for per-agent credit).
            draws: ``(orders, seeds)`` from an earlier outcome, to show the candidates in the
                same order with the same request seeds.
        """
        slots = list(range(self.num_slots)) if slots is None else list(slots)
        acts = self.check_actions(actions, len(slots))
        if (self.user[slots] < 0).any():
            raise RuntimeError("step() called before reset(); call reset() first")
        if (self.round[slots] >= self.config.rounds).any():
            raise RuntimeError("the episode is over; call reset() before step()")

        n = self.config.n_candidates
        titles = self.bundle.dataset.item_text
        # 1. compose (nothing is committed until the backend has answered)
        new_len = np.empty(len(slots), dtype=np.int64)
        shown = np.empty((len(slots), n), dtype=np.int32)
        if draws is None:
            if rng is None:
                raise ValueError("step() needs an rng unless draws=(orders, seeds) are given")
            draws = self.draw(rng, len(slots))
        orders, seeds = draws
        requests, prompts, hist_titles_all, cand_titles_all = [], [], [], []
        for i, slot in enumerate(slots):
            user = int(self.user[slot])
            history = self.bundle.split.history(user)
            choice = self.history_choices[acts[i, 0]]
            if self.config.history_mode == "increment":
                length = min(int(self.hist_len[slot]) + choice, len(history))
            else:
                length = min(choice, len(history))
            new_len[i] = length
            shown_hist = history[len(history) - length :] if length else history[:0]
            shown[i] = self.candidates[slot, orders[i]]
            hist_titles = [titles[j] for j in shown_hist]
            cand_titles = [titles[j] for j in shown[i]]
            prompt = render_prompt(self.bank, int(acts[i, 1]), int(acts[i, 2]), int(acts[i, 3]), hist_titles, cand_titles)
            ctx = RankingContext(
                user=user,
                history=shown_hist,
                candidates=shown[i],
                role=self._sentence_info["role"][acts[i, 1]],
                reasoning=self._sentence_info["reasoning"][acts[i, 2]],
                format=self._sentence_info["format"][acts[i, 3]],
                prompt_chars=len(prompt),
            )
            requests.append(LLMRequest.from_prompt(prompt, self.sampling, int(seeds[i]), ctx))
            prompts.append(prompt)
            hist_titles_all.append(hist_titles)
            cand_titles_all.append(cand_titles)

        # 2. the LLM, one batch (the only slow part; an error leaves every slot untouched)
        completions = self.backend.generate(requests)
        if len(completions) != len(requests):
            from rpp_gym.llm.base import LLMBackendError

            raise LLMBackendError(f"backend returned {len(completions)} completions for {len(requests)} requests")

        # 3. parse and score, then commit
        rewards = np.zeros(len(slots))
        infos = []
        k = self.config.k
        for i, slot in enumerate(slots):
            comp = completions[i]
            parsed = parse_ranking(comp.text, cand_titles_all[i], hist_titles_all[i])
            order = parsed.order
            if self.config.unranked == "append":
                order = complete_ranking(order, n)
            target_pos = int(np.flatnonzero(orders[i] == 0)[0])
            rank = order.index(target_pos) if target_pos in order else None
            metrics = metrics_for_rank(rank, ks=tuple(sorted({1, 5, 10, k})))
            reward = float(metrics[f"ndcg@{k}"])
            rewards[i] = reward
            ranked_items = [int(shown[i, p]) for p in order]
            if not commit:
                infos.append({"metrics": metrics, "answer": comp.text, "parse": parsed.as_dict()})
                continue
            self.hist_len[slot] = new_len[i]
            self.round[slot] += 1
            self.prev_action[slot] = acts[i]
            self.prev_scores[slot] = (reward, metrics["ndcg@1"], metrics["ndcg@5"], float(parsed.success))
            top = ranked_items[:TOP_ITEMS]
            self.top_emb[slot] = self.bundle.item_vecs[top].mean(axis=0) if top else 0.0
            self._write_obs(slot)
            info = {
                "user_id": self.bundle.dataset.user_ids[int(self.user[slot])],
                "round": int(self.round[slot]),
                "history_len": int(new_len[i]),
                "action": {p: int(a) for p, a in zip(PATTERNS, acts[i], strict=True)},
                "sentences": {
                    p: self.bank.sentences(p)[acts[i, j]].text.replace("{n}", str(n))
                    for j, p in enumerate(PATTERNS[1:], 1)
                },
                "prompt": prompts[i],
                "answer": comp.text,
                "candidates": [self.bundle.dataset.item_ids[j] for j in shown[i]],
                "ranking": [self.bundle.dataset.item_ids[j] for j in ranked_items],
                "target": self.bundle.dataset.item_ids[int(self.candidates[slot, 0])],
                "target_pos": target_pos,
                "target_rank": -1 if rank is None else rank,
                "metrics": metrics,
                "parse": parsed.as_dict(),
                "llm": {
                    "finish_reason": comp.finish_reason,
                    "prompt_tokens": comp.prompt_tokens,
                    "completion_tokens": comp.completion_tokens,
                    "latency_s": comp.latency_s,
                    "cached": comp.cached,
                },
            }
            stats = getattr(self.backend, "stats", None)
            if callable(stats):
                info["cache"] = stats()
            self.last_info[slot] = info
            infos.append(info)
        terminated = self.round[slots] >= self.config.rounds
        return StepOutcome(rewards, terminated, infos, (orders, seeds))

    def close(self) -> None:
        if self.owns_backend:
            self.backend.close()
