"""rpp-gym: Gymnasium environments for reinforced prompt personalization in LLM recommendation.

``import rpp_gym`` registers the environments (``RPP-MovieLens-v0``, ``RPP-MovieLens-Sim-v0``,
...); see ``rpp_gym.envs.registration.ENV_SPECS``. ``rpp_gym.parallel_env(env_id)`` gives the
PettingZoo multi-agent view of any registered id.
"""

from __future__ import annotations

from typing import Any

from rpp_gym.envs.registration import ENV_SPECS, register_envs

__version__ = "0.1.0"

register_envs()


def parallel_env(env_id: str, **kwargs: Any) -> Any:
    """The PettingZoo ``ParallelEnv`` (one agent per prompt pattern) over a registered id."""
    from rpp_gym.envs.parallel import make_parallel_env

    return make_parallel_env(env_id, **kwargs)


__all__ = ["ENV_SPECS", "__version__", "parallel_env", "register_envs"]
