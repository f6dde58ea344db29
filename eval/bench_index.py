"""`bench_serve.py --indexes ...`: exact vs approximate serving indexes (mllmrec.index.mips) on one
synthetic student (see bench_serve's docstring). Kept apart so bench_serve stays readable."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from common import header, peak_rss_mb


def synthetic_student(
    n_items: int, n_users: int, d: int, clusters: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Items and users from `clusters` Gaussian centres (users near the same centres), item norms
    spread over 0.5..1.5 (popularity-like); clusters=0: isotropic N(0, 1)."""
    rng = np.random.default_rng(seed)
    if clusters == 0:
        return (
            rng.normal(size=(n_items, d)).astype(np.float32),
            rng.normal(size=(n_users, d)).astype(np.float32),
        )
    centres = rng.normal(size=(clusters, d)).astype(np.float32)
    items = centres[rng.integers(0, clusters, n_items)] + 0.5 * rng.normal(size=(n_items, d)).astype(
        np.float32
    )
    items *= rng.uniform(0.5, 1.5, (n_items, 1)).astype(np.float32)
    users = centres[rng.integers(0, clusters, n_users)] + 0.5 * rng.normal(size=(n_users, d)).astype(
        np.float32
    )
    return items.astype(np.float32), users.astype(np.float32)


def _index_bytes(index) -> int:
    import faiss

    if index.kind == "exact":
        return int(index.ntotal * index.items.shape[1] * 4)
    return int(faiss.serialize_index(index.index).size)


def compare_indexes(args: argparse.Namespace) -> dict:
    import faiss
    from bench_serve import LOAD_START, latency_stats

    from mllmrec.index.mips import IndexParams, build, exact_top, tune

    faiss.omp_set_num_threads(args.threads)
    t0 = time.perf_counter()
    items, users = synthetic_student(args.items, args.users, args.dim, args.clusters, args.seed)
    generate_s = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed + 1)
    sample = np.sort(rng.choice(args.users, size=min(args.users, args.recall_users), replace=False))
    t = time.perf_counter()
    truth = exact_top(items, users[sample], args.k)
    truth_s = time.perf_counter() - t
    batches = [np.arange(s, min(s + args.batch, args.users)) for s in range(0, args.users, args.batch)]
    out: dict[str, dict] = {}
    for kind in args.indexes.split(","):
        rss0 = peak_rss_mb()
        t = time.perf_counter()
        index = build(items, IndexParams(kind), use_gpu=False)
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        rec = tune(index, users[sample], truth, args.k, None if kind == "exact" else args.target_recall)
        tune_s = time.perf_counter() - t
        times = []
        for b in batches:
            t = time.perf_counter()
            index.search(users[b], args.k)
            times.append(time.perf_counter() - t)
        out[kind] = {
            **latency_stats(times, args.users),
            "build_s": round(build_s, 2),
            "tune_s": round(tune_s, 2),
            f"recall@{args.k}": rec["recall"],
            "knob": {rec["knob"]: rec.get(rec["knob"])} if rec["knob"] else None,
            "met_target": rec.get("met_target", True),
            "trials": rec.get("trials"),
            "index_bytes": _index_bytes(index),
            "peak_rss_mb_after": round(peak_rss_mb(), 1),
            "peak_rss_growth_mb": round(peak_rss_mb() - rss0, 1),
        }
        print(
            f"{kind:6s} build {build_s:7.1f} s  recall@{args.k} {rec['recall']:.3f}  "
            f"{out[kind]['users_per_s']:8.0f} users/s  p50 {out[kind]['p50_ms']} ms  p99 {out[kind]['p99_ms']} ms  "
            f"{out[kind]['index_bytes'] / 2**20:.0f} MiB",
            flush=True,
        )
        del index
    base = out.get("exact")
    ratios = {
        k: {
            "qps_over_exact": round(v["users_per_s"] / base["users_per_s"], 2),
            "p50_exact_over_this": round(base["p50_ms"] / v["p50_ms"], 2),
            "bytes_over_exact": round(v["index_bytes"] / base["index_bytes"], 2),
        }
        for k, v in out.items()
        if base and k != "exact"
    }
    for k, r in ratios.items():
        print(
            f"{k}: {r['qps_over_exact']}x exact's users/s at recall@{args.k} {out[k][f'recall@{args.k}']}, "
            f"{r['bytes_over_exact']}x its memory"
        )
    result = {
        **header("no GPU"),
        "settings": vars(args),
        "generate_s": round(generate_s, 2),
        "exact_truth_s": round(truth_s, 2),
        "indexes": out,
        "ratios": ratios,
        "versions": {"faiss": faiss.__version__, "numpy": np.__version__},
        "load_average_start_end": [LOAD_START, list(os.getloadavg())],
        "notes": f"synthetic clustered student (clusters={args.clusters}); recall@{args.k} on "
        f"{len(sample)} users against exact search; knobs tuned to --target-recall on those users; "
        "users/s over all users in batches of --batch. index_bytes: serialised faiss index "
        "(exact: the float32 item table). Approximate kinds also read the item table for re-scoring.",
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result
