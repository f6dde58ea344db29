"""Serving at catalogue scale, measured through the real entry points on synthetic data (speed and
memory, not quality):

batch   `mllmrec recommend RUN --all-users --out DIR` for --users users over --items items (the
        index is built and saved by a first `mllmrec recommend RUN --user u0`, timed apart). Reports
        users/s of the batch run, its peak RSS and the parts written.

    python eval/bench_scale.py batch --users 1000000 --items 1000000 --index ivf \\
        --target-recall 0.95 --out eval/results/bench_batch_1m_users_cpu.json

new-items  a run with --table-items rows and a store of --new-items items that have no row (a
        10M-item catalogue): `Recommender.load` finds them through the store's sorted id index and
        maps them in batches (mllmrec.ids, DistillRun.new_item_vectors_at), then serves a few users.
        Reports load time, peak RSS, the id index's bytes, and, for comparison, the peak RSS of the
        dict of every id that serving used to build.

    python eval/bench_scale.py new-items --new-items 10000000 --out eval/results/bench_new_items_10m_cpu.json

Each measured step runs in a fresh process (peak RSS is its own VmHWM); the setup runs in another.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import header

EVAL = Path(__file__).resolve().parent


def child(code: str, *args: str) -> dict:
    """Run `code` in a fresh Python (cwd eval/); it prints one JSON line last. Adds its peak RSS."""
    wrapped = (
        "import json, resource, sys\n"
        f"{code}\n"
        "print(json.dumps({**result, 'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF)"
        ".ru_maxrss / 1024, 1)}))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": f"{EVAL.parent}:{EVAL}"}
    t = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-c", wrapped, *args], cwd=EVAL, env=env, capture_output=True, text=True
    )
    if p.returncode != 0:
        raise SystemExit(f"step failed (rc {p.returncode}):\n{p.stderr[-3000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    return {**out, "wall_s": round(time.perf_counter() - t, 1)}


CLI = """
from mllmrec.cli import main
t = __import__('time').perf_counter()
rc = main(sys.argv[1:])
result = {'rc': rc, 'seconds': round(__import__('time').perf_counter() - t, 1)}
"""


def batch(args: argparse.Namespace) -> dict:
    run, out = Path(args.work) / "run", Path(args.work) / "all-users"
    setup = child(
        "from load_serve import write_synthetic_run\n"
        f"write_synthetic_run(__import__('pathlib').Path({str(run)!r}), {args.items}, {args.users}, "
        f"{args.dim}, {args.seed})\nresult = {{}}"
    )
    common = ["--index", args.index, "--no-new-items"]
    if out.exists():
        __import__("shutil").rmtree(out)
    tune = ["--target-recall", str(args.target_recall)] if args.target_recall else []
    build = child(CLI, "recommend", str(run), "--user", "u0", *common, *tune, "--rebuild-index")
    scored = child(
        CLI, "recommend", str(run), "--all-users", "--out", str(out), "-k", str(args.k), *common,
        "--chunk-users", str(args.chunk_users),
    )  # fmt: skip
    import pyarrow.parquet as pq

    parts = sorted((out / "parts").glob("*.parquet"))
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
    manifest = json.loads((out / "manifest.json").read_text())
    return {
        "setup_s": setup["wall_s"],
        "index_build_and_first_user": build,
        "batch": {
            **scored,
            "users_per_s": round(args.users / scored["seconds"], 1),
            "parts": len(parts),
            "rows": rows,
            "index": manifest.get("index"),
        },
    }


def new_items(args: argparse.Namespace) -> dict:
    work = Path(args.work)
    setup = child(
        "from bench_scale import write_new_item_run\n"
        f"write_new_item_run(__import__('pathlib').Path({str(work)!r}), {args.table_items}, "
        f"{args.new_items}, {args.users}, {args.dim}, {args.feature_dim}, {args.seed})\nresult = {{}}"
    )
    store, run = work / "store", work / "run"
    for f in store.glob("items.idindex*"):
        f.unlink()  # the first load builds the store's id index; a second load memory-maps it
    load = (
        "import time\nfrom mllmrec.distill.recommend import Recommender\n"
        "t = time.perf_counter()\n"
        f"rec = Recommender.load({str(run)!r}, index='exact')\n"
        "load_s = time.perf_counter() - t\n"
        "t = time.perf_counter()\n"
        "recs = rec.recommend([f'u{i}' for i in range(100)], k=20)\n"
        "ix = rec.store.id_index()\n"
        "result = {'load_s': round(load_s, 1), 'recommend_100_users_s': round(time.perf_counter() - t, 2), "
        "'items_served': len(rec.item_ids), 'via_mapping_in_top20': sum(r.via != 'table' for x in recs for r in x), "
        "'item_vectors_mb': round(rec.items.nbytes / 2**20, 1), 'id_index_mb': round(ix.nbytes / 2**20, 1), "
        "'id_index_memory_mapped': isinstance(ix.keys, __import__('numpy').memmap)}"
    )
    first, second = child(load), child(load)
    old_dict = child(
        "from mllmrec.store import EmbeddingStore\n"
        f"st = EmbeddingStore.open({str(store)!r})\n"
        "pos = {i: n for n, i in enumerate(st.ids)}\nresult = {'ids': len(pos)}"
    )
    baseline = child("import numpy, pyarrow, mllmrec.distill.recommend\nresult = {}")
    return {
        "setup_s": setup["wall_s"],
        "first_load": first,
        "second_load": second,
        "dict_of_all_ids_peak_rss_mb": old_dict["peak_rss_mb"],
        "python_with_imports_peak_rss_mb": baseline["peak_rss_mb"],
    }


def write_new_item_run(
    work: Path, n_table: int, n_new: int, n_users: int, d: int, feature_dim: int, seed: int
) -> None:
    """A store of n_table + n_new items (channel mm, random vectors) and a distill run whose tables
    hold the first n_table of them, with a new-item mapping fitted on those (random targets)."""
    import torch

    from mllmrec.artifacts import WriterLock, prepare_dir
    from mllmrec.distill.artifact import store_compat, store_fingerprint, write_run
    from mllmrec.distill.mapping import NewItemMapping
    from mllmrec.store import EmbeddingStore
    from mllmrec.testing.stores import write_array_store

    rng = np.random.default_rng(seed)
    n = n_table + n_new
    ids = [f"B{j:09d}" for j in rng.permutation(n)]  # ASIN-like, not in sorted order
    feats = np.empty((n, feature_dim), np.float32)
    for s in range(0, n, 1_000_000):
        feats[s : s + 1_000_000] = rng.standard_normal((min(1_000_000, n - s), feature_dim), np.float32)
    store = EmbeddingStore.open(write_array_store(work / "store", ids, {"mm": feats}))
    table = rng.normal(0, 0.1, (n_table, d)).astype(np.float32)
    mapping = NewItemMapping.fit({"mm": feats[:n_table]}, torch.from_numpy(table))
    del feats
    users = rng.normal(0, 0.1, (n_users, d)).astype(np.float32)
    seen_users = np.repeat(np.arange(n_users), 5)
    manifest = {
        "dims": {"student": d},
        "counts": {"users": n_users, "items": n_table},
        "store": {
            "path": str(store.path.resolve()),
            "manifest_sha256": store_fingerprint(store),
            "compat": store_compat(store),
        },
        "new_items": {"channels": ["mm"], "l2": mapping.l2},
    }
    out = work / "run"
    with WriterLock(out, stage="distill"):
        prepare_dir(out, stage="distill", mode="overwrite")
        write_run(
            out,
            manifest,
            user_ids=[f"u{i}" for i in range(n_users)],
            item_ids=ids[:n_table],
            user_table=users,
            item_table=table,
            mapping_tensors=mapping.tensors(),
            popularity=rng.integers(0, 100, n_table),
            seen_users=seen_users,
            seen_items=[ids[j] for j in rng.integers(0, n_table, seen_users.size)],
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    b = sub.add_parser("batch", help="`mllmrec recommend --all-users` over many users")
    b.add_argument("--users", type=int, default=1_000_000)
    b.add_argument("--items", type=int, default=1_000_000)
    b.add_argument("--index", default="ivf", help="Index kind (exact, hnsw, ivf, ivfpq, auto).")
    b.add_argument("--chunk-users", type=int, default=10_000)
    b.add_argument(
        "--target-recall", type=float, default=0.95, help="Tune the index's knob to this recall@100 (0: no)."
    )
    b.add_argument("--k", type=int, default=20)
    n = sub.add_parser("new-items", help="Recommender.load with millions of new items")
    n.add_argument("--new-items", type=int, default=10_000_000)
    n.add_argument("--table-items", type=int, default=10_000)
    n.add_argument("--users", type=int, default=10_000)
    n.add_argument("--feature-dim", type=int, default=16, help="The store's (MLLM) vector dimension.")
    for p in (b, n):
        p.add_argument("--dim", type=int, default=64, help="Student dimension.")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--work", default="/tmp/mllmrec-bench-scale", help="Where synthetic data is written.")
        p.add_argument("--out", default=None, help="JSON results file.")
    args = ap.parse_args()
    t = time.perf_counter()
    res = batch(args) if args.mode == "batch" else new_items(args)
    result = {
        **header("no GPU"),
        "settings": vars(args),
        **res,
        "total_s": round(time.perf_counter() - t, 1),
        "load_average_end": list(os.getloadavg()),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "settings"}, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
