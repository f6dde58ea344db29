"""Embedding KD: pull student item vectors towards the teacher's item representations.

    L = mean_m (1 − cos(e_m, t_m))^α

e_m [m, d] are student item vectors, t_m [m, d] the teacher's representations of the same items
(already projected to d by the distiller). α ≥ 1 down-weights items that are already close
(PromptMM's scaled-cosine form); α = 1 is plain cosine distance.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mllmrec.distill.errors import positive


class EmbeddingKD(nn.Module):
    inputs = ("student_items", "teacher_items")
    options = ("alpha",)

    def __init__(self, alpha: float = 2.0) -> None:
        super().__init__()
        self.alpha = positive("alpha", alpha)

    def forward(self, student_items: Tensor, teacher_items: Tensor) -> Tensor:
        cos = F.cosine_similarity(student_items, teacher_items, dim=-1, eps=1e-8)  # [m]
        return (1 - cos).clamp_min(0).pow(self.alpha).mean()  # []
