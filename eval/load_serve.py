"""Load test of `mllmrec serve`: a synthetic distill run, the real server in a subprocess, and
--clients concurrent HTTP clients (httpx, asyncio) asking GET /recommend for random users for
--seconds. Reports requests/s, p50/p99 latency, errors (any non-200 or transport error) and the
server's peak resident memory (VmHWM).

    python eval/load_serve.py --items 100000 --users 10000 --clients 32 --seconds 30 \\
        --out eval/results/load_serve_cpu.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import header


def write_synthetic_run(out: Path, n_items: int, n_users: int, d: int, seed: int) -> None:
    """A distill run directory with random tables (no store: served without new items)."""
    from bench_index import synthetic_student

    from mllmrec.artifacts import WriterLock, prepare_dir
    from mllmrec.distill.artifact import write_run

    items, users = synthetic_student(n_items, n_users, d, 1000, seed)
    rng = np.random.default_rng(seed)
    seen_users = np.repeat(np.arange(n_users), 20)
    seen_items = [f"i{j}" for j in rng.integers(0, n_items, seen_users.size)]
    manifest = {
        "dims": {"student": d},
        "counts": {"users": n_users, "items": n_items},
        "store": {"path": None},
        "new_items": {"channels": ["mm"], "l2": 1.0},
    }
    with WriterLock(out, stage="distill"):
        prepare_dir(out, stage="distill", mode="overwrite")
        write_run(
            out,
            manifest,
            user_ids=[f"u{i}" for i in range(n_users)],
            item_ids=[f"i{j}" for j in range(n_items)],
            user_table=users,
            item_table=items,
            mapping_tensors={},
            popularity=rng.integers(0, 100, n_items),
            seen_users=seen_users,
            seen_items=seen_items,
        )


async def hammer(url: str, users: int, clients: int, seconds: float, k: int) -> dict:
    import httpx

    lat: list[float] = []
    errors: dict[str, int] = {}
    stop = time.perf_counter() + seconds

    async def client(c: int) -> None:
        rng = np.random.default_rng(c)
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            while time.perf_counter() < stop:
                t = time.perf_counter()
                try:
                    r = await http.get("/recommend", params={"user": f"u{rng.integers(users)}", "k": k})
                    if r.status_code != 200:
                        errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
                        continue
                except httpx.HTTPError as e:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                    continue
                lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    wall = time.perf_counter() - t0
    a = np.asarray(lat)
    return {
        "requests": len(lat),
        "requests_per_s": round(len(lat) / wall, 1),
        "errors": errors,
        "p50_ms": round(float(np.percentile(a, 50)) * 1e3, 1) if len(a) else None,
        "p99_ms": round(float(np.percentile(a, 99)) * 1e3, 1) if len(a) else None,
        "wall_s": round(wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--index", default="auto")
    ap.add_argument("--target-recall", type=float, default=None, help="Passed to `mllmrec serve`.")
    ap.add_argument("--work", default="eval/data/load_serve_run", help="Where the synthetic run is written.")
    ap.add_argument("--out", default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import httpx

    run = Path(args.work)
    write_synthetic_run(run, args.items, args.users, args.dim, args.seed)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    t = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mllmrec.cli",
            "serve",
            str(run),
            "--port",
            str(port),
            "--index",
            args.index,
            "--no-new-items",
            *(["--target-recall", str(args.target_recall)] if args.target_recall else []),
        ],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit("the server exited")
            try:
                health = httpx.get(url + "/health", timeout=1).json()
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        startup = time.perf_counter() - t
        res = asyncio.run(hammer(url, args.users, args.clients, args.seconds, args.k))
        status = Path(f"/proc/{proc.pid}/status").read_text()
        hwm = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    result = {
        **header("no GPU"),
        "settings": vars(args),
        "health": health,
        "startup_s": round(startup, 1),
        **res,
        "server_peak_rss_mb": round(hwm, 1),
        "load_average_end": list(os.getloadavg()),
        "notes": "server and clients share this machine's cores; one uvicorn worker",
    }
    print(json.dumps({k: v for k, v in result.items() if k not in ("settings",)}, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
