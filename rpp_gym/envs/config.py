"""The env's configuration: one frozen dataclass; a misspelled keyword is a ``TypeError``."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from rpp_gym.data.bundle import BundleOptions

__all__ = ["RPPConfig"]

HISTORY_MODES = ("increment", "absolute")
UNRANKED_POLICIES = ("zero", "append")


@dataclass(frozen=True)
class RPPConfig:
    """Everything that defines an RPP environment (the ``gym.make`` keyword arguments)."""

    dataset: Any = "movielens-1m"
    """A registered dataset name (``rpp-gym data info``) or an in-memory ``rpp_gym.data.Dataset``."""
    data_dir: str | None = None
    """Load the dataset's files from this folder instead of the cache (no download)."""
    llm: Any = "sim"
    """Backend spec (``"sim"``, ``"llamacpp"``, ``"openai:URL?model=NAME"``, ...) or a backend object."""
    cache: str | None = "default"
    """Response cache for real backends: ``"default"`` (under ``$RPP_GYM_HOME``), a path, or None."""
    split: str = "train"
    """User pool episodes are drawn from: ``"train"``, ``"valid"`` or ``"test"``."""
    rounds: int = 15
    """Rounds per episode (one user per episode; paper: 15)."""
    k: int = 10
    """The reward is NDCG@k of the held-out item."""
    n_candidates: int = 10
    """Candidates per user: the held-out item plus ``n_candidates - 1`` unseen negatives."""
    history_mode: str = "increment"
    """``"increment"`` (paper: each action adds 0, 1 or 2 items) or ``"absolute"`` (pick a length)."""
    init_history: int | None = None
    """History length at reset in increment mode (None: the dataset's default, 1 for MovieLens)."""
    history_lengths: tuple[int, ...] | None = None
    """The lengths to choose from in absolute mode (None: the bank's)."""
    bank: Any = None
    """Sentence bank: a domain name, a JSON path, a ``SentenceBank``, or None for the dataset's domain."""
    unranked: str = "zero"
    """Candidates the answer does not rank get no credit (``"zero"``, paper) or are appended in shown order."""
    temperature: float = 0.0
    """LLM sampling temperature (0 = greedy)."""
    max_tokens: int = 256
    """Generation cap per answer."""
    history_cap: int = BundleOptions.history_cap
    """Most recent items kept before the held-out target."""
    pool_sizes: tuple[int, int, int] = BundleOptions.pool_sizes
    """Users in the train, valid and test pools."""
    split_seed: int = BundleOptions.split_seed
    """Seeds the user pools (independent of the env seed)."""
    embedding_dim: int = BundleOptions.embedding_dim
    """Size of the collaborative user/item embeddings in the observation."""
    min_interactions: int = BundleOptions.min_interactions
    """Users with fewer interactions (held-out item included) are not eligible for pools."""

    def __post_init__(self) -> None:
        if self.history_mode not in HISTORY_MODES:
            raise ValueError(f"history_mode={self.history_mode!r}; choose one of {HISTORY_MODES}")
        if self.unranked not in UNRANKED_POLICIES:
            raise ValueError(f"unranked={self.unranked!r}; choose one of {UNRANKED_POLICIES}")
        if self.split not in ("train", "valid", "test"):
            raise ValueError(f"split={self.split!r}; choose one of ('train', 'valid', 'test')")
        for name in ("rounds", "k", "max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        if self.n_candidates < 2:
            raise ValueError(f"n_candidates={self.n_candidates} must be at least 2")
        if self.init_history is not None and self.init_history < 0:
            raise ValueError(f"init_history={self.init_history} must be >= 0")
        if self.history_lengths is not None:
            object.__setattr__(self, "history_lengths", tuple(int(x) for x in self.history_lengths))
            if not self.history_lengths or min(self.history_lengths) < 0:
                raise ValueError(f"history_lengths={self.history_lengths} must be non-empty and >= 0")
        object.__setattr__(self, "pool_sizes", tuple(self.pool_sizes))

    @property
    def bundle_options(self) -> BundleOptions:
        return BundleOptions(
            history_cap=self.history_cap,
            pool_sizes=self.pool_sizes,
            split_seed=self.split_seed,
            embedding_dim=self.embedding_dim,
            min_interactions=self.min_interactions,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (objects are written as their repr)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = v if isinstance(v, (str, int, float, tuple, type(None))) else repr(v)
        return out
