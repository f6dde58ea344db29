"""List-wise KD against each modality-specific teacher channel.

For every batch row the list is [positive, n sampled negatives]. With student scores s [b, L] and
channel c's teacher scores t_c [b, L] (L = 1 + n), temperature τ and C channels:

    P_c = softmax(t_c / τ),   Q = softmax(s / τ)
    L = (1 / C) Σ_c  mean_b KL(P_c ‖ Q) · τ²,   KL(P ‖ Q) = Σ_l P_l (log P_l − log Q_l)

(τ² keeps gradient sizes comparable across temperatures, as in Hinton et al.'s KD). The parts
come back per channel (`{channel: KL_c · τ² / C}`), so their sum is the mean over channels.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mllmrec.distill.errors import DistillError, positive


class ListwiseKD(nn.Module):
    inputs = ("student_list", "teacher_list")
    options = ("tau",)

    def __init__(self, tau: float = 1.0) -> None:
        super().__init__()
        self.tau = positive("tau", tau)

    def forward(self, student_list: Tensor, teacher_list: dict[str, Tensor]) -> dict[str, Tensor]:
        if not teacher_list:
            raise DistillError("listwise KD needs at least one teacher channel")
        log_q = F.log_softmax(student_list / self.tau, dim=-1)  # [b, L]
        parts = {}
        for channel, t in teacher_list.items():
            if t.shape != student_list.shape:
                raise DistillError(
                    f"teacher channel {channel!r} scores {tuple(t.shape)} vs student {tuple(student_list.shape)}"
                )
            log_p = F.log_softmax(t / self.tau, dim=-1)  # [b, L]
            kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean()  # []
            parts[channel] = kl * self.tau**2 / len(teacher_list)
        return parts
