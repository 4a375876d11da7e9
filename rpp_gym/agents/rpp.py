"""RPP: four prompt-pattern agents trained with a multi-agent actor-critic (Mao et al., TOIS 2025).

One readable file in the cleanrl spirit: :class:`Args` (every knob, documented), :class:`Agent`
(the networks, with ``get_action_and_value``), the two update rules as small functions, and
:func:`train`, a flat loop over the batched vector env (``num_envs`` users per LLM batch).

What each part sees
===================
* **Actors** (one per pattern: history, role, reasoning, format). Each is its own MLP from the
  env observation to logits over its bank. The observation is the global state of the episode
  (user embedding ``e_u``, round, shown history length, previous joint action, previous scores,
  LLM's previous top items), so each actor sees the same input; they are decentralised heads
  in that each acts on its own (the joint policy factorises as the product of the four).
* **Critic**, centralised: ``V(s)`` on the same global state. The paper gives each agent its
  own critic on the global state; with one shared reward and one shared state those critics
  have identical targets, so one critic is the same estimator at a quarter of the cost.
* **State encoder.** The observation is standardised by running statistics (``ObsNorm``,
  ``Args.norm_obs``): not a learned layer but statistics gathered during training, saved with
  the agent and frozen at evaluation. It matters here because the user embedding, which carries
  the per-user prompt preferences, has entries of about 0.2.
* Every parameter is trained: the actors by the policy loss, the critic by the value loss,
  with separate Adam optimisers. Nothing is frozen and no encoder is left untrained.

Updates
=======
* ``algo="a2c"`` (paper): after every vector step, for each user ``i`` of the batch the TD error
  ``delta_i = r_i + gamma * V(s'_i) * (1 - done_i) - V(s_i)`` (``V(s')`` not differentiated);
  critic loss ``mean(delta_i^2) / 2``; actor loss
  ``-mean(delta_i * sum_k log pi_k(a_ik | s_i)) - ent_coef * mean(sum_k H(pi_k(. | s_i)))``.
  The reward is each user's own NDCG, never a batch mean shared by all users. With
  ``Args.norm_adv`` (default) the TD errors are standardised over the batch before the actor
  loss; every user of a batch is in the same round, so this also removes the critic's error
  that is common to that round.
* ``algo="mappo"``: a rollout of whole episodes (``rounds`` steps x ``num_envs`` users), GAE
  advantages, and ``update_epochs`` passes of minibatch updates with PPO's clipped surrogate per
  agent (each agent's own probability ratio, the shared advantage), a clipped value loss and the
  entropy bonus.

On ``RPP-MovieLens-Sim-v0`` (``benchmarks/bench_learning.py``, 1M transitions) mappo closes about
70% of the gap between the best fixed prompt and the per-user oracle; a2c beats the best fixed
prompt but closes under 20%: its history agent settles early on adding no item.

RPP+ (``RPP-Plus-*`` ids, growing banks)
========================================
The agent finds the validity mask and the slot statistics in the observation
(``core.mask_slice``, ``core.stats_slice``): empty slots get probability zero, and each sentence
actor adds a learned multiple of the slots' standardised mean rewards to its logits
(``Args.slot_value``). In global scope the grown bank is written beside the checkpoint
(``TrainResult.bank_path``) and the agent is evaluated on it frozen
(``TrainResult.eval_env_kwargs``). ``Args.refine_steps`` refines only during the first
transitions and then freezes the bank: while the bank keeps changing, slot indices keep changing
meaning under the actors, and on the simulator the agent then does worse than on the fixed banks;
grown first and frozen, the bank lifts it well above them (``benchmarks/bench_rpp_plus.py``).

Reproducibility: a run is a pure function of ``Args.seed`` (the network initialisation and the
action sampling use their own generators; the env is seeded from the same seed), bit for bit on
the CPU with the same number of torch threads (``Args.threads``).

``python -m rpp_gym.agents.rpp --help`` lists the flags.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

import rpp_gym  # noqa: F401  (registers the env ids)
from rpp_gym.envs.refine import freeze_bank, save_bank

__all__ = [
    "Agent",
    "Args",
    "ObsNorm",
    "RPPPolicy",
    "TrainResult",
    "a2c_losses",
    "load_agent",
    "load_policy",
    "main",
    "mappo_losses",
    "save_checkpoint",
    "train",
]

ALGOS = ("a2c", "mappo")


@dataclass
class Args:
    """Everything that defines a training run (``python -m rpp_gym.agents.rpp --help``)."""

    exp_name: str = "rpp"
    """Name of the run (labels the policy in reports)."""
    seed: int = 1
    """Seeds the networks, the action sampling and the env."""
    threads: int | None = 1
    """torch threads during the run (None: torch's default); bitwise reproducibility needs the same value."""
    torch_deterministic: bool = True
    """``torch.use_deterministic_algorithms`` during the run (both settings are restored afterwards)."""
    env_id: str = "RPP-MovieLens-Sim-v0"
    """A registered env id."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra env keyword arguments (``RPPConfig`` fields), e.g. ``{"rounds": 5}``."""
    algo: str = "a2c"
    """``"a2c"`` (the paper's TD actor-critic) or ``"mappo"`` (clipped surrogate, GAE)."""
    total_timesteps: int = 1_500_000
    """User-rounds (transitions) to train on."""
    num_envs: int = 32
    """Users stepped side by side; each vector step is one LLM batch of this size (a2c: one update per step)."""
    hidden: int = 128
    """Width of the two hidden layers of every actor and of the critic."""
    gamma: float = 0.95
    """Discount factor."""
    actor_lr: float = 3e-4
    """Adam learning rate of the four actors."""
    critic_lr: float = 5e-4
    """Adam learning rate of the critic."""
    anneal_lr: bool = False
    """Decay both learning rates linearly to 0 over the run."""
    ent_coef: float = 0.01
    """Entropy bonus (summed over the four agents)."""
    norm_obs: bool = True
    """Standardise observations with running statistics gathered during training (saved with the agent)."""
    refine_steps: int = 0
    """RPP+ in global scope: refine (grow the shared bank) during the first this many transitions, then
    freeze the bank and keep training on it (0: refine throughout, as the env is configured)."""
    slot_value: bool = True
    """RPP+: each sentence actor also weighs the slots' running mean rewards by a learned gain (see ``Agent``)."""
    max_grad_norm: float = 0.5
    """Gradient norm clip, applied to the actors and the critic separately."""
    norm_adv: bool = True
    """Normalise advantages per (mini)batch (a2c: the TD errors of one step, all users in the same round)."""
    gae_lambda: float = 0.95
    """mappo: GAE lambda."""
    update_epochs: int = 4
    """mappo: passes over each rollout."""
    num_minibatches: int = 4
    """mappo: minibatches per pass."""
    clip_coef: float = 0.2
    """mappo: surrogate clipping range (and value clipping range when ``clip_vloss``)."""
    clip_vloss: bool = True
    """mappo: clip the value loss as in PPO."""
    eval_every: int = 0
    """Evaluate greedily on ``eval_split`` every this many updates (0: never during training)."""
    eval_split: str = "valid"
    """User pool of the periodic evaluation."""
    eval_users: int = 200
    """Users in each periodic evaluation (the first of the pool)."""
    eval_seed: int = 0
    """Seed of the periodic evaluation."""
    save_path: str | None = None
    """Write a checkpoint here at the end of training (and when interrupted)."""
    save_every: int = 0
    """With ``save_path``: also checkpoint every this many transitions (0: only at the end)."""
    bank_path: str | None = None
    """RPP+ with ``scope="global"``: write the grown bank here with every checkpoint (default: ``bank.json``
    beside ``save_path``, or a temporary file); the agent's slot indices refer to it."""
    verbose: bool = False
    """Print progress lines."""

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ValueError(f"algo={self.algo!r}; choose one of {ALGOS}")
        if self.refine_steps < 0:
            raise ValueError(f"refine_steps={self.refine_steps} must be >= 0 (0: refine throughout)")
        if self.num_envs < 1 or self.total_timesteps < 1:
            raise ValueError(f"num_envs={self.num_envs} and total_timesteps={self.total_timesteps} must be positive")


# --------------------------------------------------------------------------------------------
# the networks


def layer_init(layer: nn.Linear, std: float = float(np.sqrt(2)), bias_const: float = 0.0) -> nn.Linear:
    """Orthogonal weights, constant bias (cleanrl's initialisation)."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias_const)
    return layer


def _mlp(inp: int, hidden: int, out: int, out_std: float) -> nn.Sequential:
    return nn.Sequential(
        layer_init(nn.Linear(inp, hidden)),
        nn.Tanh(),
        layer_init(nn.Linear(hidden, hidden)),
        nn.Tanh(),
        layer_init(nn.Linear(hidden, out), std=out_std),
    )


class ObsNorm(nn.Module):
    """Running mean/variance standardisation of the observation (not a gradient-trained part).

    Starts as the identity; :meth:`update` folds in a batch (training only) and the statistics
    are buffers, so they are saved and loaded with the agent and frozen at evaluation.
    """

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, dim: int, clip: float = 5.0) -> None:
        super().__init__()
        self.clip = clip
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.zeros(()))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge the batch ``x`` into the running statistics (Chan et al.'s parallel update)."""
        n = x.shape[0]
        mean, var = x.mean(0), x.var(0, unbiased=False)
        total = self.count + n
        delta = mean - self.mean
        m2 = self.var * self.count + var * n + delta**2 * self.count * n / total
        self.mean += delta * n / total
        self.var.copy_(m2 / total)
        self.count.fill_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.count == 0:
            return x
        return torch.clamp((x - self.mean) / torch.sqrt(self.var + 1e-8), -self.clip, self.clip)


class Agent(nn.Module):
    """Four actors (one per prompt pattern) and a centralised critic, all on the global state.

    Args:
        obs_dim: Length of the observation vector.
        nvec: Bank sizes ``[n_history, n_role, n_reasoning, n_format]``.
        hidden: Hidden width of every MLP.
        mask_start: RPP+ (growing banks): where the validity mask starts in the observation
            (``env.unwrapped.core.mask_slice.start``; the last ``sum(nvec)`` entries). Each
            actor's logits of empty slots are then set to the dtype's minimum, so they get
            probability zero, are never sampled and add nothing to the entropy. None: every
            action is always valid (fixed banks).
        stats_start: RPP+: where the slot statistics start (``env.unwrapped.core.stats_slice.start``).
            Each sentence actor then adds ``gain_k * z`` to its logits, ``z`` the slots' running
            mean rewards standardised over the valid slots and ``gain_k`` a learned scalar
            (initially 0): one weight shared by all slots, so a rewrite that earned well is
            preferred in whatever slot it landed, which per-slot MLP outputs cannot learn while
            the bank changes under them. Needs ``mask_start``.
    """

    def __init__(
        self,
        obs_dim: int,
        nvec: Sequence[int],
        hidden: int = 128,
        mask_start: int | None = None,
        stats_start: int | None = None,
    ) -> None:
        super().__init__()
        self.obs_dim = int(obs_dim)
        self.nvec = [int(n) for n in nvec]
        self.hidden = int(hidden)
        self.mask_start = None if mask_start is None else int(mask_start)
        if self.mask_start is not None and self.obs_dim - self.mask_start != sum(self.nvec):
            raise ValueError(
                f"mask_start={mask_start} leaves {self.obs_dim - self.mask_start} mask entries in an observation "
                f"of {self.obs_dim}, but the actions need sum(nvec)={sum(self.nvec)}; pass "
                "env.unwrapped.core.mask_slice.start"
            )
        self.stats_start = None if stats_start is None else int(stats_start)
        if self.stats_start is not None and self.mask_start is None:
            raise ValueError("stats_start needs mask_start (slot statistics exist only with growing banks)")
        self.obs_norm = ObsNorm(self.obs_dim)
        self.actors = nn.ModuleList([_mlp(self.obs_dim, hidden, n, 0.01) for n in self.nvec])
        self.critic = _mlp(self.obs_dim, hidden, 1, 1.0)
        self.slot_value_gain = nn.Parameter(torch.zeros(len(self.nvec) - 1)) if self.stats_start is not None else None

    def actor_parameters(self) -> list[nn.Parameter]:
        gain = [] if self.slot_value_gain is None else [self.slot_value_gain]
        return [*self.actors.parameters(), *gain]

    def critic_parameters(self) -> list[nn.Parameter]:
        return list(self.critic.parameters())

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        """``V(s)``, shape ``[B]``."""
        return self.critic(self.obs_norm(x)).squeeze(-1)

    def action_masks(self, x: torch.Tensor) -> list[torch.Tensor] | None:
        """Each actor's validity mask ``bool[B, n_k]``, read from the raw observation (None: no masks)."""
        if self.mask_start is None:
            return None
        return list(torch.split(x[..., self.mask_start :] > 0.5, self.nvec, dim=-1))

    def get_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each actor's logits, ``[B, n_k]``; empty slots (RPP+) hold the dtype's minimum."""
        masks = self.action_masks(x)  # before normalisation, which would move the 0/1 bits
        h = self.obs_norm(x)
        logits = [actor(h) for actor in self.actors]
        if masks is None:
            return logits
        if self.slot_value_gain is not None:
            assert self.stats_start is not None
            sizes = self.nvec[1:]
            means = torch.split(x[..., self.stats_start : self.stats_start + sum(sizes)], sizes, dim=-1)
            for k, (mean, valid) in enumerate(zip(means, masks[1:], strict=True), 1):
                n = valid.sum(-1, keepdim=True).clamp(min=1)
                mu = (mean * valid).sum(-1, keepdim=True) / n
                sd = ((((mean - mu) * valid) ** 2).sum(-1, keepdim=True) / n).sqrt()
                logits[k] = logits[k] + self.slot_value_gain[k - 1] * (mean - mu) / (sd + 1e-3)
        return [z.masked_fill(~m, torch.finfo(z.dtype).min) for z, m in zip(logits, masks, strict=True)]

    def get_action_and_value(
        self,
        x: torch.Tensor,
        action: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        deterministic: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample (or score) a joint action.

        Args:
            x: Observations ``[B, obs_dim]``.
            action: Joint actions ``[B, 4]`` to score; None samples them (argmax when
                ``deterministic``).
            generator: Random source of the sampling.
            deterministic: Pick each actor's most likely sentence.

        Returns:
            ``(action [B, 4], log_prob [B, 4], entropy [B, 4], value [B])``, per agent.
        """
        logits = self.get_logits(x)
        log_probs = [F.log_softmax(z, dim=-1) for z in logits]
        if action is None:
            if deterministic:
                cols = [lp.argmax(dim=-1) for lp in log_probs]
            else:
                cols = [torch.multinomial(lp.exp(), 1, generator=generator).squeeze(-1) for lp in log_probs]
            action = torch.stack(cols, dim=-1)
        logp = torch.stack([lp.gather(-1, action[:, k : k + 1]).squeeze(-1) for k, lp in enumerate(log_probs)], dim=-1)
        entropy = torch.stack([-(lp.exp() * lp).sum(-1) for lp in log_probs], dim=-1)
        return action, logp, entropy, self.get_value(x)


# --------------------------------------------------------------------------------------------
# the two update rules (pure functions of a batch: unit-testable by hand)


def a2c_losses(
    agent: Agent,
    obs: torch.Tensor,
    actions: torch.Tensor,
    rewards: torch.Tensor,
    next_obs: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    ent_coef: float,
    norm_adv: bool = False,
) -> dict[str, torch.Tensor]:
    """The A2C losses of one batch of per-user transitions ``(s, a, r, s', done)``.

    ``delta = r + gamma * V(s') * (1 - done) - V(s)`` with ``V(s')`` held fixed;
    ``critic_loss = mean(delta^2) / 2``;
    ``actor_loss = -mean(delta * sum_k log pi_k(a_k|s)) - ent_coef * mean(sum_k H_k(s))``
    (``delta`` held fixed, optionally normalised over the batch).

    Returns:
        ``actor_loss``, ``critic_loss``, ``entropy`` (mean per-sample sum over agents) and
        ``delta`` (detached).
    """
    _, logp, entropy, value = agent.get_action_and_value(obs, actions)
    with torch.no_grad():
        target = rewards + gamma * agent.get_value(next_obs) * (1.0 - dones)
    delta = target - value
    adv = delta.detach()
    if norm_adv and len(adv) > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    ent = entropy.sum(-1).mean()
    actor_loss = -(adv * logp.sum(-1)).mean() - ent_coef * ent
    critic_loss = 0.5 * (delta**2).mean()
    return {"actor_loss": actor_loss, "critic_loss": critic_loss, "entropy": ent, "delta": adv}


def gae(
    rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, next_value: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates over a ``[T, B]`` rollout.

    ``dones[t]`` marks that the episode ended *at* step ``t`` (no bootstrap from ``t + 1``).

    Returns:
        ``(advantages, returns)``, both ``[T, B]``.
    """
    steps = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(steps)):
        nxt = next_value if t == steps - 1 else values[t + 1]
        nonterminal = 1.0 - dones[t]
        delta = rewards[t] + gamma * nxt * nonterminal - values[t]
        last = delta + gamma * lam * nonterminal * last
        adv[t] = last
    return adv, adv + values


def mappo_losses(
    agent: Agent,
    obs: torch.Tensor,
    actions: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    old_values: torch.Tensor,
    clip_coef: float,
    ent_coef: float,
    clip_vloss: bool = True,
    norm_adv: bool = True,
) -> dict[str, torch.Tensor]:
    """MAPPO's losses on a minibatch: a clipped surrogate per agent with the shared advantage.

    Returns:
        ``actor_loss``, ``critic_loss``, ``entropy``, ``approx_kl`` and ``clipfrac``.
    """
    _, logp, entropy, value = agent.get_action_and_value(obs, actions)
    adv = advantages
    if norm_adv and len(adv) > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    log_ratio = logp - old_logp  # [B, 4]
    ratio = log_ratio.exp()
    surr1 = -adv[:, None] * ratio
    surr2 = -adv[:, None] * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)
    pg_loss = torch.max(surr1, surr2).sum(-1).mean()
    ent = entropy.sum(-1).mean()
    if clip_vloss:
        v_clipped = old_values + torch.clamp(value - old_values, -clip_coef, clip_coef)
        v_loss = 0.5 * torch.max((value - returns) ** 2, (v_clipped - returns) ** 2).mean()
    else:
        v_loss = 0.5 * ((value - returns) ** 2).mean()
    with torch.no_grad():
        approx_kl = ((ratio - 1) - log_ratio).mean()
        clipfrac = ((ratio - 1.0).abs() > clip_coef).float().mean()
    return {
        "actor_loss": pg_loss - ent_coef * ent,
        "critic_loss": v_loss,
        "entropy": ent,
        "approx_kl": approx_kl,
        "clipfrac": clipfrac,
    }


# --------------------------------------------------------------------------------------------
# the policy protocol, checkpoints


class RPPPolicy:
    """A trained :class:`Agent` behind the ``.name`` / ``.act(obs)`` policy protocol.

    Args:
        agent: The networks.
        deterministic: Each actor's most likely sentence (True) or a sample (False).
        seed: Seeds the sampling of a stochastic policy.
        name: Label in reports.
    """

    def __init__(self, agent: Agent, deterministic: bool = True, seed: int = 0, name: str = "rpp") -> None:
        self.agent = agent.eval()
        self.deterministic = deterministic
        self.generator = torch.Generator().manual_seed(seed)
        self.name = name

    @torch.no_grad()
    def act(self, obs: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        action, _, _, _ = self.agent.get_action_and_value(x, generator=self.generator, deterministic=self.deterministic)
        return action.numpy().astype(np.int64)


def save_checkpoint(
    path: str | Path,
    agent: Agent,
    args: Args,
    env_config: dict[str, Any],
    *,
    seen: int = 0,
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
) -> Path:
    """Write the networks, the run's ``Args`` and the exact env config to ``path``.

    Args:
        path: Destination (parent folders are created; the file is replaced atomically).
        agent: The networks (and observation statistics).
        args: The run's arguments.
        env_config: ``env.unwrapped.config.to_dict()`` of the training env.
        seen: Transitions trained on so far (where a resumed run continues from).
        optimizers: Optimiser states to resume with (``{"actor": ..., "critic": ...}``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(
        {
            "format": "rpp-gym/rpp-agent/1",
            "state_dict": agent.state_dict(),
            "obs_dim": agent.obs_dim,
            "nvec": agent.nvec,
            "hidden": agent.hidden,
            "mask_start": agent.mask_start,
            "stats_start": agent.stats_start,
            "args": dataclasses.asdict(args),
            "env_id": args.env_id,
            "env_config": env_config,
            "seen": int(seen),
            "optimizers": {k: o.state_dict() for k, o in (optimizers or {}).items()},
        },
        tmp,
    )
    tmp.replace(path)
    return path


def load_agent(path: str | Path) -> tuple[Agent, dict[str, Any]]:
    """Rebuild the :class:`Agent` of a checkpoint; also returns the checkpoint's metadata
    (``args``, ``env_id``, ``env_config``, ``seen``, ``optimizers``)."""
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("format") != "rpp-gym/rpp-agent/1":
        raise ValueError(f"{path} is not an RPP agent checkpoint (written by rpp_gym.agents.rpp.save_checkpoint)")
    agent = Agent(ckpt["obs_dim"], ckpt["nvec"], ckpt["hidden"], ckpt.get("mask_start"), ckpt.get("stats_start"))
    agent.load_state_dict(ckpt["state_dict"])
    meta = {k: ckpt[k] for k in ("args", "env_id", "env_config")}
    meta["seen"] = ckpt.get("seen", 0)
    meta["optimizers"] = ckpt.get("optimizers", {})
    return agent, meta


def load_policy(path: str | Path, deterministic: bool = True, seed: int = 0, name: str | None = None) -> RPPPolicy:
    """An :class:`RPPPolicy` from a checkpoint, ready for ``rpp_gym.evaluation.evaluate``."""
    agent, meta = load_agent(path)
    return RPPPolicy(agent, deterministic, seed, name or meta["args"].get("exp_name", "rpp"))


# --------------------------------------------------------------------------------------------
# training


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        agent: The trained networks.
        args: The run's arguments.
        env_config: ``env.unwrapped.config.to_dict()`` of the training env.
        curve: Mean reward of the transitions each update learned from, per update.
        curve_steps: Transitions seen at each update.
        eval_curve: ``(transitions seen, mean NDCG@k)`` of each periodic evaluation.
        wall_s: Seconds the run took.
        cpu_s: CPU seconds of this process during the run (a contention-free cost on a shared machine).
        checkpoint: Where it was saved (None if not).
        bank_path: RPP+ in global scope: the grown bank the agent's slot indices refer to (None otherwise).
    """

    agent: Agent
    args: Args
    env_config: dict[str, Any]
    curve: list[float] = field(default_factory=list)
    curve_steps: list[int] = field(default_factory=list)
    eval_curve: list[tuple[int, float]] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    checkpoint: Path | None = None
    bank_path: Path | None = None

    @property
    def eval_env_kwargs(self) -> dict[str, Any]:
        """Env keyword arguments to evaluate the agent with: the training ones, plus, for a global
        RPP+ bank, that bank frozen (``bank_file=bank_path, every=0, update_stats=False``)."""
        return eval_env_kwargs(self.args.env_kwargs, self.bank_path)

    def policy(self, deterministic: bool = True, seed: int = 0) -> RPPPolicy:
        """The trained agent behind the policy protocol."""
        return RPPPolicy(self.agent, deterministic, seed, self.args.exp_name)


@contextlib.contextmanager
def live_eval_env_kwargs(env: Any, env_kwargs: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """:func:`eval_env_kwargs` for an agent still training on ``env``: a global RPP+ bank is
    evaluated from a temporary snapshot (the checkpoint's bank file is left alone)."""
    core = getattr(env.unwrapped, "core", None)  # none behind e.g. SB3's DummyVecEnv (fixed banks)
    if core is None or not (core.masked and core.scope == "global"):
        yield dict(env_kwargs)
        return
    with tempfile.TemporaryDirectory(prefix="rpp-gym-eval-") as tmp:
        yield eval_env_kwargs(env_kwargs, save_bank(env, Path(tmp) / "bank.json"))


def eval_env_kwargs(env_kwargs: Mapping[str, Any], bank_path: str | Path | None) -> dict[str, Any]:
    """``env_kwargs`` with a saved global RPP+ bank frozen in (unchanged when ``bank_path`` is None):
    no rewrites and no statistics updates, so every user sees the trained bank as it was saved."""
    if bank_path is None:
        return dict(env_kwargs)
    return {**env_kwargs, "bank_file": str(bank_path), "every": 0, "update_stats": False}


def train(
    args: Args,
    callback: Callable[[dict[str, Any]], None] | None = None,
    resume_from: str | Path | None = None,
) -> TrainResult:
    """Train the four agents on the train users of ``args.env_id`` (see the module docstring).

    Args:
        args: The run.
        callback: Called after every update with ``{"update", "seen", "reward", "ndcg@1",
            "agent", "losses", "env"}`` (the update's mean reward and NDCG@1, the live agent, the
            last minibatch's losses as floats, the training vector env). A callback that
            evaluates the agent should call ``agent.train()`` afterwards; one that evaluates an
            RPP+ agent in global scope should evaluate on a snapshot of the live bank
            (``save_bank(event["env"], path)``, then ``bank_file=path, every=0``).
        resume_from: A checkpoint of this run to continue from: networks, observation
            statistics and optimiser states are restored and training runs until
            ``args.total_timesteps`` transitions in all. The env restarts from
            ``seed + seen``, so a resumed run is reproducible but not identical to an
            uninterrupted one.

    With ``args.save_path``, a checkpoint is also written every ``args.save_every`` transitions
    and when the run is interrupted (``KeyboardInterrupt``), then the interrupt is re-raised.
    """
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(args.torch_deterministic)
    try:
        return _train(args, callback, resume_from)
    finally:  # these are process-wide: give them back
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train(
    args: Args, callback: Callable[[dict[str, Any]], None] | None, resume_from: str | Path | None
) -> TrainResult:
    from rpp_gym.evaluation import evaluate

    start, cpu_start = time.perf_counter(), time.process_time()
    env_kwargs = {**args.env_kwargs, "split": "train"}
    envs = gym.make_vec(args.env_id, num_envs=args.num_envs, **env_kwargs)
    config: Any = envs.unwrapped.config  # type: ignore[attr-defined]
    rounds = config.rounds
    env_config = config.to_dict()
    obs_dim = int(np.prod(envs.single_observation_space.shape or (0,)))
    nvec = np.asarray(envs.single_action_space.nvec).tolist()  # type: ignore[attr-defined]
    core: Any = envs.unwrapped.core  # type: ignore[attr-defined]
    mask_start = None if core.mask_slice is None else int(core.mask_slice.start)  # RPP+: masked actions
    stats_start = None if core.stats_slice is None or not args.slot_value else int(core.stats_slice.start)
    bank_path = _bank_path(args) if core.masked and core.scope == "global" else None
    if args.refine_steps and bank_path is None:
        raise ValueError(
            f"refine_steps={args.refine_steps} freezes a global RPP+ bank, but {args.env_id} with "
            f"{args.env_kwargs} has none; train on an RPP-Plus-* id with scope='global', or drop refine_steps"
        )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        agent = Agent(obs_dim, nvec, args.hidden, mask_start, stats_start)
    actor_opt = torch.optim.Adam(agent.actor_parameters(), lr=args.actor_lr, eps=1e-5)
    critic_opt = torch.optim.Adam(agent.critic_parameters(), lr=args.critic_lr, eps=1e-5)
    seen = 0
    if resume_from is not None:
        loaded, meta = load_agent(resume_from)
        want = (obs_dim, nvec, mask_start, stats_start)
        if (loaded.obs_dim, loaded.nvec, loaded.mask_start, loaded.stats_start) != want:
            raise ValueError(
                f"{resume_from}: checkpoint is for obs_dim={loaded.obs_dim}, nvec={loaded.nvec}, "
                f"mask_start={loaded.mask_start}, stats_start={loaded.stats_start} but this run has "
                f"obs_dim={obs_dim}, nvec={nvec}, mask_start={mask_start}, stats_start={stats_start}; resume with "
                f"the env it was trained on ({meta['env_id']}) and the same slot_value "
                f"({meta['args'].get('slot_value', True)})"
            )
        if bank_path is not None:
            if not bank_path.is_file():
                raise FileNotFoundError(
                    f"{resume_from} was trained on a global RPP+ bank, but {bank_path} is missing; its slot indices "
                    "mean nothing without it: retrain, or pass the bank as bank_path"
                )
            envs.close()  # reopen on the saved bank, so the slots mean what the agent learned
            env_kwargs["bank_file"] = str(bank_path)
            envs = gym.make_vec(args.env_id, num_envs=args.num_envs, **env_kwargs)
            core = envs.unwrapped.core  # type: ignore[attr-defined]
        agent = loaded.train()
        actor_opt = torch.optim.Adam(agent.actor_parameters(), lr=args.actor_lr, eps=1e-5)
        critic_opt = torch.optim.Adam(agent.critic_parameters(), lr=args.critic_lr, eps=1e-5)
        for name, opt in (("actor", actor_opt), ("critic", critic_opt)):
            if name in meta["optimizers"]:
                opt.load_state_dict(meta["optimizers"][name])
        seen = int(meta["seen"])
    gen = torch.Generator().manual_seed(args.seed + seen)
    optimizers = {"actor": actor_opt, "critic": critic_opt}

    steps_per_update = 1 if args.algo == "a2c" else rounds
    num_updates = max(0, args.total_timesteps - seen) // (args.num_envs * steps_per_update)
    if resume_from is None:
        num_updates = max(1, num_updates)
    result = TrainResult(agent, args, env_config, bank_path=bank_path)
    next_save = seen + args.save_every if args.save_every else None

    def optimise(losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        actor_opt.zero_grad()
        critic_opt.zero_grad()
        (losses["actor_loss"] + losses["critic_loss"]).backward()  # disjoint parameters
        nn.utils.clip_grad_norm_(agent.actor_parameters(), args.max_grad_norm)
        nn.utils.clip_grad_norm_(agent.critic_parameters(), args.max_grad_norm)
        actor_opt.step()
        critic_opt.step()
        return losses

    def checkpoint() -> Path | None:
        if bank_path is not None:
            save_bank(envs, bank_path)
        if args.save_path:
            return save_checkpoint(args.save_path, agent, args, env_config, seen=seen, optimizers=optimizers)
        return None

    def periodic_eval(update: int, seen: int) -> None:
        if args.eval_every and (update % args.eval_every == 0 or update == num_updates):
            with live_eval_env_kwargs(envs, args.env_kwargs) as kwargs:
                res = evaluate(
                    RPPPolicy(agent, True, name=args.exp_name), args.env_id, split=args.eval_split,
                    n_users=args.eval_users, seed=args.eval_seed, env_kwargs=kwargs,
                )
            agent.train()
            result.eval_curve.append((seen, float(res.per_user().mean())))
            if args.verbose:
                score = result.eval_curve[-1][1]
                print(f"update {update}/{num_updates}  seen {seen}  eval {args.eval_split} {score:.4f}")

    def maybe_freeze() -> None:
        if args.refine_steps and seen >= args.refine_steps:
            freeze_bank(envs)

    maybe_freeze()
    obs_np, _ = envs.reset(seed=args.seed + seen)
    obs = torch.as_tensor(obs_np)
    round_t = 0
    try:
        for update in range(1, num_updates + 1):
            if args.anneal_lr:
                frac = 1.0 - (update - 1.0) / num_updates
                actor_opt.param_groups[0]["lr"] = frac * args.actor_lr
                critic_opt.param_groups[0]["lr"] = frac * args.critic_lr
            if args.algo == "a2c":
                if args.norm_obs:
                    agent.obs_norm.update(obs)
                with torch.no_grad():
                    action, _, _, _ = agent.get_action_and_value(obs, generator=gen)
                next_np, reward, term, trunc, info = envs.step(action.numpy())
                done = np.logical_or(term, trunc)
                next_obs = torch.as_tensor(next_np)
                rewards = torch.as_tensor(reward, dtype=torch.float32)
                dones = torch.as_tensor(done, dtype=torch.float32)
                losses = optimise(a2c_losses(agent, obs, action, rewards, next_obs, dones, args.gamma,
                                             args.ent_coef, args.norm_adv))
                seen += args.num_envs
                result.curve.append(float(reward.mean()))
                ndcg1 = float(np.mean(info["metrics"]["ndcg@1"]))
                round_t += 1
                if round_t == rounds:  # every user's episode ends together: draw new users
                    assert done.all(), "episodes of the batch should end together"
                    next_np, _ = envs.reset()
                    next_obs = torch.as_tensor(next_np)
                    round_t = 0
                obs = next_obs
            else:
                # one rollout = one episode of every user of the batch
                b_obs = torch.zeros((rounds, args.num_envs, obs_dim))
                b_act = torch.zeros((rounds, args.num_envs, 4), dtype=torch.int64)
                b_logp = torch.zeros((rounds, args.num_envs, 4))
                b_rew = torch.zeros((rounds, args.num_envs))
                b_done = torch.zeros((rounds, args.num_envs))
                b_val = torch.zeros((rounds, args.num_envs))
                ndcg1s = []
                for t in range(rounds):
                    with torch.no_grad():
                        action, logp, _, value = agent.get_action_and_value(obs, generator=gen)
                    next_np, reward, term, trunc, info = envs.step(action.numpy())
                    ndcg1s.append(float(np.mean(info["metrics"]["ndcg@1"])))
                    b_obs[t], b_act[t], b_logp[t], b_val[t] = obs, action, logp, value
                    b_rew[t] = torch.as_tensor(reward, dtype=torch.float32)
                    b_done[t] = torch.as_tensor(np.logical_or(term, trunc), dtype=torch.float32)
                    obs = torch.as_tensor(next_np)
                assert bool(b_done[-1].all()), "episodes of the batch should end together"
                with torch.no_grad():
                    adv, ret = gae(b_rew, b_val, b_done, torch.zeros(args.num_envs), args.gamma, args.gae_lambda)
                obs = torch.as_tensor(envs.reset()[0])
                n = rounds * args.num_envs
                flat = (b_obs.reshape(n, -1), b_act.reshape(n, 4), b_logp.reshape(n, 4), adv.reshape(n),
                        ret.reshape(n), b_val.reshape(n))
                mb = max(1, n // args.num_minibatches)
                for _ in range(args.update_epochs):
                    perm = torch.randperm(n, generator=gen)
                    for lo in range(0, n, mb):
                        idx = perm[lo : lo + mb]
                        o, a, lp, ad, rt, v = (x[idx] for x in flat)
                        losses = optimise(mappo_losses(agent, o, a, lp, ad, rt, v, args.clip_coef,
                                                       args.ent_coef, args.clip_vloss, args.norm_adv))
                if args.norm_obs:  # after the update, so the rollout's ratios start at exactly 1
                    agent.obs_norm.update(flat[0])
                seen += n
                result.curve.append(float(b_rew.mean()))
                ndcg1 = float(np.mean(ndcg1s))
            result.curve_steps.append(seen)
            maybe_freeze()
            if callback is not None:
                callback({
                    "update": update, "seen": seen, "reward": result.curve[-1], "ndcg@1": ndcg1, "agent": agent,
                    "losses": {k: float(v.detach().mean()) for k, v in losses.items()}, "env": envs,
                })
            if next_save is not None and args.save_path and seen >= next_save:
                checkpoint()
                next_save += args.save_every
            if args.verbose and update % max(1, num_updates // 20) == 0:
                recent = result.curve[-max(1, len(result.curve) // 20) :]
                print(f"update {update}/{num_updates}  seen {seen}  reward {np.mean(recent):.4f}  "
                      f"{time.perf_counter() - start:.0f}s", flush=True)
            periodic_eval(update, seen)
        result.checkpoint = checkpoint()
    except KeyboardInterrupt:
        checkpoint()
        raise
    finally:
        envs.close()
    agent.eval()
    result.wall_s = time.perf_counter() - start
    result.cpu_s = time.process_time() - cpu_start
    return result


def _bank_path(args: Args) -> Path:
    if args.bank_path:
        return Path(args.bank_path).expanduser()
    if args.save_path:
        return Path(args.save_path).expanduser().with_name("bank.json")
    return Path(tempfile.mkdtemp(prefix="rpp-gym-bank-")) / "bank.json"


# --------------------------------------------------------------------------------------------
# command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rpp_gym.agents.rpp",
        description="Train RPP's four prompt agents (multi-agent actor-critic) on an rpp-gym env.",
    )
    doc = _field_docs()
    for f in dataclasses.fields(Args):
        default = getattr(Args(), f.name)
        flag = "--" + f.name.replace("_", "-")
        help_ = f"{doc.get(f.name, '')} (default: {default!r})".replace("%", "%%")
        if f.name == "env_kwargs":
            p.add_argument(flag, type=json.loads, default={}, help=help_ + " as JSON")
        elif isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_)
        elif f.name in ("threads", "save_path", "bank_path"):
            p.add_argument(flag, type=_int_or_none if f.name == "threads" else _str_or_none, default=default,
                           help=help_)
        else:
            p.add_argument(flag, type=type(default), default=default, help=help_,
                           choices=ALGOS if f.name == "algo" else None)
    p.add_argument("--eval-test", action="store_true", help="evaluate the trained agent on the test users at the end")
    return p


def _int_or_none(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


def _str_or_none(text: str) -> str | None:
    return None if text.lower() == "none" else text


def _field_docs() -> dict[str, str]:
    """The docstring under each ``Args`` field (read from the source, as the CLI's help)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(Args))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in itertools.pairwise(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
                docs[node.target.id] = nxt.value.value
    return docs


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rpp_gym.agents.rpp [--flags]``: train, report, optionally save."""
    ns = vars(_parser().parse_args(argv))
    eval_test = ns.pop("eval_test")
    args = Args(**ns)
    result = train(args)
    last = result.curve[-max(1, len(result.curve) // 10) :]
    print(f"{args.exp_name} ({args.algo}): {len(result.curve)} updates, {result.curve_steps[-1]} transitions in "
          f"{result.wall_s:.1f}s; mean reward over the last 10% of updates {np.mean(last):.4f}")
    if result.checkpoint:
        print(f"saved {result.checkpoint}")
    if eval_test:
        from rpp_gym.evaluation import evaluate

        res = evaluate(result.policy(), args.env_id, split="test", env_kwargs=result.eval_env_kwargs)
        s = res.summary()
        print(f"test NDCG@10 {s['ndcg@10']:.4f} +- {s['ndcg@10_ci95']:.4f} ({len(res.user_ids)} users)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
