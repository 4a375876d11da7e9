"""``RPPParallelEnv``: the PettingZoo view of an RPP env, one agent per prompt pattern."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from gymnasium import spaces
from pettingzoo import ParallelEnv

from rpp_gym.envs.registration import ENTRY_POINT, PLUS_ENTRY_POINT
from rpp_gym.envs.rpp_env import RESET_OPTIONS, RPPEnv
from rpp_gym.prompts.bank import PATTERNS

__all__ = ["AGENTS", "INVALID_ACTIONS", "RPPParallelEnv", "make_parallel_env"]

AGENTS: tuple[str, ...] = PATTERNS
"""The agents, one per prompt pattern, in the order of the joint action vector."""

INVALID_ACTIONS: tuple[str, ...] = ("raise", "default")
"""What an invalid action (padding, or an empty slot of a growing bank) does: raise a
``ValueError`` or use the default."""

ObsType = npt.NDArray[np.float32] | dict[str, npt.NDArray[Any]]


class RPPParallelEnv(ParallelEnv[str, ObsType, int]):
    """Reinforced Prompt Personalization as a PettingZoo ``ParallelEnv``: four cooperating agents.

    ## Description

    The multi-agent view of :class:`rpp_gym.envs.rpp_env.RPPEnv` used by RPP's multi-agent
    actor-critic. The agents ``history``, ``role``, ``reasoning`` and ``format`` each choose
    their pattern of the prompt; the four choices form the single env's joint action and are
    stepped by the same ``RPPCore`` (the view owns an ``RPPEnv`` and drives ``env.core``; there
    is no second step implementation). Every agent acts every round.

    ## Action Spaces

    ``Discrete(n)`` per agent, ``n`` the size of its pattern's bank (movie bank: history 3, role
    5, reasoning 9, format 5). With ``padded=True`` every agent has ``Discrete(max n)``; the
    actions beyond an agent's bank are padding, flagged 0 in its ``action_mask``. A padded
    action raises a ``ValueError`` (``invalid_action="raise"``) or is replaced by the pattern's
    default (``invalid_action="default"``, see ``SentenceBank.defaults``).

    With growing banks (RPP+ ids, :class:`rpp_gym.envs.refine.RefineWrapper`) an agent's space
    is ``Discrete(capacity)`` and only the slots holding a sentence are valid: the live mask is
    :meth:`action_mask` (int8 over the agent's action space), each agent's ``info["action_mask"]``
    (reset and step), the padded variant's ``obs["action_mask"]``, and the mask bits at the end
    of the shared features. An empty slot is treated like padding: ``invalid_action="raise"``
    (a ``ValueError``) or ``"default"`` (allowed here without ``padded``).

    ## Observation Spaces

    ``Box(-1, 1, (D + 4,), float32)`` per agent: the single env's observation (``D`` features,
    documented in ``RPPEnv``; 92 with the movie bank, 268 for RPP+) followed by a one-hot
    indicator of the agent in ``AGENTS`` order. With ``padded=True`` it is
    ``Dict({"observation": that Box, "action_mask": Box(0, 1, (max n,), int8)})``, identical for
    all agents (what SuperSuit's ``pettingzoo_env_to_vec_env_v1`` needs).

    ## State

    ``state()`` is the shared feature vector, ``Box(-1, 1, (D,), float32)`` (``state_space``):
    the single env's observation without an agent indicator. Every agent sees the whole state
    (the task is fully cooperative), so a centralized critic gets nothing hidden from the actors;
    it is what a critic shared by the agents should read.

    ## Rewards

    Every agent gets the same reward, the NDCG@k of the held-out item (see ``RPPEnv``).

    ## Info

    Each agent's info holds the single env's step info (``prompt``, ``answer``, ``metrics``,
    ``sentences``, ...) plus ``sentence`` (its own choice as text; for ``history`` a description
    of the shown history) and ``choice`` (the index used). With ``counterfactual_credit=True``
    also ``credit``, the change in NDCG its choice made: the reward minus
    ``counterfactual_ndcg``, the NDCG of the same question (same user, shown candidate order
    and request seed) with that agent's choice replaced by its pattern's default. An agent that
    chose its default gets exactly 0 without asking. The other counterfactual prompts go to the
    backend as one extra batch of at most 4 requests per step, so the flag is off by default.
    With ``invalid_action="default"``, ``padding_replaced`` says whether the agent's action was
    padding (or an empty slot). ``reset`` gives each agent the single env's reset info.

    ## Starting State

    As ``RPPEnv``: ``reset(seed=s)`` seeds the owned env exactly as ``RPPEnv.reset(seed=s)``, so
    the same seed gives the same user and candidates as the single env; with the same joint
    actions the rewards are the same too (also with ``counterfactual_credit``). Reset options
    are ``RPPEnv``'s (``split``, ``user_id``); other keys are ignored with a warning.

    ## Episode End

    All agents terminate together after ``rounds`` steps; ``agents`` is then empty until the
    next ``reset``. Never truncated.

    ## Arguments

    * ``env``: an ``RPPEnv`` to drive (default: built from ``render_mode``, ``backend`` and
      ``**kwargs``, the :class:`rpp_gym.envs.config.RPPConfig` fields).
    * ``padded``: identical spaces for all agents with action masks (default False).
    * ``invalid_action``: ``"raise"`` or ``"default"`` for padded actions (padded only).
    * ``counterfactual_credit``: compute each agent's ``credit`` (default False).
    * ``render_mode``: ``"ansi"`` or None; ``render()`` is the single env's.

    ``rpp_gym.parallel_env("RPP-MovieLens-Sim-v0", padded=True, rounds=5)`` builds one for a
    registered id.

    ## Version History

    * v0: initial release.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "name": "rpp_v0",
        "render_modes": ["ansi"],
        "render_fps": 4,
        "is_parallelizable": True,
    }

    def __init__(
        self,
        env: RPPEnv | None = None,
        *,
        padded: bool = False,
        invalid_action: str = "raise",
        counterfactual_credit: bool = False,
        render_mode: str | None = None,
        backend: Any = None,
        **kwargs: Any,
    ) -> None:
        if invalid_action not in INVALID_ACTIONS:
            raise ValueError(f"invalid_action={invalid_action!r}; choose one of {INVALID_ACTIONS}")
        if env is None:
            env = RPPEnv(render_mode=render_mode, backend=backend, **kwargs)
        elif kwargs or backend is not None or render_mode is not None:
            raise TypeError("pass either env= or the env's keyword arguments, not both")
        if invalid_action != "raise" and not padded and not env.core.masked:
            raise ValueError(
                "invalid_action='default' only applies to padded actions (or empty slots of growing banks); "
                "pass padded=True"
            )
        self.env = env
        self.core = env.core
        self.render_mode = env.render_mode
        self.padded = padded
        self.invalid_action = invalid_action
        self.counterfactual_credit = counterfactual_credit
        self.possible_agents = list(AGENTS)
        self.agents: list[str] = []

        self.nvec = self.core.nvec.copy()
        self.defaults = np.array([self.core.bank.defaults[p] for p in AGENTS], dtype=np.int64)
        if (counterfactual_credit or invalid_action == "default") and (self.defaults >= self.nvec).any():
            j = int(np.argmax(self.defaults >= self.nvec))
            raise ValueError(
                f"the bank's default {AGENTS[j]} choice {self.defaults[j]} is outside its {self.nvec[j]} choices; "
                "fix the bank's 'defaults' (or history_lengths)"
            )
        n_max = int(self.nvec.max())
        self._dim = self.core.obs_dim
        self.state_space = self.core.observation_space
        self.action_spaces = {a: spaces.Discrete(n_max if padded else int(self.nvec[j])) for j, a in enumerate(AGENTS)}
        self.observation_spaces = {a: self._make_obs_space(n_max) for a in AGENTS}

    def _make_obs_space(self, n_max: int) -> spaces.Space[Any]:
        features = spaces.Box(-1.0, 1.0, shape=(self._dim + len(AGENTS),), dtype=np.float32)
        if not self.padded:
            return features
        mask = spaces.Box(0, 1, shape=(n_max,), dtype=np.int8)
        return spaces.Dict({"observation": features, "action_mask": mask})

    def observation_space(self, agent: str) -> spaces.Space[Any]:
        return self.observation_spaces[self._check_agent(agent)]

    def action_space(self, agent: str) -> spaces.Space[Any]:
        return self.action_spaces[self._check_agent(agent)]

    def action_mask(self, agent: str) -> npt.NDArray[np.int8]:
        """The agent's live mask over its action space: 1 where the action holds a choice now."""
        j = AGENTS.index(self._check_agent(agent))
        n = self.action_spaces[agent].n
        out = np.zeros(n, dtype=np.int8)
        parts = np.split(self.core.action_masks([0])[0], np.cumsum(self.nvec)[:-1])
        out[: self.nvec[j]] = parts[j]
        return out

    def _check_agent(self, agent: str) -> str:
        if agent not in self.observation_spaces:
            raise KeyError(f"unknown agent {agent!r}; the agents are {self.possible_agents}")
        return agent

    # ---- episodes ----------------------------------------------------------------------------

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, ObsType], dict[str, dict[str, Any]]]:
        options = dict(options or {})
        ignored = sorted(set(options) - set(RESET_OPTIONS))
        if ignored:
            warnings.warn(f"ignoring unknown reset option(s) {ignored}; allowed: {list(RESET_OPTIONS)}", stacklevel=2)
            options = {k: v for k, v in options.items() if k in RESET_OPTIONS}
        _, info = self.env.reset(seed=seed, options=options)
        self.agents = list(self.possible_agents)
        infos = {a: dict(info) for a in self.agents}
        if self.core.masked:
            for a in self.agents:
                infos[a]["action_mask"] = self.action_mask(a)
        return self._observations(), infos

    def step(
        self, actions: Mapping[str, Any]
    ) -> tuple[dict[str, ObsType], dict[str, float], dict[str, bool], dict[str, bool], dict[str, dict[str, Any]]]:
        if not self.agents:
            raise RuntimeError("step() with no live agents: the episode is over (or never began); call reset()")
        joint, replaced = self._joint_action(actions)
        rng = self.env.np_random
        if self.counterfactual_credit:
            draws = self.core.draw(rng, 1)
            cf_ndcg = self._counterfactual_ndcg(joint, draws)
            out = self.core.step([joint], None, draws=draws)
        else:
            out = self.core.step([joint], rng)
        reward, done, shared = float(out.rewards[0]), bool(out.terminated[0]), out.infos[0]

        infos: dict[str, dict[str, Any]] = {}
        for j, agent in enumerate(AGENTS):
            info = {**shared, "sentence": self._sentence(j, shared), "choice": int(joint[j])}
            if self.counterfactual_credit:
                ndcg = reward if np.isnan(cf_ndcg[j]) else float(cf_ndcg[j])
                info["counterfactual_ndcg"] = ndcg
                info["credit"] = reward - ndcg
            if self.invalid_action == "default":
                info["padding_replaced"] = replaced[j]
            if self.core.masked:
                info["action_mask"] = self.action_mask(agent)
            infos[agent] = info
        agents = self.agents
        obs = self._observations()
        if done:
            self.agents = []
        return (
            obs,
            dict.fromkeys(agents, reward),
            dict.fromkeys(agents, done),
            dict.fromkeys(agents, False),
            infos,
        )

    def state(self) -> npt.NDArray[np.float32]:
        """The shared features (``state_space``): the single env's observation."""
        return self.core.observations()[0]

    def render(self) -> str | None:
        return self.env.render()

    def close(self) -> None:
        self.env.close()

    # ---- helpers -----------------------------------------------------------------------------

    def _observations(self) -> dict[str, ObsType]:
        shared = self.core.observations()[0]
        obs: dict[str, ObsType] = {}
        for j, agent in enumerate(AGENTS):
            row = np.zeros(self._dim + len(AGENTS), dtype=np.float32)
            row[: self._dim] = shared
            row[self._dim + j] = 1.0
            obs[agent] = {"observation": row, "action_mask": self.action_mask(agent)} if self.padded else row
        return obs

    def _joint_action(self, actions: Mapping[str, Any]) -> tuple[npt.NDArray[np.int64], list[bool]]:
        """The joint action of the agents' choices, with padding replaced or rejected."""
        if not isinstance(actions, Mapping):
            raise TypeError(f"actions must be a dict {{agent: action}}, got {type(actions).__name__}")
        missing = [a for a in self.agents if a not in actions]
        unexpected = [a for a in actions if a not in self.agents]
        if missing or unexpected:
            raise ValueError(
                f"actions need one entry per live agent {self.agents}; missing {missing}, unexpected {unexpected}"
            )
        joint = np.empty(len(AGENTS), dtype=np.int64)
        replaced = [False] * len(AGENTS)
        live = np.split(self.core.action_masks([0])[0], np.cumsum(self.nvec)[:-1])
        for j, agent in enumerate(AGENTS):
            value = np.asarray(actions[agent])
            n = self.action_spaces[agent].n
            integral = value.size == 1 and (
                np.issubdtype(value.dtype, np.integer)
                or (np.issubdtype(value.dtype, np.floating) and float(value.flat[0]).is_integer())
            )
            if not integral or not 0 <= int(value.flat[0]) < n:
                raise ValueError(f"action {actions[agent]!r} of agent {agent!r} is not in its space Discrete({n})")
            a = int(value.flat[0])
            if a >= self.nvec[j]:
                if self.invalid_action == "raise":
                    raise ValueError(
                        f"action {a} of agent {agent!r} is padding: {agent} has {self.nvec[j]} choices "
                        f"(0..{self.nvec[j] - 1}); sample with obs[{agent!r}]['action_mask'] "
                        "or pass invalid_action='default'"
                    )
                a, replaced[j] = int(self.defaults[j]), True
            elif not live[j][a]:
                if self.invalid_action == "raise":
                    raise ValueError(
                        f"action {a} of agent {agent!r} is an empty slot of its growing bank (valid now: "
                        f"{np.flatnonzero(live[j]).tolist()}); sample with the action mask or pass "
                        "invalid_action='default'"
                    )
                a, replaced[j] = int(self.defaults[j]), True
            joint[j] = a
        return joint, replaced

    def _counterfactual_ndcg(
        self, joint: npt.NDArray[np.int64], draws: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]
    ) -> npt.NDArray[np.float64]:
        """Per agent, the NDCG of the same question with its choice set to the default (NaN: unchanged).

        The changed questions go to the backend as one batch (slot 0 asked up to 4 times), with
        nothing committed.
        """
        ndcg = np.full(len(AGENTS), np.nan)
        rows = np.flatnonzero(joint != self.defaults)
        if rows.size:
            acts = np.tile(joint, (rows.size, 1))
            acts[np.arange(rows.size), rows] = self.defaults[rows]
            orders, seeds = draws
            repeated = (np.repeat(orders, rows.size, axis=0), np.repeat(seeds, rows.size))
            out = self.core.step(acts, None, [0] * rows.size, commit=False, draws=repeated)
            ndcg[rows] = out.rewards
        return ndcg

    def _sentence(self, j: int, info: Mapping[str, Any]) -> str:
        if AGENTS[j] != "history":
            return str(info["sentences"][AGENTS[j]])
        choice = self.core.history_choices[int(info["action"]["history"])]
        shown = info["history_len"]
        if self.core.config.history_mode == "increment":
            return f"show {choice} more history item(s) ({shown} shown)"
        return f"show the {choice} most recent history items ({shown} shown)"


def make_parallel_env(env_id: str, **kwargs: Any) -> RPPParallelEnv:
    """The parallel view of a registered id; see ``rpp_gym.parallel_env``.

    Args:
        env_id: A registered id, e.g. ``"RPP-MovieLens-Sim-v0"`` (``"module:id"`` imports the
            module first, as ``gym.make`` does).
        **kwargs: ``RPPParallelEnv``'s arguments (``padded``, ``invalid_action``,
            ``counterfactual_credit``, ``render_mode``, ``backend``) and ``RPPConfig`` fields,
            which override the id's registered keyword arguments.

    Raises:
        gymnasium.error.NameNotFound: for an unregistered id.
        ValueError: for an id whose entry point is not ``RPPEnv``.
    """
    if ":" in env_id:
        module, env_id = env_id.split(":", 1)
        importlib.import_module(module)
    spec = gym.spec(env_id)
    if spec.entry_point == PLUS_ENTRY_POINT:
        from rpp_gym.envs.refine import make_refine_env

        view = {k: kwargs.pop(k) for k in ("padded", "invalid_action", "counterfactual_credit") if k in kwargs}
        env = make_refine_env(**{**spec.kwargs, **kwargs}).unwrapped  # the core carries the refinement
        assert isinstance(env, RPPEnv)
        return RPPParallelEnv(env, **view)
    if spec.entry_point not in (ENTRY_POINT, RPPEnv):
        raise ValueError(
            f"{env_id} has entry point {spec.entry_point!r}; the parallel view drives RPPEnv ({ENTRY_POINT}) "
            f"or an RPP+ env ({PLUS_ENTRY_POINT})"
        )
    return RPPParallelEnv(**{**spec.kwargs, **kwargs})
