"""Our vectors as an MMRec dataset (image_feat.npy / text_feat.npy), checked the way MMRec loads them.

MMRec (github.com/enoche/MMRec) is not on PyPI, so this example does what its loader does instead:
it reads `<dataset>.inter` (tab-separated userID, itemID, x_label), takes item_num = max(itemID)+1,
`np.load`s the feature files and builds the `nn.Embedding.from_pretrained` tables its models use,
then checks that row i holds the vector of MMRec item i. It also writes the dataset YAML MMRec needs.

    python adapters/mmrec/example.py                      # builds a demo store offline (tiny random model)
    python adapters/mmrec/example.py --store my-store --data my-synthetic-folder
Then, in an MMRec checkout: copy the dataset folder to MMRec/data/, the YAML to
src/configs/dataset/, and run `python main.py -m FREEDOM -d synthetic` (or VBPR, LATTICE, ...).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

DATASET_YAML = """USER_ID_FIELD: userID
ITEM_ID_FIELD: itemID
TIME_FIELD: timestamp
filter_out_cod_start_users: True
inter_file_name: '{name}.inter'
vision_feature_file: 'image_feat.npy'
text_feature_file: 'text_feat.npy'
field_separator: "\\t"
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", help="Embedding store (default: build a demo store offline).")
    ap.add_argument("--data", help="Synthetic data folder with interactions.csv (default: build one).")
    ap.add_argument(
        "--work", default=None, help="Where the demo data/store and the MMRec dataset are written."
    )
    args = ap.parse_args()

    import torch

    from mllmrec import FeatureProvider
    from mllmrec.features.config import ExportConfig
    from mllmrec.features.export import run_export, verify_export
    from mllmrec.testing.demo_store import DEFAULT_WORK, demo_inputs

    work = Path(args.work or DEFAULT_WORK)
    data, store = demo_inputs(args.store, args.data, work)
    folder = work / "mmrec" / "synthetic"  # MMRec/data/<dataset>/
    # Same as: mllmrec export STORE --format mmrec --out FOLDER --interactions data/interactions.csv
    m = run_export(
        ExportConfig(
            source=str(store),
            format="mmrec",
            out=str(folder),
            overwrite=True,
            interactions=str(data / "interactions.csv"),
        )
    )
    (work / "mmrec" / "synthetic.yaml").write_text(DATASET_YAML.format(name="synthetic"))
    verify_export(folder)  # before training: files unchanged, .inter still the one the rows follow

    # --- what MMRec does with the folder (RecDataset + GeneralRecommender) ---
    with open(folder / "synthetic.inter", newline="") as f:
        rows = [
            (int(r["userID"]), int(r["itemID"]), int(r["x_label"])) for r in csv.DictReader(f, delimiter="\t")
        ]
    item_num = max(i for _, i, _ in rows) + 1
    # MMRec loads each file that exists (either may be absent, not both): a single-channel store
    # fills only the file its content says unless `--single-channel both` (the export prints which)
    feats = {
        name: torch.from_numpy(np.load(folder / name, allow_pickle=False)).float() for name in m["channels"]
    }
    embeddings = {
        name: torch.nn.Embedding.from_pretrained(f, freeze=False)  # as FREEDOM/LATTICE do
        for name, f in feats.items()
    }
    assert all(f.shape[0] == item_num for f in feats.values()), (
        {n: f.shape for n, f in feats.items()},
        item_num,
    )

    # --- row i is MMRec item i: compare with the store through the id mapping written beside it ---
    with open(folder / "i_id_mapping.tsv", newline="") as f:
        raw = {int(r["itemID"]): r["item_id"] for r in csv.DictReader(f, delimiter="\t")}
    fp = FeatureProvider.open(store)
    for i in (0, item_num // 2, item_num - 1):
        for name, emb in embeddings.items():
            assert np.array_equal(
                emb.weight[i].detach().numpy(), fp.vector(raw[i], channel=m["channels"][name])
            )
    parts = [sum(1 for *_, lab in rows if lab == k) for k in range(3)]
    print(
        f"MMRec dataset in {folder}: {item_num} items, {max(u for u, _, _ in rows) + 1} users, "
        f"train/valid/test {parts[0]}/{parts[1]}/{parts[2]}"
    )
    print(
        ", ".join(f"{name} {tuple(f.shape)} <- {m['channels'][name]}" for name, f in feats.items())
        + "; row i = MMRec item i: checked"
    )
    print(f"dataset config: {work / 'mmrec' / 'synthetic.yaml'} (copy to MMRec/src/configs/dataset/)")
    print("stale MMRec graph caches removed:", ", ".join(m["stale_caches"]["files"]) or "none found")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
