"""Cornac VBPR with our vectors as the item image features, scored by Cornac's own evaluator.

Two ways in: (1) straight from Python with `cornac_modality(store, item_ids)`; (2) from the files
`mllmrec export --format cornac` writes (features.npy + ids.json). Both give Cornac the ids with
the rows, so Cornac lines them up with its own item indices. The split is mllmrec's MMRec 8:1:1
split of the synthetic data, handed to Cornac unchanged (`cornac_eval_method`).

    python adapters/cornac/example.py                     # builds a demo store offline (tiny random model)
    python adapters/cornac/example.py --store my-store --data my-synthetic-folder
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", help="Embedding store (default: build a demo store offline).")
    ap.add_argument("--data", help="Synthetic data folder with interactions.csv (default: build one).")
    ap.add_argument("--work", default=None, help="Where the demo data/store and the export are written.")
    ap.add_argument("--epochs", type=int, default=10, help="VBPR epochs.")
    args = ap.parse_args()

    import cornac
    import torch
    from cornac.data import ImageModality
    from cornac.metrics import NDCG, Recall

    from mllmrec.catalog.interactions import read_interactions
    from mllmrec.catalog.splits import random_split
    from mllmrec.features.config import ExportConfig
    from mllmrec.features.export import run_export
    from mllmrec.features.to_cornac import cornac_eval_method, cornac_modality
    from mllmrec.testing.demo_store import DEFAULT_WORK, demo_inputs

    torch.set_num_threads(1)  # Cornac's VBPR runs many tiny ops; more threads only spin
    work = Path(args.work or DEFAULT_WORK)
    data, store = demo_inputs(args.store, args.data, work)
    work.mkdir(parents=True, exist_ok=True)
    split = random_split(read_interactions(data / "interactions.csv"), seed=0)

    # (1) from Python: every item of the data, with its raw id
    modality = cornac_modality(store, split.item_ids, channel="mm")
    # (2) from the export files
    (work / "item_ids.json").write_text(json.dumps(split.item_ids))
    run_export(
        ExportConfig(
            source=str(store),
            format="cornac",
            out=str(work / "cornac"),
            ids=str(work / "item_ids.json"),
            overwrite=True,
        )
    )
    from_files = ImageModality(
        features=np.load(work / "cornac" / "features.npy"),
        ids=json.loads((work / "cornac" / "ids.json").read_text()),
    )
    assert np.array_equal(from_files.features, modality.features)

    method = cornac_eval_method(split, seed=0, item_image=from_files)
    metrics = [Recall(k=20), NDCG(k=20)]
    for model in (
        cornac.models.VBPR(
            k=10, k2=10, n_epochs=args.epochs, batch_size=256, learning_rate=0.01, seed=0, verbose=False
        ),
        cornac.models.BPR(k=20, max_iter=args.epochs * 10, learning_rate=0.01, seed=0, verbose=False),
    ):
        test, _ = method.evaluate(model, metrics, user_based=True)
        r = test.metric_avg_results
        print(f"{model.name:5s} test Recall@20 {r['Recall@20']:.4f}  NDCG@20 {r['NDCG@20']:.4f}")
    print(f"({len(split.item_ids)} items; features {modality.features.shape[1]}-d from {store})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
