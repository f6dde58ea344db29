"""BPR on the student's own scores: L = mean_b −log σ(s(u, i) − s(u, j))."""

from __future__ import annotations

from torch import Tensor, nn

from mllmrec.recsys.models import bpr_loss


class BPRLoss(nn.Module):
    """Bayesian personalised ranking on observed (u, i) vs sampled (u, j) pairs (recsys.bpr_loss)."""

    inputs = ("student_pos", "student_neg")
    options: tuple[str, ...] = ()

    def forward(self, student_pos: Tensor, student_neg: Tensor) -> Tensor:
        return bpr_loss(student_pos, student_neg)  # []
