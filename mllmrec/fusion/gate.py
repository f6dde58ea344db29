"""NoteLLM-2's late-fusion gate.

    v = P · pool(vision features)          projected pooled vision feature, [n, d]
    z = σ(W [h; v])                         W: Linear(2d -> d) without bias
    e = z ⊙ h + (1 − z) ⊙ v                 the `fused` channel

It lets the final vector keep visual detail that the LLM's last token under-uses ("visual
neglect"). A zero-shot run has no gate; a trained run supplies one (saved as safetensors + JSON).
"""

from __future__ import annotations

import torch
from torch import nn

from mllmrec.fusion.saved import SavedHead

GATE_WEIGHTS = "fusion_gate.safetensors"
GATE_CONFIG = "fusion_gate.json"


class LateFusionGate(SavedHead):
    WEIGHTS, CONFIG = GATE_WEIGHTS, GATE_CONFIG

    def __init__(self, hidden_size: int, vision_dim: int) -> None:
        super().__init__()
        self.hidden_size, self.vision_dim = hidden_size, vision_dim
        self.proj = nn.Linear(vision_dim, hidden_size)
        self.gate = nn.Linear(2 * hidden_size, hidden_size, bias=False)

    def config(self) -> dict[str, int]:
        return {"hidden_size": self.hidden_size, "vision_dim": self.vision_dim}

    def forward(self, h: torch.Tensor, vision_pooled: torch.Tensor) -> torch.Tensor:
        """h: [n, d] last-token vector; vision_pooled: [n, dv] -> fused [n, d]."""
        v = self.proj(vision_pooled)  # [n, d]
        z = torch.sigmoid(self.gate(torch.cat([h, v], dim=-1)))  # [n, d]
        return z * h + (1 - z) * v
