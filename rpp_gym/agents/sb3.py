"""Stable-Baselines3 helpers: a joint-action flattener, a batched ``VecEnv`` and a policy adapter.

* :class:`FlattenJointAction` turns the joint ``MultiDiscrete`` action into one ``Discrete`` so
  discrete-only algorithms (DQN, QR-DQN) can choose whole prompts.
* :class:`RPPSB3VecEnv` (or :func:`make_sb3_vec_env`) exposes the batched
  :class:`~rpp_gym.envs.vector.RPPVectorEnv` as an SB3 ``VecEnv``: ``PPO("MlpPolicy", vec_env)``
  then sends ONE LLM batch per step for all ``n_envs`` users, where ``DummyVecEnv`` would make
  ``n_envs`` separate calls.
* :class:`SB3Policy` wraps a trained model as a :class:`rpp_gym.agents.baselines.Policy` for
  :func:`rpp_gym.evaluation.evaluate`.

Example:
    >>> from stable_baselines3 import PPO
    >>> from rpp_gym.agents.sb3 import SB3Policy, make_sb3_vec_env
    >>> from rpp_gym.evaluation import evaluate
    >>> vec_env = make_sb3_vec_env("RPP-MovieLens-Sim-v0", n_envs=8, seed=0)
    >>> model = PPO("MlpPolicy", vec_env, n_steps=64, seed=0).learn(512)  # doctest: +SKIP
    >>> evaluate(SB3Policy(model, "ppo"), split="test", n_users=50)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

try:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.vec_env import VecEnv, VecMonitor
    from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn
except ImportError as err:  # pragma: no cover - depends on the install
    raise ImportError(
        "rpp_gym.agents.sb3 needs stable-baselines3; install it with `pip install 'rpp-gym[sb3]'` "
        "(sb3-contrib as well for MaskablePPO)"
    ) from err

__all__ = [
    "DEFAULT_INFO_KEYS",
    "FlattenJointAction",
    "RPPSB3VecEnv",
    "SB3Policy",
    "flatten_action",
    "make_sb3_vec_env",
    "unflatten_action",
]

DEFAULT_INFO_KEYS = ("user_id", "round", "metrics", "parse")
"""Info entries :class:`RPPSB3VecEnv` copies into each env's info dict (cheap ones only)."""


# ---- joint action <-> flat index -------------------------------------------------------------


def flatten_action(joint: npt.ArrayLike, nvec: Sequence[int] | npt.NDArray[np.int64]) -> Any:
    """Mixed-radix index of joint action(s): row-major, the last pattern varies fastest.

    With ``nvec = [3, 5, 9, 5]`` (history, role, reasoning, format) the index of ``[h, r, q, f]`` is
    ``((h * 5 + r) * 9 + q) * 5 + f``, exactly ``np.ravel_multi_index(joint, nvec)``.

    Args:
        joint: One joint action ``[len(nvec)]`` or a batch ``[..., len(nvec)]``.
        nvec: Choices per pattern.

    Returns:
        An ``int`` for one action, else an ``int64`` array of the batch shape.

    Raises:
        ValueError: A joint action has the wrong length or an entry outside ``0..nvec-1``.

    >>> flatten_action([1, 2, 3, 4], [3, 5, 9, 5])
    334
    >>> flatten_action([[0, 0, 0, 0], [2, 4, 8, 4]], [3, 5, 9, 5]).tolist()
    [0, 674]
    """
    nv = np.asarray(nvec, dtype=np.int64)
    arr = np.asarray(joint)
    if arr.shape[-1:] != nv.shape or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"joint action {joint!r} must be integers with last dimension {len(nv)} (nvec={nv.tolist()})")
    if np.any((arr < 0) | (arr >= nv)):
        raise ValueError(f"joint action {joint!r} is outside MultiDiscrete({nv.tolist()})")
    flat = np.ravel_multi_index(tuple(np.moveaxis(arr, -1, 0)), tuple(nv)).astype(np.int64)
    return int(flat) if flat.ndim == 0 else flat


def unflatten_action(index: npt.ArrayLike, nvec: Sequence[int] | npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Joint action(s) of mixed-radix index(es); the inverse of :func:`flatten_action`.

    Args:
        index: One index or an array of them, each in ``0..prod(nvec)-1``.
        nvec: Choices per pattern.

    Returns:
        ``int64[len(nvec)]`` for one index, ``int64[..., len(nvec)]`` for an array.

    Raises:
        ValueError: An index is outside ``Discrete(prod(nvec))``.

    >>> unflatten_action(334, [3, 5, 9, 5]).tolist()
    [1, 2, 3, 4]
    """
    nv = np.asarray(nvec, dtype=np.int64)
    idx = np.asarray(index)
    n = int(np.prod(nv))
    if not np.issubdtype(idx.dtype, np.integer) or np.any((idx < 0) | (idx >= n)):
        raise ValueError(f"flat action {index!r} must be integers in Discrete({n}) (0..{n - 1})")
    return np.stack(np.unravel_index(idx.astype(np.int64), tuple(nv)), axis=-1).astype(np.int64)


class FlattenJointAction(gym.ActionWrapper):
    """One ``Discrete(prod(nvec))`` action per joint prompt, for discrete-only algorithms (DQN).

    Index ``i`` means the joint action ``unflatten_action(i, nvec)`` (row-major mixed radix, see
    :func:`flatten_action`); with the movie bank that is ``Discrete(675)``. Use :meth:`joint`
    and :meth:`index` to convert. :meth:`action_masks` is the flat mask ``bool[prod(nvec)]``:
    a joint action is valid when every one of its sentences is valid in the wrapped env's
    per-pattern mask (``bool[sum(nvec)]``), so it stays right when banks have invalid slots.

    Args:
        env: An env with a ``MultiDiscrete`` action space (e.g. ``gym.make("RPP-MovieLens-Sim-v0")``).
    """

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        space = env.action_space
        if not isinstance(space, spaces.MultiDiscrete) or space.nvec.ndim != 1:
            raise TypeError(f"FlattenJointAction needs a 1-D MultiDiscrete action space, got {space}")
        self.joint_nvec: npt.NDArray[np.int64] = space.nvec.astype(np.int64)
        """Choices per pattern of the wrapped (joint) action space."""
        self._start = np.asarray(space.start, dtype=np.int64)
        self.action_space = spaces.Discrete(int(np.prod(self.joint_nvec)))

    def joint(self, index: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """The wrapped env's joint action(s) for flat index(es)."""
        return unflatten_action(index, self.joint_nvec) + self._start

    def index(self, joint: npt.ArrayLike) -> Any:
        """The flat index (or indices) of joint action(s)."""
        return flatten_action(np.asarray(joint) - self._start, self.joint_nvec)

    def action(self, action: Any) -> npt.NDArray[np.int64]:
        return self.joint(np.asarray(action).reshape(()))

    def reverse_action(self, action: Any) -> Any:
        return self.index(action)

    def action_masks(self) -> npt.NDArray[np.bool_]:
        """``bool[prod(nvec)]``: the outer AND of the wrapped env's per-pattern masks."""
        try:
            mask = np.asarray(self.env.get_wrapper_attr("action_masks")(), dtype=bool)
        except AttributeError:
            return np.ones(int(np.prod(self.joint_nvec)), dtype=np.bool_)
        parts = np.split(mask, np.cumsum(self.joint_nvec)[:-1])
        return functools.reduce(np.logical_and.outer, parts).ravel()


# ---- the batched vector env as an SB3 VecEnv -----------------------------------------------


def _row(value: Any, i: int) -> Any:
    """Env ``i``'s entry of a Gymnasium dict-of-arrays info value (nested dicts keep their masks)."""
    if isinstance(value, dict):
        return {
            k: _row(v, i)
            for k, v in value.items()
            if not k.startswith("_") and (f"_{k}" not in value or value[f"_{k}"][i])
        }
    item = value[i]
    return item.item() if isinstance(item, np.generic) else item


class RPPSB3VecEnv(VecEnv):
    """An SB3 ``VecEnv`` over a Gymnasium vector env with ``SAME_STEP`` autoreset.

    ``step`` forwards the whole batch to the vector env (for :class:`RPPVectorEnv`: one LLM call
    for all ``num_envs`` users), resets finished slots within the step and puts their last
    observation in ``info["terminal_observation"]``, as SB3 expects. ``TimeLimit.truncated`` is
    set from the vector env's ``truncated`` (always False for RPP: episodes end by
    themselves). Each env's info dict holds the ``info_keys`` entries of that env.

    The ``num_envs`` envs are slots of ONE batched env, so attributes are shared: ``get_attr``
    returns the vector env's attribute once per requested index, ``set_attr`` sets it for all
    slots (a subset is an error) and ``env_method`` calls the method once. Methods named in
    ``batched_methods`` (default ``("action_masks",)``) return one row per env, which is how
    sb3-contrib's ``MaskablePPO`` gets its masks. Names the vector env lacks go to its ``call``
    (Gymnasium's ``SyncVectorEnv``/``AsyncVectorEnv``: one result per sub-env). ``seed(s)`` seeds
    the single generator that drives all slots at the next ``reset()``; ``set_options`` takes a
    ``user_id`` per env, other reset options must agree. ``env_is_wrapped`` is always False.

    Args:
        vector_env: E.g. ``gym.make_vec("RPP-MovieLens-Sim-v0", num_envs=8,
            autoreset_mode=AutoresetMode.SAME_STEP)``.
        info_keys: Info entries copied per env; None copies all (prompts and answers included:
            slower).
        batched_methods: Vector-env methods whose result has one row per env.

    Raises:
        ValueError: The vector env does not autoreset in ``SAME_STEP`` mode.
    """

    def __init__(
        self,
        vector_env: VectorEnv,
        info_keys: Iterable[str] | None = DEFAULT_INFO_KEYS,
        batched_methods: Iterable[str] = ("action_masks",),
    ) -> None:
        mode = vector_env.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(
                f"RPPSB3VecEnv needs autoreset_mode=SAME_STEP, the vector env has {mode!r}; create it with "
                "gym.make_vec(env_id, num_envs=N, autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP) "
                "or use make_sb3_vec_env(env_id, n_envs=N)"
            )
        self.vector_env = vector_env
        self.info_keys = None if info_keys is None else tuple(info_keys)
        self.batched_methods = frozenset(batched_methods)
        self._actions: npt.NDArray[Any] | None = None
        super().__init__(vector_env.num_envs, vector_env.single_observation_space, vector_env.single_action_space)

    @property
    def core(self) -> Any:
        """The vector env's batched core (``backend``, ``bundle``, ...), when it has one."""
        return self.vector_env.unwrapped.core  # type: ignore[attr-defined]

    def reset(self) -> npt.NDArray[np.float32]:
        obs, infos = self.vector_env.reset(seed=self._seeds[0], options=self._merged_options())
        self.reset_infos = (
            [_row(infos, i) for i in range(self.num_envs)] if infos else [{} for _ in range(self.num_envs)]
        )
        self._reset_seeds()
        self._reset_options()
        return obs

    def _merged_options(self) -> dict[str, Any] | None:
        """One options dict for the batch: ``user_id`` per env, every other key shared."""
        if not any(self._options):
            return None
        merged: dict[str, Any] = {}
        for key in set().union(*self._options):
            values = [o.get(key) for o in self._options]
            if key == "user_id":
                merged[key] = values
            elif any(v != values[0] for v in values):
                raise ValueError(f"reset option {key!r} differs between envs ({values}); the batched env shares it")
            else:
                merged[key] = values[0]
        return merged

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async(actions)")
        obs, rewards, terminated, truncated, infos = self.vector_env.step(self._actions)
        self._actions = None
        out = [_row(self._pick(infos), i) for i in range(self.num_envs)]
        final_infos = self._pick(infos.get("final_info", {}))
        dones = np.logical_or(terminated, truncated)
        for i, info in enumerate(out):
            info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            if dones[i]:
                if "final_obs" not in infos or not infos["_final_obs"][i]:
                    raise RuntimeError(f"env {i} finished without info['final_obs']; is autoreset SAME_STEP?")
                info["terminal_observation"] = infos["final_obs"][i]
                # Gymnasium's SAME_STEP puts the finished episode's last info in final_info (and
                # the new episode's reset info on top); SB3 wants the last step's info.
                info.update(_row(final_infos, i))
        return obs, np.asarray(rewards, dtype=np.float32), dones, out

    def _pick(self, infos: dict[str, Any]) -> dict[str, Any]:
        """The ``info_keys`` entries (with their masks) of a dict-of-arrays info, autoreset keys left out."""
        keys = [k for k in infos if not k.startswith("_") and k not in ("final_obs", "final_info")]
        if self.info_keys is not None:
            keys = [k for k in keys if k in self.info_keys]
        return {name: infos[name] for k in keys for name in (k, f"_{k}") if name in infos}

    def close(self) -> None:
        self.vector_env.close()

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, (int, np.integer)):
            return [int(indices)]
        return [int(i) for i in indices]

    def _lookup(self, name: str) -> Any:
        try:
            return getattr(self.vector_env, name)
        except AttributeError:
            return getattr(self.vector_env.unwrapped, name)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        try:
            value = self._lookup(attr_name)
        except AttributeError:
            return self._call_each(attr_name, indices)
        return [value for _ in self._indices(indices)]

    def _call_each(self, name: str, indices: VecEnvIndices, *args: Any, **kwargs: Any) -> list[Any]:
        """Sync/Async vector envs of separate envs: ``call`` returns one result per sub-env."""
        call = getattr(self.vector_env, "call", None)
        if call is None:
            raise AttributeError(f"{type(self.vector_env.unwrapped).__name__} has no attribute {name!r}")
        results = call(name, *args, **kwargs)
        return [results[i] for i in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if sorted(set(self._indices(indices))) != list(range(self.num_envs)):
            raise ValueError(
                f"set_attr({attr_name!r}, indices={indices!r}): the {self.num_envs} envs are slots of one "
                "batched env and share attributes; set it for all envs (indices=None)"
            )
        setattr(self.vector_env.unwrapped, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        try:
            method = self._lookup(method_name)
        except AttributeError:
            return self._call_each(method_name, indices, *method_args, **method_kwargs)
        result = method(*method_args, **method_kwargs)
        if method_name in self.batched_methods:
            return [result[i] for i in self._indices(indices)]
        return [result for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        # The slots are not gym.Env instances, so no gym.Wrapper (Monitor included) wraps them.
        return [False for _ in self._indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]


def make_sb3_vec_env(
    env_id: str = "RPP-MovieLens-Sim-v0",
    n_envs: int = 8,
    *,
    seed: int | None = None,
    monitor: bool = True,
    info_keys: Iterable[str] | None = DEFAULT_INFO_KEYS,
    **kwargs: Any,
) -> VecEnv:
    """An SB3 ``VecEnv`` of ``n_envs`` users on the batched vector env of ``env_id``.

    Args:
        env_id: A registered id (``RPP-...``; any id with a vector entry point that accepts
            ``autoreset_mode``, or without one, through ``SyncVectorEnv``).
        n_envs: Users stepped together (one LLM batch per step).
        seed: Seeds the first ``reset()`` (as ``VecEnv.seed``).
        monitor: Wrap in ``VecMonitor`` so SB3 logs episode returns (``rollout/ep_rew_mean``);
            ``vec_env.unwrapped`` is the :class:`RPPSB3VecEnv` either way.
        info_keys: See :class:`RPPSB3VecEnv`.
        **kwargs: Env keyword arguments (:class:`rpp_gym.envs.config.RPPConfig` fields).
    """
    if gym.spec(env_id).vector_entry_point is not None:
        vector_env = gym.make_vec(env_id, num_envs=n_envs, autoreset_mode=AutoresetMode.SAME_STEP, **kwargs)
    else:
        vector_env = gym.make_vec(
            env_id, num_envs=n_envs, vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}, **kwargs
        )
    vec: VecEnv = RPPSB3VecEnv(vector_env, info_keys=info_keys)
    if seed is not None:
        vec.seed(seed)
    return VecMonitor(vec) if monitor else vec


# ---- evaluation --------------------------------------------------------------------------


class SB3Policy:
    """A trained SB3 model as a :class:`rpp_gym.agents.baselines.Policy` (``name`` and ``act``).

    ``act`` calls ``model.predict(obs, deterministic=...)`` on the batch and returns joint
    actions ``int64[B, 4]``; a ``Discrete`` model (DQN on :class:`FlattenJointAction`) has its
    flat indices un-flattened with ``nvec``.

    Args:
        model: Any SB3 / sb3-contrib algorithm.
        name: Label in reports (default: the algorithm's class name).
        nvec: Joint ``MultiDiscrete`` sizes for a ``Discrete`` model (default: the model env's
            ``joint_nvec``, set by :class:`FlattenJointAction`).
        deterministic: Greedy actions (True) or samples.
        action_masks: A fixed ``bool`` mask (``MaskablePPO`` only), applied to every observation.
        mask_start: RPP+ (``MaskablePPO`` only): each observation's own mask is
            ``obs[mask_start:] > 0.5`` (``env.unwrapped.core.mask_slice.start``), so the policy
            follows the growing banks.
    """

    def __init__(
        self,
        model: BaseAlgorithm,
        name: str | None = None,
        *,
        nvec: Sequence[int] | None = None,
        deterministic: bool = True,
        action_masks: npt.ArrayLike | None = None,
        mask_start: int | None = None,
    ) -> None:
        if action_masks is not None and mask_start is not None:
            raise ValueError("pass action_masks (one fixed mask) or mask_start (masks read from obs), not both")
        self.model = model
        self.mask_start = mask_start
        self.name = name or type(model).__name__.lower()
        self.deterministic = deterministic
        self.action_masks = None if action_masks is None else np.asarray(action_masks, dtype=bool)
        self.nvec: npt.NDArray[np.int64] | None = None
        if isinstance(model.action_space, spaces.Discrete):
            if nvec is None and model.get_env() is not None:
                try:
                    nvec = model.get_env().get_attr("joint_nvec")[0]  # type: ignore[union-attr]
                except AttributeError:
                    nvec = None
            if nvec is None:
                raise ValueError(
                    f"{self.name}: the model acts in {model.action_space}; pass nvec= (the joint "
                    "MultiDiscrete sizes, e.g. env.unwrapped.action_space.nvec) to un-flatten its actions"
                )
            self.nvec = np.asarray(nvec, dtype=np.int64)

    def act(self, obs: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        kwargs: dict[str, Any] = {}
        if self.action_masks is not None:
            kwargs["action_masks"] = np.repeat(self.action_masks[None], len(obs), axis=0)
        elif self.mask_start is not None:
            kwargs["action_masks"] = np.asarray(obs)[:, self.mask_start :] > 0.5
        actions, _ = self.model.predict(obs, deterministic=self.deterministic, **kwargs)
        actions = np.asarray(actions, dtype=np.int64)
        if self.nvec is not None:
            return unflatten_action(actions.reshape(len(obs)), self.nvec)
        return actions.reshape(len(obs), -1)
