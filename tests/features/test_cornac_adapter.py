"""Cornac (from PyPI) trains VBPR on features we exported for the synthetic data and is scored by
Cornac's own evaluator; a scrambled id order still gives every item its own features."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mllmrec.datasets.config import SyntheticConfig
from mllmrec.features import export as E
from mllmrec.features.config import ExportConfig
from mllmrec.features.to_cornac import cornac_eval_method, cornac_modality, split_triples
from mllmrec.testing.stores import write_array_store


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Synthetic catalogue, its MMRec random split, and a store of oracle features (one-hot true
    attributes: a stand-in for good content vectors, so the test is fast and model-free)."""
    from mllmrec.catalog.interactions import read_interactions
    from mllmrec.catalog.splits import random_split
    from mllmrec.datasets.synthetic import ATTRIBUTES, make_synthetic

    root = tmp_path_factory.mktemp("cornac")
    syn = make_synthetic(
        SyntheticConfig(out=str(root / "syn"), n_items=150, n_users=200, image_size=16, seed=3)
    )
    attrs = [json.loads(line) for line in syn.attributes.read_text().splitlines()]
    cols = [(a, v) for a, values in ATTRIBUTES.items() for v in values]
    onehot = np.array([[float(r[a] == v) for a, v in cols] for r in attrs], np.float32)  # [n_items, 30]
    store = write_array_store(root / "store", [r["id"] for r in attrs], {"mm": onehot})
    split = random_split(read_interactions(syn.interactions), seed=0)
    return root, store, split


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Cornac's VBPR runs many tiny torch ops; on a shared 2-core machine extra threads only spin."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _features_by_raw_id(eval_method) -> dict[str, np.ndarray]:
    """What Cornac's train set holds for each of its items, keyed by the item's raw id."""
    feats = eval_method.train_set.item_image.features
    return {raw: feats[idx] for raw, idx in eval_method.global_iid_map.items()}


@pytest.mark.slow
def test_cornac_vbpr_on_exported_features_scored_by_cornac(tmp_path, data):
    import cornac
    from cornac.data import ImageModality
    from cornac.metrics import Recall

    root, store, split = data
    out = tmp_path / "cornac"
    (tmp_path / "ids.json").write_text(json.dumps(split.item_ids))
    E.run_export(
        ExportConfig(source=str(store), format="cornac", out=str(out), ids=str(tmp_path / "ids.json"))
    )
    modality = ImageModality(
        features=np.load(out / "features.npy"), ids=json.loads((out / "ids.json").read_text())
    )
    method = cornac_eval_method(split, seed=0, item_image=modality)
    ours = cornac_modality(store, split.item_ids).features
    for raw, vec in _features_by_raw_id(method).items():  # Cornac's own item order, our rows
        np.testing.assert_array_equal(vec, ours[split.item_ids.index(raw)])

    models = [
        cornac.models.VBPR(
            k=10,
            k2=10,
            n_epochs=15,
            batch_size=256,
            learning_rate=0.01,
            lambda_w=0.01,
            lambda_b=0.01,
            seed=0,
            verbose=False,
        ),
        cornac.models.MostPop(),
    ]
    recall = {}
    for model in models:  # Cornac's own evaluator: fit on train, rank all items, train/valid items masked
        test_result, _ = method.evaluate(model, [Recall(k=20)], user_based=True)
        recall[model.name] = test_result.metric_avg_results["Recall@20"]
    chance = 20 / split.n_items  # expected Recall@20 of a random ranking (a bit over, after masking)
    assert recall["VBPR"] > 2 * chance, recall
    assert recall["VBPR"] > recall["MostPop"], recall  # the features carry the users' tastes
    assert len(split_triples(split, "test")) == len(split.test)


def test_scrambled_id_order_gives_the_same_features_in_cornac(data):
    _, store, split = data
    rng = np.random.default_rng(7)
    scrambled = [split.item_ids[k] for k in rng.permutation(split.n_items)]
    seen = []
    for ids in (split.item_ids, scrambled):
        method = cornac_eval_method(split, seed=0, item_image=cornac_modality(store, ids))
        seen.append(_features_by_raw_id(method))
    assert seen[0].keys() == seen[1].keys() == set(split.item_ids)
    for raw, vec in seen[0].items():
        np.testing.assert_array_equal(seen[1][raw], vec)
    # The same matrix handed over without ids would be silently misaligned: proof the check has teeth.
    from cornac.data import ImageModality

    m = cornac_modality(store, scrambled)
    bare = cornac_eval_method(split, seed=0, item_image=ImageModality(features=m.features))
    assert any(
        not np.array_equal(bare.train_set.item_image.features[idx], seen[0][raw])
        for raw, idx in bare.global_iid_map.items()
    )
