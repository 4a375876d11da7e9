"""Quickstart: make the env, reset, send one prompt, and look at what the LLM answered.

Usage:

    python examples/quickstart.py                 # one prompt to the simulated LLM
    python examples/quickstart.py --steps 15      # a whole episode (one user, 15 rounds)
"""

from __future__ import annotations

import argparse

import gymnasium as gym

import rpp_gym  # noqa: F401  (registers the RPP-* ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default="RPP-MovieLens-Sim-v0", help="a registered RPP-* id")
    parser.add_argument("--steps", type=int, default=1, help="rounds to play per user")
    parser.add_argument("--users", type=int, default=1, help="episodes (one user each)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    env = gym.make(args.env_id, render_mode="ansi")
    print(f"action space {env.action_space} (history, role, reasoning, format)")
    print(f"observation space {env.observation_space}\n")
    _, info = env.reset(seed=args.seed)
    for user in range(args.users):
        if user:
            _, info = env.reset()
        total, rounds = 0.0, 0
        for _ in range(args.steps):
            action = env.action_space.sample()  # one sentence per pattern, uniformly at random
            _, reward, terminated, truncated, info = env.step(action)
            total, rounds = total + float(reward), rounds + 1
            if user == 0 and rounds == 1:
                print(env.render())  # the prompt, the LLM's answer and the reward
            if terminated or truncated:
                break
        print(f"user {info['user_id']}: {rounds} round(s), mean NDCG@10 {total / rounds:.3f}")
    env.close()


if __name__ == "__main__":
    main()
