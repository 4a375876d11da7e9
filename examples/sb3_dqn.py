"""DQN (Stable-Baselines3) over whole prompts: ``FlattenJointAction`` makes the joint action one
``Discrete(675)`` (3 x 5 x 9 x 5 sentence combinations); ``SB3Policy`` un-flattens for evaluation.
With 675 arms and no sharing between them, DQN needs far more steps than PPO to beat random
prompts (try ``--steps 50000``); the factored ``MultiDiscrete`` policies learn faster.

    python examples/sb3_dqn.py --steps 50000 --users 100
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import torch
from stable_baselines3 import DQN

import rpp_gym  # noqa: F401  (registers the RPP-* ids)
from rpp_gym.agents.baselines import RandomPolicy
from rpp_gym.agents.sb3 import FlattenJointAction, SB3Policy
from rpp_gym.evaluation import EvalResult, evaluate


def report(result: EvalResult) -> None:
    s = result.summary()
    print(f"{result.name:>14}: NDCG@10 {s['ndcg@10']:.3f} ± {s['ndcg@10_ci95']:.3f}  hit@1 {s['hit@1']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default="RPP-MovieLens-Sim-v0", help="a registered RPP-* id")
    parser.add_argument("--steps", type=int, default=8192, help="total env steps")
    parser.add_argument("--users", type=int, default=100, help="test users to evaluate on")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    env = FlattenJointAction(gym.make(args.env_id))
    print(f"{env.unwrapped.action_space} flattened to {env.action_space}; index 304 = {env.joint(304).tolist()}")
    model = DQN(
        "MlpPolicy",
        env,
        learning_starts=min(500, args.steps // 2),
        exploration_fraction=0.5,
        target_update_interval=500,
        train_freq=4,
        gamma=0.9,
        seed=args.seed,
    )

    report(evaluate(RandomPolicy(env.joint_nvec.tolist()), args.env_id, split="test", n_users=args.users))
    report(evaluate(SB3Policy(model, "dqn (untrained)"), args.env_id, split="test", n_users=args.users))
    model.learn(total_timesteps=args.steps)
    report(evaluate(SB3Policy(model, "dqn"), args.env_id, split="test", n_users=args.users))
    env.close()


if __name__ == "__main__":
    main()
