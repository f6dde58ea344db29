"""Distillation losses: a registry picked by name (`LOSSES`; YAML/CLI) or objects passed from Python
(`run_distill(cfg, losses=[MyKD(), (PairwiseKD(tau=2), 0.5)])`, `trainer.distill(..., losses=...)`).

Every loss is a small `nn.Module` that takes tensors, never models, and returns a scalar or a dict
of named parts (the trainer multiplies by the loss's weight, sums and logs them). `inputs` names
the tensors it reads from the batch of tensors the distiller builds:

    student_pos, student_neg   [b]          student scores s(u, i), s(u, j)
    teacher_pos, teacher_neg   [b]          fused teacher scores t(u, i), t(u, j)
    student_list               [b, 1 + n]   student scores of [positive, n sampled negatives]
    teacher_list               {channel: [b, 1 + n]}  each modality-specific teacher's scores
    student_items              [m, d]       student item vectors of the batch's items
    teacher_items              [m, d]       teacher item representations, projected to d

A loss declares `inputs` (the names above it reads, passed as keyword arguments) and `options`
(settings such as tau/alpha it takes from the distill config). Adding a loss means one module here
and one line in `LOSSES`; the tests iterate the table.

`parse_losses(("bpr", "listwise_kd:0.5"))` turns specs into `{name: (module, weight)}`; a spec is
NAME[:WEIGHT], a loss object, or (loss object, weight). An object is named by its `name`
attribute, else its class name in snake_case.
"""

from __future__ import annotations

import re
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


LossSpec = str | nn.Module | tuple[nn.Module, float]


class LossSpecError(DistillError):
    """A loss spec names an unknown loss or has a bad weight."""


def loss_name(loss: nn.Module) -> str:
    """An object's name in parts, logs and manifests: its `name`, else its class name in snake_case."""
    return str(getattr(loss, "name", None) or _snake(type(loss).__name__))


def _snake(name: str) -> str:
    """ScoreMarginKD -> score_margin_kd, BPRLoss -> bpr_loss."""
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)).lower()


def parse_losses(specs: Sequence[LossSpec], **options: float) -> dict[str, tuple[nn.Module, float]]:
    """{name: (loss module, weight)} from NAME[:WEIGHT] strings, loss objects or (object, weight)
    pairs (weight defaults to 1).

    `options` are passed to the registered losses that take them: tau (pairwise/listwise), alpha
    (embedding); an object comes configured already.
    """
    out: dict[str, tuple[nn.Module, float]] = {}
    for spec in specs:
        name, module, weight = _one(spec, options)
        if name in out:
            raise LossSpecError(f"loss {name!r} listed twice")
        out[name] = (module, weight)
    if not out:
        raise LossSpecError("no loss given; at least 'bpr' is needed")
    return out


def _one(spec: LossSpec, options: dict[str, float]) -> tuple[str, nn.Module, float]:
    if isinstance(spec, str):
        name, _, w = spec.partition(":")
        name = name.strip().replace("-", "_")
        if name not in LOSSES:
            raise LossSpecError(f"unknown loss {name!r} in {spec!r}; known: {', '.join(LOSSES)}")
        cls = LOSSES[name]
        kw = {k: v for k, v in options.items() if k in getattr(cls, "options", ())}
        return name, cls(**kw), _weight(w or 1.0, spec)
    module, w = spec if isinstance(spec, tuple) else (spec, 1.0)
    if not isinstance(module, nn.Module) or not hasattr(module, "inputs"):
        raise LossSpecError(
            f"loss {module!r}: a loss object must be an nn.Module with `inputs` (the batch tensors it reads)"
        )
    return loss_name(module), module, _weight(w, spec)


def _weight(w: object, spec: object) -> float:
    try:
        weight = float(w)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise LossSpecError(f"loss {spec!r}: the weight after ':' must be a number") from None
    if not weight >= 0:
        raise LossSpecError(f"loss {spec!r}: the weight must be >= 0")
    return weight


__all__ = [
    "LOSSES",
    "BPRLoss",
    "EmbeddingKD",
    "ListwiseKD",
    "LossSpec",
    "LossSpecError",
    "PairwiseKD",
    "loss_name",
    "parse_losses",
]
