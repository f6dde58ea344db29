"""The teacher: its bipartite adjacency, PCA hard tokens and soft prompts, and scoring items that
had no training interactions from their vectors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mllmrec.distill.errors import DistillError
from mllmrec.distill.prompt import pca_hard_tokens, prepare_features
from mllmrec.distill.teacher import Teacher


def tiny(
    seed: int = 0, n_users: int = 3, n_items: int = 4, d: int = 6
) -> tuple[dict[str, np.ndarray], sp.csr_matrix]:
    rng = np.random.default_rng(seed)
    r = sp.csr_matrix(
        np.array([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0]], np.float32)
    )  # item 3: no interactions
    return {"mm": rng.normal(size=(n_items, d)), "visual": rng.normal(size=(n_items, d + 2))}, r


def test_adjacency_is_symmetric_and_indexed_users_then_items():
    feats, r = tiny()
    teacher = Teacher(feats, r, dim=4, n_layers=2, prompt_tokens=2)
    a = teacher.adjacency.to_dense().numpy()  # [(U+I), (U+I)]
    assert a.shape == (7, 7)
    np.testing.assert_allclose(a, a.T, atol=0)
    deg_u, deg_i = np.asarray(r.sum(1)).ravel(), np.asarray(r.sum(0)).ravel()
    for u in range(3):
        for i in range(4):
            expect = r[u, i] / np.sqrt(deg_u[u] * deg_i[i]) if r[u, i] else 0.0
            assert a[u, 3 + i] == pytest.approx(expect) and a[3 + i, u] == pytest.approx(expect)
    assert not a[:3, :3].any() and not a[3:, 3:].any()  # no user-user or item-item edges
    assert not a[6].any()  # the item without interactions is an isolated node


def test_pca_hard_tokens_are_deterministic_unit_variance_principal_directions():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8)) @ np.diag([5, 3, 1, 1, 1, 1, 1, 1])
    f, _ = prepare_features(x)
    h = pca_hard_tokens(f, 3)
    assert h.shape == (50, 3)
    np.testing.assert_allclose(h.std(0).numpy(), 1.0, rtol=1e-4)
    np.testing.assert_allclose(np.corrcoef(h.numpy().T), np.eye(3), atol=1e-5)  # uncorrelated components
    assert torch.equal(h, pca_hard_tokens(f.clone(), 3))
    # The first token follows the largest-variance direction of the centred features.
    centred = f.numpy() - f.numpy().mean(0)
    top = np.linalg.svd(centred, full_matrices=False)[2][0]
    assert abs(np.corrcoef(h[:, 0].numpy(), centred @ top)[0, 1]) > 0.999


def test_prepare_features_centres_and_normalises_and_refuses_nan():
    f, mean = prepare_features(np.array([[1.0, 1.0], [3.0, 1.0]]))
    np.testing.assert_allclose(mean.numpy(), [2.0, 1.0])
    np.testing.assert_allclose(f.numpy(), [[-1.0, 0.0], [1.0, 0.0]])
    with pytest.raises(DistillError, match="NaN"):
        prepare_features(np.array([[np.nan, 1.0]]))


def test_item_without_interactions_is_scored_from_its_vectors():
    feats, r = tiny()
    torch.manual_seed(0)
    teacher = Teacher(feats, r, dim=4, n_layers=2, prompt_tokens=2)
    with torch.no_grad():
        x = teacher.item_inputs()
        emb = teacher.channel_embeddings()
        for c in teacher.channels:  # zero-degree node: its final vector is x / (K + 1)
            torch.testing.assert_close(emb[c][1][3], x[c][3] / 3)
        before = teacher.full_sort(torch.arange(3))[:, 3].clone()
        teacher.feat_mm[3] *= -1  # change only item 3's features
        after = teacher.full_sort(torch.arange(3))[:, 3]
    assert not torch.allclose(before, after)


def test_prompt_changes_every_channel_and_is_trainable():
    feats, r = tiny()
    teacher = Teacher(feats, r, dim=4, n_layers=1, prompt_tokens=2)
    out = teacher.loss(
        {"users": torch.tensor([0, 1]), "pos": torch.tensor([0, 2]), "neg": torch.tensor([3, 0])}
    )
    assert set(out) == {"bpr", "bpr_channels", "reg"}
    sum(out.values()).backward()
    assert teacher.prompt.net[0].weight.grad is not None and teacher.prompt.net[0].weight.grad.abs().sum() > 0
    assert teacher.item_dim == 8 and teacher.final_embeddings()[1].shape == (4, 8)


def test_teacher_refuses_bad_features():
    feats, r = tiny()
    with pytest.raises(DistillError, match="3 item rows"):
        Teacher({"mm": feats["mm"][:3]}, r)
    with pytest.raises(DistillError, match="at least one"):
        Teacher({}, r)
