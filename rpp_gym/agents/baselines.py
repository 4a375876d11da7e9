"""Baseline prompt policies: uniform random and fixed prompts.

A policy maps a batch of observations ``float32[B, obs_dim]`` to joint actions ``int64[B, 4]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["FixedPolicy", "Policy", "RandomPolicy"]


class Policy(Protocol):
    """Anything with ``act(obs) -> actions``; ``name`` labels it in reports."""

    name: str

    def act(self, obs: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]: ...


class RandomPolicy:
    """Uniformly random sentence per pattern (seeded, so evaluations repeat)."""

    def __init__(self, nvec: Sequence[int], seed: int = 0, name: str = "random") -> None:
        self.nvec = np.asarray(nvec, dtype=np.int64)
        self.rng = np.random.default_rng(seed)
        self.name = name

    def act(self, obs: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        return (self.rng.random((len(obs), len(self.nvec))) * self.nvec).astype(np.int64)


class FixedPolicy:
    """The same joint action for every user and round (a task-wise prompt)."""

    def __init__(self, action: Sequence[int], name: str | None = None) -> None:
        self.action = np.asarray(action, dtype=np.int64)
        self.name = name or f"fixed{self.action.tolist()}"

    def act(self, obs: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        return np.broadcast_to(self.action, (len(obs), len(self.action))).copy()
