"""Ranking and item-to-item metrics: hand-computed cases, masking/ties, batching, and Cornac agreement."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from mllmrec.errors import MllmrecError
from mllmrec.metrics import (
    KS,
    EvalError,
    full_ranking_metrics,
    i2i_recall,
    ranking_metrics,
    summarize,
    topk_items,
)
from mllmrec.metrics import ranking as metrics_mod


def _ranked(*rows: list[int]) -> np.ndarray:
    return np.array(rows, dtype=np.int64)


# ---------------------------------------------------------------- ranking_metrics by hand


def test_ndcg_ideal_dcg_uses_min_of_positives_and_k() -> None:
    # |pos| = 5, k = 2, both top-2 items are hits: IDCG over min(5, 2) = 2 ranks -> NDCG 1.0
    top = _ranked([0, 1, 9, 8, 7])
    pos = [np.array([0, 1, 2, 3, 4])]
    m = ranking_metrics(top, pos, ks=(2, 5))
    assert m["ndcg@2"] == pytest.approx(1.0)
    assert m["recall@2"] == pytest.approx(2 / 5)
    # k = 5: DCG = 1 + 1/log2(3); IDCG = sum_{r<=5} 1/log2(r+1)
    idcg5 = sum(1 / math.log2(r + 1) for r in range(1, 6))
    assert m["ndcg@5"] == pytest.approx((1 + 1 / math.log2(3)) / idcg5)


def test_ndcg_with_a_miss_in_between() -> None:
    top = _ranked([3, 7, 5])  # hit, miss, hit
    m = ranking_metrics(top, [np.array([3, 5])], ks=(3,))
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3)
    assert m["ndcg@3"] == pytest.approx(dcg / idcg)  # 0.9197...
    assert m["ndcg@3"] == pytest.approx(0.919720, abs=1e-6)


def test_all_metrics_on_one_user_by_hand() -> None:
    # ranks:     1  2  3  4  5      hits at ranks 2 and 4; |pos| = 3 (item 30 never ranked)
    top = _ranked([9, 10, 8, 20, 7])
    pos = [np.array([10, 20, 30])]
    m = ranking_metrics(top, pos, ks=(1, 2, 5))
    assert m["users"] == 1.0
    assert m["recall@1"] == 0.0 and m["hit@1"] == 0.0 and m["mrr@1"] == 0.0 and m["map@1"] == 0.0
    assert m["recall@2"] == pytest.approx(1 / 3)
    assert m["precision@2"] == pytest.approx(1 / 2)
    assert m["hit@2"] == 1.0
    assert m["mrr@2"] == pytest.approx(1 / 2)
    # MAP@2 = (1/min(3,2)) * P@2 = (1/2) * (1/2)
    assert m["map@2"] == pytest.approx(0.25)
    assert m["recall@5"] == pytest.approx(2 / 3)
    assert m["precision@5"] == pytest.approx(2 / 5)
    assert m["mrr@5"] == pytest.approx(1 / 2)
    # MAP@5 = (1/min(3,5)) * (P@2 + P@4) = (1/3) * (1/2 + 2/4)
    assert m["map@5"] == pytest.approx(1 / 3)
    # NDCG@5 = (1/log2 3 + 1/log2 5) / (1 + 1/log2 3 + 1/log2 4)
    assert m["ndcg@5"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3) + 0.5))


def test_map_is_one_for_a_perfect_prefix() -> None:
    top = _ranked([4, 2, 0, 1])
    m = ranking_metrics(top, [np.array([2, 4, 6, 8, 10])], ks=(2, 4))
    assert m["map@2"] == pytest.approx(1.0)  # min(5, 2) = 2 normaliser, both hits
    assert m["map@4"] == pytest.approx((1 + 1) / 4)  # P@1 + P@2 over min(5, 4)


def test_mean_over_users_and_users_without_positives_are_skipped() -> None:
    top = _ranked([0, 1], [2, 3], [4, 5])
    pos = [np.array([1]), np.array([], dtype=np.int64), np.array([4, 5, 6, 6])]  # 6 repeated: counts once
    m = ranking_metrics(top, pos, ks=(1, 2))
    assert m["users"] == 2.0
    assert m["recall@1"] == pytest.approx((0 + 1 / 3) / 2)
    assert m["recall@2"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["mrr@2"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["hit@1"] == pytest.approx(0.5)
    # same value as evaluating only the two users with positives
    only = ranking_metrics(top[[0, 2]], [pos[0], pos[2]], ks=(1, 2))
    assert only == m


def test_ranking_metrics_keys_and_wider_topk() -> None:
    rng = np.random.default_rng(0)
    top = np.stack([rng.permutation(80) for _ in range(4)])
    m = ranking_metrics(top, [np.arange(3)] * 4)
    expected = {f"{n}@{k}" for n in ("recall", "ndcg", "precision", "map", "hit", "mrr") for k in KS}
    assert set(m) == expected | {"users"}
    assert m == ranking_metrics(top[:, : max(KS)], [np.arange(3)] * 4)


@pytest.mark.parametrize(
    ("top", "pos", "ks"),
    [
        (_ranked([0, 1]), [np.array([0])], (3,)),  # narrower than max(ks)
        (_ranked([0, 1]), [np.array([0]), np.array([1])], (1,)),  # length mismatch
        (_ranked([0, 0, 1]), [np.array([0])], (3,)),  # repeated item
        (_ranked([0, 1]), [np.array([], dtype=np.int64)], (1,)),  # nobody has positives
        (_ranked([0, 1]), [np.array([0])], ()),  # no cut-offs
        (np.array([[0.0, 1.0]]), [np.array([0])], (1,)),  # not integer
    ],
)
def test_ranking_metrics_rejects_bad_input(
    top: np.ndarray, pos: list[np.ndarray], ks: tuple[int, ...]
) -> None:
    with pytest.raises(EvalError) as err:
        ranking_metrics(top, pos, ks=ks)
    assert isinstance(err.value, MllmrecError) and isinstance(err.value, ValueError)


# ---------------------------------------------------------------- topk_items: ties and masking


def test_topk_orders_by_score_then_lower_index() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    assert topk_items(scores, 2).tolist() == [[1, 2], [0, 1]]
    assert topk_items(scores, 4).tolist() == [[1, 2, 4, 3], [0, 1, 2, 3]]
    assert topk_items(scores, 5).tolist() == [[1, 2, 4, 3, 0], [0, 1, 2, 3, 4]]


def test_topk_matches_a_full_lexicographic_sort_under_heavy_ties() -> None:
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, size=(50, 300)).astype(np.float32)  # ~75 ties per value per row
    for k in (1, 7, 60, 300):
        got = topk_items(scores, k)
        ref = np.stack([np.lexsort((np.arange(300), -row))[:k] for row in scores])
        np.testing.assert_array_equal(got, ref)
        assert got.dtype == np.int64


def test_masked_items_never_appear_and_rows_map_to_users() -> None:
    train = sp.csr_matrix(np.array([[1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1]]))
    scores = np.array([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0], [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    before = scores.copy()
    # score row 0 -> user 2, row 1 -> user 0
    top = topk_items(scores, 3, exclude=train, rows=np.array([2, 0]))
    assert top.tolist() == [[0, 1, 2], [2, 3, 4]]
    np.testing.assert_array_equal(scores, before)  # caller's array untouched
    # without rows, row r is user r
    assert topk_items(scores, 3, exclude=train[:2]).tolist() == [[2, 3, 4], [0, 1, 2]]


def test_training_items_filling_all_but_k_items_leave_exactly_those() -> None:
    n_items, k = 30, 4
    rng = np.random.default_rng(2)
    free = np.array([3, 11, 17, 29])
    row = np.ones(n_items)
    row[free] = 0
    train = sp.csr_matrix(row[None, :])
    scores = rng.normal(size=(1, n_items))
    scores[0, free] -= 1e30  # far below any finite sentinel (MMRec uses -1e10), and still win
    top = topk_items(scores, k, exclude=train)
    assert sorted(top[0].tolist()) == free.tolist()
    assert top[0].tolist() == free[np.argsort(-scores[0, free], kind="stable")].tolist()
    # one more slot than free items: the tail is a masked item, lowest index first
    assert topk_items(scores, k + 1, exclude=train)[0, -1] == 0


def test_topk_rejects_bad_input() -> None:
    with pytest.raises(EvalError):
        topk_items(np.array([[0.0, np.nan]]), 1)
    with pytest.raises(EvalError):
        topk_items(np.zeros((2, 3)), 4)
    with pytest.raises(EvalError):
        topk_items(np.zeros((2, 3)), 1, exclude=sp.csr_matrix((2, 4)))
    with pytest.raises(EvalError):
        topk_items(np.zeros((2, 3)), 1, exclude=sp.csr_matrix((2, 3)), rows=np.array([0, 5]))


# ---------------------------------------------------------------- full_ranking_metrics


def _random_split(
    seed: int, n_users: int = 120, n_items: int = 70
) -> tuple[sp.csr_matrix, list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < 0.15
    held = (rng.random((n_users, n_items)) < 0.08) & ~dense
    held[rng.random(n_users) < 0.2] = False  # some users have no held-out items
    positives = [np.flatnonzero(r) for r in held]
    full_scores = rng.normal(size=(n_users, n_items))
    return sp.csr_matrix(dense.astype(np.float32)), positives, full_scores


def test_full_ranking_is_independent_of_batch_size_and_matches_manual() -> None:
    train, positives, full_scores = _random_split(3)
    users = np.arange(train.shape[0])[::-1].copy()  # order must not matter either
    pos = [positives[u] for u in users]
    calls: list[int] = []

    def score_fn(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return full_scores[batch]

    manual = ranking_metrics(topk_items(full_scores[users], max(KS), exclude=train, rows=users), pos)
    results = [full_ranking_metrics(score_fn, users, pos, train, batch_size=b) for b in (1, 7, 1024)]
    for r in results:
        assert r.keys() == manual.keys()
        for key in manual:
            assert r[key] == pytest.approx(manual[key], abs=1e-12)
    assert manual["users"] == sum(len(p) > 0 for p in pos) < len(users)
    assert calls[: len(users)] == [1] * len(users) and max(calls) == len(users)


def test_full_ranking_masks_training_items() -> None:
    # a model that scores training items highest still gets credit only for held-out items
    train = sp.csr_matrix(np.array([[1, 1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 1]], dtype=np.float32))
    scores = np.array([[9.0, 8.0, 1.0, 7.0, 0.0, 0.0, 0.0], [0.0, 0.0, 5.0, 0.0, 0.0, 9.0, 9.0]])
    pos = [np.array([3]), np.array([2])]
    m = full_ranking_metrics(lambda u: scores[u], np.array([0, 1]), pos, train, ks=(1,))
    assert m["recall@1"] == 1.0 and m["ndcg@1"] == 1.0


def test_full_ranking_rejects_bad_input() -> None:
    train, positives, full_scores = _random_split(4, n_users=5, n_items=30)
    users = np.arange(5)
    with pytest.raises(EvalError, match="smaller ks"):
        full_ranking_metrics(lambda u: full_scores[u], users, positives, train)  # 50 > 30 items
    with pytest.raises(EvalError, match="score_fn returned"):
        full_ranking_metrics(lambda u: full_scores[u, :10], users, positives, train, ks=(5,))
    with pytest.raises(EvalError):
        full_ranking_metrics(lambda u: full_scores[u], np.array([0, 9]), positives[:2], train, ks=(5,))


# ---------------------------------------------------------------- i2i_recall


def test_i2i_recall_by_hand() -> None:
    candidates = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    queries = np.array(
        [
            [2.0, 0.1],  # cos: c0 .999, c2 .742, c1 .050, c3 0  -> partner c0 at rank 1
            [0.0, 0.0],  # zero query: all cos 0, ties by index      -> partner c3 at rank 4
            [-1.0, 0.0],  # cos: c1 0, c3 0, c2 -.707, c0 -1          -> partner c3 at rank 2
        ]
    )
    truth = np.array([0, 3, 3])
    got = i2i_recall(queries, candidates, truth, ks=(1, 2, 3, 4))
    assert got == {
        "recall@1": pytest.approx(1 / 3),
        "recall@2": pytest.approx(2 / 3),
        "recall@3": pytest.approx(2 / 3),
        "recall@4": 1.0,
    }
    # scaling a vector does not change cosine ranks
    assert i2i_recall(queries * 5.0, candidates * 0.1, truth, ks=(1, 2, 3, 4)) == got


def test_i2i_recall_chunked_matches_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    q, c, d = 57, 90, 8
    queries = rng.normal(size=(q, d)).astype(np.float32)
    candidates = rng.normal(size=(c, d)).astype(np.float32)
    truth = rng.integers(0, c, size=q)
    ks = (1, 10, 50, 100)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    cn = candidates / np.linalg.norm(candidates, axis=1, keepdims=True)
    order = np.argsort(-(qn.astype(np.float64) @ cn.T.astype(np.float64)), axis=1, kind="stable")
    rank = np.argmax(order == truth[:, None], axis=1) + 1
    expected = {f"recall@{k}": float(np.mean(rank <= k)) for k in ks}
    assert i2i_recall(queries, candidates, truth, ks=ks) == pytest.approx(expected)
    monkeypatch.setattr(metrics_mod, "_I2I_CHUNK_ELEMENTS", 200)  # 2 queries per chunk
    assert i2i_recall(queries, candidates, truth, ks=ks) == pytest.approx(expected)
    assert expected["recall@100"] == 1.0 and expected["recall@1"] < 0.5


def test_i2i_recall_rejects_bad_input() -> None:
    with pytest.raises(EvalError):
        i2i_recall(np.zeros((2, 3)), np.zeros((4, 2)), np.array([0, 1]))
    with pytest.raises(EvalError):
        i2i_recall(np.zeros((2, 3)), np.zeros((4, 3)), np.array([0, 4]))
    with pytest.raises(EvalError):
        i2i_recall(np.zeros((2, 3)), np.zeros((4, 3)), np.array([0]))


# ---------------------------------------------------------------- summarize


def test_summarize_mean_and_sample_std() -> None:
    out = summarize([{"recall@10": 1.0, "users": 5.0}, {"recall@10": 3.0, "users": 5.0}])
    assert out["recall@10"] == pytest.approx((2.0, math.sqrt(2.0)))
    assert out["users"] == (5.0, 0.0)
    assert summarize([{"a": 0.25}]) == {"a": (0.25, 0.0)}
    with pytest.raises(EvalError):
        summarize([])
    with pytest.raises(EvalError):
        summarize([{"a": 1.0}, {"b": 1.0}])


# ---------------------------------------------------------------- agreement with Cornac


def _random_rankings(
    seed: int, n_users: int = 200, n_items: int = 100
) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    top = np.stack([rng.permutation(n_items) for _ in range(n_users)])
    positives = [rng.choice(n_items, size=int(rng.integers(1, 30)), replace=False) for _ in range(n_users)]
    return top, positives


def test_agrees_with_cornac_recall_precision_ndcg_hit() -> None:
    # Same conventions here: recall = hits/|pos|, precision = hits/k, binary gain (Cornac's 2^rel - 1),
    # and Cornac's IDCG ranks gt_pos itself truncated at k, i.e. over min(|pos|, k) like MMRec.
    from cornac.metrics import NDCG, HitRatio, Precision, Recall

    top, positives = _random_rankings(6)
    ks = (1, 5, 10, 20, 50)
    ours = ranking_metrics(top, positives, ks=ks)
    for k in ks:
        for name, metric in (
            ("recall", Recall(k=k)),
            ("precision", Precision(k=k)),
            ("ndcg", NDCG(k=k)),
            ("hit", HitRatio(k=k)),
        ):
            per_user = [metric.compute(gt_pos=p, pd_rank=r) for p, r in zip(positives, top, strict=True)]
            assert ours[f"{name}@{k}"] == pytest.approx(float(np.mean(per_user)), abs=1e-12), f"{name}@{k}"


def test_agrees_with_cornac_mrr_within_k() -> None:
    # Cornac's MRR has no cut-off and raises when nothing matches; on the top-k prefix with
    # "no match -> 0" it is our mrr@k.
    from cornac.metrics import MRR

    top, positives = _random_rankings(7)
    ks = (1, 5, 20, 100)
    ours = ranking_metrics(top, positives, ks=ks)
    for k in ks:
        per_user = []
        for p, r in zip(positives, top, strict=True):
            try:
                per_user.append(MRR().compute(gt_pos=p, pd_rank=r[:k]))
            except ValueError:
                per_user.append(0.0)
        assert ours[f"mrr@{k}"] == pytest.approx(float(np.mean(per_user)), abs=1e-12)


def test_agrees_with_cornac_map_on_full_rankings_only() -> None:
    # Cornac's MAP is the untruncated AP over every scored item, normalised by |pos|; ours is AP@k
    # normalised by min(|pos|, k) (MMRec). They coincide only when k covers the whole catalogue.
    from cornac.metrics import MAP

    top, positives = _random_rankings(8)
    n_items = top.shape[1]
    ours = ranking_metrics(top, positives, ks=(10, n_items))
    per_user = []
    for p, r in zip(positives, top, strict=True):
        scores = np.empty(n_items)
        scores[r] = -np.arange(n_items, dtype=np.float64)  # rank 1 scores highest
        per_user.append(MAP().compute(item_indices=np.arange(n_items), pd_scores=scores, gt_pos=p))
    assert ours[f"map@{n_items}"] == pytest.approx(float(np.mean(per_user)), abs=1e-12)
    assert ours["map@10"] != pytest.approx(float(np.mean(per_user)), abs=1e-3)  # truncated differs
