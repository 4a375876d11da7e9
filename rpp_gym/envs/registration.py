"""Registered env ids: variants are data (one row each), not subclasses."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

__all__ = ["ENV_SPECS", "PLUS_ENV_SPECS", "is_plus", "plus_variant", "register_envs"]

ENTRY_POINT = "rpp_gym.envs.rpp_env:RPPEnv"
VECTOR_ENTRY_POINT = "rpp_gym.envs.vector:RPPVectorEnv"
PLUS_ENTRY_POINT = "rpp_gym.envs.refine:make_refine_env"
PLUS_VECTOR_ENTRY_POINT = "rpp_gym.envs.refine:make_refine_vector_env"

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

PLUS_ENV_SPECS: dict[str, dict[str, Any]] = {
    "RPP-Plus-MovieLens-Sim-v0": {
        "kwargs": {"dataset": "movielens-1m", "llm": "sim"},
        "nondeterministic": False,
        "base": "RPP-MovieLens-Sim-v0",
        "doc": "RPP+ on MovieLens-1M with the simulated LLM as ranker and refiner (documented rewrite effects).",
    },
    "RPP-Plus-MovieLens-v0": {
        "kwargs": {"dataset": "movielens-1m", "llm": "llamacpp"},
        "nondeterministic": True,
        "base": "RPP-MovieLens-v0",
        "doc": "RPP+ on MovieLens-1M, embedded llama.cpp SmolLM2-135M-Instruct ranks and rewrites.",
    },
}
"""RPP+ ids (:class:`rpp_gym.envs.refine.RefineWrapper`): growing banks, masked actions.

They take the :class:`~rpp_gym.envs.refine.RefineConfig` fields (``capacity``, ``scope``,
``refiner``, ...) besides the env's. Kept apart from :data:`ENV_SPECS` because their actions are
masked: the fixed-bank registry checks, which sample unmasked actions, do not apply to them;
``tests/test_refine.py`` gives them the same checks with masked sampling.
"""


def is_plus(env_id: str) -> bool:
    """Whether ``env_id`` is an RPP+ id (growing banks, masked actions)."""
    return env_id in PLUS_ENV_SPECS


def plus_variant(env_id: str) -> str:
    """The RPP+ id over the same data and LLM as ``env_id`` (``env_id`` itself if it is one).

    Raises:
        ValueError: ``env_id`` has no RPP+ variant.
    """
    if is_plus(env_id):
        return env_id
    for plus_id, spec in PLUS_ENV_SPECS.items():
        if spec["base"] == env_id:
            return plus_id
    bases = ", ".join(spec["base"] for spec in PLUS_ENV_SPECS.values())
    raise ValueError(f"{env_id} has no RPP+ variant; RPP+ runs are evaluated on the users of {bases}")


def register_envs() -> None:
    """Register every id in :data:`ENV_SPECS` and :data:`PLUS_ENV_SPECS` (idempotent)."""
    tables = ((ENV_SPECS, ENTRY_POINT, VECTOR_ENTRY_POINT), (PLUS_ENV_SPECS, PLUS_ENTRY_POINT, PLUS_VECTOR_ENTRY_POINT))
    for specs, entry_point, vector_entry_point in tables:
        for env_id, spec in specs.items():
            if env_id in gym.registry:
                continue
            gym.register(
                id=env_id,
                entry_point=entry_point,
                vector_entry_point=vector_entry_point,
                kwargs=dict(spec["kwargs"]),
                nondeterministic=spec["nondeterministic"],
            )
