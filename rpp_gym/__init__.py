"""rpp-gym: Gymnasium environments for reinforced prompt personalization in LLM recommendation.

``import rpp_gym`` registers the environments (``RPP-MovieLens-v0``, ``RPP-MovieLens-Sim-v0``,
...); see ``rpp_gym.envs.registration.ENV_SPECS``.
"""

from rpp_gym.envs.registration import ENV_SPECS, register_envs

__version__ = "0.1.0"

register_envs()

__all__ = ["ENV_SPECS", "__version__", "register_envs"]
