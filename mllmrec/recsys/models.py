"""ID and content baselines behind the recsys contract that every student follows.

    loss(batch)          batch = {"users": [b], "pos": [b], "neg": [b]} (LongTensors)
                         -> a scalar, or {name: scalar} that the trainer sums and logs
    score(users, items)  pairwise: [b], [b] -> [b]; higher means more relevant
    full_sort(users)     [b] -> [b, n_items]; row k equals score(users[k], every item)

Trainable models use BPR with an L2 penalty on the embedding rows the batch touches:

    L_bpr = mean_b −log σ(s(u, i) − s(u, j)) = mean_b softplus(s(u, j) − s(u, i))
    L_reg = reg · Σ_b Σ_rows ‖row‖² / (2b)          (the LightGCN paper's form)

(u, i) is an observed pair and j a sampled negative. `Popularity` and `ContentKNN` have no
parameters and nothing to train; their `loss` raises.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mllmrec.recsys.graph import RecsysError, check_interactions, normalized_adjacency

Batch = dict[str, Tensor]


def bpr_loss(pos: Tensor, neg: Tensor) -> Tensor:
    """mean −log σ(pos − neg) over [b] score pairs, computed stably as softplus(neg − pos)."""
    return F.softplus(neg - pos).mean()


def l2_reg(*rows: Tensor) -> Tensor:
    """Σ over the given [b, ...] tensors of their squared entries, divided by 2b."""
    total = torch.stack([r.pow(2).sum() for r in rows]).sum()  # []
    return total / (2 * rows[0].shape[0])


class RecModel(nn.Module):
    """The base of every recommender here: fixed catalogue sizes plus the three-method contract."""

    def __init__(self, n_users: int, n_items: int) -> None:
        super().__init__()
        if n_users <= 0 or n_items <= 0:
            raise RecsysError(
                f"need at least one user and one item, got n_users={n_users}, n_items={n_items}"
            )
        self.n_users, self.n_items = int(n_users), int(n_items)

    @property
    def trainable(self) -> bool:
        """Whether a trainer has anything to optimise."""
        return any(p.requires_grad for p in self.parameters())

    def loss(self, batch: Batch) -> Tensor | dict[str, Tensor]:
        raise RecsysError(f"{type(self).__name__} has no parameters and nothing to train")

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        raise NotImplementedError

    def full_sort(self, users: Tensor) -> Tensor:
        raise NotImplementedError


def _check_features(features: Tensor, n_items: int) -> Tensor:
    if not isinstance(features, Tensor) or features.ndim != 2 or features.shape[0] != n_items:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise RecsysError(f"item features must be a Tensor [n_items={n_items}, f], got {shape}")
    if not torch.isfinite(features).all():
        raise RecsysError("item features contain NaN or inf")
    return features.detach().to(torch.float32).clone()  # [I, f]


class Popularity(RecModel):
    """s(u, i) = number of training interactions of item i, the same ranking for every user."""

    def __init__(self, train: sp.spmatrix | sp.sparray) -> None:
        r = check_interactions(train)  # [U, I]
        super().__init__(*r.shape)
        counts = np.asarray(r.sum(axis=0), dtype=np.float32).ravel()  # [I]
        self.register_buffer("counts", torch.from_numpy(counts))

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        return self.counts[items]  # [b]

    def full_sort(self, users: Tensor) -> Tensor:
        return self.counts.unsqueeze(0).repeat(users.shape[0], 1)  # [b, I], a real copy per row


class MF(RecModel):
    """Matrix factorisation: s(u, i) = e_u · e_i, trained with BPR + L2 on the batch's rows.

    Defaults (reg 0.03, init N(0, 0.01²)) were measured on the Amazon Office split (issue 16.1):
    with the former init std 0.1 and reg 1e-4, MF-BPR reached validation Recall@20 0.065 there
    (MMRec's BPR: test 0.100); a 10x smaller init alone gave 0.094, and a grid over lr {1e-3, 5e-3}
    x reg {0.03, 0.1} (patience 20) chose lr 5e-3, reg 0.03: 0.117 (eval/results/office-quality).
    Large random initial factors make every score start as noise of the size of the signal, and a
    sparse log (8 training items per user) never averages it out under a weak L2. LightGCN keeps
    its own defaults (its propagation smooths the initial noise).
    """

    def __init__(
        self, n_users: int, n_items: int, dim: int = 64, *, reg: float = 0.03, init_std: float = 0.01
    ) -> None:
        super().__init__(n_users, n_items)
        if dim <= 0:
            raise RecsysError(f"dim must be positive, got {dim}")
        self.dim, self.reg = int(dim), float(reg)
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user.weight, std=init_std)
        nn.init.normal_(self.item.weight, std=init_std)

    def final_embeddings(self) -> tuple[Tensor, Tensor]:
        """The user [U, d] and item [I, d] vectors that scores are dot products of."""
        return self.user.weight, self.item.weight

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        users, pos, neg = batch["users"], batch["pos"], batch["neg"]  # [b] each
        eu, ei = self.final_embeddings()  # [U, d], [I, d]
        u, i, j = eu[users], ei[pos], ei[neg]  # [b, d] each
        bpr = bpr_loss((u * i).sum(-1), (u * j).sum(-1))
        reg = l2_reg(self.user(users), self.item(pos), self.item(neg))  # layer-0 rows only
        return {"bpr": bpr, "reg": self.reg * reg}

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        eu, ei = self.final_embeddings()
        return (eu[users] * ei[items]).sum(-1)  # [b]

    def full_sort(self, users: Tensor) -> Tensor:
        eu, ei = self.final_embeddings()
        return eu[users] @ ei.T  # [b, I]


class LightGCN(MF):
    """LightGCN: MF whose vectors are smoothed over the normalised bipartite graph Â.

        E⁽⁰⁾ = [E_users; E_items]     [(U+I), d], the only parameters
        E⁽ᵏ⁺¹⁾ = Â E⁽ᵏ⁾              k = 0 … K−1 (no weights, no non-linearity)
        E = (1 / (K+1)) Σ_{k=0..K} E⁽ᵏ⁾,   s(u, i) = E[u] · E[U + i]

    The L2 penalty applies to the layer-0 rows of the batch (as in the paper). Under
    `torch.no_grad()` the propagated table is cached until the weights change (tracked by their
    version counters), so a full-ranking evaluation propagates once, not once per user batch.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int = 64,
        n_layers: int = 3,
        adjacency: Tensor | None = None,
        *,
        reg: float = 1e-4,
        init_std: float = 0.1,
    ) -> None:
        super().__init__(n_users, n_items, dim, reg=reg, init_std=init_std)
        n = n_users + n_items
        if adjacency is None or not isinstance(adjacency, Tensor) or tuple(adjacency.shape) != (n, n):
            got = tuple(adjacency.shape) if isinstance(adjacency, Tensor) else type(adjacency).__name__
            raise RecsysError(
                f"adjacency must be a Tensor [{n}, {n}] (users then items), got {got}; "
                "build it with mllmrec.recsys.normalized_adjacency(train)"
            )
        if n_layers < 0:
            raise RecsysError(f"n_layers must be >= 0, got {n_layers}")
        self.n_layers = int(n_layers)
        self.register_buffer(
            "adjacency", adjacency.coalesce() if adjacency.is_sparse else adjacency, persistent=False
        )
        self._cache: tuple[Tensor, tuple[tuple[int, int], ...], Tensor, Tensor] | None = None

    @classmethod
    def from_interactions(
        cls, train: sp.spmatrix | sp.sparray, dim: int = 64, n_layers: int = 3, **kw: float
    ) -> LightGCN:
        """Build the model and its normalised adjacency from a CSR interaction matrix [U, I]."""
        n_users, n_items = train.shape
        return cls(n_users, n_items, dim, n_layers, normalized_adjacency(train), **kw)

    def propagate(self) -> tuple[Tensor, Tensor]:
        """(1/(K+1)) Σ_k Â^k E⁽⁰⁾, split into users [U, d] and items [I, d]."""
        e = torch.cat([self.user.weight, self.item.weight])  # [(U+I), d]
        layers = [e]
        for _ in range(self.n_layers):
            e = (
                torch.sparse.mm(self.adjacency, e) if self.adjacency.is_sparse else self.adjacency @ e
            )  # [(U+I), d]
            layers.append(e)
        final = torch.stack(layers).mean(0)  # [(U+I), d]
        return final[: self.n_users], final[self.n_users :]

    def final_embeddings(self) -> tuple[Tensor, Tensor]:
        if torch.is_grad_enabled():
            self._cache = None
            return self.propagate()
        key = tuple((w.data_ptr(), w._version) for w in (self.user.weight, self.item.weight))
        if self._cache is None or self._cache[0] is not self.adjacency or self._cache[1] != key:
            self._cache = (self.adjacency, key, *self.propagate())
        return self._cache[2], self._cache[3]


class VBPR(RecModel):
    """VBPR: BPR-MF plus a learned projection of frozen item content features f_i.

        s(u, i) = γ_u · γ_i + θ_u · (E f_i) + β_i + β' · f_i

    γ (dim), θ (visual_dim) and β_i are per-user/item parameters, E [visual_dim, f] and β' [f]
    are shared. An item nobody interacted with still gets a meaningful score through θ_u·(E f_i)
    and β'·f_i. L2 applies to the batch's γ_u, θ_u, γ_i, γ_j, β_i, β_j rows (not to E, β').
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int,
        features: Tensor,
        *,
        visual_dim: int | None = None,
        reg: float = 1e-4,
        init_std: float = 0.1,
    ) -> None:
        super().__init__(n_users, n_items)
        feats = _check_features(features, n_items)  # [I, f]
        visual_dim = dim if visual_dim is None else visual_dim
        if dim <= 0 or visual_dim <= 0:
            raise RecsysError(f"dim and visual_dim must be positive, got {dim} and {visual_dim}")
        self.reg = float(reg)
        self.register_buffer("features", feats, persistent=False)
        self.gamma_user = nn.Embedding(n_users, dim)
        self.gamma_item = nn.Embedding(n_items, dim)
        self.theta_user = nn.Embedding(n_users, visual_dim)
        self.proj = nn.Linear(feats.shape[1], visual_dim, bias=False)  # E
        self.item_bias = nn.Embedding(n_items, 1)  # β_i
        self.visual_bias = nn.Linear(feats.shape[1], 1, bias=False)  # β'
        for emb in (self.gamma_user, self.gamma_item, self.theta_user):
            nn.init.normal_(emb.weight, std=init_std)
        nn.init.zeros_(self.item_bias.weight)
        nn.init.zeros_(self.visual_bias.weight)

    @torch.no_grad()
    def forget_items(self, items: Tensor) -> None:
        """Zero γ_i and β_i of items that had no training interaction: their random initial ID
        factors are noise, so they are scored by the visual terms alone (VBPR's cold-start case)."""
        self.gamma_item.weight[items] = 0
        self.item_bias.weight[items] = 0

    def _items(self, items: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """(γ_i [n, d], E f_i [n, d'], β_i + β'·f_i [n]) for `items`, or for every item if None."""
        f = self.features if items is None else self.features[items]  # [n, f]
        gamma = self.gamma_item.weight if items is None else self.gamma_item(items)  # [n, d]
        beta = self.item_bias.weight if items is None else self.item_bias(items)  # [n, 1]
        return gamma, self.proj(f), (beta + self.visual_bias(f)).squeeze(-1)

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        gamma, visual, bias = self._items(items)  # [b, d], [b, d'], [b]
        return (self.gamma_user(users) * gamma).sum(-1) + (self.theta_user(users) * visual).sum(-1) + bias

    def full_sort(self, users: Tensor) -> Tensor:
        gamma, visual, bias = self._items(None)  # [I, d], [I, d'], [I]
        return self.gamma_user(users) @ gamma.T + self.theta_user(users) @ visual.T + bias  # [b, I]

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        users, pos, neg = batch["users"], batch["pos"], batch["neg"]  # [b] each
        bpr = bpr_loss(self.score(users, pos), self.score(users, neg))
        rows = (self.gamma_user(users), self.theta_user(users), self.gamma_item(pos), self.gamma_item(neg))
        reg = l2_reg(*rows, self.item_bias(pos), self.item_bias(neg))
        return {"bpr": bpr, "reg": self.reg * reg}


class ContentKNN(RecModel):
    """Content-based scoring with no training.

        f̂_i = f_i / ‖f_i‖,   p_u = (1/|N_u|) Σ_{i ∈ N_u} f̂_i,   s(u, i) = cos(p_u, f̂_i)

    A user without training items (or whose profile cancels out) scores every item 0; an item
    with an all-zero feature vector scores 0 for everyone.
    """

    def __init__(self, features: Tensor, train: sp.spmatrix | sp.sparray) -> None:
        r = check_interactions(train)  # [U, I]
        super().__init__(*r.shape)
        items = F.normalize(_check_features(features, self.n_items), dim=1)  # [I, f], zero rows stay zero
        counts = np.maximum(np.asarray(r.sum(axis=1), dtype=np.float32), 1.0)  # [U, 1]
        profiles = torch.from_numpy(np.asarray(r @ items.numpy()) / counts)  # [U, f], the mean
        self.register_buffer("items", items)
        self.register_buffer("profiles", F.normalize(profiles.float(), dim=1))  # [U, f], unit or zero

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        return (self.profiles[users] * self.items[items]).sum(-1)  # [b]

    def full_sort(self, users: Tensor) -> Tensor:
        return self.profiles[users] @ self.items.T  # [b, I]
