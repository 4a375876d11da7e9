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
    # Ids below need data that may be absent (no download source, or one outside the package
    # index): rpp_gym.data.specs.data_available(env_id) says, offline, whether it is there.
    "RPP-Lastfm-Sim-v0": {
        "kwargs": {"dataset": "lastfm", "llm": "sim"},
        "nondeterministic": False,
        "doc": "Last.fm (HetRec 2011) artists, music bank, simulated LLM ranker (init_history=1).",
    },
    "RPP-Lastfm-v0": {
        "kwargs": {"dataset": "lastfm", "llm": "llamacpp"},
        "nondeterministic": True,
        "doc": "Last.fm (HetRec 2011) artists, music bank, embedded llama.cpp SmolLM2-135M-Instruct.",
    },
    "RPP-Games-Sim-v0": {
        "kwargs": {"dataset": "games", "llm": "sim"},
        "nondeterministic": False,
        "doc": "Amazon Video Games (files you provide), game bank, simulated LLM ranker (init_history=5).",
    },
    "RPP-Games-v0": {
        "kwargs": {"dataset": "games", "llm": "llamacpp"},
        "nondeterministic": True,
        "doc": "Amazon Video Games (files you provide), game bank, embedded llama.cpp SmolLM2-135M-Instruct.",
    },
    "RPP-Custom-v0": {
        "kwargs": {"dataset": "custom", "llm": "llamacpp"},
        "nondeterministic": True,
        "doc": "Your data: data_dir= (interactions.csv + items.csv) or dataset= (a Dataset); its domain picks "
        "the bank; llm='sim' for the simulated ranker, pool_sizes= for small data.",
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
