"""Real RecBole on an `mllmrec export --format recbole` folder. Runs in RecBole's own venv
(`adapters/recbole/venv.sh`), never in mllmrec's: it imports RecBole's pieces (Config,
create_dataset, data_preparation, Trainer), not `recbole.quick_start`, which needs ray.

    PY=$(adapters/recbole/venv.sh)
    $PY adapters/recbole/recbole_run.py load  DATA_PATH DATASET --out loaded.npz
    $PY adapters/recbole/recbole_run.py train DATA_PATH DATASET --runs runs.json --out results.json

DATA_PATH/DATASET/ holds DATASET.inter, DATASET.itememb and mllmrec-recbole.yaml (the export's
config lines, given to RecBole as a config file). `load` writes what RecBole loaded (each item
token and its row of `get_preload_weight`) for the caller to compare with the store. `train` runs
PretrainedBPR once per entry of runs.json ([{"name", "seed", "config": {...}}]) on one fixed split
and writes each run's best validation result and the test result at that epoch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrained_bpr import PretrainedBPR  # noqa: E402  (the folder above is not a package)

YAML = "mllmrec-recbole.yaml"  # mllmrec.features.exporters.recbole.RECBOLE_YAML (not importable here)
DEFAULTS: dict[str, Any] = {  # CPU, quiet, full ranking; Recall@20 as everywhere in mllmrec
    "use_gpu": False,
    "show_progress": False,
    "state": "WARNING",
    "reproducibility": True,
    "metrics": ["Recall", "NDCG"],
    "topk": [20],
    "valid_metric": "Recall@20",
    "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "user", "order": "RO", "mode": "full"},
    "embedding_size": 64,
    "reg_weight": 0.0,
    "pretrained_field": None,
    "epochs": 10,
    "stopping_step": 3,
}


def recbole_config(data_path: str, dataset: str, overrides: dict[str, Any] | None = None) -> Any:
    """RecBole's Config from the export's yaml (a config file, exactly as a user would pass it)."""
    from recbole.config import Config

    yaml = Path(data_path) / dataset / YAML
    return Config(
        model=PretrainedBPR,
        dataset=dataset,
        config_file_list=[str(yaml)],
        config_dict={**DEFAULTS, "data_path": data_path, **(overrides or {})},
    )


def load(data_path: str, dataset: str, out: Path) -> None:
    """Write item tokens (by RecBole token id) and `get_preload_weight` for the export's id field."""
    import yaml as pyyaml
    from recbole.data import create_dataset

    field = next(iter(pyyaml.safe_load((Path(data_path) / dataset / YAML).read_text())["preload_weight"]))
    ds = create_dataset(recbole_config(data_path, dataset))
    np.savez(
        out,
        item_tokens=np.asarray(ds.field2id_token[ds.iid_field], dtype=str),
        alias_tokens=np.asarray(ds.field2id_token[field], dtype=str),
        preload=ds.get_preload_weight(field),
        n_items=ds.item_num,
    )


def fit_best(config: Any, train_data: Any, valid_data: Any, test_data: Any) -> dict[str, Any]:
    """Train with early stopping on validation; test the best epoch's weights, kept in memory
    (RecBole's own checkpoint is a pickle that torch>=2.6 refuses to load by default)."""
    from recbole.trainer import Trainer

    model = PretrainedBPR(config, train_data.dataset)
    trainer = Trainer(config, model)
    curve: list[float] = []
    best: dict[str, Any] = {}

    def keep_best(epoch: int, score: float) -> None:  # after each validation; cur_step 0 = new best
        curve.append(float(score))
        if trainer.cur_step == 0:
            best.update({k: v.detach().clone() for k, v in model.state_dict().items()})

    _, valid = trainer.fit(train_data, valid_data, saved=False, show_progress=False, callback_fn=keep_best)
    model.load_state_dict(best)
    test = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    return {
        "best_epoch": int(np.argmax(curve)),
        "valid_curve": curve,
        "valid": dict(valid),
        "test": dict(test),
    }


def train(data_path: str, dataset: str, runs: list[dict[str, Any]], split_seed: int) -> list[dict[str, Any]]:
    """Each run: the same split (split_seed), model init and sampling from the run's seed."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    out = []
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)  # RecBole's Trainer writes log_tensorboard/ into the working directory
        for run in runs:
            config = recbole_config(
                data_path, dataset, {**run["config"], "seed": split_seed, "checkpoint_dir": work}
            )
            init_seed(split_seed, True)
            splits = data_preparation(config, create_dataset(config))
            init_seed(run["seed"], True)
            out.append({**run, **fit_best(config, *splits)})
            print(
                json.dumps({"name": run["name"], "seed": run["seed"], "valid": out[-1]["valid"]}), flush=True
            )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["load", "train"])
    ap.add_argument("data_path")
    ap.add_argument("dataset")
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", help="train: JSON list of {name, seed, config}")
    ap.add_argument("--split-seed", type=int, default=2020)
    args = ap.parse_args()
    logging.getLogger("recbole").setLevel(logging.WARNING)
    data_path = str(Path(args.data_path).resolve())
    if args.command == "load":
        load(data_path, args.dataset, Path(args.out))
    else:
        out = Path(args.out).resolve()
        results = train(data_path, args.dataset, json.loads(Path(args.runs).read_text()), args.split_seed)
        out.write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
