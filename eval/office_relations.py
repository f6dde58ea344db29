"""Item-to-item check of item vectors on Amazon Office against the product metadata's relations
(`also_bought`, `also_viewed`): do tuned vectors put related products closer than zero-shot ones?

    python eval/office_relations.py --input minilm=/work/minilm_office.npy smol=store-smol/ \\
        --out eval/results/office-relations

Protocol (for a part P = test, x_label 2, or valid, x_label 1, of `mmrec/office.inter`):

* queries: catalogue items that occur in part P and have at least one partner of the relation
  inside the catalogue; partners are the item's own metadata list (`item_id -> other_item_id`,
  directed: only 37% of the rows have their reverse), per relation and for both relations together
  (the union);
* candidates: every catalogue item except the query itself;
* score: cosine similarity of the vectors (popularity floor: the number of training interactions,
  x_label 0 only, the same ranking for every query); ties go to the earlier catalogue row;
* Recall@k = |partners in the top k| / |partners| per query, averaged over queries. A query with
  more than k partners cannot reach 1 (median 21 partners for both relations together), so the
  numbers are comparable across inputs, not against 1.

The relations never enter training: pairs for tuning come from training interactions only
(`--write-train-log`). Valid and test queries are mostly the same items (an item usually occurs in
both parts), so valid numbers guide choices but are not an independent check; the overlap is
reported. Inputs: an `mllmrec` store directory (ids = ASINs) or an `.npy` whose row i is MMRec
itemID i (mapped through `mmrec/i_id_mapping.csv`). Floors: random Gaussian vectors and popularity.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import common  # `python eval/office_relations.py` puts eval/ on sys.path
import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon-office"
RELATIONS = ("both", "also_bought", "also_viewed")
PARTS = {"valid": 1, "test": 2}  # x_label of office.inter
KS = (10, 50)


@dataclass(frozen=True)
class Office:
    """The catalogue (ASINs in items.jsonl order), the MMRec split read back to ASINs and the
    relations restricted to catalogue items."""

    ids: list[str]
    item_of: dict[int, str]  # MMRec itemID -> ASIN
    split: list[tuple[str, str, int, int]]  # (user, ASIN, timestamp, x_label), office.inter order
    partners: dict[str, dict[str, set[str]]]  # relation -> query ASIN -> partner ASINs


@dataclass(frozen=True)
class Protocol:
    """One (part, relation) query set: query rows and their partners' rows in catalogue order."""

    queries: np.ndarray  # [q] int64
    truth: list[np.ndarray]  # q arrays of partner rows


def read_office(data: Path) -> Office:
    with open(data / "items.jsonl", encoding="utf-8") as f:
        ids = [str(json.loads(line)["id"]) for line in f if line.strip()]
    in_cat = set(ids)
    mm = data / "mmrec"
    with open(mm / "i_id_mapping.csv", encoding="utf-8") as f:
        item_of = {int(r["itemID"]): r["orig_item_id"] for r in csv.DictReader(f)}
    with open(mm / "u_id_mapping.csv", encoding="utf-8") as f:
        user_of = {int(r["userID"]): r["orig_user_id"] for r in csv.DictReader(f)}
    with open(mm / "office.inter", encoding="utf-8") as f:
        split = [
            (user_of[int(r["userID"])], item_of[int(r["itemID"])], int(r["timestamp"]), int(r["x_label"]))
            for r in csv.DictReader(f, delimiter="\t")
        ]
    partners: dict[str, dict[str, set[str]]] = {r: {} for r in RELATIONS}
    with open(data / "relations.csv", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            a, b = r["item_id"], r["other_item_id"]
            if a in in_cat and b in in_cat and a != b:
                for rel in (r["relation"], "both"):
                    partners.setdefault(rel, {}).setdefault(a, set()).add(b)
    return Office(ids, item_of, split, partners)


def write_train_log(office: Office, path: Path) -> int:
    """The training part (x_label 0) as a `mllmrec pairs` log: user_id, item_id (ASIN), timestamp."""
    rows = [(u, i, t) for u, i, t, label in office.split if label == 0]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "timestamp"])
        w.writerows(rows)
    return len(rows)


def protocols(office: Office) -> dict[str, dict[str, Protocol]]:
    """{part: {relation: Protocol}}; queries in catalogue order."""
    row = {i: n for n, i in enumerate(office.ids)}
    out: dict[str, dict[str, Protocol]] = {}
    for part, label in PARTS.items():
        seen = {i for _, i, _, x in office.split if x == label}
        out[part] = {}
        for rel in RELATIONS:
            qs = [q for q in office.ids if q in seen and office.partners[rel].get(q)]
            truth = [np.array(sorted(row[p] for p in office.partners[rel][q]), np.int64) for q in qs]
            out[part][rel] = Protocol(np.array([row[q] for q in qs], np.int64), truth)
    return out


def recall_at_k(scores: np.ndarray, proto: Protocol, ks: tuple[int, ...]) -> dict[str, float]:
    """Mean over queries of |partners in top k| / |partners|; `scores` [q, n_items] holds each
    query's score of every catalogue item. The query itself is never a candidate."""
    q = len(proto.queries)
    if q == 0:
        return {f"recall@{k}": float("nan") for k in ks}
    s = np.array(scores, np.float64)  # a copy: the query's own column is overwritten below
    s[np.arange(q), proto.queries] = -np.inf
    top = np.argsort(-s, axis=1, kind="stable")[:, : max(ks)]  # [q, K]; stable: ties by row
    is_partner = np.zeros(s.shape, bool)
    for r, t in enumerate(proto.truth):
        is_partner[r, t] = True
    hits = np.take_along_axis(is_partner, top, axis=1)  # [q, K]
    sizes = np.array([len(t) for t in proto.truth], np.float64)
    return {f"recall@{k}": float((hits[:, :k].sum(1) / sizes).mean()) for k in ks}


def cosine_scores(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """[q, n] cosine similarity of the query rows to every row (zero rows score 0 everywhere)."""
    v = np.asarray(vectors, np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return v[queries] @ v.T


def popularity_counts(office: Office) -> np.ndarray:
    """[n_items] training interactions (x_label 0) per catalogue item."""
    c = Counter(i for _, i, _, x in office.split if x == 0)
    return np.array([c.get(i, 0) for i in office.ids], np.float64)


def load_input(path: Path, office: Office, channel: str) -> tuple[np.ndarray, dict[str, Any]]:
    """(vectors [n_items, d] in catalogue order, facts about the source). Catalogue items the source
    lacks get zero vectors (cosine 0 to everything) and are counted as `missing`."""
    if path.suffix == ".npy":
        raw = np.load(path)
        if raw.shape[0] != len(office.item_of):
            raise SystemExit(
                f"{path}: {raw.shape[0]} rows, but i_id_mapping.csv has {len(office.item_of)} items"
            )
        src_ids = [office.item_of[n] for n in range(raw.shape[0])]
        facts: dict[str, Any] = {"kind": "npy (row i = MMRec itemID i)", "sha256": common.file_sha256(path)}
    else:
        from mllmrec.store import EmbeddingStore

        store = EmbeddingStore.open(path)
        if channel not in store.channels and len(store.channels) == 1:
            channel = store.channels[0]  # e.g. an imported store with one channel of another name
        raw, src_ids = np.asarray(store.vectors(channel)), store.ids
        man = store.manifest
        facts = {
            "kind": f"mllmrec store, channel {channel}",
            # an embed store names its backbone (and a train run, if any); an imported one its source
            "model": (man.get("backbone") or {}).get("backbone") or (man.get("source") or {}).get("path"),
            "adapter": man.get("adapter"),
            "embed_seconds": man.get("seconds_last_run"),
        }
    pos = {i: n for n, i in enumerate(src_ids)}
    out = np.zeros((len(office.ids), raw.shape[1]), np.float32)
    have = [(n, pos[i]) for n, i in enumerate(office.ids) if i in pos]
    if not have:
        raise SystemExit(f"{path}: none of its ids is a catalogue item")
    at, src = (np.array(x, np.int64) for x in zip(*have, strict=True))
    out[at] = raw[src]
    return out, facts | {"path": str(path), "dim": int(raw.shape[1]), "missing": len(office.ids) - len(have)}


def score_all(scores_for: Any, protos: dict[str, dict[str, Protocol]], ks: tuple[int, ...]) -> dict[str, Any]:
    """{part: {relation: {recall@k: value}}}; `scores_for(queries) -> [q, n_items]`."""
    return {
        part: {rel: recall_at_k(scores_for(p.queries), p, ks) for rel, p in by_rel.items()}
        for part, by_rel in protos.items()
    }


def markdown(res: dict[str, Any]) -> str:
    ks = res["ks"]
    lines = [
        "# Amazon Office: item-to-item Recall@k against also_bought / also_viewed",
        "",
        f"{res['date']}, {res['machine']}, {res['seconds']} s. Command:",
        "",
        f"    {res['command']}",
        "",
        "Queries: catalogue items occurring in the part (office.inter x_label) with at least one partner "
        "of the relation; candidates: every catalogue item except the query; cosine similarity; "
        "Recall@k = share of a query's partners in its top k, averaged over queries. "
        f"{res['protocol']['valid_test_overlap']} items are queries (both relations) in valid and in test.",
        "",
    ]
    for part in PARTS:
        p = res["protocol"][part]
        cols = [f"{rel} R@{k}" for rel in RELATIONS for k in ks]
        lines += [
            f"## {part} queries ({', '.join(f'{rel} {p[rel]}' for rel in RELATIONS)}; "
            f"{res['protocol']['candidates'] - 1} candidates each)",
            "",
            "| input | " + " | ".join(cols) + " |",
            "|---|" + "---|" * len(cols),
        ]
        for label, row in res["results"].items():
            vals = [f"{row[part][rel][f'recall@{k}']:.4f}" for rel in RELATIONS for k in ks]
            lines.append(f"| {label} | " + " | ".join(vals) + " |")
        lines.append("")
    lines += ["## Inputs", ""]
    lines += [f"- {label}: `{json.dumps(f)}`" for label, f in res["inputs"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA, help="the amazon-office folder")
    ap.add_argument("--input", nargs="*", default=[], metavar="LABEL=PATH", help="store dir or .npy")
    ap.add_argument("--channel", default="mm", help="store channel to read")
    ap.add_argument("--ks", type=int, nargs="+", default=list(KS))
    ap.add_argument("--random-dim", type=int, default=384, help="dim of the random-vector floor")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random-vector floor")
    ap.add_argument("--no-floors", action="store_true", help="leave out the random and popularity rows")
    ap.add_argument("--out", type=Path, default=None, help="folder for results.json and README.md")
    ap.add_argument(
        "--write-train-log", type=Path, default=None, help="write the x_label 0 part as a CSV log and stop"
    )
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    office = read_office(args.data)
    if args.write_train_log:
        n = write_train_log(office, args.write_train_log)
        print(f"wrote {n} training interactions to {args.write_train_log}")
        return 0
    ks = tuple(sorted(args.ks))
    protos = protocols(office)
    results: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    for spec in args.input:
        label, sep, path = spec.partition("=")
        if not sep:
            raise SystemExit(f"--input wants LABEL=PATH, got {spec!r}")
        vecs, inputs[label] = load_input(Path(path), office, args.channel)
        results[label] = score_all(lambda q, v=vecs: cosine_scores(v, q), protos, ks)
    if not args.no_floors:
        label = f"random vectors (floor, d={args.random_dim}, seed {args.seed})"
        rnd = np.random.default_rng(args.seed).standard_normal((len(office.ids), args.random_dim))
        results[label] = score_all(lambda q: cosine_scores(rnd, q), protos, ks)
        inputs[label] = {"kind": "random"}
        pop = popularity_counts(office)
        label = "popularity (floor, training interactions)"
        results[label] = score_all(lambda q: np.broadcast_to(pop, (len(q), len(pop))), protos, ks)
        inputs[label] = {"kind": "popularity"}
    both = {p: set(protos[p]["both"].queries.tolist()) for p in PARTS}
    res = {
        **common.header("no GPU", None if argv is None else ["eval/office_relations.py", *argv]),
        "seconds": round(time.perf_counter() - t0, 1),
        "ks": list(ks),
        "protocol": {
            part: {rel: len(p.queries) for rel, p in by_rel.items()} for part, by_rel in protos.items()
        }
        | {
            "candidates": len(office.ids),
            "valid_test_overlap": len(both["valid"] & both["test"]),
            "mean_partners": {
                rel: round(float(np.mean([len(s) for s in office.partners[rel].values()])), 2)
                for rel in RELATIONS
            },
        },
        "inputs": inputs,
        "results": results,
    }
    md = markdown(res)
    print(md)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
        (args.out / "README.md").write_text(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
