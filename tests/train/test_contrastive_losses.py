"""The contrastive losses against hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mllmrec.config import ConfigError
from mllmrec.train.losses import InfoNCE, get_loss, objective


def _reference(
    reps: np.ndarray, partner: list[int], keys: list[int], scale: float, cross: bool = False
) -> float:
    """Row-by-row InfoNCE written out with Python loops."""
    z = reps / np.linalg.norm(reps, axis=1, keepdims=True)
    total = 0.0
    n = len(reps)
    for i in range(n):
        p = partner[i]
        denom = 0.0
        for j in range(n):
            if j != p and (keys[j] == keys[i] or keys[j] == keys[p] or keys[partner[j]] == keys[i]):
                continue
            if cross and j != p and (partner[j] > j) == (partner[i] > i):
                continue
            denom += math.exp(scale * z[i] @ z[j])
        total += -(scale * z[i] @ z[p] - math.log(denom))
    return total / n


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    reps = torch.randn(6, 5, generator=g, dtype=torch.float64)
    partner = torch.tensor([3, 4, 5, 0, 1, 2])  # B = 3 pairs: rows 0-2 queries, 3-5 partners
    keys = torch.tensor([10, 11, 12, 13, 14, 15])
    return reps, partner, keys


def test_infonce_matches_hand_computation(batch):
    reps, partner, keys = batch
    got = InfoNCE()(reps, partner, keys, torch.tensor(math.log(20.0)))
    assert float(got) == pytest.approx(
        _reference(reps.numpy(), partner.tolist(), keys.tolist(), 20.0), rel=1e-5
    )


def test_infonce_masks_the_same_item_appearing_twice(batch):
    reps, partner, _ = batch
    keys = torch.tensor([10, 11, 12, 13, 10, 15])  # item 10 is query 0 and partner of query 1
    got = float(InfoNCE()(reps, partner, keys, torch.tensor(3.0)))
    want = _reference(reps.numpy(), partner.tolist(), keys.tolist(), math.exp(3.0))
    assert got == pytest.approx(want, rel=1e-5)
    assert got != pytest.approx(float(InfoNCE()(reps, partner, torch.arange(6), torch.tensor(3.0))), rel=1e-4)


def test_infonce_masks_known_positives_of_a_repeated_item(batch):
    reps, partner, _ = batch
    keys = torch.tensor([10, 11, 12, 11, 14, 15])  # pairs (10, 11) and (11, 14): 14 is a positive of 11 too
    got = float(InfoNCE()(reps, partner, keys, torch.tensor(3.0)))
    assert got == pytest.approx(
        _reference(reps.numpy(), partner.tolist(), keys.tolist(), math.exp(3.0)), rel=1e-5
    )
    # The extra masking matters: the loss differs from the one where all six items are distinct.
    assert got != pytest.approx(float(InfoNCE()(reps, partner, torch.arange(6), torch.tensor(3.0))), rel=1e-4)


def test_cross_variant_only_uses_the_other_side(batch):
    reps, partner, keys = batch
    got = float(get_loss("infonce-cross")(reps, partner, keys, torch.tensor(3.0)))
    assert got == pytest.approx(
        _reference(reps.numpy(), partner.tolist(), keys.tolist(), math.exp(3.0), cross=True), rel=1e-5
    )


def test_logit_scale_is_clamped_at_100(batch):
    reps, partner, keys = batch
    big = float(InfoNCE()(reps, partner, keys, torch.tensor(50.0)))
    assert big == pytest.approx(_reference(reps.numpy(), partner.tolist(), keys.tolist(), 100.0), rel=1e-4)


def test_objective_weights_channels_and_matryoshka(batch):
    reps, partner, keys = batch
    loss = InfoNCE()
    s = torch.tensor(2.0)
    vis = reps.flip(0)
    total, parts = objective(
        {"mm": reps, "visual": vis}, partner, keys, s, loss, {"mm": 0.9, "visual": 0.1}, matryoshka_dims=(2,)
    )
    mm, mm2, v = (
        loss(reps, partner, keys, s),
        loss(reps[:, :2], partner, keys, s),
        loss(vis, partner, keys, s),
    )
    v2 = loss(vis[:, :2], partner, keys, s)
    assert set(parts) == {"mm", "mm@2", "visual", "visual@2"}
    assert float(total) == pytest.approx(float(0.9 * (mm + mm2) / 2 + 0.1 * (v + v2) / 2), rel=1e-6)


def test_unknown_loss_name_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown loss 'nope'"):
        get_loss("nope")
