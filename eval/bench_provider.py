"""FeatureProvider on a store far larger than the lookups: 10M x 256 fp16 (5.1 GB), 10k random ids.

Writes the store streaming (random vectors in blocks, ids in parquet row groups; never the whole
thing in memory), then measures in fresh processes, each reporting RSS (resident memory, file
pages included) after every step and its peak:

    provider   FeatureProvider.open(store).matrix(ids): Arrow id scan + positioned reads of the rows
    naive      EmbeddingStore.index_of per id (a Python dict over all ids) + fancy indexing into the
               np.memmap, i.e. what a user would write with the store API alone

The rows the provider returns are checked against rows read independently (np.fromfile at each
row's byte offset). The page cache is warm (the store was just written), so times are
warm-cache times. The store is deleted afterwards unless --keep.

    python eval/bench_provider.py                          # 10M x 256, ~2-4 min here, 5.1 GB of disk
    python eval/bench_provider.py --items 1000000 --out /tmp/bench.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import header


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB, from /proc/self/status."""
    vals = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                vals[line.split(":")[0]] = int(line.split()[1]) / 1024
    return vals["VmRSS"], vals["VmHWM"]


def item_id(k: int) -> str:
    return f"item{k:09d}"


def write_store(out: Path, n: int, d: int, block: int = 1 << 18) -> float:
    """A complete safetensors store written in blocks; returns seconds."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mllmrec import artifacts
    from mllmrec import store as st

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    header = json.dumps({"mm": {"dtype": "F16", "shape": [n, d], "data_offsets": [0, n * d * 2]}}).encode()
    header += b" " * (-len(header) % 8)  # safetensors pads the header to 8 bytes
    rng = np.random.default_rng(0)
    schema = pa.schema([("id", pa.string()), ("label", pa.string())])
    with open(out / st.VECTOR_FILES["safetensors"], "wb") as f, pq.ParquetWriter(out / st.ITEMS, schema) as w:
        f.write(len(header).to_bytes(8, "little") + header)
        for start in range(0, n, block):
            m = min(block, n - start)
            f.write(rng.standard_normal((m, d), dtype=np.float32).astype(np.float16).tobytes())
            ids = pa.array([item_id(k) for k in range(start, start + m)], pa.string())
            w.write_table(pa.table({"id": ids, "label": ids}, schema=schema))
    artifacts.write_manifest(
        out,
        {
            "stage": "embed",
            "status": "complete",
            "channels": ["mm"],
            "dims": {"mm": d},
            "dtype": "float16",
            "config": {"format": "safetensors"},
            "completed": "bench",
            "counts": {"embedded": n},
            "identity": {"bench": True},
        },
    )
    return time.perf_counter() - t0


def measure(mode: str, store: Path, n_lookup: int, seed: int) -> dict:
    """Run in a fresh process: RSS after each step of one lookup of n_lookup random ids."""
    import pyarrow.compute  # noqa: F401  (imports first: code is not counted as lookup memory)
    import pyarrow.parquet  # noqa: F401

    from mllmrec.features.provider import FeatureProvider
    from mllmrec.store import EmbeddingStore

    n = EmbeddingStore.open(store).manifest["counts"]["embedded"]
    rows = np.random.default_rng(seed).integers(0, n, n_lookup)
    ids = [item_id(int(k)) for k in rows]
    steps: dict[str, float] = {"imports": rss_mb()[0]}
    t0 = time.perf_counter()
    if mode == "provider":
        fp = FeatureProvider.open(store)
        fp.rows(ids[:1])  # reads the id column (Arrow), the one part that grows with the store
        steps["after reading the id column"] = rss_mb()[0]
        got = fp.matrix(ids, dtype=None)
        first = time.perf_counter() - t0
        steps["after first lookup"] = rss_mb()[0]
        t1 = time.perf_counter()
        fp.matrix(ids, dtype=None)
        again = time.perf_counter() - t1
    else:
        s = EmbeddingStore.open(store)
        vec = s.vectors("mm")
        s.index_of(ids[0])  # builds the store's id list and {id: row} dict
        steps["after building the id dict"] = rss_mb()[0]
        got = np.asarray(vec[[s.index_of(i) for i in ids]])
        first = time.perf_counter() - t0
        steps["after first lookup"] = rss_mb()[0]
        t1 = time.perf_counter()
        np.asarray(vec[[s.index_of(i) for i in ids]])
        again = time.perf_counter() - t1
    steps["after second lookup"] = rss_mb()[0]
    # independent check: each asked row read straight from its byte offset
    path = store / "vectors.safetensors"
    with open(path, "rb") as f:
        hlen = int.from_bytes(f.read(8), "little")
    d = got.shape[1]
    check = np.stack(
        [np.fromfile(path, dtype=np.float16, count=d, offset=8 + hlen + int(r) * d * 2) for r in rows[:200]]
    )
    return {
        "mode": mode,
        "rss_mb": {k: round(v, 1) for k, v in steps.items()},
        "peak_rss_mb": round(rss_mb()[1], 1),
        "rss_growth_mb": round(steps["after second lookup"] - steps["imports"], 1),
        "first_lookup_s": round(first, 3),
        "second_lookup_s": round(again, 3),
        "rows_match_independent_read": bool(np.array_equal(got[:200], check)),
        "shape": list(got.shape),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=10_000_000, help="Store size (rows).")
    ap.add_argument("--dim", type=int, default=256, help="Vector dimension (fp16).")
    ap.add_argument("--lookups", type=int, default=10_000, help="Random ids looked up.")
    ap.add_argument("--work", default="eval/work/bench_provider", help="Where the store is written.")
    ap.add_argument("--out", default="eval/results/bench_provider_cpu.json", help="Results JSON.")
    ap.add_argument("--keep", action="store_true", help="Keep the store afterwards.")
    ap.add_argument("--measure", nargs=2, metavar=("MODE", "STORE"), help=argparse.SUPPRESS)  # child process
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], Path(args.measure[1]), args.lookups, seed=1)))
        return 0

    store = Path(args.work) / f"store-{args.items}x{args.dim}"
    if store.exists():
        shutil.rmtree(store)
    print(f"writing a {args.items:,} x {args.dim} fp16 store to {store} (streaming) ...", flush=True)
    write_s = write_store(store, args.items, args.dim)
    size = (store / "vectors.safetensors").stat().st_size
    print(f"  {size / 1e9:.2f} GB of vectors in {write_s:.0f} s", flush=True)
    runs = {}
    try:
        for mode in ("provider", "naive"):
            cmd = [sys.executable, __file__, "--measure", mode, str(store), "--lookups", str(args.lookups)]
            r = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs[mode] = json.loads(r.stdout.strip().splitlines()[-1])
            m = runs[mode]
            print(f"{mode:8s} RSS by step {m['rss_mb']}", flush=True)
            print(
                f"{mode:8s} RSS growth {m['rss_growth_mb']:7.1f} MB (peak {m['peak_rss_mb']:.0f} MB); "
                f"first lookup {m['first_lookup_s']:.2f} s, second {m['second_lookup_s']:.3f} s; "
                f"rows match: {m['rows_match_independent_read']}",
                flush=True,
            )
    finally:
        if not args.keep:
            shutil.rmtree(store)
    p, nv = runs["provider"], runs["naive"]
    ratios = {
        "vectors_bytes_over_provider_rss_growth": round(size / 2**20 / max(p["rss_growth_mb"], 1e-9), 1),
        "naive_over_provider_rss_growth": round(nv["rss_growth_mb"] / max(p["rss_growth_mb"], 1e-9), 1),
        "naive_over_provider_first_lookup_time": round(nv["first_lookup_s"] / p["first_lookup_s"], 2),
    }
    print(
        f"ratios: vectors file / provider RSS growth {ratios['vectors_bytes_over_provider_rss_growth']}x; "
        f"naive / provider RSS growth {ratios['naive_over_provider_rss_growth']}x; "
        f"naive / provider first-lookup time {ratios['naive_over_provider_first_lookup_time']}x"
    )
    result = {
        **header(),
        "store": {
            "items": args.items,
            "dim": args.dim,
            "dtype": "float16",
            "vectors_bytes": size,
            "write_seconds": round(write_s, 1),
        },
        "lookups": args.lookups,
        "page_cache": "warm (store just written)",
        "runs": runs,
        "ratios": ratios,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
