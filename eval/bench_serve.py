"""Serving benchmark: a distilled student's top-100 retrieval vs scoring the same users with the teacher.

Synthetic scale: 1M items, 10k users (random vectors and a random interaction graph: this measures
speed and memory, not quality). Both sides rank the same users in the same batches, in one process:

- student: faiss exact inner-product search (IndexFlatIP; GPU faiss when installed and a GPU is
  visible) over the item table [n_items, d], top-100 per user; and, to separate the table size from
  the search library, the same student scored like the teacher (torch matmul + topk);
- teacher: mllmrec.distill.teacher.Teacher over frozen item features (channels mm, visual, text of
  dimension --feature-dim each: a stand-in for MLLM vectors, scaled down from a real 1.5k-3.5k so
  the teacher fits in memory here). Its item representations are computed once (one forward with
  graph propagation; timed separately as "precompute") and each batch is then scored against all
  items, `torch.topk` 100. A teacher recomputed per request would be far slower than this.

Reported: users/s (QPS), p50/p99 latency per batch, the ratio student/teacher, parameter counts, the
bytes each side must hold to serve, and peak RSS. Timings vary with machine load (recorded).

    python eval/bench_serve.py --out eval/results/bench_serve_cpu.json

`--indexes exact,hnsw,ivf,ivfpq` (with `--no-teacher` to skip the teacher) compares the serving
indexes of mllmrec.index.mips on the student: build time, index bytes, recall@k against exact search
on --recall-users users (each approximate knob tuned with --target-recall on those users), then
users/s and p50/p99 per batch over all users, and the ratio to exact. Items are drawn from a mixture
of --clusters Gaussians with unequal norms (a trained student's table is clustered; isotropic noise,
--clusters 0, is the worst case for any approximate index):

    python eval/bench_serve.py --no-teacher --indexes exact,hnsw,ivf,ivfpq --out eval/results/bench_serve_index_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from common import header, peak_rss_mb


def latency_stats(times: list[float], users: int) -> dict[str, float]:
    t = np.asarray(times)
    return {
        "users_per_s": round(users / t.sum(), 1),
        "p50_ms": round(float(np.percentile(t, 50)) * 1e3, 2),
        "p99_ms": round(float(np.percentile(t, 99)) * 1e3, 2),
        "total_s": round(float(t.sum()), 2),
        "batches": len(t),
    }


def matmul_topk_times(
    users: torch.Tensor, items: torch.Tensor, batches: list[np.ndarray], k: int
) -> list[float]:
    """Seconds per batch for exact scoring: top-k of users[batch] @ itemsᵀ (how the teacher serves)."""
    times = []
    with torch.no_grad():
        for b in batches:
            t = time.perf_counter()
            torch.topk(users[torch.from_numpy(b)] @ items.T, k, dim=1)
            times.append(time.perf_counter() - t)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="JSON results file.")
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=64, help="Student dimension.")
    ap.add_argument("--teacher-dim", type=int, default=64, help="Teacher per-channel dimension.")
    ap.add_argument(
        "--feature-dim", type=int, default=128, help="Teacher input feature dimension per channel."
    )
    ap.add_argument(
        "--per-user", type=int, default=20, help="Random training interactions per user (the graph)."
    )
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64, help="Users per request batch (both sides).")
    ap.add_argument("--threads", type=int, default=2, help="torch and faiss threads.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--indexes", default=None, help="Compare serving indexes, e.g. exact,hnsw,ivf,ivfpq.")
    ap.add_argument(
        "--teacher", action=argparse.BooleanOptionalAction, default=True, help="Also run the teacher."
    )
    ap.add_argument(
        "--target-recall", type=float, default=0.95, help="--indexes: tune each knob to this recall@k."
    )
    ap.add_argument("--recall-users", type=int, default=1000, help="--indexes: users recall is measured on.")
    ap.add_argument(
        "--clusters", type=int, default=1000, help="--indexes: item clusters (0: isotropic noise)."
    )
    args = ap.parse_args()
    if args.indexes:
        from bench_index import compare_indexes

        compare_indexes(args)
        return

    import faiss

    from mllmrec.distill.teacher import Teacher
    from mllmrec.index.search import inner_product_index

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    n_u, n_i = args.users, args.items
    rows = np.repeat(np.arange(n_u), args.per_user)
    cols = rng.integers(0, n_i, rows.size)
    train = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(n_u, n_i))
    generate_s = time.perf_counter() - t0
    batches = [np.arange(s, min(s + args.batch, n_u)) for s in range(0, n_u, args.batch)]

    # --- student: tables + faiss ------------------------------------------------------------------
    users_s = rng.normal(0, 0.1, (n_u, args.dim)).astype(np.float32)
    items_s = rng.normal(0, 0.1, (n_i, args.dim)).astype(np.float32)
    t = time.perf_counter()
    index, on_gpu = inner_product_index(items_s)
    student_build = time.perf_counter() - t
    times = []
    for b in batches:
        t = time.perf_counter()
        index.search(users_s[b], args.k)
        times.append(time.perf_counter() - t)
    student = latency_stats(times, n_u)
    student.update(
        build_s=round(student_build, 2),
        gpu_faiss=on_gpu,
        parameters=int(users_s.size + items_s.size),
        serving_bytes=int(users_s.nbytes + items_s.nbytes),  # tables (faiss flat holds a copy of items)
        peak_rss_mb_after=round(peak_rss_mb(), 1),
    )
    del index
    # The same student scored the teacher's way (torch matmul + topk): isolates the table size from the
    # search library.
    times = matmul_topk_times(torch.from_numpy(users_s), torch.from_numpy(items_s), batches, args.k)
    student_torch = latency_stats(times, n_u)

    # --- teacher -------------------------------------------------------------------------------------
    feats = {c: rng.normal(size=(n_i, args.feature_dim)).astype(np.float32) for c in ("mm", "visual", "text")}
    t = time.perf_counter()
    teacher = Teacher(feats, train, dim=args.teacher_dim, n_layers=2, prompt_tokens=16).eval()
    teacher_build = time.perf_counter() - t
    del feats
    t = time.perf_counter()
    with torch.no_grad():
        eu, ei = teacher.final_embeddings()  # [U, C·d], [I, C·d]
    precompute = time.perf_counter() - t
    teacher_stats = latency_stats(matmul_topk_times(eu, ei, batches, args.k), n_u)
    feature_bytes = sum(teacher.features(c).numel() * 4 for c in teacher.channels)
    teacher_stats.update(
        build_s=round(teacher_build, 2),
        precompute_s=round(precompute, 2),
        parameters=int(sum(p.numel() for p in teacher.parameters())),
        serving_bytes=int(
            feature_bytes
            + sum(p.numel() * 4 for p in teacher.parameters())
            + teacher.adjacency._nnz() * 12
            + eu.numel() * 4
            + ei.numel() * 4
        ),
        item_vector_dim=int(ei.shape[1]),
        peak_rss_mb_after=round(peak_rss_mb(), 1),
    )
    ratio = {
        "qps_student_over_teacher": round(student["users_per_s"] / teacher_stats["users_per_s"], 2),
        "qps_student_torch_over_teacher": round(
            student_torch["users_per_s"] / teacher_stats["users_per_s"], 2
        ),
        "p50_teacher_over_student": round(teacher_stats["p50_ms"] / student["p50_ms"], 2),
        "p99_teacher_over_student": round(teacher_stats["p99_ms"] / student["p99_ms"], 2),
        "serving_bytes_teacher_over_student": round(
            teacher_stats["serving_bytes"] / student["serving_bytes"], 2
        ),
        "parameters_student_over_teacher": round(student["parameters"] / teacher_stats["parameters"], 2),
    }
    result = {
        **header("GPU faiss" if on_gpu else "no GPU"),
        "command": "python eval/bench_serve.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out" and v is not None
        )
        + (f" --out {args.out}" if args.out else ""),
        "load_average_start_end": None,
        "settings": vars(args),
        "generate_s": round(generate_s, 2),
        "student": student,
        "student_torch_topk": student_torch,
        "teacher": teacher_stats,
        "ratios": ratio,
        "versions": {"torch": torch.__version__, "faiss": faiss.__version__, "numpy": np.__version__},
        "notes": "random vectors and graph: speed/memory only. Teacher item representations precomputed once "
        "(not per request). GPU faiss is used when importable with a visible GPU; not measured here.",
    }
    print(
        json.dumps(
            {
                "student": student,
                "student_torch_topk": student_torch,
                "teacher": teacher_stats,
                "ratios": ratio,
            },
            indent=2,
        )
    )
    print(
        f"student top-{args.k}: {student['users_per_s']:.0f} users/s (p50 {student['p50_ms']} ms, p99 "
        f"{student['p99_ms']} ms per batch of {args.batch}); teacher: {teacher_stats['users_per_s']:.0f} users/s "
        f"(p50 {teacher_stats['p50_ms']} ms, p99 {teacher_stats['p99_ms']} ms) -> student {ratio['qps_student_over_teacher']}x "
        f"the teacher's QPS (same torch scoring: {ratio['qps_student_torch_over_teacher']}x); serving memory teacher/student {ratio['serving_bytes_teacher_over_student']}x; "
        f"parameters student/teacher {ratio['parameters_student_over_teacher']}x"
    )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        result["load_average_start_end"] = [LOAD_START, list(os.getloadavg())]
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


LOAD_START = list(os.getloadavg())

if __name__ == "__main__":
    main()
