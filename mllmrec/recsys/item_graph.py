"""Graphs for multimodal graph recommenders: a frozen item–item kNN graph and a degree-pruned
user–item graph (the two graphs of FREEDOM, Zhou & Shen 2023; the kNN graph follows LATTICE).

Item–item graph of one channel, built once from its vectors f [I, d] and never trained:

    s_ij = cos(f_i, f_j),  i ≠ j
    A_ij = 1 if j is among the k nearest neighbours of i (largest s_ij), else 0
    Ŝ = D^{-1/2} A D^{-1/2},  D = diag(A·1)                        [I, I]

(the graph is directed in general; D is A's row sums, as LATTICE/FREEDOM normalise it). Several
channels combine as S = Σ_c w_c Ŝ_c with Σ_c w_c = 1. An item with an all-zero vector has no
neighbours and its row stays zero.

Degree-sensitive edge pruning of the user–item graph (FREEDOM): each epoch keeps a fraction
`keep` of the training edges, drawn without replacement with probability

    p(u, i) ∝ 1 / sqrt(|N_u| · |N_i|)

so edges between popular nodes are the likeliest to go; the kept edges form A' = [[0, R'], [R'ᵀ, 0]]
and are normalised as usual, D'^{-1/2} A' D'^{-1/2}.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor

from mllmrec.recsys.graph import RecsysError, check_interactions, normalized_adjacency


def _sym_norm_coo(rows: np.ndarray, cols: np.ndarray, n: int) -> Tensor:
    """D^{-1/2} A D^{-1/2} of the binary graph with edges (rows, cols), D = row sums; [n, n] sparse."""
    degree = np.bincount(rows, minlength=n).astype(np.float64)  # [n]
    inv = np.zeros_like(degree)
    np.divide(1.0, np.sqrt(degree), out=inv, where=degree > 0)
    values = torch.from_numpy((inv[rows] * inv[cols]).astype(np.float32))  # [nnz]
    idx = torch.from_numpy(np.vstack([rows, cols]).astype(np.int64))  # [2, nnz]
    return torch.sparse_coo_tensor(idx, values, (n, n), check_invariants=True).coalesce()


def knn_graph(features: np.ndarray | Tensor, k: int = 10) -> Tensor:
    """The frozen, normalised top-k cosine graph Ŝ [I, I] (sparse COO, float32) of one channel.

    Self-loops are excluded; ties break by the lower item index (torch.topk on CPU is stable
    enough for this, and the graph is built once). Zero-vector items get no edges.
    """
    f = torch.as_tensor(
        np.asarray(features, dtype=np.float32) if not isinstance(features, Tensor) else features
    )
    f = f.detach().to(torch.float32)
    if f.ndim != 2 or not torch.isfinite(f).all():
        raise RecsysError(f"features must be a finite [n_items, d] array, got shape {tuple(f.shape)}")
    n = f.shape[0]
    if not 1 <= k < n:
        raise RecsysError(f"k must be in [1, n_items) = [1, {n}), got {k}")
    x = F.normalize(f, dim=1)  # [I, d], zero rows stay zero
    rows, cols = [], []
    zero = x.norm(dim=1) == 0  # [I]
    for start in range(0, n, 1024):
        sim = x[start : start + 1024] @ x.T  # [b, I]
        b = sim.shape[0]
        sim[torch.arange(b), torch.arange(start, start + b)] = -float("inf")  # no self-loops
        sim[:, zero] = -float("inf")
        top = sim.topk(k, dim=1).indices  # [b, k]
        keep = ~zero[start : start + b]  # [b]
        r = torch.arange(start, start + b).unsqueeze(1).expand(b, k)[keep]  # [b', k]
        rows.append(r.reshape(-1))
        cols.append(top[keep].reshape(-1))
    return _sym_norm_coo(torch.cat(rows).numpy(), torch.cat(cols).numpy(), n)


def combine_graphs(graphs: dict[str, Tensor], weights: dict[str, float] | None = None) -> Tensor:
    """S = Σ_c w_c Ŝ_c (weights default to equal, and are renormalised to sum to 1)."""
    if not graphs:
        raise RecsysError("no item graph to combine")
    w = {c: 1.0 for c in graphs} if weights is None else {c: float(weights.get(c, 0.0)) for c in graphs}
    total = sum(w.values())
    if total <= 0 or any(v < 0 for v in w.values()):
        raise RecsysError(f"channel weights must be >= 0 with a positive sum, got {w}")
    parts = [(w[c] / total) * g for c, g in graphs.items()]
    out = parts[0]
    for p in parts[1:]:
        out = out + p
    return out.coalesce()


class EdgePruner:
    """Degree-sensitive edge sampling of the user–item graph (see the module docstring)."""

    def __init__(self, train: sp.spmatrix | sp.sparray, keep: float) -> None:
        if not 0.0 < keep <= 1.0:
            raise RecsysError(f"keep must be in (0, 1], got {keep}")
        r = check_interactions(train).tocoo()  # [U, I]
        self.shape, self.keep = r.shape, float(keep)
        self.users, self.items = r.row.astype(np.int64), r.col.astype(np.int64)  # [nnz] each
        du = np.bincount(self.users, minlength=r.shape[0])[self.users]
        di = np.bincount(self.items, minlength=r.shape[1])[self.items]
        p = 1.0 / np.sqrt(du * di.astype(np.float64))  # [nnz]
        self.p = p / p.sum()
        self.n_keep = max(1, int(round(self.keep * self.users.size)))

    def sample(self, rng: np.random.Generator) -> Tensor:
        """A freshly pruned, normalised bipartite adjacency [(U+I), (U+I)] (users first)."""
        if self.n_keep >= self.users.size:
            at = np.arange(self.users.size)
        else:
            # Weighted sampling without replacement (Efraimidis–Spirakis): the m smallest E_e / p_e,
            # E_e ~ Exp(1), are a draw of m edges without replacement with probabilities ∝ p.
            keys = rng.standard_exponential(self.users.size) / self.p  # [nnz]
            at = np.argpartition(keys, self.n_keep - 1)[: self.n_keep]  # [m]
        pruned = sp.csr_matrix(
            (np.ones(at.size, np.float32), (self.users[at], self.items[at])), shape=self.shape
        )
        return normalized_adjacency(pruned)
