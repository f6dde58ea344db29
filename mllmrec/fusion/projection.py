"""Projection head: an optional linear map from the LLM's hidden size to a smaller item vector.

    e' = W e            W: Linear(d -> k) without bias, applied to every channel (mm, visual, fused)

Trained in full next to the LoRA weights. With Matryoshka training (`--matryoshka-dims`), the
loss is also taken on the leading m coordinates of e' for each listed m, so a prefix of the vector
is a usable smaller embedding. Saved as safetensors + JSON next to the adapter.
"""

from __future__ import annotations

import torch
from torch import nn

from mllmrec.fusion.saved import SavedHead

HEAD_WEIGHTS = "projection.safetensors"
HEAD_CONFIG = "projection.json"


class ProjectionHead(SavedHead):
    WEIGHTS, CONFIG = HEAD_WEIGHTS, HEAD_CONFIG

    def __init__(self, hidden_size: int, out_dim: int) -> None:
        super().__init__()
        self.hidden_size, self.out_dim = hidden_size, out_dim
        self.linear = nn.Linear(hidden_size, out_dim, bias=False)

    def config(self) -> dict[str, int]:
        return {"hidden_size": self.hidden_size, "out_dim": self.out_dim}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [n, d] -> [n, k]."""
        return self.linear(x.to(self.linear.weight.dtype))


def apply_heads(
    channels: dict[str, torch.Tensor],
    gate: nn.Module | None,
    projection: nn.Module | None,
    vision_pooled: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    """The trained heads on an encoder's raw channels: the late-fusion gate adds `fused` (from `mm`
    and the pooled vision feature), then the projection maps every channel. Differentiable."""
    out = dict(channels)
    if gate is not None:
        out["fused"] = gate(out["mm"].to(gate.gate.weight.dtype), vision_pooled.to(gate.gate.weight.dtype))
    if projection is not None:
        out = {ch: projection(v) for ch, v in out.items()}
    return out
