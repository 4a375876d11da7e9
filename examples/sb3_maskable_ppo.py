"""MaskablePPO (sb3-contrib) with the env's ``action_masks()``, on the batched vector env.

sb3-contrib reads one ``bool[sum(nvec)]`` mask per env (``env_method("action_masks")``): for a
``MultiDiscrete`` action the masks of the four patterns side by side. With the fixed movie bank
every sentence is valid; banks with invalid slots mask them out and the policy never picks them.

    python examples/sb3_maskable_ppo.py --steps 8192 --users 100
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.utils import get_action_masks

import rpp_gym  # noqa: F401  (registers the RPP-* ids)
from rpp_gym.agents.baselines import RandomPolicy
from rpp_gym.agents.sb3 import SB3Policy, make_sb3_vec_env
from rpp_gym.evaluation import EvalResult, evaluate


def report(result: EvalResult) -> None:
    s = result.summary()
    used = np.unique(result.actions[..., 2]).tolist()
    print(f"{result.name:>14}: NDCG@10 {s['ndcg@10']:.3f} ± {s['ndcg@10_ci95']:.3f}  reasoning used {used}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default="RPP-MovieLens-Sim-v0", help="a registered RPP-* id")
    parser.add_argument("--steps", type=int, default=8192, help="total env steps (all envs together)")
    parser.add_argument("--envs", type=int, default=8, help="users stepped together, one LLM batch per step")
    parser.add_argument("--users", type=int, default=100, help="test users to evaluate on")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    vec_env = make_sb3_vec_env(args.env_id, n_envs=args.envs, seed=args.seed)
    masks = get_action_masks(vec_env)
    print(f"action masks: {masks.shape} (envs x sum(nvec)), {int(masks.sum())} valid entries")
    model = MaskablePPO("MlpPolicy", vec_env, n_steps=64, batch_size=256, learning_rate=1e-3, seed=args.seed)

    nvec = vec_env.action_space.nvec.tolist()  # type: ignore[attr-defined]
    report(evaluate(RandomPolicy(nvec), args.env_id, split="test", n_users=args.users))
    report(evaluate(SB3Policy(model, "maskable (untrained)"), args.env_id, split="test", n_users=args.users))
    model.learn(total_timesteps=args.steps)
    policy = SB3Policy(model, "maskable_ppo", action_masks=masks[0])
    report(evaluate(policy, args.env_id, split="test", n_users=args.users))
    vec_env.close()


if __name__ == "__main__":
    main()
