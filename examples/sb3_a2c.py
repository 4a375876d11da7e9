"""A2C (Stable-Baselines3) on the joint ``MultiDiscrete`` prompt action, on the batched vector env.

Prints the test-split evaluation before and after training.

    python examples/sb3_a2c.py --steps 8192 --users 100
"""

from __future__ import annotations

import argparse

import torch
from stable_baselines3 import A2C

import rpp_gym  # noqa: F401  (registers the RPP-* ids)
from rpp_gym.agents.baselines import RandomPolicy
from rpp_gym.agents.sb3 import SB3Policy, make_sb3_vec_env
from rpp_gym.evaluation import EvalResult, evaluate


def report(result: EvalResult) -> None:
    s = result.summary()
    print(f"{result.name:>14}: NDCG@10 {s['ndcg@10']:.3f} ± {s['ndcg@10_ci95']:.3f}  hit@1 {s['hit@1']:.3f}")


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
    model = A2C("MlpPolicy", vec_env, n_steps=16, learning_rate=3e-3, seed=args.seed)

    nvec = vec_env.action_space.nvec.tolist()  # type: ignore[attr-defined]
    report(evaluate(RandomPolicy(nvec), args.env_id, split="test", n_users=args.users))
    report(evaluate(SB3Policy(model, "a2c (untrained)"), args.env_id, split="test", n_users=args.users))
    model.learn(total_timesteps=args.steps)
    report(evaluate(SB3Policy(model, "a2c"), args.env_id, split="test", n_users=args.users))
    vec_env.close()


if __name__ == "__main__":
    main()
