"""Connectors: map a vision encoder's patch features into a causal LM's input-embedding space.

The composed backbone (NoteLLM-2's own construction) splices a connector's output tokens into the
prompt in place of the `<image>` placeholder, so each connector says how many tokens it yields
per image (`tokens_per_image`) and the encoder expands the placeholder to exactly that many.

- `MLPConnector` (LLaVA-1.5 style): every patch becomes one LM token,
  `y_p = W2 · GELU(W1 · x_p + b1) + b2`, so tokens_per_image = number of patches.
- `QFormerConnector` (BLIP-2 style, reduced): k learned queries read the patches through
  cross-attention, so tokens_per_image = k whatever the image resolution.

Both are plain `torch.nn.Module`s whose constructor arguments are their whole configuration
(`config()`), so `build_connector(**connector.config())` rebuilds the same architecture from the
JSON stored beside the weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mllmrec.backbone.base import BackboneError

CONNECTOR_KINDS = ("mlp", "qformer")


def default_heads(dim: int, min_head_dim: int = 16, max_heads: int = 16) -> int:
    """Largest head count <= `max_heads` that divides `dim` with heads of >= `min_head_dim` (else 1).

    The Q-Former runs at the LM's width, which the user does not choose; this picks a sensible
    multi-head split for any width (64 -> 4, 576 -> 16, 2048 -> 16).
    """
    for h in range(max_heads, 1, -1):
        if dim % h == 0 and dim // h >= min_head_dim:
            return h
    return 1


class MLPConnector(nn.Module):
    """Two-layer perceptron applied to each patch: [n_img, P, dv] -> [n_img, P, dl]."""

    kind = "mlp"

    def __init__(self, vision_dim: int, lm_dim: int) -> None:
        super().__init__()
        self.vision_dim, self.lm_dim = vision_dim, lm_dim
        self.fc1 = nn.Linear(vision_dim, lm_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(lm_dim, lm_dim)

    def tokens_per_image(self, n_patches: int) -> int:
        """One LM token per patch."""
        return n_patches

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "vision_dim": self.vision_dim, "lm_dim": self.lm_dim}

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(patches)))  # [n_img, P, dv] -> [n_img, P, dl]


class QFormerLayer(nn.Module):
    """One pre-norm Q-Former block over queries q and (projected) patches x:

    q = q + SelfAttn(LN(q));  q = q + CrossAttn(LN(q), LN(x));  q = q + MLP(LN(q)).
    """

    def __init__(self, dim: int, n_heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, n_heads, batch_first=True)
        self.norm_cross = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, n_heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = self.norm_self(q)  # [n_img, k, dl]
        q = q + self.self_attn(h, h, h, need_weights=False)[0]  # [n_img, k, dl]
        kv = self.norm_kv(x)  # [n_img, P, dl]
        q = q + self.cross_attn(self.norm_cross(q), kv, kv, need_weights=False)[0]  # [n_img, k, dl]
        return q + self.mlp(self.norm_mlp(q))  # [n_img, k, dl]


class QFormerConnector(nn.Module):
    """k learned queries attend to the patches: [n_img, P, dv] -> [n_img, k, dl].

    Patches are first projected to the LM width (x = W_in · patch), the queries (init N(0, 0.02²))
    go through `n_layers` `QFormerLayer`s and a final LayerNorm. A fixed k keeps the prompt short
    for high-resolution vision towers (e.g. 576 SigLIP patches -> 32 tokens).
    """

    kind = "qformer"

    def __init__(
        self, vision_dim: int, lm_dim: int, n_query: int = 32, n_layers: int = 2, n_heads: int | None = None
    ) -> None:
        super().__init__()
        if n_query < 1 or n_layers < 1:
            raise BackboneError(f"Q-Former needs n_query >= 1 and n_layers >= 1, got {n_query}, {n_layers}")
        n_heads = n_heads or default_heads(lm_dim)
        if lm_dim % n_heads:
            raise BackboneError(f"Q-Former: lm_dim {lm_dim} is not divisible by n_heads {n_heads}")
        self.vision_dim, self.lm_dim = vision_dim, lm_dim
        self.n_query, self.n_layers, self.n_heads = n_query, n_layers, n_heads
        self.queries = nn.Parameter(torch.randn(n_query, lm_dim) * 0.02)  # [k, dl]
        self.in_proj = nn.Linear(vision_dim, lm_dim)
        self.layers = nn.ModuleList(QFormerLayer(lm_dim, n_heads) for _ in range(n_layers))
        self.out_norm = nn.LayerNorm(lm_dim)

    def tokens_per_image(self, n_patches: int) -> int:
        """k query tokens per image, independent of the patch count."""
        return self.n_query

    def config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "vision_dim": self.vision_dim,
            "lm_dim": self.lm_dim,
            "n_query": self.n_query,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
        }

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x = self.in_proj(patches)  # [n_img, P, dl]
        q = self.queries.unsqueeze(0).expand(x.shape[0], -1, -1)  # [n_img, k, dl]
        for layer in self.layers:
            q = layer(q, x)  # [n_img, k, dl]
        return self.out_norm(q)  # [n_img, k, dl]


Connector = MLPConnector | QFormerConnector


def build_connector(kind: str, vision_dim: int, lm_dim: int, **kwargs: Any) -> Connector:
    """Connector by name; `kwargs` go to the Q-Former (n_query, n_layers, n_heads) and are refused
    for the MLP, so a config that names Q-Former options for an MLP is an error, not ignored."""
    if kind == "mlp":
        if kwargs:
            raise BackboneError(f"the mlp connector takes no options, got {sorted(kwargs)}")
        return MLPConnector(vision_dim, lm_dim)
    if kind == "qformer":
        return QFormerConnector(vision_dim, lm_dim, **kwargs)
    raise BackboneError(f"unknown connector {kind!r}; known: {', '.join(CONNECTOR_KINDS)}")
