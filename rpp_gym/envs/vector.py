"""``RPPVectorEnv``: N users stepped together with ONE batched LLM call per step."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rpp_gym.envs.config import RPPConfig
from rpp_gym.envs.core import RPPCore
from rpp_gym.envs.rpp_env import RESET_OPTIONS
from rpp_gym.llm.base import LLMBackend

__all__ = ["RPPVectorEnv"]


class RPPVectorEnv(VectorEnv[np.ndarray, np.ndarray, np.ndarray]):
    """The batched vector env behind ``gym.make_vec("RPP-...", num_envs=N)``.

    Each step renders N prompts, sends them to the backend as one batch (concurrent requests
    for a server, one batched generate for an in-process model, one vectorised pass for ``sim``),
    and parses every answer. Episodes are independent users drawn from the same pool.

    RPP+ ids (``gym.make_vec("RPP-Plus-MovieLens-Sim-v0", num_envs=N)``) build this env and
    configure growing banks on its core (:func:`rpp_gym.envs.refine.make_refine_vector_env`):
    the refiner's requests of all N users go to the backend as one more batch per step, and
    :meth:`action_masks` has one row per env.

    Args:
        num_envs: Number of episodes side by side.
        autoreset_mode: ``AutoresetMode.NEXT_STEP`` (Gymnasium's default: the step after an
            episode ends resets that slot and ignores its action) or ``SAME_STEP`` (the slot is
            reset within the step; the last observation is in ``info["final_obs"]``).
        backend: A backend object to use (default: built from ``llm=``).
        **kwargs: :class:`rpp_gym.envs.config.RPPConfig` fields.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        backend: LLMBackend | None = None,
        **kwargs: Any,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs={num_envs} must be at least 1")
        mode = AutoresetMode(autoreset_mode)
        if mode == AutoresetMode.DISABLED:
            raise ValueError("autoreset_mode=DISABLED is not supported; use NEXT_STEP or SAME_STEP")
        kwargs.pop("max_episode_steps", None)  # episodes end by themselves after `rounds`
        self.config = RPPConfig(**kwargs)
        self.num_envs = num_envs
        self.core = RPPCore(self.config, num_slots=num_envs, backend=backend)
        self.metadata = {**self.metadata, "autoreset_mode": mode}
        self.refresh_spaces()
        self._autoreset = np.zeros(num_envs, dtype=bool)
        self._split = self.config.split
        self._closed = False

    def refresh_spaces(self) -> None:
        """Re-read the spaces from the core (after ``core.set_capacity``)."""
        self.single_action_space = self.core.action_space
        self.single_observation_space = self.core.observation_space
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if isinstance(seed, list):
            seed = seed[0] if seed else None  # one generator drives the whole batch
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - set(RESET_OPTIONS)
        if unknown:
            raise KeyError(f"unknown reset option(s) {sorted(unknown)}; allowed: {list(RESET_OPTIONS)}")
        self._split = options.get("split", self.config.split)
        user_ids = options.get("user_id")
        if user_ids is not None and not isinstance(user_ids, (list, tuple, np.ndarray)):
            user_ids = [user_ids] * self.num_envs
        infos: dict[str, Any] = {}
        for i in range(self.num_envs):
            self.core.reset_slot(i, self.np_random, self._split, None if user_ids is None else user_ids[i])
            infos = self._add_info(infos, self.core.reset_info(i, self._split), i)
        self._autoreset[:] = False
        return self.core.observations(), infos

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = np.asarray(actions).reshape(self.num_envs, -1)
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=bool)
        infos: dict[str, Any] = {}
        if self.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP:
            stepping = np.flatnonzero(~self._autoreset)
            for i in np.flatnonzero(self._autoreset).tolist():
                self.core.reset_slot(i, self.np_random, self._split)
                infos = self._add_info(infos, self.core.reset_info(i, self._split), i)
        else:
            stepping = np.arange(self.num_envs)
        if len(stepping):
            out = self.core.step(actions[stepping], self.np_random, slots=stepping.tolist())
            rewards[stepping] = out.rewards
            terminated[stepping] = out.terminated
            same_step = self.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
            final_obs = self.core.observations(stepping)
            for row, (i, info) in enumerate(zip(stepping.tolist(), out.infos, strict=True)):
                if same_step and terminated[i]:
                    # Gymnasium's SAME_STEP convention: the finished episode's last observation
                    # and info go to final_obs/final_info, the new episode's reset info on top.
                    infos = self._add_info(infos, {"final_obs": final_obs[row], "final_info": info}, i)
                    self.core.reset_slot(i, self.np_random, self._split)
                    info = self.core.reset_info(i, self._split)
                infos = self._add_info(infos, info, i)
        self._autoreset = terminated.copy()
        truncated = np.zeros(self.num_envs, dtype=bool)
        return self.core.observations(), rewards, terminated, truncated, infos

    def action_masks(self) -> np.ndarray:
        """``bool[num_envs, sum(nvec)]`` validity masks, one row per env (all True for fixed banks).

        With growing banks (RPP+) each env's row follows its own bank in episode scope.
        """
        return self.core.action_masks()

    def close_extras(self, **kwargs: Any) -> None:
        if not self._closed:
            self._closed = True
            self.core.close()

