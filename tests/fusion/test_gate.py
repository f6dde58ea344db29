from __future__ import annotations

import torch

from mllmrec.fusion.gate import LateFusionGate


def test_gate_matches_the_formula_by_hand():
    g = LateFusionGate(hidden_size=2, vision_dim=3)
    with torch.no_grad():
        g.proj.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
        g.proj.bias.zero_()
        g.gate.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0]]))
    h = torch.tensor([[2.0, 4.0]])
    vis = torch.tensor([[6.0, 8.0, 100.0]])  # v = [6, 8]
    z0 = torch.sigmoid(torch.tensor(2.0))  # W[h;v] = [h0, 0]
    expected = torch.tensor([[z0 * 2 + (1 - z0) * 6, 0.5 * 4 + 0.5 * 8]])
    torch.testing.assert_close(g(h, vis), expected)
    assert g.gate.bias is None  # W has no bias (NoteLLM-2)


def test_gate_output_lies_between_h_and_v_and_round_trips(tmp_path):
    torch.manual_seed(0)
    g = LateFusionGate(8, 5)
    h, vis = torch.randn(4, 8), torch.randn(4, 5)
    e, v = g(h, vis), g.proj(vis)
    lo, hi = torch.minimum(h, v), torch.maximum(h, v)
    assert bool(((e >= lo - 1e-6) & (e <= hi + 1e-6)).all())
    g.save(tmp_path)
    torch.testing.assert_close(LateFusionGate.load(tmp_path)(h, vis), e)
