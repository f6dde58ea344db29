"""The normalised bipartite adjacency D^{-1/2} [[0, R], [Rᵀ, 0]] D^{-1/2} and LightGCN's propagation on it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mllmrec.errors import MllmrecError
from mllmrec.recsys import LightGCN, bipartite_adjacency, check_interactions, normalized_adjacency

# 2 users, 3 items: user 0 -> items 0, 1; user 1 -> items 1, 2.  Degrees: users 2, 2; items 1, 2, 1.
R = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1]], dtype=np.float32))


def dense(train: sp.spmatrix) -> np.ndarray:
    a = normalized_adjacency(train)
    assert a.is_sparse and a.dtype == torch.float32
    return a.to_dense().numpy()


def test_entries_by_hand_users_first_then_items() -> None:
    a = dense(R)
    assert a.shape == (5, 5)
    expected = np.zeros((5, 5))
    for u, i, value in [
        (0, 0, 1 / math.sqrt(2 * 1)),
        (0, 1, 1 / 2),
        (1, 1, 1 / 2),
        (1, 2, 1 / math.sqrt(2 * 1)),
    ]:
        expected[u, 2 + i] = expected[2 + i, u] = value  # user u <-> item i sits at [u, U + i]
    np.testing.assert_allclose(a, expected, rtol=1e-6)


def test_symmetric_and_no_user_user_or_item_item_edges() -> None:
    rng = np.random.default_rng(0)
    train = sp.random(7, 5, density=0.4, format="csr", random_state=rng, data_rvs=np.ones)
    a = dense(train)
    np.testing.assert_allclose(a, a.T)
    assert not a[:7, :7].any() and not a[7:, 7:].any()
    np.testing.assert_array_equal(a[:7, 7:] > 0, train.toarray() > 0)


def test_row_sums_match_the_degree_formula() -> None:
    # Row sum of node v is Σ_{w ~ v} 1 / sqrt(d_v d_w): user 0 -> 1/√2 + 1/√4; item 1 -> 2 · 1/√4.
    sums = dense(R).sum(axis=1)
    expected = [1 / math.sqrt(2) + 1 / 2, 1 / 2 + 1 / math.sqrt(2), 1 / math.sqrt(2), 1.0, 1 / math.sqrt(2)]
    np.testing.assert_allclose(sums, expected, rtol=1e-6)
    # The largest eigenvalue of a symmetrically normalised adjacency is 1.
    assert np.linalg.eigvalsh(dense(R)).max() == pytest.approx(1.0, abs=1e-5)


def test_isolated_users_and_items_stay_zero_without_nan() -> None:
    train = sp.csr_matrix(
        np.array([[1, 0, 0], [0, 0, 0], [1, 0, 1]], dtype=np.float32)
    )  # user 1, item 1 isolated
    a = dense(train)
    assert np.isfinite(a).all()
    assert not a[1].any() and not a[:, 1].any()  # user 1
    assert not a[3 + 1].any() and not a[:, 3 + 1].any()  # item 1
    assert not dense(sp.csr_matrix((2, 2), dtype=np.float32)).any()  # no edges at all


def test_counts_and_duplicates_become_single_edges_and_input_is_untouched() -> None:
    counts = sp.csr_matrix(np.array([[3, 1, 0], [0, 2, 5]], dtype=np.float32))
    before = counts.toarray().copy()
    np.testing.assert_allclose(dense(counts), dense(R))
    np.testing.assert_array_equal(counts.toarray(), before)
    coo_dup = sp.coo_matrix((np.ones(3), ([0, 0, 1], [1, 1, 2])), shape=(2, 3))  # (0, 1) given twice
    assert bipartite_adjacency(coo_dup).toarray()[0, 2 + 1] == 1.0


def test_bad_input_raises_mllmrec_error() -> None:
    with pytest.raises(MllmrecError, match="scipy.sparse"):
        check_interactions(np.ones((2, 2)))
    with pytest.raises(MllmrecError, match="negative"):
        check_interactions(sp.csr_matrix(np.array([[1.0, -1.0]])))


def test_lightgcn_propagation_by_hand() -> None:
    """dim 1, K = 1 on R; E0 users [1, 2], items [3, 4, 5]; final = (E0 + Â E0) / 2."""
    model = LightGCN(2, 3, dim=1, n_layers=1, adjacency=normalized_adjacency(R))
    with torch.no_grad():
        model.user.weight.copy_(torch.tensor([[1.0], [2.0]]))
        model.item.weight.copy_(torch.tensor([[3.0], [4.0], [5.0]]))
    r2, half = 1 / math.sqrt(2), 0.5  # Â entries 1/sqrt(d_u d_i): d_u = 2, 2; d_i = 1, 2, 1
    users = [(1 + 3 * r2 + 4 * half) / 2, (2 + 4 * half + 5 * r2) / 2]
    items = [(3 + 1 * r2) / 2, (4 + 1 * half + 2 * half) / 2, (5 + 2 * r2) / 2]
    eu, ei = model.propagate()
    np.testing.assert_allclose(eu.detach().numpy().ravel(), users, rtol=1e-6)
    np.testing.assert_allclose(ei.detach().numpy().ravel(), items, rtol=1e-6)


def test_lightgcn_three_layers_match_dense_powers() -> None:
    torch.manual_seed(0)
    train = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]], dtype=np.float32))
    model = LightGCN.from_interactions(train, dim=3, n_layers=3)
    a = normalized_adjacency(train).to_dense().double()
    e0 = torch.cat([model.user.weight, model.item.weight]).detach().double()
    expected = (e0 + a @ e0 + a @ a @ e0 + a @ a @ a @ e0) / 4
    eu, ei = model.propagate()
    torch.testing.assert_close(torch.cat([eu, ei]).detach().double(), expected, rtol=1e-5, atol=1e-6)
