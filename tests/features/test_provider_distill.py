"""FeatureProvider over a real distill run (`mllmrec distill`, 1 epoch on tiny synthetic data):
the student channel, store channels through the run's store, and the new-item missing-id policy."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mllmrec.datasets.config import SyntheticConfig
from mllmrec.distill.config import DistillConfig
from mllmrec.features.config import ExportConfig
from mllmrec.features.provider import STUDENT, FeatureProvider, ProviderError
from mllmrec.store import UnknownItemError
from mllmrec.testing.stores import write_array_store

NEW = ["i0003", "i0011", "i0042"]  # store items whose interactions are held back: no table rows


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import torch

    from mllmrec.datasets.synthetic import make_synthetic
    from mllmrec.distill.artifact import DistillRun
    from mllmrec.distill.run import run_distill

    root = tmp_path_factory.mktemp("distill-run")
    syn = make_synthetic(SyntheticConfig(out=str(root / "syn"), n_items=60, n_users=50, image_size=16))
    ids = [json.loads(line)["id"] for line in syn.items.read_text().splitlines()]
    rng = np.random.default_rng(0)
    vecs = {
        "mm": rng.normal(size=(60, 12)).astype(np.float32),
        "visual": rng.normal(size=(60, 12)).astype(np.float32),
    }
    store = write_array_store(root / "store", ids, vecs)
    with open(syn.interactions, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["item_id"] not in NEW]
    log = root / "log.csv"
    log.write_text(
        "user_id,item_id,timestamp\n"
        + "".join(f"{r['user_id']},{r['item_id']},{r['timestamp']}\n" for r in rows)
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_distill(
            DistillConfig(
                store=str(store),
                interactions=str(log),
                out=str(root / "run"),
                epochs=1,
                teacher_epochs=1,
                dim=8,
                teacher_dim=8,
                prompt_tokens=2,
                student="mf",
                progress=False,
            )
        )
    finally:
        torch.set_num_threads(threads)
    return root, DistillRun.open(root / "run"), vecs, ids, syn


def test_student_channel_is_the_item_table_by_raw_id(run):
    root, dr, _, _, _ = run
    fp = FeatureProvider.open(root / "run")
    assert fp.kind == "distill" and fp.channel == STUDENT and fp.channels[0] == STUDENT
    assert {"mm", "visual"} <= set(fp.channels) and fp.dim() == 8
    asked = [dr.item_ids[5], dr.item_ids[0], dr.item_ids[5]]
    np.testing.assert_array_equal(fp.matrix(asked), dr.item_table()[[5, 0, 5]])
    assert fp.ids() == dr.item_ids and not set(NEW) & set(fp.ids())


def test_store_channels_come_from_the_runs_store(run):
    root, _, vecs, ids, _ = run
    fp = FeatureProvider.open(root / "run")
    np.testing.assert_array_equal(
        fp.matrix(["i0011", "i0001"], channel="visual"),
        vecs["visual"][[ids.index("i0011"), ids.index("i0001")]],
    )


def test_new_item_policy_maps_items_absent_from_the_tables(run):
    root, dr, _, _, _ = run
    fp = FeatureProvider.open(root / "run")
    asked = [dr.item_ids[2], *NEW]
    with pytest.raises(UnknownItemError, match="3 of 4 ids"):
        fp.matrix(asked)
    got = fp.lookup(asked, missing="new-item")
    assert got.report.filled == {"new-item": 3} and got.report.found == 1
    np.testing.assert_array_equal(got.vectors[0], dr.item_table()[2])
    np.testing.assert_allclose(got.vectors[1:], dr.new_item_vectors(NEW), rtol=1e-6)
    assert np.abs(got.vectors[1:]).sum() > 0
    np.testing.assert_array_equal(fp.lookup(asked, missing="zero").vectors[1:], 0)
    with pytest.raises(UnknownItemError, match="neither in the store"):
        fp.lookup(["not-anywhere"], missing="new-item")
    with pytest.raises(ProviderError, match="only fills a distill run.s student channel"):
        fp.lookup(["not-anywhere"], channel="mm", missing="new-item")
    np.testing.assert_array_equal(fp.lookup(NEW, channel="mm", missing="new-item").report.missing, 0)


def test_another_store_feeds_the_mapping_for_items_the_run_never_saw(run, tmp_path):
    root, dr, vecs, ids, _ = run
    newer = write_array_store(
        tmp_path / "newer",
        [*ids, "brand-new"],
        {ch: np.vstack([v, np.ones((1, 12), np.float32)]) for ch, v in vecs.items()},
    )
    fp = FeatureProvider.open(root / "run", store=newer)
    got = fp.lookup(["brand-new"], missing="new-item")
    np.testing.assert_allclose(got.vectors, dr.new_item_vectors(["brand-new"], store=fp.store), rtol=1e-6)
    with pytest.raises(ProviderError, match="only for distill runs"):
        FeatureProvider.open(newer, store=newer)


def test_export_from_a_distill_run(run, tmp_path):
    from mllmrec.features.export import run_export

    root, dr, _, ids, syn = run
    m = run_export(
        ExportConfig(
            source=str(root / "run"),
            format="npy",
            out=str(tmp_path / "npy"),
            interactions=str(syn.interactions),
            missing="new-item",
        )
    )
    assert m["inputs"]["source"]["kind"] == "distill" and m["channels"] == {"features": STUDENT}
    assert m["missing"]["features"]["filled"] == {"new-item": 3}
    got = np.load(tmp_path / "npy" / "features.npy")
    rows = json.loads((tmp_path / "npy" / "ids.json").read_text())
    k = rows.index(dr.item_ids[0])
    np.testing.assert_array_equal(got[k], dr.item_table()[0])
    m = run_export(
        ExportConfig(
            source=str(root / "run"),
            format="mmrec",
            out=str(tmp_path / "mmrec"),
            interactions=str(syn.interactions),
            text_channel="student",
            missing="new-item",
        )
    )
    assert m["channels"] == {"image_feat.npy": "visual", "text_feat.npy": STUDENT}
    assert np.load(tmp_path / "mmrec" / "text_feat.npy").shape[1] == 8
