"""Our vectors as a RecBole pretrained item embedding (`<dataset>.itememb`), checked the way RecBole reads it.

`mllmrec export --format recbole` writes the atomic file `iid:token<TAB>item_emb:float_seq` with a
row for every item of the dataset's .inter, plus `mllmrec-recbole.yaml` with the config lines that
load it (additional_feat_suffix, load_col, alias_of_item_id, preload_weight). RecBole is not
installed here (its pins pull ray and more), so this example applies RecBole's own rules instead:
atomic-file parsing (Dataset._load_feat), one token space for item_id and its alias iid (token ids
from 1, 0 = [PAD]), and the preload matrix (Dataset._preload_weight_matrix) that a model reads
with `dataset.get_preload_weight('iid')`; then it checks that each item's row is its vector.

    python adapters/recbole/example.py                    # builds a demo store offline (tiny random model)
    python adapters/recbole/example.py --store my-store --data my-synthetic-folder
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def read_atomic(path: Path) -> tuple[list[tuple[str, str]], list[list[str]]]:
    """RecBole atomic file: header cells `name:type` joined by tabs, then tab-separated rows."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = [tuple(cell.split(":")) for cell in lines[0].split("\t")]
    return header, [line.split("\t") for line in lines[1:]]  # type: ignore[return-value]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", help="Embedding store (default: build a demo store offline).")
    ap.add_argument("--data", help="Synthetic data folder with interactions.csv (default: build one).")
    ap.add_argument("--work", default=None, help="Where the demo data/store and the RecBole dataset are written.")
    args = ap.parse_args()

    import torch

    from mllmrec import FeatureProvider
    from mllmrec.features.config import ExportConfig
    from mllmrec.features.export import RECBOLE_YAML, run_export
    from mllmrec.testing.demo_store import DEFAULT_WORK, demo_inputs

    work = Path(args.work or DEFAULT_WORK)
    data, store = demo_inputs(args.store, args.data, work)
    folder = work / "recbole" / "synthetic"  # RecBole: data_path/<dataset>/<dataset>.<suffix>
    folder.mkdir(parents=True, exist_ok=True)
    with open(data / "interactions.csv", newline="") as f, open(folder / "synthetic.inter", "w") as out:
        out.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        out.writelines(f"{r['user_id']}\t{r['item_id']}\t{r['rating']}\t{r['timestamp']}\n" for r in csv.DictReader(f))
    # Same as: mllmrec export STORE --format recbole --out FOLDER --interactions FOLDER/synthetic.inter
    run_export(ExportConfig(source=str(store), format="recbole", out=str(folder), overwrite=True,
                        interactions=str(folder / "synthetic.inter")))

    # --- RecBole's rules: token ids shared by item_id and its alias iid, 0 = [PAD] ---
    inter_header, inter_rows = read_atomic(folder / "synthetic.inter")
    item_col = [name for name, _ in inter_header].index("item_id")
    token_id: dict[str, int] = {"[PAD]": 0}
    for row in inter_rows:
        token_id.setdefault(row[item_col], len(token_id))
    emb_header, emb_rows = read_atomic(folder / "synthetic.itememb")
    assert emb_header == [("iid", "token"), ("item_emb", "float_seq")], emb_header
    for row in emb_rows:  # an iid token RecBole has not seen would become a new item
        assert row[0] in token_id, f"{row[0]} is not an item of the .inter"
    dim = len(emb_rows[0][1].split(" "))
    preload = np.zeros((len(token_id), dim))  # dataset.get_preload_weight('iid')
    for tok, seq in emb_rows:
        preload[token_id[tok]] = [float(x) for x in filter(None, seq.split(" "))]
    item_embedding = torch.nn.Embedding.from_pretrained(torch.from_numpy(preload).float())

    fp = FeatureProvider.open(store)
    covered = sum(1 for tok in token_id if tok != "[PAD]" and preload[token_id[tok]].any())
    for tok in list(token_id)[1:4]:
        assert np.array_equal(item_embedding.weight[token_id[tok]].numpy(), fp.vector(tok)), tok
    print(f"RecBole dataset in {folder}: {len(token_id) - 1} items in the .inter, {covered} with a pretrained "
          f"row in synthetic.itememb ({dim}-d); row of each item token = its vector: checked")
    print(f"config lines for RecBole ({folder / RECBOLE_YAML}):")
    print((folder / RECBOLE_YAML).read_text().rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
