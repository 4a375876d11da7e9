"""Traditional recommenders scored on the evaluation's candidate lists: no LLM involved.

Three reference points for the LLM methods, each trained on the *training interactions* (every
interaction except each user's held-out last one, for every user of the dataset, test users
included; see :func:`rpp_gym.data.protocol.training_interactions`) and scored on exactly the
candidate lists the env shows (:func:`rpp_gym.evaluation_candidates.candidate_lists`):

* :class:`Popularity`: an item's training-interaction count.
* :class:`BPRMF`: matrix factorization trained with the sampled BPR loss (Rendle et al., 2009).
* :class:`SASRec`: a small causal self-attention next-item model (Kang & McAuley, 2018),
  trained with binary cross-entropy against one sampled negative per position, as in the paper.
  At evaluation its input is the user's history (the env's, up to ``history_cap`` items before
  the held-out one).

Every model has ``fit(bundle, seed) -> self`` and
``score(users, histories, candidates) -> float64[U, n]`` (higher is better).

Sampled negatives are drawn uniformly from all items minus the user's *training* items. They are
never filtered against the held-out item: rejecting it would tell the model it is a positive.

Reproducibility: a fit is a pure function of ``seed`` (numpy and torch generators of its own; no
global RNG is read or changed), bit for bit on the CPU with the same number of torch threads.
Torch's thread count is left alone unless a config's ``num_threads`` says otherwise (it is then
restored after ``fit``).

Example (about three minutes on one loaded CPU core)::

    from rpp_gym.data.bundle import load_bundle
    from rpp_gym.evaluation_candidates import evaluate_scorer

    model = SASRec(num_threads=1).fit(load_bundle("movielens-1m"), seed=0)
    evaluate_scorer(model, "RPP-MovieLens-Sim-v0", split="test", seed=0).summary()
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from rpp_gym.data.bundle import DataBundle
from rpp_gym.data.protocol import training_interactions

__all__ = [
    "BPRMF",
    "BPRConfig",
    "Popularity",
    "SASRec",
    "SASRecConfig",
    "sample_unseen",
    "training_matrix",
    "training_sequences",
    "training_windows",
]


# --------------------------------------------------------------------------------------------
# training data


def training_matrix(bundle: DataBundle) -> sp.csr_matrix:
    """Binary ``[n_users, n_items]`` CSR matrix of the training interactions (no held-out item).

    >>> from rpp_gym.data.dataset import Dataset
    >>> from rpp_gym.data.bundle import load_bundle, BundleOptions
    >>> ds = Dataset.from_sequences("t", "movie", list("abcd"), list("ABCD"),
    ...                             {"u": [0, 1, 2], "v": [1, 3, 0], "w": [2, 0, 3]})
    >>> b = load_bundle(ds, options=BundleOptions(pool_sizes=(1, 1, 1), min_interactions=2, embedding_dim=2))
    >>> training_matrix(b).toarray().astype(int).tolist()
    [[1, 1, 0, 0], [0, 1, 0, 1], [1, 0, 1, 0]]
    """
    ds = bundle.dataset
    users, items = training_interactions(ds)
    x = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=(ds.n_users, ds.n_items))
    x.sum_duplicates()
    x.data[:] = 1.0
    return x


def training_sequences(bundle: DataBundle) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """Each user's time-ordered sequence without its held-out last item, CSR ``(offsets, items)``."""
    ds = bundle.dataset
    lengths = np.maximum(ds.lengths() - 1, 0)
    offsets = np.zeros(ds.n_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    _, items = training_interactions(ds)
    return offsets, items.astype(np.int32)


def sample_unseen(
    rng: np.random.Generator,
    users: npt.NDArray[np.int64],
    seen_keys: npt.NDArray[np.int64],
    n_items: int,
    tries: int = 50,
) -> npt.NDArray[np.int64]:
    """One uniformly drawn item per entry of ``users`` that the user has no training interaction with.

    Args:
        rng: The randomness.
        users: User index per draw (any shape).
        seen_keys: Sorted ``user * n_items + item`` keys of the training interactions.
        n_items: Catalogue size.
        tries: Rounds of rejection before giving up on the remaining draws (a user who has seen
            nearly the whole catalogue keeps an arbitrary item rather than looping forever).
    """
    users = np.asarray(users, dtype=np.int64)
    items = rng.integers(0, n_items, size=users.shape)
    if len(seen_keys) == 0:
        return items
    todo = np.ones(users.shape, dtype=bool)
    for _ in range(tries):
        keys = users[todo] * n_items + items[todo]
        pos = np.minimum(np.searchsorted(seen_keys, keys), len(seen_keys) - 1)
        hit = seen_keys[pos] == keys
        idx = np.flatnonzero(todo.ravel())
        todo.ravel()[idx[~hit]] = False
        if not hit.any():
            break
        items.ravel()[idx[hit]] = rng.integers(0, n_items, size=int(hit.sum()))
    return items


def _seen_keys(bundle: DataBundle) -> npt.NDArray[np.int64]:
    users, items = training_interactions(bundle.dataset)
    return np.unique(users.astype(np.int64) * bundle.dataset.n_items + items)


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Use ``n`` torch threads inside the block when asked, restoring the previous count."""
    if n is None:
        yield
        return
    if n < 1:
        raise ValueError(f"num_threads={n} must be at least 1 (or None to leave torch's setting alone)")
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _check_inputs(
    name: str,
    n_items: int | None,
    users: npt.ArrayLike,
    histories: Sequence[npt.ArrayLike],
    candidates: npt.ArrayLike,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    if n_items is None:
        raise RuntimeError(f"{name} is not fitted; call fit(bundle, seed) before score()")
    u = np.asarray(users)
    c = np.asarray(candidates)
    if c.ndim != 2 or not np.issubdtype(c.dtype, np.integer):
        raise ValueError(f"candidates must be a 2-D integer [n_users, n_candidates] array, got {c.dtype} {c.shape}")
    if u.ndim != 1 or not np.issubdtype(u.dtype, np.integer) or len(u) != len(c):
        raise ValueError(
            f"users must be {len(c)} integer user indices (one per candidate row), got {u.dtype} {u.shape}"
        )
    if len(histories) != len(c):
        raise ValueError(f"got {len(histories)} histories for {len(c)} candidate rows")
    if c.size and (c.min() < 0 or c.max() >= n_items):
        raise ValueError(f"candidate item indices must lie in [0, {n_items}), got [{c.min()}, {c.max()}]")
    return u.astype(np.int64), c.astype(np.int64)


# --------------------------------------------------------------------------------------------
# popularity


class Popularity:
    """Scores an item by its number of training interactions (ties share a score)."""

    def __init__(self, name: str = "popularity") -> None:
        self.name = name
        self.counts: npt.NDArray[np.float64] | None = None
        self.fit_s = 0.0

    def fit(self, bundle: DataBundle, seed: int = 0) -> Popularity:
        """Count training interactions per item (``seed`` is unused: counting is deterministic)."""
        start = time.perf_counter()
        _, items = training_interactions(bundle.dataset)
        self.counts = np.bincount(items, minlength=bundle.dataset.n_items).astype(np.float64)
        self.fit_s = time.perf_counter() - start
        return self

    def score(
        self,
        users: npt.NDArray[np.int64],
        histories: Sequence[npt.NDArray[np.int32]],
        candidates: npt.NDArray[np.int32],
    ) -> npt.NDArray[np.float64]:
        """``float64[U, n]`` training counts of the candidates."""
        _, c = _check_inputs(self.name, None if self.counts is None else len(self.counts), users, histories, candidates)
        assert self.counts is not None
        return self.counts[c]


# --------------------------------------------------------------------------------------------
# BPR-MF


@dataclass(frozen=True)
class BPRConfig:
    """BPR matrix factorization settings."""

    dim: int = 64
    """Embedding dimension."""
    epochs: int = 20
    """Passes over the training interactions (one sampled negative per interaction per pass)."""
    batch_size: int = 4096
    """Interactions per Adam step."""
    lr: float = 5e-3
    """Adam learning rate."""
    reg: float = 1e-5
    """L2 penalty on the embeddings (and biases) of each batch, per interaction."""
    item_bias: bool = True
    """Add a learned per-item bias to the dot product (it absorbs popularity)."""
    init_std: float = 0.1
    """Standard deviation of the normal initialisation of the embeddings."""
    num_threads: int | None = None
    """Torch threads during ``fit`` (None: leave torch's setting alone). On a loaded machine
    pass 1: two threads competing with other jobs were measured 70x slower per step."""

    def __post_init__(self) -> None:
        for f in ("dim", "epochs", "batch_size"):
            if getattr(self, f) < 1:
                raise ValueError(f"{f}={getattr(self, f)} must be at least 1")
        if self.lr <= 0 or self.reg < 0:
            raise ValueError(f"lr={self.lr} must be positive and reg={self.reg} non-negative")


class _MF(nn.Module):
    def __init__(self, n_users: int, n_items: int, cfg: BPRConfig, gen: torch.Generator) -> None:
        super().__init__()
        self.user = nn.Parameter(torch.empty(n_users, cfg.dim))
        self.item = nn.Parameter(torch.empty(n_items, cfg.dim))
        self.bias = nn.Parameter(torch.zeros(n_items), requires_grad=cfg.item_bias)
        nn.init.normal_(self.user, std=cfg.init_std, generator=gen)
        nn.init.normal_(self.item, std=cfg.init_std, generator=gen)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of ``items`` (any shape ``[B, ...]``) for ``users`` (``[B]``)."""
        u = self.user[users]
        v = self.item[items]
        if items.dim() == 1:
            return (u * v).sum(-1) + self.bias[items]
        return torch.einsum("bd,bnd->bn", u, v) + self.bias[items]


class BPRMF:
    """Matrix factorization trained with the sampled BPR loss on the training interactions.

    Each epoch visits every training interaction ``(u, i)`` once in a random order, draws an item
    ``j`` the user has no training interaction with, and minimises
    ``-log sigmoid(x_ui - x_uj) + reg * (|p_u|^2 + |q_i|^2 + |q_j|^2 + b_i^2 + b_j^2)`` with Adam,
    where ``x_ui = p_u . q_i + b_i``.

    Args:
        config: Settings (default :class:`BPRConfig`).
        name: Label in reports.
        **overrides: :class:`BPRConfig` fields replacing those of ``config`` (a misspelled name
            is a ``TypeError``).
    """

    def __init__(self, config: BPRConfig | None = None, name: str = "bpr-mf", **overrides: Any) -> None:
        self.config = dataclasses.replace(config or BPRConfig(), **overrides)
        self.name = name
        self.model: _MF | None = None
        self.losses: list[float] = []
        self.fit_s = 0.0

    def fit(self, bundle: DataBundle, seed: int = 0) -> BPRMF:
        """Train on ``bundle``'s training interactions; a pure function of ``seed``."""
        cfg = self.config
        start = time.perf_counter()
        ds = bundle.dataset
        rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(seed)
        users, items = training_interactions(ds)
        users = users.astype(np.int64)
        items = items.astype(np.int64)
        keys = np.unique(users * ds.n_items + items)
        with _torch_threads(cfg.num_threads):
            model = _MF(ds.n_users, ds.n_items, cfg, gen)
            opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
            self.losses = []
            for _ in range(cfg.epochs):
                order = rng.permutation(len(users))
                negs = sample_unseen(rng, users[order], keys, ds.n_items)
                total = 0.0
                for lo in range(0, len(order), cfg.batch_size):
                    sel = order[lo : lo + cfg.batch_size]
                    u = torch.from_numpy(users[sel])
                    i = torch.from_numpy(items[sel])
                    j = torch.from_numpy(negs[lo : lo + cfg.batch_size])
                    pu, qi, qj = model.user[u], model.item[i], model.item[j]
                    bi, bj = model.bias[i], model.bias[j]
                    diff = (pu * (qi - qj)).sum(-1) + bi - bj
                    loss = -F.logsigmoid(diff).mean()
                    if cfg.reg:
                        penalty = pu.square().sum(-1) + qi.square().sum(-1) + qj.square().sum(-1)
                        loss = loss + cfg.reg * (penalty + bi.square() + bj.square()).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += loss.item() * len(sel)
                self.losses.append(total / len(order))
        self.model = model.eval()
        self.fit_s = time.perf_counter() - start
        return self

    def score(
        self,
        users: npt.NDArray[np.int64],
        histories: Sequence[npt.NDArray[np.int32]],
        candidates: npt.NDArray[np.int32],
    ) -> npt.NDArray[np.float64]:
        """``float64[U, n]`` of ``p_u . q_i + b_i`` (``histories`` are unused: the user's factor holds them)."""
        n_items = None if self.model is None else self.model.item.shape[0]
        u, c = _check_inputs(self.name, n_items, users, histories, candidates)
        assert self.model is not None
        if u.size and (u.min() < 0 or u.max() >= self.model.user.shape[0]):
            raise ValueError(f"user indices must lie in [0, {self.model.user.shape[0]}), got [{u.min()}, {u.max()}]")
        with torch.no_grad():
            out = self.model(torch.from_numpy(u), torch.from_numpy(c))
        return out.double().numpy()


# --------------------------------------------------------------------------------------------
# SASRec


@dataclass(frozen=True)
class SASRecConfig:
    """SASRec settings (the paper's ML-1M model is 2 blocks, 1 head, dim 50, length 200)."""

    dim: int = 64
    """Hidden size (item and position embeddings)."""
    blocks: int = 2
    """Self-attention blocks."""
    heads: int = 1
    """Attention heads (must divide ``dim``)."""
    max_len: int = 50
    """Longest input sequence; longer ones keep their most recent items."""
    dropout: float = 0.2
    """Dropout on embeddings, attention weights and block outputs."""
    epochs: int = 8
    """Passes over the training windows."""
    batch_size: int = 128
    """Windows per Adam step."""
    lr: float = 2e-3
    """Adam learning rate."""
    windows_per_user: int | None = None
    """Training windows per user: each user's training sequence is cut from its end into
    ``max_len``-transition windows and the most recent ones are kept (None: all, so every
    training transition is used each epoch; 1: the paper's "most recent ``max_len`` items")."""
    num_threads: int | None = None
    """Torch threads during ``fit`` (None: leave torch's setting alone). On a loaded machine
    pass 1: two threads competing with other jobs were measured 70x slower per step."""

    def __post_init__(self) -> None:
        for f in ("dim", "blocks", "heads", "max_len", "epochs", "batch_size"):
            if getattr(self, f) < 1:
                raise ValueError(f"{f}={getattr(self, f)} must be at least 1")
        if self.dim % self.heads:
            raise ValueError(f"heads={self.heads} must divide dim={self.dim}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")
        if self.lr <= 0:
            raise ValueError(f"lr={self.lr} must be positive")
        if self.windows_per_user is not None and self.windows_per_user < 1:
            raise ValueError(f"windows_per_user={self.windows_per_user} must be at least 1 (or None for all)")


def _dropout(x: torch.Tensor, p: float, gen: torch.Generator | None) -> torch.Tensor:
    """Inverted dropout drawing its mask from ``gen`` (a training-time generator), identity when None."""
    if gen is None or p == 0.0:
        return x
    keep = torch.rand(x.shape, generator=gen) >= p
    return x * keep / (1.0 - p)


class _Block(nn.Module):
    """Pre-norm causal self-attention block followed by a position-wise feed-forward net."""

    def __init__(self, dim: int, heads: int, p: float) -> None:
        super().__init__()
        self.heads, self.p = heads, p
        self.norm1 = nn.LayerNorm(dim, eps=1e-8)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-8)
        self.ff1 = nn.Linear(dim, dim)
        self.ff2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        b, length, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.norm1(x)).view(b, length, 3, h, d // h).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(d // h)
        att = att.masked_fill(~allowed, float("-inf")).softmax(-1)
        att = _dropout(att, self.p, gen)
        y = (att @ v).transpose(1, 2).reshape(b, length, d)
        x = x + _dropout(self.proj(y), self.p, gen)
        y = self.ff2(_dropout(F.relu(self.ff1(self.norm2(x))), self.p, gen))
        return x + _dropout(y, self.p, gen)


class _SASRecNet(nn.Module):
    def __init__(self, n_items: int, cfg: SASRecConfig, gen: torch.Generator) -> None:
        super().__init__()
        self.cfg = cfg
        # Built on the meta device and initialised below from `gen` alone: torch's default
        # initialisers would draw from (and advance) the global RNG.
        with torch.device("meta"):
            self.item = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)  # 0 = padding, item i -> i + 1
            self.pos = nn.Embedding(cfg.max_len, cfg.dim)
            self.blocks = nn.ModuleList(_Block(cfg.dim, cfg.heads, cfg.dropout) for _ in range(cfg.blocks))
            self.norm = nn.LayerNorm(cfg.dim, eps=1e-8)
        self.to_empty(device="cpu")
        for name, param in self.named_parameters():
            if param.dim() > 1:
                nn.init.xavier_normal_(param, generator=gen)
            elif name.endswith("bias"):
                nn.init.zeros_(param)
            else:  # layer-norm gains
                nn.init.ones_(param)
        with torch.no_grad():
            self.item.weight[0].zero_()

    def forward(self, seq: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """Hidden states ``[B, L, dim]`` of left-padded item sequences ``[B, L]`` (0 = padding)."""
        length = seq.shape[1]
        real = (seq > 0).unsqueeze(-1)
        x = self.item(seq) * math.sqrt(self.cfg.dim) + self.pos.weight[self.cfg.max_len - length :]
        x = _dropout(x, self.cfg.dropout, gen) * real
        causal = torch.ones(length, length, dtype=torch.bool).tril()
        # A position attends to earlier real items and always to itself (no all-masked rows).
        allowed = (causal & (seq > 0).unsqueeze(1)) | torch.eye(length, dtype=torch.bool)
        allowed = allowed.unsqueeze(1)
        for block in self.blocks:
            x = block(x, allowed, gen) * real
        return self.norm(x)


def training_windows(
    bundle: DataBundle, max_len: int = 50, per_user: int | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """SASRec's training examples: every training sequence cut from its end into windows.

    A window holds up to ``max_len`` transitions ``x_t -> x_{t+1}`` of one user's training
    sequence (:func:`training_sequences`: the held-out item is never an input nor a label).

    Args:
        bundle: The data.
        max_len: Transitions per window.
        per_user: Keep only each user's most recent ``per_user`` windows (None: all).

    Returns:
        ``(inputs, labels, users)``: ``int64[W, max_len]`` item codes (item index + 1; 0 is
        padding, on the left) of the inputs and of the next items, and each window's user index.
    """
    offsets, items = training_sequences(bundle)
    n_trans = np.maximum(np.diff(offsets) - 1, 0)
    n_win = -(-n_trans // max_len)
    if per_user is not None:
        n_win = np.minimum(n_win, per_user)
    owner = np.repeat(np.arange(len(n_trans)), n_win)
    first = np.repeat(np.cumsum(n_win) - n_win, n_win)
    k = np.arange(len(owner)) - first  # 0 = most recent window
    end = offsets[owner] + n_trans[owner] - k * max_len  # exclusive end of the window's inputs
    start = np.maximum(offsets[owner], end - max_len)
    idx = end[:, None] - max_len + np.arange(max_len)
    pad = idx < start[:, None]
    idx = np.where(pad, 0, idx)
    inputs = np.where(pad, 0, items[idx].astype(np.int64) + 1)
    labels = np.where(pad, 0, items[np.minimum(idx + 1, max(len(items) - 1, 0))].astype(np.int64) + 1)
    return inputs, labels, owner


class SASRec:
    """Self-attentive sequential recommendation, small and CPU-trainable.

    Training: each user's training sequence (the held-out item removed) is cut into windows of
    ``max_len`` transitions; at every position the model's hidden state should score the next
    item above one uniformly drawn item the user has no training interaction with (binary
    cross-entropy on both, as in Kang & McAuley, 2018). Scoring: the hidden state after the
    user's history (its last ``max_len`` items) dotted with each candidate's embedding.

    Args:
        config: Settings (default :class:`SASRecConfig`).
        name: Label in reports.
        **overrides: :class:`SASRecConfig` fields replacing those of ``config`` (a misspelled
            name is a ``TypeError``).
    """

    def __init__(self, config: SASRecConfig | None = None, name: str = "sasrec", **overrides: Any) -> None:
        self.config = dataclasses.replace(config or SASRecConfig(), **overrides)
        self.name = name
        self.model: _SASRecNet | None = None
        self.losses: list[float] = []
        self.fit_s = 0.0

    def fit(self, bundle: DataBundle, seed: int = 0) -> SASRec:
        """Train on ``bundle``'s training sequences; a pure function of ``seed``."""
        cfg = self.config
        start = time.perf_counter()
        ds = bundle.dataset
        rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(seed)
        inputs, labels, owner = training_windows(bundle, cfg.max_len, cfg.windows_per_user)
        keys = _seen_keys(bundle)
        with _torch_threads(cfg.num_threads):
            model = _SASRecNet(ds.n_items, cfg, gen)
            opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98))
            model.train()
            self.losses = []
            for _ in range(cfg.epochs):
                order = rng.permutation(len(inputs))
                total, count = 0.0, 0
                for lo in range(0, len(order), cfg.batch_size):
                    sel = order[lo : lo + cfg.batch_size]
                    seq = torch.from_numpy(inputs[sel])
                    pos = torch.from_numpy(labels[sel])
                    neg_np = sample_unseen(rng, np.broadcast_to(owner[sel, None], pos.shape), keys, ds.n_items) + 1
                    neg = torch.from_numpy(neg_np)
                    hidden = model(seq, gen)
                    pos_logit = (hidden * model.item(pos)).sum(-1)
                    neg_logit = (hidden * model.item(neg)).sum(-1)
                    mask = pos > 0
                    loss = F.binary_cross_entropy_with_logits(
                        pos_logit[mask], torch.ones_like(pos_logit[mask])
                    ) + F.binary_cross_entropy_with_logits(neg_logit[mask], torch.zeros_like(neg_logit[mask]))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    n = int(mask.sum())
                    total += loss.item() * n
                    count += n
                self.losses.append(total / max(count, 1))
        self.model = model.eval()
        self.fit_s = time.perf_counter() - start
        return self

    def encode(self, histories: Sequence[npt.ArrayLike]) -> torch.Tensor:
        """``[U, dim]`` user states after each history (item indices, oldest first)."""
        assert self.model is not None
        max_len = self.config.max_len
        seq = np.zeros((len(histories), max_len), dtype=np.int64)
        for row, h in enumerate(histories):
            h = np.asarray(h, dtype=np.int64)[-max_len:]
            if h.size and (h.min() < 0 or h.max() >= self.model.item.num_embeddings - 1):
                raise ValueError(f"history {row} has item indices outside [0, {self.model.item.num_embeddings - 1})")
            if h.size:
                seq[row, max_len - len(h) :] = h + 1
        with torch.no_grad():
            return self.model(torch.from_numpy(seq))[:, -1]

    def score(
        self,
        users: npt.NDArray[np.int64],
        histories: Sequence[npt.NDArray[np.int32]],
        candidates: npt.NDArray[np.int32],
    ) -> npt.NDArray[np.float64]:
        """``float64[U, n]``: each history's final hidden state dotted with the candidates' embeddings."""
        n_items = None if self.model is None else self.model.item.num_embeddings - 1
        _, c = _check_inputs(self.name, n_items, users, histories, candidates)
        assert self.model is not None
        state = self.encode(histories)
        with torch.no_grad():
            out = torch.einsum("ud,und->un", state, self.model.item(torch.from_numpy(c + 1)))
        return out.double().numpy()
