"""Torch modules over our item vectors (imported only when a caller asks for one)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FeatureProjection(nn.Module):
    """Item tower over fixed item features: e_k = W f_k + b (optionally L2-normalised).

    f_k is row k of `features` (a frozen nn.Embedding unless freeze_features=False); W [out_dim, d]
    and b are trained. `ids[k]` is the raw item id of row k, so a model can map its own item ids
    to rows with `index_of`.
    """

    def __init__(
        self,
        features: Tensor,
        out_dim: int,
        *,
        ids: list[str] | None = None,
        freeze_features: bool = True,
        bias: bool = True,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        if features.ndim != 2:
            raise ValueError(f"features must be [n_items, d], got shape {tuple(features.shape)}")
        if out_dim < 1:
            raise ValueError(f"out_dim must be >= 1, got {out_dim}")
        if ids is not None and len(ids) != features.shape[0]:
            raise ValueError(f"{len(ids)} ids for {features.shape[0]} feature rows")
        self.features = nn.Embedding.from_pretrained(features.float(), freeze=freeze_features)  # [n, d]
        self.proj = nn.Linear(features.shape[1], out_dim, bias=bias)
        self.normalize = normalize
        self.ids = list(ids) if ids is not None else None
        self._pos = {i: k for k, i in enumerate(self.ids)} if self.ids is not None else None

    def forward(self, items: Tensor) -> Tensor:
        """items: int64 row indices of any shape [...] -> [..., out_dim]."""
        e = self.proj(self.features(items))  # [..., out_dim]
        return nn.functional.normalize(e, dim=-1) if self.normalize else e

    def all_items(self) -> Tensor:
        """[n_items, out_dim] outputs for every row (for full ranking)."""
        return self.forward(torch.arange(self.features.num_embeddings, device=self.features.weight.device))

    def index_of(self, item_ids: list[str | int]) -> Tensor:
        """int64 rows of raw item ids (KeyError naming the first unknown id)."""
        if self._pos is None:
            raise KeyError("this module was built without ids")
        try:
            return torch.tensor([self._pos[str(i)] for i in item_ids], dtype=torch.long)
        except KeyError as e:
            raise KeyError(f"item {e.args[0]!r} has no row in this module") from None
