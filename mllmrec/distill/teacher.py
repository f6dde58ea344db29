"""The multimodal teacher: frozen item features + soft prompts + graph propagation, trained with BPR.

For each feature channel c (store channels `mm`, and `visual`/`text` when present), with f̂_c the
centred, L2-normalised features (prompt.prepare_features) and p the soft prompts (prompt.PromptModule):

    x_c = W_c f̂_c + p  (+ an item ID embedding when item_ids=True)      [I, d]
    E_c⁽⁰⁾ = [U_c ; x_c],  E_c⁽ᵏ⁺¹⁾ = Â E_c⁽ᵏ⁾,  E_c = (1/(K+1)) Σ_k E_c⁽ᵏ⁾     [(U+I), d]
    t_c(u, i) = E_c[u] · E_c[U+i]                       modality-specific teacher (one per channel)
    t(u, i) = (1/C) Σ_c t_c(u, i)                        the fused teacher

Â = D^{-1/2} [[0, R], [Rᵀ, 0]] D^{-1/2} is the standard normalised bipartite adjacency, users first
then items (recsys.graph.normalized_adjacency). Item vectors come from features, not IDs, so an item
without training interactions is still scored: it is a zero-degree node, its layers ≥ 1 are zero and
its final vector is x_c / (K+1), i.e. its projected features. Item ID embeddings are optional; when
used, the rows of items never trained are zeroed after training (`forget_items`).

Loss (recsys contract, trained by recsys.train_bpr): BPR on the fused score plus the mean BPR of the
channel scores (each modality-specific teacher must rank on its own, list-wise KD reads them), plus
L2 on the batch's layer-0 user rows and projected item rows.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from mllmrec.distill.errors import DistillError
from mllmrec.distill.prompt import PromptModule, pca_hard_tokens, prepare_features
from mllmrec.recsys.channels import ChannelModel
from mllmrec.recsys.graph import check_interactions, normalized_adjacency
from mllmrec.recsys.models import bpr_loss, l2_reg


class Teacher(ChannelModel):
    """PromptMM-style teacher over frozen item features; see the module docstring."""

    def __init__(
        self,
        features: dict[str, np.ndarray | Tensor],
        train: sp.spmatrix | sp.sparray,
        *,
        dim: int = 64,
        n_layers: int = 2,
        prompt_tokens: int = 16,
        item_ids: bool = False,
        reg: float = 1e-4,
        init_std: float = 0.1,
    ) -> None:
        r = check_interactions(train)  # [U, I]
        super().__init__(*r.shape)
        if not features:
            raise DistillError("the teacher needs at least one feature channel")
        if dim < 1 or n_layers < 0 or prompt_tokens < 1:
            raise DistillError(
                f"dim, prompt_tokens must be >= 1 and n_layers >= 0, got {dim}, {prompt_tokens}, {n_layers}"
            )
        self.channels = tuple(features)
        self.dim, self.n_layers, self.reg = int(dim), int(n_layers), float(reg)
        prepared = {}
        for c, f in features.items():
            x, mean = prepare_features(f)  # [I, d_c]
            if x.shape[0] != self.n_items:
                raise DistillError(
                    f"channel {c!r} has {x.shape[0]} item rows, the interactions {self.n_items} items"
                )
            prepared[c] = x
            self.register_buffer(f"feat_{c}", x, persistent=False)
            self.register_buffer(f"mean_{c}", mean)
        hard = torch.cat([pca_hard_tokens(x, prompt_tokens) for x in prepared.values()], dim=1)  # [I, k·C]
        self.prompt = PromptModule(hard, dim)
        self.proj = nn.ModuleDict({c: nn.Linear(x.shape[1], dim, bias=False) for c, x in prepared.items()})
        self.users = nn.ModuleDict({c: nn.Embedding(self.n_users, dim) for c in self.channels})
        for emb in self.users.values():
            nn.init.normal_(emb.weight, std=init_std)
        self.item_emb = nn.Embedding(self.n_items, dim) if item_ids else None
        if self.item_emb is not None:
            nn.init.normal_(self.item_emb.weight, std=init_std)
        self.register_buffer("adjacency", normalized_adjacency(r), persistent=False)

    def features(self, channel: str) -> Tensor:
        return getattr(self, f"feat_{channel}")  # [I, d_c]

    @torch.no_grad()
    def forget_items(self, items: Tensor) -> None:
        """Zero the ID rows of items without training interactions (their features still speak)."""
        if self.item_emb is not None:
            self.item_emb.weight[items] = 0

    def item_inputs(self) -> dict[str, Tensor]:
        """Layer-0 item rows x_c [I, d] per channel (features + prompt [+ ID])."""
        p = self.prompt()  # [I, d]
        ids = self.item_emb.weight if self.item_emb is not None else 0
        return {c: self.proj[c](self.features(c)) + p + ids for c in self.channels}

    def propagate(self, inputs: dict[str, Tensor] | None = None) -> dict[str, tuple[Tensor, Tensor]]:
        """{channel: (users [U, d], items [I, d])} after K layers of Â, averaged over layers
        (`inputs`: an `item_inputs()` result to reuse)."""
        out = {}
        for c, x in (self.item_inputs() if inputs is None else inputs).items():
            e = torch.cat([self.users[c].weight, x])  # [(U+I), d]
            total = e
            for _ in range(self.n_layers):
                e = torch.sparse.mm(self.adjacency, e)  # [(U+I), d]
                total = total + e
            final = total / (self.n_layers + 1)  # [(U+I), d]
            out[c] = (final[: self.n_users], final[self.n_users :])
        return out

    @property
    def item_dim(self) -> int:
        return self.dim * len(self.channels)

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        users, pos, neg = batch["users"], batch["pos"], batch["neg"]  # [b] each
        x = self.item_inputs()
        emb = self.propagate(x)
        s_pos, s_neg = self.channel_scores(users, pos, emb), self.channel_scores(users, neg, emb)
        fused = bpr_loss(torch.stack(list(s_pos.values())).mean(0), torch.stack(list(s_neg.values())).mean(0))
        per_channel = torch.stack([bpr_loss(s_pos[c], s_neg[c]) for c in self.channels]).mean()
        rows = (
            [self.users[c](users) for c in self.channels]
            + [x[c][pos] for c in self.channels]
            + [x[c][neg] for c in self.channels]
        )
        return {"bpr": fused, "bpr_channels": per_channel, "reg": self.reg * l2_reg(*rows)}
