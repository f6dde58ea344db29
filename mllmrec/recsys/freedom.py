"""A FREEDOM-style multimodal graph recommender, usable as the distillation teacher.

Ideas from FREEDOM (Zhou & Shen 2023: freeze the item–item graph, denoise the user–item graph)
and LATTICE (Zhang et al. 2021: item–item kNN graphs from modality features); our own code.

For feature channels c = 1 … C with vectors f_c [I, d_c]:

    Ŝ_c = normalised top-k cosine graph of f_c               [I, I], built once, frozen (item_graph)
    h_c = Ŝ_c^L (m ⊙ E_item)                                 item ID embeddings over the item graph
    E⁽⁰⁾ = [E_user ; m ⊙ E_item],  E⁽ᵏ⁺¹⁾ = Â' E⁽ᵏ⁾,  E = (1/(K+1)) Σ_k E⁽ᵏ⁾      LightGCN
    x_c = W_c f̂_c                                            projected content (f̂: centred, unit rows)
    i_c = E_items + h_c + β x_c + p                           channel c's item vector   [I, d]
    t_c(u, i) = E_users[u] · i_c[i]                           modality-specific teacher
    t(u, i) = (1/C) Σ_c t_c(u, i)                             fused score

m [I, 1] is 1 for items with training interactions and 0 otherwise: an item nobody interacted
with has no trained ID, so its vector comes from content alone (its kNN neighbours' IDs through
h_c, and x_c). Â' is the degree-pruned user–item graph (`item_graph.EdgePruner`, resampled each
epoch through `start_epoch`) while training, and the full normalised graph Â in eval mode. β = 1
adds the projected content to the score (`content_in_score`), β = 0 is FREEDOM's original scoring
and the default: on Amazon Office with MiniLM vectors, β = 1 lost on validation Recall@20 (0.119
vs 0.144 at lr 1e-3), so content reaches the scores through the item graph (and, for the loss,
the auxiliary term below; λ_c = 0.01 beat 0 on validation, 0.1505 vs 0.1494 at lr 5e-3).
p is an optional PromptMM soft prompt: any module called with no argument that returns [I, d]
(distill builds `PromptModule` from PCA hard tokens; its parameters are then under `prompt.`).

Loss (recsys contract; trained by recsys.train_bpr):

    L = BPR(t) + λ_c (1/C) Σ_c BPR(E_users[u] · x_c) + reg · ‖layer-0 rows of the batch‖² / 2b

the middle term is FREEDOM's auxiliary loss that aligns users with each channel's projected content.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from mllmrec.config import Checked, opt
from mllmrec.recsys.channels import ChannelModel
from mllmrec.recsys.graph import RecsysError, check_interactions, normalized_adjacency
from mllmrec.recsys.item_graph import EdgePruner, knn_graph
from mllmrec.recsys.models import RecModel, bpr_loss, l2_reg
from mllmrec.recsys.registry import ModelSpec


def _unit_centred(x: np.ndarray | Tensor) -> Tensor:
    """Features centred by their column mean and L2-normalised per row (zero rows stay zero)."""
    t = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not isinstance(x, Tensor) else x.float()
    if t.ndim != 2 or not torch.isfinite(t).all():
        raise RecsysError(f"item features must be a finite [n_items, d] array, got shape {tuple(t.shape)}")
    c = t - t.mean(0)
    n = c.norm(dim=1, keepdim=True)
    return torch.where(n > 0, c / n.clamp_min(1e-12), c)  # [I, d]


class Freedom(ChannelModel):
    """Frozen item–item kNN graphs + LightGCN with degree-pruned edges; see the module docstring."""

    def __init__(
        self,
        features: dict[str, np.ndarray | Tensor],
        train: sp.spmatrix | sp.sparray,
        *,
        dim: int = 64,
        ui_layers: int = 2,
        item_layers: int = 1,
        knn_k: int = 10,
        edge_keep: float = 0.2,
        content_in_score: bool = False,
        content_loss: float = 0.01,
        prompt: nn.Module | None = None,
        reg: float = 0.0,
        seed: int = 0,
    ) -> None:
        r = check_interactions(train)  # [U, I]
        super().__init__(*r.shape)
        if not features:
            raise RecsysError("Freedom needs at least one feature channel")
        if dim < 1 or ui_layers < 0 or item_layers < 0 or reg < 0 or content_loss < 0:
            raise RecsysError("dim >= 1; ui_layers, item_layers, reg, content_loss >= 0")
        self.channels = tuple(features)
        self.dim, self.n_layers, self.item_layers = int(dim), int(ui_layers), int(item_layers)
        self.reg, self.content_loss, self.seed = float(reg), float(content_loss), int(seed)
        self.beta = 1.0 if content_in_score else 0.0
        feats = {}
        for c, f in features.items():
            x = _unit_centred(f)
            if x.shape[0] != self.n_items:
                raise RecsysError(f"channel {c!r} has {x.shape[0]} rows for {self.n_items} items")
            feats[c] = x
            self.register_buffer(f"feat_{c}", x, persistent=False)
            self.register_buffer(f"graph_{c}", knn_graph(f, knn_k), persistent=False)  # frozen Ŝ_c
        warm = np.bincount(r.indices, minlength=self.n_items) > 0
        self.register_buffer("warm", torch.from_numpy(warm.astype(np.float32)).unsqueeze(1), persistent=False)
        self.register_buffer("adjacency", normalized_adjacency(r), persistent=False)
        self.pruner = EdgePruner(r, edge_keep)
        self._pruned: Tensor | None = None
        self.user = nn.Embedding(self.n_users, dim)
        self.item = nn.Embedding(self.n_items, dim)
        nn.init.xavier_uniform_(self.user.weight)
        nn.init.xavier_uniform_(self.item.weight)
        self.proj = nn.ModuleDict({c: nn.Linear(x.shape[1], dim) for c, x in feats.items()})
        self.prompt = prompt  # () -> [I, d], e.g. distill.prompt.PromptModule (built by the distill stage)

    # -- graphs ---------------------------------------------------------------------------------
    def start_epoch(self, epoch: int) -> None:
        """Resample the degree-pruned user–item graph (deterministic in (seed, epoch))."""
        self._pruned = self.pruner.sample(np.random.default_rng([self.seed, int(epoch)]))

    def item_graph(self, channel: str) -> Tensor:
        return getattr(self, f"graph_{channel}")  # [I, I] sparse

    def _ui_graph(self) -> Tensor:
        if self.training and self.pruner.keep < 1.0:
            if self._pruned is None:
                self.start_epoch(0)
            return self._pruned  # type: ignore[return-value]
        return self.adjacency

    # -- representations ------------------------------------------------------------------------
    def propagate(self) -> dict[str, tuple[Tensor, Tensor]]:
        """{channel: (users [U, d], channel item vectors i_c [I, d])}."""
        ids = self.item.weight * self.warm  # [I, d], untrained items have no ID
        adj = self._ui_graph()
        e = torch.cat([self.user.weight, ids])  # [(U+I), d]
        total = e
        for _ in range(self.n_layers):
            e = torch.sparse.mm(adj, e)  # [(U+I), d]
            total = total + e
        final = total / (self.n_layers + 1)
        users, items = final[: self.n_users], final[self.n_users :]  # [U, d], [I, d]
        p = self.prompt() if self.prompt is not None else 0
        out = {}
        for c in self.channels:
            h = ids
            for _ in range(self.item_layers):
                h = torch.sparse.mm(self.item_graph(c), h)  # [I, d]
            extra = self.beta * self.content(c) if self.beta else 0
            out[c] = (users, items + h + extra + p)
        return out

    def content(self, channel: str) -> Tensor:
        """x_c = W_c f̂_c [I, d]."""
        return self.proj[channel](getattr(self, f"feat_{channel}"))

    @property
    def item_dim(self) -> int:
        return self.dim * len(self.channels)

    # -- recsys contract ------------------------------------------------------------------------

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        users, pos, neg = batch["users"], batch["pos"], batch["neg"]  # [b] each
        emb = self.propagate()
        s_pos, s_neg = self.channel_scores(users, pos, emb), self.channel_scores(users, neg, emb)
        parts = {
            "bpr": bpr_loss(
                torch.stack(list(s_pos.values())).mean(0), torch.stack(list(s_neg.values())).mean(0)
            )
        }
        if self.content_loss > 0:
            u = emb[self.channels[0]][0][users]  # [b, d]
            aux = []
            for c in self.channels:
                x = self.content(c)  # [I, d]
                aux.append(bpr_loss((u * x[pos]).sum(-1), (u * x[neg]).sum(-1)))
            parts["content"] = self.content_loss * torch.stack(aux).mean()
        if self.reg > 0:
            parts["reg"] = self.reg * l2_reg(self.user(users), self.item(pos), self.item(neg))
        return parts


# ---------------------------------------------------------------------------------------------
# Registry row (mllmrec.recsys.registry.MODELS["freedom"])
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class FreedomParams(Checked):
    """Defaults chosen on the Office split's validation Recall@20 (eval/results/office-quality)."""

    dim: int = opt(64, "Embedding dimension.")
    ui_layers: int = opt(2, "LightGCN layers over the (degree-pruned) user-item graph.")
    item_layers: int = opt(1, "Propagation layers of item IDs over the frozen item-item kNN graph.")
    knn_k: int = opt(10, "Neighbours per item in each channel's frozen kNN graph.")
    edge_keep: float = opt(0.2, "Share of user-item edges kept each epoch (FREEDOM's dropout 0.8).")
    content_in_score: bool = opt(False, "Add the projected content to the scored item vectors.")
    content_loss: float = opt(0.01, "Weight of the BPR loss of users against the projected content.")
    reg: float = opt(0.0, "L2 weight.")
    seed: int = opt(0, "Seed of the edge pruning.")


def _build(p: FreedomParams, train: sp.csr_matrix, features: Tensor | None) -> RecModel:
    assert features is not None  # the registry checks `features=True` rows
    kw = dataclasses.asdict(p)
    kw["knn_k"] = max(1, min(p.knn_k, train.shape[1] - 1))  # a catalogue smaller than k: every other item
    return Freedom({"mm": features}, train, **kw)


FREEDOM = ModelSpec(
    FreedomParams,
    _build,
    "FREEDOM-style: frozen item kNN graph + degree-pruned LightGCN over "
    "item IDs, content through the item graph.",
    features=True,
)
