"""Distillation losses, picked by name from `LOSSES` (YAML/CLI) or passed as objects (Python).

Every loss is a small `nn.Module` that takes tensors, never models, and returns a scalar or a dict
of named parts (the trainer multiplies by the loss's weight, sums and logs them). `inputs` names
the tensors it reads from the batch of tensors the distiller builds:

    student_pos, student_neg   [b]          student scores s(u, i), s(u, j)
    teacher_pos, teacher_neg   [b]          fused teacher scores t(u, i), t(u, j)
    student_list               [b, 1 + n]   student scores of [positive, n sampled negatives]
    teacher_list               {channel: [b, 1 + n]}  each modality-specific teacher's scores
    student_items              [m, d]       student item vectors of the batch's items
    teacher_items              [m, d]       teacher item representations, projected to d

`parse_losses(("bpr", "listwise_kd:0.5"))` turns NAME[:WEIGHT] specs into `{name: (module, weight)}`.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from mllmrec.distill.errors import DistillError
from mllmrec.distill.losses.bpr import BPRLoss
from mllmrec.distill.losses.embedding import EmbeddingKD
from mllmrec.distill.losses.listwise import ListwiseKD
from mllmrec.distill.losses.pairwise import PairwiseKD

LOSSES: dict[str, type[nn.Module]] = {
    "bpr": BPRLoss,
    "pairwise_kd": PairwiseKD,
    "listwise_kd": ListwiseKD,
    "embedding_kd": EmbeddingKD,
}


class LossSpecError(DistillError):
    """A loss spec names an unknown loss or has a bad weight."""


def parse_losses(specs: Sequence[str], **options: float) -> dict[str, tuple[nn.Module, float]]:
    """{name: (loss module, weight)} from NAME or NAME:WEIGHT strings (weight defaults to 1).

    `options` are passed to the losses that take them: tau (pairwise/listwise), alpha (embedding).
    """
    out: dict[str, tuple[nn.Module, float]] = {}
    for spec in specs:
        name, _, w = str(spec).partition(":")
        name = name.strip().replace("-", "_")
        if name not in LOSSES:
            raise LossSpecError(f"unknown loss {name!r} in {spec!r}; known: {', '.join(LOSSES)}")
        if name in out:
            raise LossSpecError(f"loss {name!r} listed twice")
        try:
            weight = float(w) if w else 1.0
        except ValueError:
            raise LossSpecError(f"loss {spec!r}: the weight after ':' must be a number") from None
        if not weight >= 0:
            raise LossSpecError(f"loss {spec!r}: the weight must be >= 0")
        cls = LOSSES[name]
        kw = {k: v for k, v in options.items() if k in getattr(cls, "options", ())}
        out[name] = (cls(**kw), weight)
    if not out:
        raise LossSpecError("no loss given; at least 'bpr' is needed")
    return out


__all__ = ["LOSSES", "BPRLoss", "EmbeddingKD", "ListwiseKD", "LossSpecError", "PairwiseKD", "parse_losses"]
