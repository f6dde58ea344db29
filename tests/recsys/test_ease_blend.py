"""EASE (closed form against a per-column ridge solve) and its blend into a channel model's scores."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mllmrec.recsys import cf_blend, ease
from mllmrec.recsys.cf_blend import CFBlend, choose_blend
from mllmrec.recsys.ease import EASE, ease_weights
from mllmrec.recsys.freedom import Freedom
from mllmrec.recsys.graph import RecsysError


def log(n_users: int = 25, n_items: int = 12, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    x = (rng.random((n_users, n_items)) < 0.3).astype(np.float32)
    x[:, -1] = 0  # an item nobody interacted with
    x[0] = 0
    x[0, :2] = 1
    return sp.csr_matrix(x)


def test_ease_columns_are_the_ridge_regressions_on_the_other_items() -> None:
    x, lam = log(), 3.0
    b = ease_weights(x, lam)  # [I, I]
    d = x.toarray().astype(np.float64)
    for j in range(d.shape[1]):
        others = [k for k in range(d.shape[1]) if k != j]
        a = d[:, others]
        w = np.linalg.solve(a.T @ a + lam * np.eye(len(others)), a.T @ d[:, j])
        np.testing.assert_allclose(b[others, j], w, atol=1e-5)
        assert b[j, j] == 0
    assert not b[:, -1].any() and not b[-1].any()  # the item without interactions: no weights


def test_ease_model_scores_match_its_rows_and_refuses_bad_settings(monkeypatch) -> None:
    x = log()
    m = EASE(x, l2=2.0)
    users, items = torch.tensor([0, 3, 3]), torch.tensor([5, 1, 7])
    full = m.full_sort(users)  # [3, I]
    np.testing.assert_allclose(full.numpy(), x[[0, 3, 3]].toarray() @ ease_weights(x, 2.0), rtol=1e-5)
    np.testing.assert_allclose(m.score(users, items).numpy(), full[torch.arange(3), items].numpy())
    assert not m.trainable and m.state_dict() == {}  # derived from (train, l2): nothing to save
    monkeypatch.setattr(ease, "DENSE_SCORES_MAX", 0)  # large logs: one sparse product per batch instead
    np.testing.assert_allclose(EASE(x, l2=2.0).full_sort(users).numpy(), full.numpy(), rtol=1e-5, atol=1e-7)
    with pytest.raises(RecsysError, match="l2"):
        EASE(x, l2=0)
    monkeypatch.setattr(ease, "MAX_ITEMS", 10)
    with pytest.raises(RecsysError, match="12 items is more than its limit of 10"):
        EASE(x)


def _freedom(x: sp.csr_matrix) -> Freedom:
    torch.manual_seed(0)
    feats = np.random.default_rng(1).normal(size=(x.shape[1], 6)).astype(np.float32)
    m = Freedom({"text": feats}, x, dim=8, knn_k=3)
    m.eval()
    return m


def _standardised(row: np.ndarray) -> np.ndarray:
    sd = row.std()
    return (row - row.mean()) / (sd if sd > 0 else 1.0)


def test_blend_mixes_per_user_standardised_scores_everywhere() -> None:
    x = log()
    m = _freedom(x)
    users = torch.tensor([0, 4, 9])
    with torch.no_grad():
        raw = m.full_sort(users).numpy()  # [3, I], the model alone
        m.cf = CFBlend(EASE(x, l2=2.0), 0.3)
        mixed = m.full_sort(users).numpy()
        e = EASE(x, l2=2.0).full_sort(users).numpy()
        want = np.stack(
            [0.7 * _standardised(r) + 0.3 * _standardised(q) for r, q in zip(raw, e, strict=True)]
        )
        np.testing.assert_allclose(mixed, want, atol=1e-4)
        # pairwise and list-wise (what KD reads) agree with the full ranking
        items = torch.tensor([[1, 2, 11], [0, 5, 6], [3, 3, 10]])
        listed = m.channel_scores(users, items)["text"].numpy()
        np.testing.assert_allclose(listed, np.take_along_axis(mixed, items.numpy(), 1), atol=1e-4)
        np.testing.assert_allclose(
            m.score(users, items[:, 0]).numpy(), mixed[np.arange(3), [1, 0, 3]], atol=1e-4
        )
    with pytest.raises(RecsysError, match="weight"):
        CFBlend(EASE(x), 1.5)


def _fake_eval(values: dict[float, float], ease_values: dict[float, float]):
    """Validation stub: EASE's value by its l2, the model's by its attached weight (0: alone)."""

    def evaluate(model):
        if isinstance(model, EASE):
            return {"recall@20": ease_values[model.l2]}
        cf = getattr(model, "cf", None)
        return {"recall@20": values[0.0 if cf is None else cf.weight]}

    return evaluate


def test_choose_blend_keeps_a_weight_only_when_it_beats_the_model_alone(monkeypatch) -> None:
    x = log()
    m = _freedom(x)
    rec = choose_blend(
        m, x, _fake_eval({0.0: 0.2, 0.1: 0.25, 0.5: 0.3}, {1.0: 0.1, 5.0: 0.2}), [1.0, 5.0], [0, 0.1, 0.5]
    )
    assert (rec["weight"], rec["l2"], rec["valid"]["recall@20"]) == (0.5, 5.0, 0.3)
    assert m.cf is not None and (m.cf.weight, m.cf.ease.l2) == (0.5, 5.0)
    assert [t.get("ease_l2") for t in rec["tried"][:2]] == [1.0, 5.0] and len(rec["tried"]) == 5

    rec = choose_blend(m, x, _fake_eval({0.0: 0.3, 0.1: 0.3}, {1.0: 0.1}), [1.0], [0.1])  # a tie: alone
    assert rec["weight"] == 0.0 and rec["l2"] is None and m.cf is None

    rec = choose_blend(m, x, _fake_eval({0.0: 0.3}, {}), [1.0], [0.0])  # off: EASE never built
    assert rec == {"weight": 0.0, "l2": None, "valid": {"recall@20": 0.3}, "tried": []}

    monkeypatch.setattr(cf_blend, "MAX_ITEMS", 5)
    rec = choose_blend(m, x, _fake_eval({0.0: 0.3}, {}), [1.0], [0.0, 0.2])
    assert "12 items" in rec["skipped"] and m.cf is None


def test_choose_blend_on_real_validation_helps_a_weak_model() -> None:
    """An untrained Freedom ranks at random; EASE has the co-interactions: the blend must win."""
    from mllmrec.recsys.trainer import validate

    rng = np.random.default_rng(3)
    n_users, n_items = 60, 80
    group = np.arange(n_users) % 2
    rows, cols, valid = [], [], []
    for u in range(n_users):
        liked = rng.permutation(np.flatnonzero(np.arange(n_items) % 2 == group[u]))[:6]
        rows += [u] * 5
        cols += list(liked[:5])
        valid.append(liked[5:6])
    x = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    m = _freedom(x)
    rec = choose_blend(m, x, lambda mod: validate(mod, x, valid), [1.0, 10.0], [0.0, 0.5, 1.0])
    assert rec["weight"] > 0 and rec["valid"]["recall@20"] > rec["tried"][2]["recall@20"]  # > alone
    assert validate(m, x, valid)["recall@20"] == pytest.approx(rec["valid"]["recall@20"])
