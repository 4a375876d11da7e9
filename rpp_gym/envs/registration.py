"""Registered env ids: variants are data (one row each), not subclasses."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

__all__ = ["ENV_SPECS", "register_envs"]

ENTRY_POINT = "rpp_gym.envs.rpp_env:RPPEnv"
VECTOR_ENTRY_POINT = "rpp_gym.envs.vector:RPPVectorEnv"

ENV_SPECS: dict[str, dict[str, Any]] = {
    "RPP-MovieLens-Sim-v0": {
        "kwargs": {"dataset": "movielens-1m", "llm": "sim"},
        "nondeterministic": False,
        "doc": "MovieLens-1M, simulated LLM ranker: fast and deterministic (CI, algorithm development).",
    },
    "RPP-MovieLens-v0": {
        "kwargs": {"dataset": "movielens-1m", "llm": "llamacpp"},
        "nondeterministic": True,
        "doc": "MovieLens-1M, embedded llama.cpp SmolLM2-135M-Instruct (greedy; replayable from a warm cache).",
    },
    "RPP-MovieLens100K-Sim-v0": {
        "kwargs": {"dataset": "movielens-100k", "llm": "sim"},
        "nondeterministic": False,
        "doc": "MovieLens-100K, simulated LLM ranker: quick experiments.",
    },
}


def register_envs() -> None:
    """Register every id in :data:`ENV_SPECS` (idempotent)."""
    for env_id, spec in ENV_SPECS.items():
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point=ENTRY_POINT,
            vector_entry_point=VECTOR_ENTRY_POINT,
            kwargs=dict(spec["kwargs"]),
            nondeterministic=spec["nondeterministic"],
        )
