"""Serving search (mllmrec.index.mips, mips_store): every kind finds the true top inner products,
scores are exact, recall is measured and tuned, saved indexes are refused when stale."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mllmrec.index.mips import (
    EXACT_MAX_ITEMS,
    IndexParams,
    augment,
    build,
    choose_kind,
    exact_top,
    recall_at_k,
)
from mllmrec.index.mips_store import StaleIndexError, fingerprint, load_or_build, paths, read_meta


def _data(n: int = 4000, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clustered items of unequal norms (where cosine and inner-product rankings differ)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, d))
    items = centres[rng.integers(0, 20, n)] + 0.3 * rng.normal(size=(n, d))
    items *= rng.uniform(0.2, 2.0, (n, 1))
    users = centres[rng.integers(0, 20, 200)] + 0.3 * rng.normal(size=(200, d))
    return items.astype(np.float32), users.astype(np.float32)


def test_choose_kind_by_catalogue_size():
    assert choose_kind(EXACT_MAX_ITEMS) == "exact" and choose_kind(EXACT_MAX_ITEMS + 1) == "ivf"
    assert choose_kind(10, "ivf") == "ivf"
    with pytest.raises(ValueError, match="unknown index"):
        choose_kind(10, "annoy")


def test_augmentation_turns_inner_product_into_l2_order():
    items, users = _data(300)
    m = float(np.linalg.norm(items, axis=1).max())
    a, q = augment(items, m, 17), np.pad(users, ((0, 0), (0, 1)))
    l2 = ((q[:, None, :] - a[None]) ** 2).sum(-1)
    assert (np.argsort(l2, 1)[:, :10] == np.argsort(-(users @ items.T), 1)[:, :10]).mean() > 0.99


@pytest.mark.parametrize("kind,knob", [("hnsw", 256), ("ivf", 16), ("ivfpq", 16)])
def test_approximate_kinds_reach_high_recall_with_exact_scores(kind, knob):
    items, users = _data()
    index = build(items, IndexParams(kind).with_knob(knob))
    scores, rows = index.search(users, 20)
    truth = exact_top(items, users, 20)
    assert recall_at_k(rows, truth) >= 0.9
    np.testing.assert_allclose(
        scores, np.einsum("mkd,md->mk", items[rows], users), rtol=1e-5
    )  # re-scored exactly
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_exact_matches_brute_force():
    items, users = _data(500)
    _, rows = build(items, IndexParams("exact")).search(users, 5)
    assert (rows == np.argsort(-(users @ items.T), 1, kind="stable")[:, :5]).mean() > 0.99


def test_saved_index_records_recall_tunes_and_is_refused_when_stale(tmp_path):
    items, users = _data()
    fp = fingerprint("ids", items, {"source": 1})
    index, meta = load_or_build(
        tmp_path, items, fp, IndexParams("ivf"), queries=users, k=20, target_recall=0.95
    )
    saved = read_meta(tmp_path, "ivf")
    assert saved == json.loads(paths(tmp_path, "ivf")[1].read_text()) and saved["recall"]["recall"] >= 0.95
    trials = saved["recall"]["trials"]
    assert trials[-1]["nprobe"] == saved["recall"]["nprobe"] == index.params.nprobe
    assert all(t["recall"] < 0.95 for t in trials[:-1])  # the cheapest knob that meets the target
    again, meta2 = load_or_build(
        tmp_path, items, fp, IndexParams("ivf"), queries=users, k=20, target_recall=0.95
    )
    assert (
        meta2["built"] == meta["built"] and again.params.nprobe == index.params.nprobe
    )  # loaded, not rebuilt
    moved = items.copy()
    moved[::7] *= 1.5
    with pytest.raises(StaleIndexError, match="vectors_sample_sha256"):
        load_or_build(tmp_path, moved, fingerprint("ids", moved, {"source": 1}), IndexParams("ivf"))
    _, meta3 = load_or_build(
        tmp_path,
        moved,
        fingerprint("ids", moved, {"source": 1}),
        IndexParams("ivf"),
        queries=users,
        k=20,
        rebuild=True,
    )
    assert meta3["fingerprint"]["vectors_sample_sha256"] != fp["vectors_sample_sha256"]
    assert not list(tmp_path.glob(".mllmrec-writer.lock"))
