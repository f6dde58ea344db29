"""Shared fixtures for the distillation tests: a small synthetic catalogue, an attribute-based store
(see mllmrec.testing.synthetic_vectors for how its vectors are made) and the MMRec split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small-tensor training loops: one thread is much faster than two on a shared 2-core machine
    (OpenMP spin-waits under load); restored afterwards for the rest of the session."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class Data:
    root: Path
    store: Path
    interactions: Path
    item_ids: list[str]
    features: dict[str, np.ndarray]  # split item order
    train: sp.csr_matrix
    valid: list[np.ndarray]
    test: list[np.ndarray]
    split: object


def build_data(
    root: Path, n_items: int = 200, n_users: int = 200, seed: int = 0, skip: set[str] | None = None
) -> Data:
    from mllmrec.catalog.interactions import read_interactions
    from mllmrec.catalog.splits import random_split
    from mllmrec.datasets.config import SyntheticConfig
    from mllmrec.datasets.synthetic import make_synthetic
    from mllmrec.store import EmbeddingStore
    from mllmrec.testing.synthetic_vectors import write_attribute_store

    syn = make_synthetic(
        SyntheticConfig(out=str(root / "syn"), n_items=n_items, n_users=n_users, image_size=16, seed=seed)
    )
    store_dir = write_attribute_store(syn.out, root / "store", skip=skip)
    store = EmbeddingStore.open(store_dir)
    split = random_split(read_interactions(syn.interactions), seed)
    pos = {i: n for n, i in enumerate(store.ids)}
    rows = np.array([pos[i] for i in split.item_ids])
    feats = {c: np.asarray(store.vectors(c))[rows] for c in store.channels}
    return Data(
        root,
        store_dir,
        syn.interactions,
        list(split.item_ids),
        feats,
        split.matrix("train"),
        split.positives("valid"),
        split.positives("test"),
        split,
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    return build_data(tmp_path_factory.mktemp("distill-data"))


def recall20(model, data: Data, positives: list[np.ndarray]) -> float:
    """Full-ranking Recall@20 with training items masked (mllmrec.metrics.ranking)."""
    from mllmrec.metrics.ranking import full_ranking_metrics

    def score(users: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model.full_sort(torch.as_tensor(users, dtype=torch.long)).numpy()

    return full_ranking_metrics(score, np.arange(data.train.shape[0]), positives, data.train, ks=(20,))[
        "recall@20"
    ]


FAST = dict(
    progress=False,
    epochs=40,
    teacher_epochs=40,
    patience=5,
    batch_size=512,
    lr=0.01,
    dim=32,
    teacher_dim=32,
    student="mf",
)


QUICK = [
    "--epochs",
    "3",
    "--teacher-epochs",
    "3",
    "--dim",
    "16",
    "--teacher-dim",
    "16",
    "--batch-size",
    "512",
    "--no-progress",
]


@pytest.fixture(scope="package")
def setup(tmp_path_factory):
    """A synthetic catalogue whose store lacks 3 logged items (missing) and whose log never mentions
    5 store items (new items)."""
    import csv
    import json

    from mllmrec.cli import main
    from mllmrec.datasets.config import SyntheticConfig
    from mllmrec.datasets.synthetic import make_synthetic
    from mllmrec.testing.synthetic_vectors import write_attribute_store

    root = tmp_path_factory.mktemp("distill-run")
    syn = make_synthetic(
        SyntheticConfig(out=str(root / "syn"), n_items=120, n_users=80, image_size=16, seed=3)
    )
    ids = [json.loads(line)["id"] for line in syn.items.read_text().splitlines()]
    missing, new = set(ids[:3]), ids[-5:]
    store = write_attribute_store(syn.out, root / "store", skip=missing)
    rows = list(csv.reader(syn.interactions.read_text().splitlines()))
    log = root / "log.csv"
    log.write_text("\n".join(",".join(r) for r in rows if r[1] not in new) + "\n")
    run = root / "run"
    assert main(["distill", str(store), "--interactions", str(log), "--out", str(run), *QUICK]) == 0
    return {
        "root": root,
        "store": store,
        "log": log,
        "run": run,
        "missing": sorted(missing),
        "new": new,
        "rows": [r for r in rows[1:] if r[1] not in new],
    }
