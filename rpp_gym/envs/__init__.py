"""Gymnasium environments: the single env, the batched vector env, and their registration."""

from rpp_gym.envs.config import RPPConfig
from rpp_gym.envs.parallel import RPPParallelEnv
from rpp_gym.envs.rpp_env import RPPEnv
from rpp_gym.envs.vector import RPPVectorEnv

__all__ = ["RPPConfig", "RPPEnv", "RPPParallelEnv", "RPPVectorEnv"]
