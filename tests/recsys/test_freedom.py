"""Freedom (frozen item kNN graph + pruned LightGCN): graphs by hand, contract, cold items, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mllmrec.recsys import train_bpr
from mllmrec.recsys.freedom import Freedom
from mllmrec.recsys.graph import RecsysError
from mllmrec.recsys.item_graph import EdgePruner, combine_graphs, knn_graph


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def planted(n_users: int = 40, n_items: int = 30, seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray, list]:
    """Two item clusters told apart by their features; users like one cluster. The last item of
    each cluster has no training interaction (a cold item)."""
    rng = np.random.default_rng(seed)
    cluster = np.arange(n_items) % 2  # [I]
    feats = np.eye(2, 8)[cluster] * 3 + rng.normal(scale=0.3, size=(n_items, 8))  # [I, 8]
    cold = np.array([n_items - 2, n_items - 1])
    rows, cols, valid = [], [], []
    for u in range(n_users):
        liked = [i for i in np.flatnonzero(cluster == u % 2) if i not in cold]
        pick = rng.choice(liked, size=6, replace=False)
        rows += [u] * 5
        cols += list(pick[:5])
        valid.append(np.array([pick[5]]))
    train = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    return train, feats.astype(np.float32), valid


def test_knn_graph_is_topk_and_symmetric_normalised() -> None:
    f = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    g = knn_graph(f, k=1).to_dense()  # [4, 4]
    a = np.zeros((4, 4))
    a[0, 1] = a[1, 0] = a[2, 3] = a[3, 2] = 1  # each item's nearest other item
    np.testing.assert_allclose(g.numpy(), a)  # row sums 1 -> D^{-1/2} A D^{-1/2} = A here
    g2 = knn_graph(f, k=2).to_dense()
    assert (g2.diagonal() == 0).all()
    assert ((g2 > 0).sum(1) == 2).all()
    np.testing.assert_allclose(g2[g2 > 0].numpy(), 0.5)  # every row has degree 2 -> 1/sqrt(2·2)
    with pytest.raises(RecsysError):
        knn_graph(f, k=4)


def test_zero_vector_item_has_no_neighbours() -> None:
    f = np.array([[1, 0], [0.9, 0.1], [0, 0], [0.1, 0.9]], dtype=np.float32)
    g = knn_graph(f, k=2).to_dense()
    assert g[2].abs().sum() == 0 and g[:, 2].abs().sum() == 0


def test_combine_graphs_weights() -> None:
    f = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    a, b = knn_graph(f, 2), knn_graph(-f, 2)
    c = combine_graphs({"x": a, "y": b}, {"x": 3, "y": 1}).to_dense()
    torch.testing.assert_close(c, 0.75 * a.to_dense() + 0.25 * b.to_dense())


def test_edge_pruner_keeps_fraction_and_prefers_low_degree_edges() -> None:
    # user 0 interacts with all 10 items (hub); users 1..10 each with one item
    rows = [0] * 10 + list(range(1, 11))
    cols = list(range(10)) * 2
    r = sp.csr_matrix((np.ones(20, np.float32), (rows, cols)), shape=(11, 10))
    pruner = EdgePruner(r, keep=0.5)
    rng = np.random.default_rng(0)
    hub_kept = []
    for _ in range(50):
        adj = pruner.sample(rng)  # [(U+I), (U+I)]
        assert adj.indices().shape[1] == 2 * 10  # 10 kept edges, both directions
        hub_kept.append(int((adj.indices()[0] == 0).sum()))
    assert np.mean(hub_kept) < 5  # hub edges (p ∝ 1/sqrt(10·2)) go more often than leaf edges (1/sqrt(1·2))
    np.testing.assert_array_equal(
        pruner.sample(np.random.default_rng(3)).to_dense(), pruner.sample(np.random.default_rng(3)).to_dense()
    )


def test_contract_shapes_and_graph_frozen() -> None:
    train, feats, valid = planted()
    torch.manual_seed(0)
    m = Freedom({"text": feats, "visual": feats[:, ::-1].copy()}, train, dim=8, knn_k=3)
    users, items = torch.tensor([0, 1, 2]), torch.tensor([4, 5, 6])
    assert m.score(users, items).shape == (3,)
    assert m.full_sort(users).shape == (3, 30)
    torch.testing.assert_close(m.full_sort(users)[torch.arange(3), items], m.score(users, items))
    ch = m.channel_scores(users, torch.tensor([[1, 2], [3, 4], [5, 6]]))
    assert set(ch) == {"text", "visual"} and ch["text"].shape == (3, 2)
    assert m.item_dim == 16
    graph = m.item_graph("text").to_dense().clone()
    assert not any("graph" in n for n, _ in m.named_parameters())  # the item graph is not trained
    train_bpr(m, train, valid, epochs=3, batch_size=64, lr=0.01, progress=False)
    torch.testing.assert_close(m.item_graph("text").to_dense(), graph)


def test_cold_item_scored_from_content_and_training_learns() -> None:
    train, feats, valid = planted()
    torch.manual_seed(0)
    m = Freedom({"text": feats}, train, dim=16, knn_k=5, content_loss=0.5)
    res = train_bpr(m, train, valid, epochs=40, batch_size=64, lr=0.02, patience=40, progress=False)
    assert res.best_valid["recall@20"] > 0.8  # planted clusters are easy
    with torch.no_grad():
        scores = m.full_sort(torch.arange(40))  # [U, I]
    cold_a, cold_b = 28, 29  # cluster 0 and cluster 1
    assert torch.isfinite(scores).all()
    # a cold item is ranked by its content: users of its cluster score it above users of the other
    assert scores[0::2, cold_a].mean() > scores[1::2, cold_a].mean()
    assert scores[1::2, cold_b].mean() > scores[0::2, cold_b].mean()
    # and its untrained ID row never enters: changing it changes nothing
    with torch.no_grad():
        m.item.weight[cold_a] += 5.0
        torch.testing.assert_close(m.full_sort(torch.arange(40)), scores)


def test_deterministic_with_seed() -> None:
    train, feats, valid = planted()

    def run() -> torch.Tensor:
        torch.manual_seed(1)
        m = Freedom({"text": feats}, train, dim=8, knn_k=3, seed=1)
        train_bpr(m, train, valid, epochs=3, batch_size=64, lr=0.01, seed=1, progress=False)
        with torch.no_grad():
            return m.full_sort(torch.arange(5))

    torch.testing.assert_close(run(), run(), rtol=0, atol=0)


def test_pruned_graph_only_while_training() -> None:
    train, feats, _ = planted()
    m = Freedom({"text": feats}, train, dim=8, knn_k=3, edge_keep=0.3)
    m.train()
    m.start_epoch(1)
    assert m._ui_graph()._nnz() < m.adjacency._nnz()
    m.eval()
    assert m._ui_graph() is m.adjacency
