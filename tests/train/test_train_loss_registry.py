"""Every registered train loss, without a hand-written list: a finite scalar whose gradient reaches
the representations and the logit scale; loss objects are accepted wherever names are."""

from __future__ import annotations

import pytest
import torch

from mllmrec.train.losses import LOSSES, InfoNCE, get_loss, loss_name, objective


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    reps = torch.randn(6, 5, generator=g, requires_grad=True)  # [2B, d], B = 3 pairs
    partner, keys = torch.tensor([3, 4, 5, 0, 1, 2]), torch.arange(6)
    return reps, partner, keys, torch.tensor(3.0, requires_grad=True)


@pytest.mark.parametrize("name", list(LOSSES))
def test_every_registered_loss_is_finite_and_differentiable(name):
    reps, partner, keys, log_scale = _batch()
    value = get_loss(name)(reps, partner, keys, log_scale)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(reps.grad).all() and reps.grad.abs().sum() > 0
    assert log_scale.grad is not None and torch.isfinite(log_scale.grad)


class Halved:
    """A user's own loss: half of InfoNCE, counting its calls."""

    name = "halved"

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, reps, partner, keys, log_scale):
        self.calls += 1
        return 0.5 * InfoNCE()(reps, partner, keys, log_scale)


def test_objects_are_accepted_where_names_are():
    reps, partner, keys, log_scale = _batch()
    mine = Halved()
    assert get_loss(mine) is mine and loss_name(mine) == "halved" and loss_name(InfoNCE()) == "InfoNCE"
    total, parts = objective({"mm": reps}, partner, keys, log_scale, mine, {"mm": 1.0})
    ref, _ = objective({"mm": reps}, partner, keys, log_scale, get_loss("infonce"), {"mm": 1.0})
    assert mine.calls == 1 and torch.allclose(total, 0.5 * ref) and set(parts) == {"mm"}


def test_run_train_takes_a_loss_object(synthetic_pairs, tiny_qwen2_dir, tmp_path):
    from mllmrec.train.config import TrainConfig
    from mllmrec.train.trainer import run_train

    items, pairs = synthetic_pairs
    cfg = TrainConfig(
        pairs=str(pairs),
        out=str(tmp_path / "run"),
        model=str(tiny_qwen2_dir),
        catalog=str(items),
        batch_pairs=6,
        steps=1,
        progress=False,
        valid_every=0,
        device="cpu",
        max_valid_queries=8,
    )
    mine = Halved()
    man = run_train(cfg, loss=mine)
    assert mine.calls >= 1 and man["loss"] == "halved" and man["identity"]["config"]["loss"] == "halved"
