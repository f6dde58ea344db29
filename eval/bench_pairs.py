"""Benchmark `mine_pairs` on synthetic interactions (target: 10M interactions under 60 s, 2 CPU cores).

Synthetic log: users uniform, item popularity Zipf (p_k ~ k^-a over the catalogue), each user's
events fall into a few 30-minute sessions spread over 30 days. Times `mine_pairs` in window mode
and in no-timestamp mode in one process; peak RSS (ru_maxrss) is cumulative, so it is recorded
after generation and after each mode.

    python eval/bench_pairs.py --out eval/results/bench_pairs_cpu.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from common import header, peak_rss_mb

from mllmrec.catalog.config import PairsConfig
from mllmrec.catalog.interactions import Interactions
from mllmrec.catalog.pairs import mine_pairs


def synthetic(n: int, n_users: int, n_items: int, zipf_a: float, sessions: int, seed: int) -> Interactions:
    """n interactions; ids as integers (Interactions turns them into strings)."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n)
    cdf = np.cumsum(np.arange(1, n_items + 1, dtype=np.float64) ** -zipf_a)
    items = np.minimum(np.searchsorted(cdf, rng.uniform(0, cdf[-1], n)), n_items - 1)
    starts = rng.uniform(0, 30 * 86400, (n_users, sessions))  # session starts per user
    times = starts[users, rng.integers(0, sessions, n)] + rng.uniform(0, 1800, n)
    return Interactions(users, items, np.round(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON results file.")
    ap.add_argument("--n", type=int, default=10_000_000, help="Interactions.")
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--zipf-a", type=float, default=1.0)
    ap.add_argument("--sessions", type=int, default=5, help="Sessions per user.")
    ap.add_argument("--window-seconds", type=float, default=3600)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t0 = time.perf_counter()
    inter = synthetic(args.n, args.users, args.items, args.zipf_a, args.sessions, args.seed)
    result = {
        **header(),
        "numpy": np.__version__,
        "data": {k: getattr(args, k) for k in ("n", "users", "items", "zipf_a", "sessions", "seed")},
        "generate_seconds": round(time.perf_counter() - t0, 2),
        "peak_rss_mb_after_generate": round(peak_rss_mb()),
        "modes": {},
    }
    print(f"generated {args.n} interactions in {result['generate_seconds']} s")
    for mode, cfg in (
        ("window", PairsConfig(interactions="-", out="-", window_seconds=args.window_seconds)),
        ("none", PairsConfig(interactions="-", out="-", order="none")),
    ):
        t = time.perf_counter()
        pairs, stats = mine_pairs(inter, cfg)
        secs = time.perf_counter() - t
        result["modes"][mode] = {
            "seconds": round(secs, 2),
            "peak_rss_mb": round(peak_rss_mb()),
            "pairs": len(pairs),
            "candidates": stats["candidates"],
            "reachable_beyond_max_lag": stats["reachable_beyond_max_lag"],
            "config": {
                "window_seconds": cfg.window_seconds,
                "order": cfg.order,
                "max_lag": cfg.max_lag,
                "top_t": cfg.top_t,
            },
        }
        print(
            f"{mode}: {secs:.1f} s, peak RSS {peak_rss_mb():.0f} MB, {len(pairs)} pairs "
            f"from {stats['candidates']} candidates"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
