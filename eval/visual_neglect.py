"""Visual-neglect check (NoteLLM-2's diagnosis) on the synthetic catalogue.

The synthetic items have attributes visible ONLY in the image (colour, shape) and ONLY in the text
(category, material). For item vectors made from image-only, text-only and image+text inputs we
measure whether nearest neighbours share each kind of attribute, item-to-item recall of each
item's most co-interacted partner, and user-to-item recall of content kNN. Vectors that neglect
the image share colours with their neighbours no more often than chance.

Rows labelled `oracle` use one-hot ground-truth attributes instead of model vectors. They calibrate
the check: they show what a channel that does carry (or lack) each attribute kind looks like.

    python eval/visual_neglect.py                       # tiny random Qwen2-VL: the machinery only
    python eval/visual_neglect.py --model /path/to/Qwen2-VL-2B-Instruct --out eval/results/vn-real
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

INPUTS = {"image+text": "notellm2", "image-only": "image-only", "text-only": "text-only"}


def oracle_features(attrs: list[dict], keys: list[str]) -> np.ndarray:
    cols = [(k, v) for k in keys for v in sorted({a[k] for a in attrs})]
    return np.array([[1.0 if a[k] == v else 0.0 for k, v in cols] for a in attrs], np.float32)


def neighbour_agreement(vecs: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Mean share of each item's k nearest neighbours (cosine, self excluded) with the same label."""
    v = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    sim = v @ v.T
    np.fill_diagonal(sim, -np.inf)
    nn = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return float((labels[nn] == labels[:, None]).mean())


def partners(
    train, rng: np.random.Generator, share: float = 0.3, min_count: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Query items and each one's single most co-interacted other item.

    Only items whose top partner is unambiguous (a strict maximum, co-interacted by at least
    `min_count` users) can be queries, so the one ground-truth partner is well defined.
    """
    co = (train.T @ train).toarray()
    np.fill_diagonal(co, 0)
    top = co.max(axis=1)
    unique_top = (co == top[:, None]).sum(axis=1) == 1
    eligible = np.flatnonzero(unique_top & (top >= min_count))
    queries = np.sort(rng.choice(eligible, size=max(1, int(share * len(eligible))), replace=False))
    return queries, co[queries].argmax(axis=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", default="tiny:qwen2-vl", help="Backbone (hub id, dir) or tiny:FAMILY for a random one."
    )
    ap.add_argument("--n-items", type=int, default=400, help="Synthetic catalogue size.")
    ap.add_argument(
        "--out", default="eval/results/visual_neglect", help="Where results.json and report.md go."
    )
    ap.add_argument("--work", default="eval/work/visual_neglect", help="Work folder (data, stores).")
    args = ap.parse_args()

    from grid_config import EmbedEntry
    from stores import make_store, store_channels

    from mllmrec.catalog.interactions import read_interactions
    from mllmrec.catalog.splits import random_split
    from mllmrec.config import from_dict
    from mllmrec.datasets.config import SyntheticConfig
    from mllmrec.datasets.synthetic import make_synthetic
    from mllmrec.metrics.ranking import full_ranking_metrics, i2i_recall

    t0 = time.perf_counter()
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = make_synthetic(
        SyntheticConfig(out=str(work / "data"), n_items=args.n_items, n_users=max(50, args.n_items * 3 // 4))
    )
    split = random_split(read_interactions(data.interactions), seed=0)
    ids = list(split.item_ids)
    by_id = {a["id"]: a for a in map(json.loads, Path(data.attributes).read_text().splitlines())}
    attrs = [by_id[i] for i in ids]
    colour = np.array([a["color"] for a in attrs])
    category = np.array([a["category"] for a in attrs])
    train = split.matrix("train")
    # NoteLLM protocol: one ground-truth partner per query, candidates = all items except the
    # queries (there is no item split here, so "all test items" is the whole catalogue). Three
    # query samples give the ± spread; queries whose partner is itself a query are left out.
    samples = []
    for qseed in range(3):
        queries, truth_items = partners(train, np.random.default_rng(qseed))
        pool = np.setdiff1d(np.arange(len(ids)), queries)
        in_pool = {item: n for n, item in enumerate(pool)}
        keep = np.array([t in in_pool for t in truth_items])
        samples.append((queries[keep], pool, np.array([in_pool[t] for t in truth_items[keep]])))

    feature_sets = {f"{args.model} {name}": ("mllm", prompt) for name, prompt in INPUTS.items()}
    feature_sets |= {
        "oracle image-only (colour, shape)": ("oracle", ["color", "shape"]),
        "oracle text-only (category, material)": ("oracle", ["category", "material"]),
        "oracle image+text": ("oracle", ["color", "shape", "category", "material"]),
    }
    rows = []
    for label, (kind, what) in feature_sets.items():
        if kind == "mllm":
            entry = from_dict(EmbedEntry, {"model": args.model, "prompt": what})
            feats = store_channels(make_store(entry, Path(data.items), work), ids)[0][entry.channel]
        else:
            feats = oracle_features(attrs, what)
        i2i = [i2i_recall(feats[q], feats[pool], truth, ks=(10, 50)) for q, pool, truth in samples]
        v = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
        profile = np.asarray(train @ v) / np.maximum(np.asarray(train.sum(axis=1)), 1)

        def score(users: np.ndarray, profile=profile, v=v) -> np.ndarray:
            return profile[users] @ v.T

        u2i = full_ranking_metrics(score, np.arange(train.shape[0]), split.positives("test"), train, ks=(20,))
        rows.append(
            {
                "features": label,
                "colour_agreement@10": neighbour_agreement(feats, colour),
                "category_agreement@10": neighbour_agreement(feats, category),
                "i2i_recall@10": float(np.mean([r["recall@10"] for r in i2i])),
                "i2i_recall@10_std": float(np.std([r["recall@10"] for r in i2i], ddof=1)),
                "i2i_recall@50": float(np.mean([r["recall@50"] for r in i2i])),
                "i2i_recall@50_std": float(np.std([r["recall@50"] for r in i2i], ddof=1)),
                "u2i_recall@20": u2i["recall@20"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    n = len(ids)  # chance of a random other item sharing the label: (n_c - 1) / (n - 1)
    chance = {
        "colour": float(np.mean([(np.sum(colour == c) - 1) / (n - 1) for c in colour])),
        "category": float(np.mean([(np.sum(category == c) - 1) / (n - 1) for c in category])),
    }
    result = {
        **header(),
        "rows": rows,
        "chance": chance,
        "queries": [len(q) for q, _, _ in samples],
        "pool": [len(p) for _, p, _ in samples],
        "seconds": time.perf_counter() - t0,
    }
    (out / "results.json").write_text(json.dumps(result, indent=2))
    cols = ["colour_agreement@10", "category_agreement@10", "i2i_recall@10", "i2i_recall@50", "u2i_recall@20"]

    def cell(r: dict, c: str) -> str:
        return f"{r[c]:.3f} ± {r[c + '_std']:.3f}" if c + "_std" in r else f"{r[c]:.3f}"

    lines = [
        "# Visual-neglect check (synthetic catalogue)",
        "",
        f"Date {result['date']}. Command: `{result['command']}`. Agreement = share of an item's 10 "
        f"nearest neighbours (cosine) with the same colour (image-only attribute) or category "
        f"(text-only attribute); chance: colour {chance['colour']:.3f}, category {chance['category']:.3f}. "
        f"i2i (NoteLLM protocol): {result['queries']} queries with an unambiguous most co-interacted "
        f"partner, pool = all other items, mean ± std over 3 query samples. u2i: content kNN, "
        "Recall@20 on the seed-0 random split. Rows with a random tiny model show the machinery, "
        "not a real model's behaviour.",
        "",
        "| features | " + " | ".join(cols) + " |",
        "|---" * (len(cols) + 1) + "|",
        *[f"| {r['features']} | " + " | ".join(cell(r, c) for c in cols) + " |" for r in rows],
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))
    print(f"wrote {out / 'report.md'} in {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
