"""Pairwise ranking KD: the teacher's preference for i over j is the soft label of the student's.

    p_T = σ((t(u, i) − t(u, j)) / τ),   p_S = σ((s(u, i) − s(u, j)) / τ)
    L = mean_b [ −p_T log p_S − (1 − p_T) log(1 − p_S) ]

With p_T = 1 this is BPR; a teacher unsure about a pair (p_T ≈ ½) stops the student from
over-separating it. The teacher side keeps its gradient: during distillation it reaches the
teacher's prompt module (PromptMM tunes the prompts with the student). Computed stably:
−log σ(x) = softplus(−x), −log(1 − σ(x)) = softplus(x).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mllmrec.distill.errors import positive


class PairwiseKD(nn.Module):
    inputs = ("student_pos", "student_neg", "teacher_pos", "teacher_neg")
    options = ("tau",)

    def __init__(self, tau: float = 1.0) -> None:
        super().__init__()
        self.tau = positive("tau", tau)

    def forward(
        self, student_pos: Tensor, student_neg: Tensor, teacher_pos: Tensor, teacher_neg: Tensor
    ) -> Tensor:
        x = (student_pos - student_neg) / self.tau  # [b]
        p_t = ((teacher_pos - teacher_neg) / self.tau).sigmoid()  # [b]
        return (p_t * F.softplus(-x) + (1 - p_t) * F.softplus(x)).mean()  # []
