"""Our vectors in real RecBole 1.2.1: `mllmrec export --format recbole`, then RecBole itself (its
own venv) loads the `.itememb` file through its config and trains PretrainedBPR on the vectors.

RecBole runs in a separate venv (`adapters/recbole/venv.sh`: numpy<2, no ray), so this script,
in mllmrec's venv, writes the dataset and calls `recbole_run.py` with RecBole's python:

    adapters/recbole/venv.sh                              # once: .venv-recbole (a few minutes)
    python adapters/recbole/example.py                    # demo store built offline (tiny random model)
    python adapters/recbole/example.py --store my-store --data my-synthetic-folder --recbole-python PY
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", help="Embedding store (default: build a demo store offline).")
    ap.add_argument("--data", help="Synthetic data folder with interactions.csv (default: build one).")
    ap.add_argument(
        "--work", default=None, help="Where the demo data/store and the RecBole dataset are written."
    )
    ap.add_argument(
        "--recbole-python",
        default=os.environ.get(
            "MLLMREC_RECBOLE_PYTHON", str(HERE.parents[1] / ".venv-recbole" / "bin" / "python")
        ),
    )
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    if not Path(args.recbole_python).is_file():
        raise SystemExit(f"no RecBole python at {args.recbole_python}: run `adapters/recbole/venv.sh` first")

    from mllmrec import FeatureProvider
    from mllmrec.features.config import ExportConfig
    from mllmrec.features.export import RECBOLE_YAML, run_export
    from mllmrec.testing.demo_store import DEFAULT_WORK, demo_inputs

    work = Path(args.work or DEFAULT_WORK)
    data, store = demo_inputs(args.store, args.data, work)
    folder = work / "recbole" / "synthetic"  # RecBole reads data_path/<dataset>/<dataset>.<suffix>
    folder.mkdir(parents=True, exist_ok=True)
    with open(data / "interactions.csv", newline="") as f, open(folder / "synthetic.inter", "w") as out:
        out.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        out.writelines(
            f"{r['user_id']}\t{r['item_id']}\t{r['rating']}\t{r['timestamp']}\n" for r in csv.DictReader(f)
        )
    # Same as: mllmrec export STORE --format recbole --out FOLDER --interactions FOLDER/synthetic.inter
    run_export(
        ExportConfig(
            source=str(store),
            format="recbole",
            out=str(folder),
            overwrite=True,
            interactions=str(folder / "synthetic.inter"),
        )
    )

    # 1. RecBole's Dataset loads the file through the export's yaml; every item's row = its vector
    subprocess.run(
        [
            args.recbole_python,
            str(HERE / "recbole_run.py"),
            "load",
            str(folder.parent),
            "synthetic",
            "--out",
            str(work / "loaded.npz"),
        ],
        check=True,
    )
    loaded = np.load(work / "loaded.npz", allow_pickle=False)
    tokens, preload = [str(t) for t in loaded["item_tokens"]], loaded["preload"]
    vectors = FeatureProvider.open(store).matrix(tokens[1:])  # row k of RecBole = item token k ([PAD] = 0)
    assert np.array_equal(preload[1:].astype(np.float32), vectors)
    print(
        f"RecBole dataset in {folder}: {len(tokens) - 1} items, get_preload_weight('iid') is "
        f"{preload.shape[0]} x {preload.shape[1]}; row of each item token = its vector: checked"
    )

    # 2. PretrainedBPR (pretrained_bpr.py) trains on them in RecBole's Trainer
    runs = [
        {"name": name, "seed": 0, "config": {"epochs": args.epochs, "pretrained_field": field}}
        for name, field in (("with vectors", "iid"), ("without", None))
    ]
    (work / "runs.json").write_text(json.dumps(runs))
    subprocess.run(
        [
            args.recbole_python,
            str(HERE / "recbole_run.py"),
            "train",
            str(folder.parent),
            "synthetic",
            "--runs",
            str(work / "runs.json"),
            "--out",
            str(work / "results.json"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    for r in json.loads((work / "results.json").read_text()):
        print(
            f"PretrainedBPR {r['name']:<13} valid Recall@20 {r['valid']['recall@20']:.4f}  "
            f"test Recall@20 {r['test']['recall@20']:.4f}  ({args.epochs} epochs, tiny random model's vectors)"
        )
    print(f"config lines for RecBole ({folder / RECBOLE_YAML}):")
    print((folder / RECBOLE_YAML).read_text().rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
