"""Every registered distillation loss, without a hand-written list: finite values (a scalar or
named parts), gradients that reach the student, and loss objects accepted wherever names are."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from mllmrec.distill.losses import LOSSES, BPRLoss, LossSpecError, PairwiseKD, loss_name, parse_losses
from tests.distill.conftest import FAST, build_data

B, N, D = 4, 3, 5  # batch rows, sampled negatives, dim


def _inputs() -> tuple[dict[str, object], list[Tensor]]:
    """One tensor per input name the distiller offers (see distill.losses), and the student's leaves."""
    g = torch.Generator().manual_seed(0)

    def leaf(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g).requires_grad_()

    student = {
        "student_pos": leaf(B),
        "student_neg": leaf(B),
        "student_list": leaf(B, 1 + N),
        "student_items": leaf(2 * B, D),
    }
    teacher = {
        "teacher_pos": torch.randn(B, generator=g),
        "teacher_neg": torch.randn(B, generator=g),
        "teacher_list": {c: torch.randn(B, 1 + N, generator=g) for c in ("visual", "text")},
        "teacher_items": torch.randn(2 * B, D, generator=g),
    }
    return student | teacher, list(student.values())


@pytest.mark.parametrize("name", list(LOSSES))
def test_every_registered_loss_is_finite_and_reaches_the_student(name):
    module, weight = parse_losses([f"{name}:0.5"], tau=1.5, alpha=2.0)[name]
    assert weight == 0.5 and isinstance(module, nn.Module)
    inputs, leaves = _inputs()
    out = module(**{k: inputs[k] for k in module.inputs})
    parts = out if isinstance(out, dict) else {name: out}
    assert parts and all(v.ndim == 0 and torch.isfinite(v) for v in parts.values())
    sum(parts.values()).backward()
    grads = [x.grad for x in leaves if x.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


class ScoreMarginKD(nn.Module):
    """A user's own KD loss: squared gap between student and teacher score margins; counts calls."""

    inputs = ("student_pos", "student_neg", "teacher_pos", "teacher_neg")

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(
        self, student_pos: Tensor, student_neg: Tensor, teacher_pos: Tensor, teacher_neg: Tensor
    ) -> Tensor:
        self.calls += 1
        return ((student_pos - student_neg) - (teacher_pos - teacher_neg).detach()).pow(2).mean()  # []


def test_parse_losses_takes_objects_names_and_weights():
    mine, pairwise = ScoreMarginKD(), PairwiseKD(tau=2.0)
    got = parse_losses(["bpr", mine, (pairwise, 0.25)])
    assert list(got) == ["bpr", "score_margin_kd", "pairwise_kd"]
    assert got["score_margin_kd"] == (mine, 1.0) and got["pairwise_kd"] == (pairwise, 0.25)
    assert loss_name(BPRLoss()) == "bpr_loss"
    with pytest.raises(LossSpecError, match="listed twice"):
        parse_losses([mine, ScoreMarginKD()])
    with pytest.raises(LossSpecError, match="must be an nn.Module with `inputs`"):
        parse_losses([lambda x: x])
    with pytest.raises(LossSpecError, match="must be >= 0"):
        parse_losses([(mine, -1.0)])


def test_distill_and_run_distill_train_with_loss_objects(tmp_path):
    from mllmrec.distill.config import DistillConfig, DistillSettings
    from mllmrec.distill.run import run_distill
    from mllmrec.distill.trainer import distill

    data = build_data(tmp_path, n_items=60, n_users=50)
    quick = {**FAST, "epochs": 2, "teacher_epochs": 2}
    mine = ScoreMarginKD()
    distill(data.features, data.train, data.valid, DistillSettings(**quick), losses=["bpr", (mine, 0.5)])
    assert mine.calls > 0
    mine = ScoreMarginKD()
    cfg = DistillConfig(
        **quick, store=str(data.store), interactions=str(data.interactions), out=str(tmp_path / "run")
    )
    man = run_distill(cfg, losses=["bpr", (mine, 0.5)])
    assert mine.calls > 0 and man["student"]["losses"] == ["bpr:1", "score_margin_kd:0.5"]
