"""The canonical dataset form every loader produces.

Items are strings keyed by a stable id (for MovieLens ``"Title (Year)"`` as in the GroupLens
files), with a display text; each user has a time-ordered sequence of item indices. Sequences
are stored CSR-style (one flat array plus offsets) so a million interactions load and pickle
fast.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Dataset"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """Items with text and time-ordered interaction sequences per user.

    Attributes:
        name: Dataset name, e.g. ``"movielens-1m"``.
        domain: Sentence-bank domain (``"movie"``, ``"music"``, ``"game"``).
        item_ids: Stable item keys, index ``i`` is item ``i``.
        item_text: Display text shown to the LLM (e.g. ``"The Matrix (1999)"``).
        user_ids: User keys (dataset prefixes such as ``1m_`` stripped).
        offsets: ``int64[n_users + 1]``; user ``u``'s items are ``items[offsets[u]:offsets[u+1]]``.
        items: ``int32[n_interactions]`` item indices, oldest first within each user.
    """

    name: str
    domain: str
    item_ids: tuple[str, ...]
    item_text: tuple[str, ...]
    user_ids: tuple[str, ...]
    offsets: npt.NDArray[np.int64]
    items: npt.NDArray[np.int32]

    def __post_init__(self) -> None:
        if len(self.item_ids) != len(self.item_text):
            raise ValueError(f"{len(self.item_ids)} item ids but {len(self.item_text)} item texts")
        if len(self.offsets) != len(self.user_ids) + 1:
            raise ValueError(f"offsets has {len(self.offsets)} entries for {len(self.user_ids)} users")
        if len(self.items) and (self.items.min() < 0 or self.items.max() >= len(self.item_ids)):
            raise ValueError("interaction item index out of range")

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return int(self.offsets[-1])

    def sequence(self, user: int) -> npt.NDArray[np.int32]:
        """Item indices of user index ``user``, oldest first."""
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def lengths(self) -> npt.NDArray[np.int64]:
        """Sequence length per user."""
        return np.diff(self.offsets)

    def fingerprint(self) -> str:
        """A short hash of the content, used to key processed caches."""
        h = hashlib.sha256()
        for part in (self.name, self.domain, "\x1f".join(self.item_ids), "\x1f".join(self.item_text),
                     "\x1f".join(self.user_ids)):
            h.update(part.encode("utf-8"))
            h.update(b"\x1e")
        h.update(np.ascontiguousarray(self.offsets, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(self.items, dtype=np.int32).tobytes())
        return h.hexdigest()[:16]

    @classmethod
    def from_sequences(
        cls,
        name: str,
        domain: str,
        item_ids: Sequence[str],
        item_text: Sequence[str],
        sequences: dict[str, Sequence[int]],
    ) -> Dataset:
        """Build from a ``{user_id: [item_index, ...]}`` mapping (already time-ordered).

        Users are sorted by id so two loaders that see the same data produce equal datasets.
        """
        users = sorted(sequences)
        lengths = np.array([len(sequences[u]) for u in users], dtype=np.int64)
        offsets = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.fromiter((i for u in users for i in sequences[u]), dtype=np.int32, count=int(offsets[-1]))
        return cls(name, domain, tuple(item_ids), tuple(item_text), tuple(users), offsets, flat)

    def equals(self, other: Dataset) -> bool:
        """Content equality (same items, texts, users and sequences)."""
        return (
            self.item_ids == other.item_ids
            and self.item_text == other.item_text
            and self.user_ids == other.user_ids
            and np.array_equal(self.offsets, other.offsets)
            and np.array_equal(self.items, other.items)
        )
