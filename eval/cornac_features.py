"""Quality check of the Cornac adapter: Cornac VBPR with item features vs Cornac BPR without them.

Same data, same split and same seed for every model; features reach Cornac through the adapter
(`cornac_modality`, i.e. FeatureProvider alignment by raw id) and the split through
`cornac_eval_method` (mllmrec's `Split` handed to Cornac unchanged). Scored by Cornac's own
evaluator (Recall@20, NDCG@20; Cornac masks training and validation items). Each model's size and
epochs come from a small grid (the same grid for every feature set) chosen on validation Recall@20
(Cornac's evaluate scores test alongside validation for every fit; only the validation score
chooses, and only the chosen fit's test score is reported). Two modes:

Synthetic (the default): the synthetic catalogue of eval/configs/synthetic.yaml, mllmrec's MMRec
8:1:1 split per seed. Feature sets (rows labelled by what they are):
    tiny random Qwen2-VL   `mllmrec embed` with a tiny RANDOM model (the machinery, not a real model)
    control: random        Gaussian noise of the same width (what VBPR gains from extra capacity alone)
    oracle: attributes     one-hot true colour, shape, category, material from the generator's ground
                           truth: not something a model produced; it shows what informative features give

    python eval/cornac_features.py                          # ~10 min on 2 CPU cores
    python eval/cornac_features.py --model /path/to/Qwen2-VL-2B-Instruct --out eval/results/cornac-real

Fixed split (--mmrec-inter): a real MMRec-format log (`userID itemID rating timestamp x_label`,
tab-separated) on the split its x_label states (0 train, 1 valid, 2 test), as given, never
re-split. The split object is mllmrec's own: `split_from_labels` builds the `Split` from those
parts (no hand-built Cornac BaseMethod), after the file's MMRec item indices are replaced by the
original ids of --mmrec-items (`i_id_mapping.csv`: orig_item_id,itemID), because the stores
(`mllmrec import`) are keyed by original ids and `cornac_modality(store, split.item_ids)` looks the
vectors up by exactly the ids Cornac sees. Held-out pairs whose item never occurs in train stay in
the Split and Cornac leaves them out (`exclude_unknowns`, as in the synthetic mode); the report
counts them. Rows: Cornac BPR without features, and Cornac VBPR per `--store LABEL=DIR` (labelled
LABEL). Seeds vary only the models' randomness (initialisation, and the order and negatives of the
training triples, which the eval method's seed drives), never the split. The default VBPR grid of
this mode is smaller (MMREC_VBPR_GRID). Measured on Office (40,877 train pairs, batch 256) with one
thread on 2 shared, busy cores: 0.85 to 2.5 s per VBPR epoch depending on the load, plus about
4.5 s per fit for Cornac's scoring of validation and test; a BPR fit of 100 iterations takes 0.5 s.

    python eval/cornac_features.py --mmrec-inter data/office.inter --mmrec-items data/i_id_mapping.csv \
        --store "MiniLM=stores/minilm" --store "SmolLM2 zero-shot=stores/smol_zs" \
        --seeds 0 1 2 --out eval/results/cornac-office   # Office, 3 stores, 3 seeds: 12-27 min

--vbpr-grid K,K2,EPOCHS ... and --bpr-grid K,ITERS ... replace a mode's grid (any mode).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from common import header

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATASET = {"n_items": 400, "n_users": 300, "interactions_per_user": 20, "image_size": 64, "seed": 0}
# Grids, the same for every feature set; (k, k2) = (ID factors, feature factors) of VBPR.
VBPR_GRID = [(k, k2, ep) for k, k2 in ((10, 10), (4, 16)) for ep in (10, 25, 50)]
BPR_GRID = [(k, it) for k in (10, 20) for it in (100, 200, 400)]
# Fixed-split mode (real data): 4 VBPR fits instead of 6, 60 epochs instead of 170 per feature set
# and seed. Office, 3 stores, 3 seeds: 9 x (60 epochs + 4 scorings) of VBPR = 10-25 min, plus ~2 min
# of BPR (18 fits), by the timings in the module docstring.
MMREC_VBPR_GRID = [(k, k2, ep) for k, k2 in ((10, 10), (4, 16)) for ep in (10, 20)]
MMREC_BPR_GRID = BPR_GRID


def feature_stores(args: argparse.Namespace, data, work: Path) -> dict[str, Path]:
    """Feature set label -> embedding store directory (all read through the same adapter)."""
    from mllmrec.datasets.synthetic import ATTRIBUTES
    from mllmrec.embed import run_embed
    from mllmrec.embed.config import EmbedConfig
    from mllmrec.testing.stores import write_array_store

    model = args.model
    if model.startswith("tiny:"):
        from mllmrec.testing.qwen import cached_tiny_qwen

        model = str(cached_tiny_qwen(model.split(":", 1)[1], cache_dir=work / "models"))
    store = work / "stores" / "model"
    run_embed(
        EmbedConfig(
            catalog=str(data.items),
            model=model,
            out=str(store),
            prompt="notellm2",
            resume=(store / "manifest.json").is_file(),
            progress=False,
        ),
        command=["eval/cornac_features.py"],
    )
    from mllmrec.features.provider import FeatureProvider

    fp = FeatureProvider.open(store)
    ids, dim = fp.ids(), fp.dim()
    label = (
        "tiny random Qwen2-VL (notellm2, mm)"
        if args.model.startswith("tiny:")
        else f"{args.model} (notellm2, mm)"
    )
    attrs = {r["id"]: r for r in map(json.loads, Path(data.attributes).read_text().splitlines())}
    cols = [(a, v) for a, values in ATTRIBUTES.items() for v in values]
    onehot = np.array([[float(attrs[i][a] == v) for a, v in cols] for i in ids], np.float32)
    noise = np.random.default_rng(123).standard_normal((len(ids), dim)).astype(np.float32)
    return {
        label: store,
        "control: random Gaussian features": write_array_store(
            work / "stores" / "random", ids, {"mm": noise}
        ),
        "oracle: one-hot true attributes": write_array_store(work / "stores" / "oracle", ids, {"mm": onehot}),
    }


def fit_select(make, grid, method, metrics) -> dict:
    """Fit one model per grid value, keep the best on validation Recall@20, report its test metrics
    (`tried` lists every setting's validation Recall@20, so the choice can be checked)."""
    best, tried = None, []
    for value in grid:
        test, val = method.evaluate(make(value), metrics, user_based=True)
        v, t = val.metric_avg_results, test.metric_avg_results
        setting = list(value) if isinstance(value, tuple) else value
        tried.append({"setting": setting, "valid_recall@20": v["Recall@20"]})
        if best is None or v["Recall@20"] > best["valid"]["recall@20"]:
            best = {
                "setting": setting,
                "valid": {"recall@20": v["Recall@20"], "ndcg@20": v["NDCG@20"]},
                "test": {"recall@20": t["Recall@20"], "ndcg@20": t["NDCG@20"]},
            }
    return {**best, "tried": tried}


def grid_value(n: int):
    """argparse type: one grid point 'a,b[,c]' of n positive integers, as a tuple."""

    def parse(text: str) -> tuple[int, ...]:
        try:
            value = tuple(int(x) for x in text.split(","))
        except ValueError:
            value = ()
        if len(value) != n or min(value) <= 0:
            raise argparse.ArgumentTypeError(
                f"expected {n} positive integers separated by commas, got {text!r}"
            )
        return value

    return parse


def parse_stores(specs: list[str], ap: argparse.ArgumentParser) -> dict[str, Path]:
    """--store LABEL=DIR values -> {label: store directory}, in the order given."""
    stores: dict[str, Path] = {}
    for spec in specs:
        label, sep, path = spec.partition("=")
        label = label.strip()
        if not sep or not label or not path:
            ap.error(f"--store takes LABEL=DIR, got {spec!r}")
        if label in stores:
            ap.error(f"--store label {label!r} given twice")
        if not (Path(path) / "manifest.json").is_file():
            ap.error(f"--store {label}: {path} is not an embedding store (no manifest.json)")
        stores[label] = Path(path)
    return stores


def mmrec_split(inter_path: str, items_path: str):
    """mllmrec `Split` of an MMRec .inter exactly as its x_label states, items named by their
    original ids (i_id_mapping.csv: orig_item_id,itemID), which is how the stores key them."""
    import csv
    import dataclasses

    from mllmrec.catalog.interactions import read_interactions
    from mllmrec.catalog.splits import split_from_labels

    inter = read_interactions(inter_path)
    if inter.labels is None:
        raise SystemExit(f"error: {inter_path} has no x_label column; this mode keeps the file's split")
    with open(items_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not {"orig_item_id", "itemID"} <= set(reader.fieldnames or ()):
            raise SystemExit(
                f"error: {items_path} must have columns orig_item_id,itemID; it has {reader.fieldnames}"
            )
        pairs = [(r["itemID"].strip(), r["orig_item_id"].strip()) for r in reader]
    orig = dict(pairs)
    if len(orig) != len(pairs) or len(set(orig.values())) != len(orig):
        raise SystemExit(f"error: {items_path} maps an itemID or an orig_item_id twice")
    unknown = sorted(set(inter.items) - orig.keys())
    if unknown:
        raise SystemExit(
            f"error: {len(unknown)} itemID(s) of {inter_path} are not in {items_path}, e.g. {unknown[:5]}"
        )
    inter = dataclasses.replace(inter, items=np.array([orig[i] for i in inter.items], dtype=object))
    return split_from_labels(inter)


def store_info(path: Path) -> dict:
    """What a report says about a store: where, how wide, made from what."""
    from mllmrec import artifacts

    m = artifacts.read_manifest(path)
    src = m.get("source") or {}
    return {
        "path": str(path),
        "dims": m.get("dims"),
        "backbone": m.get("backbone"),
        "source": src.get("path") or src.get("kind"),
        "fingerprint": m.get("fingerprint"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model",
        default="tiny:qwen2-vl",
        help="Synthetic mode: backbone for the model features (tiny:FAMILY = random).",
    )
    ap.add_argument(
        "--mmrec-inter", help="Fixed-split mode: an MMRec .inter file whose x_label gives the split."
    )
    ap.add_argument("--mmrec-items", help="Fixed-split mode: its i_id_mapping.csv (orig_item_id,itemID).")
    ap.add_argument(
        "--store",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="Fixed-split mode: an embedding store keyed by orig_item_id, one VBPR row labelled LABEL "
        "(repeat for more).",
    )
    ap.add_argument(
        "--vbpr-grid", nargs="+", type=grid_value(3), metavar="K,K2,EPOCHS", help="Replace the VBPR grid."
    )
    ap.add_argument(
        "--bpr-grid", nargs="+", type=grid_value(2), metavar="K,ITERS", help="Replace the BPR grid."
    )
    ap.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="Split and model seeds (synthetic); model seeds only (fixed split).",
    )
    ap.add_argument(
        "--out",
        default=None,
        help="Results folder (default eval/results/cornac_features; eval/results/cornac_mmrec with "
        "--mmrec-inter).",
    )
    ap.add_argument("--work", default="eval/work/cornac_features", help="Work folder (data, stores, models).")
    args = ap.parse_args()
    fixed = args.mmrec_inter is not None
    if fixed and (not args.mmrec_items or not args.store):
        ap.error("--mmrec-inter needs --mmrec-items and at least one --store LABEL=DIR")
    if not fixed and (args.mmrec_items or args.store):
        ap.error("--mmrec-items and --store go with --mmrec-inter")
    label_stores = parse_stores(args.store, ap) if fixed else {}
    default_vbpr, default_bpr = (MMREC_VBPR_GRID, MMREC_BPR_GRID) if fixed else (VBPR_GRID, BPR_GRID)
    vbpr_grid, bpr_grid = args.vbpr_grid or default_vbpr, args.bpr_grid or default_bpr
    out = Path(args.out or ("eval/results/cornac_mmrec" if fixed else "eval/results/cornac_features"))

    import cornac
    import torch
    from cornac.metrics import NDCG, Recall

    from mllmrec.catalog.splits import random_split
    from mllmrec.errors import MllmrecError
    from mllmrec.features.to_cornac import cornac_eval_method, cornac_modality

    torch.set_num_threads(1)  # Cornac's VBPR runs many tiny ops; on 2 shared cores more threads only spin
    t0 = time.perf_counter()
    work = Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    if fixed:
        try:
            fixed_split = mmrec_split(args.mmrec_inter, args.mmrec_items)
            stores = label_stores
            infos = {label: store_info(path) for label, path in stores.items()}
        except MllmrecError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        splits = lambda seed: fixed_split  # noqa: E731  (fixed: the same split for every seed)
    else:
        from mllmrec.catalog.interactions import read_interactions
        from mllmrec.datasets.config import SyntheticConfig
        from mllmrec.datasets.synthetic import make_synthetic

        data = make_synthetic(SyntheticConfig(out=str(work / "data"), **DATASET))
        stores = feature_stores(args, data, work)
        inter = read_interactions(data.interactions)
        splits = lambda seed: random_split(inter, seed)  # noqa: E731
    metrics = [Recall(k=20), NDCG(k=20)]
    runs, scored = [], None
    for seed in args.seeds:
        split = splits(seed)
        plain = cornac_eval_method(split, seed=seed)
        if fixed and scored is None:
            scored = {  # what Cornac keeps after exclude_unknowns
                "users": plain.train_set.num_users,
                "items": plain.train_set.num_items,
                "train": plain.train_set.num_ratings,
                "valid": plain.val_set.num_ratings,
                "test": plain.test_set.num_ratings,
            }
        r = fit_select(
            lambda g, s=seed: cornac.models.BPR(
                k=g[0], max_iter=g[1], learning_rate=0.01, lambda_reg=0.01, seed=s, verbose=False
            ),
            bpr_grid,
            plain,
            metrics,
        )
        runs.append({"model": "Cornac BPR (no features)", "features": "-", "seed": seed, **r})
        print(f"[seed {seed}] BPR                    test recall@20 {r['test']['recall@20']:.4f}", flush=True)
        for label, store in stores.items():
            method = cornac_eval_method(split, seed=seed, item_image=cornac_modality(store, split.item_ids))
            r = fit_select(
                lambda g, s=seed: cornac.models.VBPR(
                    k=g[0],
                    k2=g[1],
                    n_epochs=g[2],
                    batch_size=256,
                    learning_rate=0.005,
                    lambda_w=0.01,
                    lambda_b=0.01,
                    seed=s,
                    verbose=False,
                ),
                vbpr_grid,
                method,
                metrics,
            )
            runs.append({"model": "Cornac VBPR", "features": label, "seed": seed, **r})
            print(f"[seed {seed}] VBPR + {label:40s} test recall@20 {r['test']['recall@20']:.4f}", flush=True)
    if fixed:
        stats = fixed_split.stats()
        mode = {
            "dataset": {
                "kind": "mmrec",
                "interactions": str(args.mmrec_inter),
                "item_mapping": str(args.mmrec_items),
                "users": stats["users"],
                "items": stats["items"],
                "interactions_count": stats["interactions"],
            },
            "split": "fixed, as given by the file's x_label (0 train, 1 valid, 2 test); the same for "
            "every model and seed; seeds vary only the models' randomness",
            "split_counts": {p: stats[p] for p in ("train", "valid", "test")},
            "held_out_without_train": fixed_split.meta.get("held_out_without_train"),
            "scored_by_cornac": scored,
            "split_fingerprint": fixed_split.fingerprint(),
            "stores": infos,
        }
    else:
        mode = {
            "dataset": {"kind": "synthetic", **DATASET},
            "split": "mllmrec random_split (MMRec per-user 8:1:1), one per seed, same for every model",
        }
    results = {
        **header(),
        **mode,
        "evaluator": "cornac BaseMethod.evaluate (Recall@20, NDCG@20; train and valid items masked)",
        "grids": {"bpr (k, max_iter)": bpr_grid, "vbpr (k, k2, epochs)": vbpr_grid},
        "versions": {"cornac": cornac.__version__, "torch": torch.__version__},
        "runs": runs,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    (out / "report.md").write_text(report(results))
    print(f"wrote {out / 'results.json'} and {out / 'report.md'} in {results['seconds']:.0f} s")
    return 0


def _table(res: dict, valid: bool = False) -> list[str]:
    """One row per (model, feature set): test mean ± std over seeds, chosen setting per seed."""
    rows: dict[tuple[str, str], list[dict]] = {}
    for r in res["runs"]:
        rows.setdefault((r["model"], r["features"]), []).append(r)
    lines = [
        f"| model | item features | {'valid Recall@20 | ' if valid else ''}test Recall@20 | test NDCG@20 "
        "| chosen setting per seed |",
        f"|---|---|{'---|' if valid else ''}---|---|---|",
    ]
    for (model, feats), rs in rows.items():
        rec = [r["test"]["recall@20"] for r in rs]
        nd = [r["test"]["ndcg@20"] for r in rs]
        va = [r["valid"]["recall@20"] for r in rs]
        lines.append(
            f"| {model} | {feats} | "
            + (f"{np.mean(va):.4f} ± {np.std(va):.4f} | " if valid else "")
            + f"{np.mean(rec):.4f} ± {np.std(rec):.4f} | {np.mean(nd):.4f} ± "
            f"{np.std(nd):.4f} | {'; '.join(str(tuple(r['setting'])) for r in rs)} |"
        )
    return lines


def report(res: dict) -> str:
    if res["dataset"]["kind"] == "mmrec":
        return report_mmrec(res)
    lines = [
        "# Cornac VBPR with our features vs Cornac BPR without\n",
        f"{res['date']}, {res['machine']}, cornac {res['versions']['cornac']}, torch {res['versions']['torch']}; "
        f"{len({r['seed'] for r in res['runs']})} seeds, {res['seconds']:.0f} s in all.\n",
        f"Command: `{res['command']}`\n",
        f"Data: synthetic, {res['dataset']['n_items']} items, {res['dataset']['n_users']} users. Split: "
        f"{res['split']}. Evaluator: {res['evaluator']}. Settings chosen on validation Recall@20 "
        f"from the same grid for every feature set (BPR (k, max_iter) {res['grids']['bpr (k, max_iter)']}; "
        f"VBPR (k, k2, epochs) {res['grids']['vbpr (k, k2, epochs)']}; lr 0.01 / 0.005).\n",
        *_table(res),
    ]
    lines.append(
        "\nThe oracle row uses the generator's ground-truth attributes, not model output: it shows what "
        "informative item features give through the same adapter path. The random-model and "
        "random-noise rows show the machinery without informative content.\n"
    )
    return "\n".join(lines)


def report_mmrec(res: dict) -> str:
    d, c, s = res["dataset"], res["split_counts"], res["scored_by_cornac"]
    held = res["held_out_without_train"] or {}
    seeds = sorted({r["seed"] for r in res["runs"]})
    lines = [
        f"# Cornac VBPR with our item features vs Cornac BPR without: {Path(d['interactions']).name}\n",
        f"{res['date']}, {res['machine']}, cornac {res['versions']['cornac']}, torch {res['versions']['torch']}; "
        f"seeds {', '.join(map(str, seeds))}; {res['seconds']:.0f} s in all.\n",
        f"Command: `{res['command']}`\n",
        f"Data: `{d['interactions']}` (MMRec format), item ids mapped to the stores' ids through "
        f"`{d['item_mapping']}`: {d['users']} users, {d['items']} items, {d['interactions_count']} "
        "interactions.\n",
        f"Split: {res['split']}: {c['train']} train, {c['valid']} valid, {c['test']} test pairs "
        f"(fingerprint {res['split_fingerprint'][:12]}). Held-out pairs whose item has no training "
        f"pair ({held.get('valid', 0)} valid, {held.get('test', 0)} test) are left out by Cornac "
        f"(exclude_unknowns): it trains on {s['train']} pairs of {s['users']} users and {s['items']} "
        f"items and scores {s['valid']} valid and {s['test']} test pairs.\n",
        f"Evaluator: {res['evaluator']}. Each model's setting is chosen on validation Recall@20 alone "
        "from a grid that is the same for every feature set: "
        f"BPR (k, max_iter) {res['grids']['bpr (k, max_iter)']}, lr 0.01; "
        f"VBPR (k, k2, epochs) {res['grids']['vbpr (k, k2, epochs)']}, lr 0.005, batch 256. "
        "Mean ± std over seeds.\n",
        "Item features (read through `mllmrec.features.to_cornac.cornac_modality`, looked up by "
        "original item id):\n",
    ]
    for label, info in res["stores"].items():
        dims = ", ".join(f"{ch} {dim}-d" for ch, dim in (info.get("dims") or {}).items())
        src = f"; from {info['source']}" if info.get("source") else ""
        fp = f"; fingerprint {info['fingerprint'][:12]}" if info.get("fingerprint") else ""
        lines.append(f"- **{label}**: `{info['path']}` ({dims}{src}{fp})")
    lines += ["", *_table(res, valid=True), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
