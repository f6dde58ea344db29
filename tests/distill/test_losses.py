"""Each distillation loss against a value computed by hand on a tiny case, plus loss-spec parsing."""

from __future__ import annotations

import math

import pytest
import torch

from mllmrec.distill.errors import DistillError
from mllmrec.distill.losses import (
    LOSSES,
    BPRLoss,
    EmbeddingKD,
    ListwiseKD,
    LossSpecError,
    PairwiseKD,
    parse_losses,
)
from mllmrec.errors import MllmrecError


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_bpr_by_hand():
    # pairs (2 vs 1) and (0 vs 1): -log σ(1) and -log σ(-1)
    got = BPRLoss()(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]))
    assert got.item() == pytest.approx((-math.log(sig(1)) - math.log(sig(-1))) / 2, rel=1e-6)


def test_pairwise_kd_by_hand():
    s_pos, s_neg = torch.tensor([2.0, 0.5]), torch.tensor([1.0, 1.5])
    t_pos, t_neg = torch.tensor([3.0, 0.0]), torch.tensor([1.0, 0.0])
    tau = 2.0
    expect = 0.0
    for sp_, sn, tp, tn in zip(s_pos.tolist(), s_neg.tolist(), t_pos.tolist(), t_neg.tolist(), strict=True):
        p_t, p_s = sig((tp - tn) / tau), sig((sp_ - sn) / tau)
        expect += -(p_t * math.log(p_s) + (1 - p_t) * math.log(1 - p_s))
    got = PairwiseKD(tau=tau)(s_pos, s_neg, t_pos, t_neg)
    assert got.item() == pytest.approx(expect / 2, rel=1e-6)
    # A certain teacher (p_T -> 1) turns it into BPR.
    certain = PairwiseKD(tau=1.0)(s_pos, s_neg, torch.tensor([100.0, 100.0]), torch.tensor([0.0, 0.0]))
    assert certain.item() == pytest.approx(BPRLoss()(s_pos, s_neg).item(), rel=1e-6)


def test_listwise_kd_by_hand():
    s = torch.tensor([[1.0, 0.0, 0.0]])  # [b=1, 1 + n=2]
    teachers = {"visual": torch.tensor([[2.0, 0.0, 0.0]]), "text": torch.tensor([[0.0, 0.0, 0.0]])}
    tau = 1.0

    def softmax(v):
        e = [math.exp(x / tau) for x in v]
        return [x / sum(e) for x in e]

    q = softmax([1.0, 0.0, 0.0])
    kls = {
        c: sum(p * (math.log(p) - math.log(qq)) for p, qq in zip(softmax(t[0].tolist()), q, strict=True))
        for c, t in teachers.items()
    }
    got = ListwiseKD(tau=tau)(s, teachers)
    assert set(got) == {"visual", "text"}
    for c in teachers:
        assert got[c].item() == pytest.approx(kls[c] / 2, rel=1e-5)  # per channel: KL / C
    # τ² scaling: at τ = 2 the value is 4 · mean KL at the softened distributions.
    got2 = ListwiseKD(tau=2.0)(s, {"only": torch.tensor([[2.0, 0.0, 0.0]])})
    p2, q2 = [math.exp(x / 2) for x in (2, 0, 0)], [math.exp(x / 2) for x in (1, 0, 0)]
    p2, q2 = [x / sum(p2) for x in p2], [x / sum(q2) for x in q2]
    kl2 = sum(p * (math.log(p) - math.log(q)) for p, q in zip(p2, q2, strict=True))
    assert got2["only"].item() == pytest.approx(4 * kl2, rel=1e-5)


def test_embedding_kd_by_hand():
    e = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    t = torch.tensor([[0.0, 2.0], [2.0, 2.0]])  # cos 0 and cos 1
    assert EmbeddingKD(alpha=1.0)(e, t).item() == pytest.approx((1.0 + 0.0) / 2, abs=1e-6)
    e2 = torch.tensor([[1.0, 0.0]])
    t2 = torch.tensor([[1.0, 1.0]])  # cos = 1/sqrt(2)
    expect = (1 - 1 / math.sqrt(2)) ** 3
    assert EmbeddingKD(alpha=3.0)(e2, t2).item() == pytest.approx(expect, rel=1e-5)


def test_losses_are_picked_by_name_with_weights():
    parsed = parse_losses(["bpr", "listwise-kd:0.5", "embedding_kd:0.1"], tau=3.0, alpha=1.5)
    assert {n: w for n, (_, w) in parsed.items()} == {"bpr": 1.0, "listwise_kd": 0.5, "embedding_kd": 0.1}
    assert parsed["listwise_kd"][0].tau == 3.0 and parsed["embedding_kd"][0].alpha == 1.5
    assert set(LOSSES) == {"bpr", "pairwise_kd", "listwise_kd", "embedding_kd"}


@pytest.mark.parametrize(
    "specs, match",
    [
        (["bpr", "distill_everything"], "unknown loss"),
        (["bpr:abc"], "must be a number"),
        (["bpr:-1"], ">= 0"),
        (["bpr", "bpr:2"], "twice"),
        ([], "no loss"),
    ],
)
def test_bad_loss_specs_are_clear_errors(specs, match):
    with pytest.raises(LossSpecError, match=match) as e:
        parse_losses(specs)
    assert isinstance(e.value, MllmrecError)


def test_bad_loss_options_are_clear_errors():
    with pytest.raises(DistillError, match="tau"):
        PairwiseKD(tau=0)
    with pytest.raises(DistillError, match="alpha"):
        EmbeddingKD(alpha=-1)
    with pytest.raises(DistillError, match="channel"):
        ListwiseKD()(torch.zeros(2, 3), {"mm": torch.zeros(2, 4)})
