"""``RPPEnv``: one user's recommendation prompt, personalised round by round."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from rpp_gym.envs.config import RPPConfig
from rpp_gym.envs.core import RPPCore
from rpp_gym.llm.base import LLMBackend
from rpp_gym.prompts.bank import PATTERNS, SentenceBank

__all__ = ["RPPEnv"]

RESET_OPTIONS = ("split", "user_id")


class RPPEnv(gym.Env[np.ndarray, np.ndarray]):
    """Reinforced Prompt Personalization (Mao et al., ACM TOIS 2025) as a Gymnasium env.

    ## Description

    A recommendation prompt is composed of four patterns: **history records** (how many of the
    user's most recent items are shown), **role-playing**, **reasoning guidance** and **output
    format**. Each step, the agent picks one sentence per pattern; the env renders the prompt
    (role, history, the candidate list in a fresh random order, reasoning, format), an LLM ranks
    the candidates, the answer is parsed into a ranking, and the reward is the NDCG of the
    user's held-out next item. One episode is one user for ``rounds`` rounds (paper: 15).

    ## Action Space

    ``MultiDiscrete([n_history, n_role, n_reasoning, n_format])``; with the movie bank
    ``[3, 5, 9, 5]``. In ``history_mode="increment"`` (paper) the first entry adds 0, 1 or 2
    items to the shown history (starting from ``init_history``, capped by the real history); in
    ``"absolute"`` it picks a length from ``history_lengths``. Sentence texts are in
    ``info["sentences"]`` and in ``env.unwrapped.bank``.

    With growing banks (RPP+, :class:`rpp_gym.envs.refine.RefineWrapper`) each sentence pattern
    has ``capacity`` indices (``[3, 16, 16, 16]`` by default), some of them empty; the current
    sentences are in ``env.unwrapped.core.bank_of(0)``. :meth:`action_masks` (flattened,
    ``bool[sum(nvec)]``, what sb3-contrib's ``MaskablePPO`` reads) and the observation's mask
    slice say which indices hold a sentence. Choosing an empty one raises a ``ValueError``, or
    uses the pattern's default with ``invalid_action="default"``.

    ## Observation Space

    ``Box(-1, 1, (2d + 2 + sum(nvec) + 4,), float32)`` (``d = embedding_dim``, default 32, so 92
    with the movie bank), concatenating:

    | slice | meaning |
    |---|---|
    | ``d`` | the user's collaborative embedding (unit-norm SVD factor of the training interactions) |
    | 1 | round fraction ``t / rounds`` |
    | 1 | shown history length ``/ history_cap`` |
    | ``sum(nvec)`` | previous joint action, one-hot per pattern (zeros at reset) |
    | 4 | previous reward, NDCG@1, NDCG@5, and whether the answer parsed (zeros at reset) |
    | ``d`` | mean embedding of the LLM's previous top-3 ranked items (zeros at reset) |
    | ``2 * S`` | RPP+ only: each sentence slot's running mean reward, then its trials (``core.stats_slice``) |
    | ``sum(nvec)`` | RPP+ only: the validity mask, 1 where an action index holds a sentence (``core.mask_slice``) |

    Without growing banks the observation has neither block (92 entries with the movie bank);
    with them it is ``2d + 6 + 2 * sum(nvec) + 2 * S`` long, ``S = sum(nvec[1:])`` (268 for
    capacity 16; the statistics are documented in ``RefineWrapper``).

    ## Rewards

    NDCG@k (``k=10``) of the held-out item in the parsed ranking: ``1 / log2(rank + 2)`` when it
    is ranked within the top k, else 0. Candidates the answer does not rank get no credit
    (``unranked="zero"``, paper) unless ``unranked="append"``. ``info["metrics"]`` has NDCG@1/5/10,
    hit@1/5/10 and MRR.

    ## Starting State

    A user drawn uniformly from the ``split`` pool (or ``options["user_id"]``), ``n_candidates``
    candidates (the held-out item and unseen negatives, drawn once per episode), history length
    ``init_history``.

    ## Episode End

    ``terminated=True`` after ``rounds`` steps (the horizon is part of the task and the round
    fraction is observed). Never truncated by the env itself.

    ## Info

    ``prompt``, ``answer``, ``ranking`` (candidate item ids in parsed order), ``candidates`` (in
    shown order), ``target``, ``target_pos`` (0-based shown position of the held-out item),
    ``target_rank`` (-1 when unranked), ``metrics``, ``parse`` (parser statistics), ``user_id``,
    ``history_len``, ``round``, ``action``, ``sentences``, ``sentence_ids``, ``llm`` (tokens,
    latency, cache hit) and, with a cached backend, ``cache`` (hit/miss/token counters). With
    growing banks also ``empty_slot_replaced`` and ``refine`` (see ``RefineWrapper``).

    ## Arguments

    See :class:`rpp_gym.envs.config.RPPConfig`; every field is a keyword argument
    (``gym.make("RPP-MovieLens-Sim-v0", rounds=5, split="test")``), a misspelled one is a
    ``TypeError``. ``reset(options={"split": "valid", "user_id": "42"})`` picks the pool or user.

    ## Version History

    * v0: initial release.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, backend: LLMBackend | None = None, **kwargs: Any) -> None:
        self.config = RPPConfig(**kwargs)
        # Like Gymnasium's own envs, an unsupported render mode is stored (gym.make warns about
        # it) rather than refused: SB3's make_vec_env passes render_mode="rgb_array" by default.
        self.render_mode = render_mode
        self.core = RPPCore(self.config, num_slots=1, backend=backend)
        self.refresh_spaces()
        self._split = self.config.split
        self._closed = False

    def refresh_spaces(self) -> None:
        """Re-read the action and observation spaces from the core (after ``core.set_capacity``)."""
        self.action_space = self.core.action_space
        self.observation_space = self.core.observation_space

    @property
    def bank(self) -> SentenceBank:
        """The sentence bank the actions index into."""
        return self.core.bank

    @property
    def backend(self) -> LLMBackend:
        return self.core.backend

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - set(RESET_OPTIONS)
        if unknown:
            raise KeyError(f"unknown reset option(s) {sorted(unknown)}; allowed: {list(RESET_OPTIONS)}")
        split = options.get("split", self.config.split)
        if split not in self.core.bundle.pools:
            raise ValueError(f"split={split!r} is unknown; choose one of {list(self.core.bundle.pools)}")
        self.core.reset_slot(0, self.np_random, split, options.get("user_id"))
        self._split = split
        return self.core.observations()[0], self.core.reset_info(0, split)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        out = self.core.step([action], self.np_random)
        info = out.infos[0]
        return self.core.observations()[0], float(out.rewards[0]), bool(out.terminated[0]), False, info

    def action_masks(self) -> np.ndarray:
        """Flattened validity mask ``bool[sum(nvec)]`` (sb3-contrib's ``MaskablePPO``).

        Pattern by pattern in ``PATTERNS`` order; all True with fixed banks, False at empty slots
        of growing ones.
        """
        return self.core.action_masks([0])[0]

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            gym.logger.warn(f"render_mode={self.render_mode!r} cannot be rendered; pass render_mode='ansi' to gym.make")
            return None
        info = self.core.last_info[0]
        if info is None:
            user = int(self.core.user[0])
            if user < 0:
                return "RPPEnv: not reset yet\n"
            return f"user {self.core.bundle.dataset.user_ids[user]}: new episode, no prompt sent yet\n"
        m = info["metrics"]
        lines = [
            f"user {info['user_id']}  round {info['round']}/{self.config.rounds}  "
            f"action {[info['action'][p] for p in PATTERNS]}  history {info['history_len']}",
            "-" * 72,
            info["prompt"],
            "-" * 72,
            "LLM answer:",
            info["answer"],
            "-" * 72,
            f"held-out item {info['target']!r} shown at position {info['target_pos'] + 1}, "
            f"ranked {'not at all' if info['target_rank'] < 0 else info['target_rank'] + 1}",
            f"reward NDCG@{self.config.k} = {m[f'ndcg@{self.config.k}']:.3f}   "
            f"NDCG@1 {m['ndcg@1']:.3f}  NDCG@5 {m['ndcg@5']:.3f}  parsed {info['parse']['recognized']}/"
            f"{self.config.n_candidates}",
        ]
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        if not getattr(self, "_closed", True):
            self._closed = True
            self.core.close()
        super().close()


