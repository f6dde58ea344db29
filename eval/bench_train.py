"""Benchmark: `mllmrec train` throughput and peak memory, with and without GradCache.

Same model, data, batch (B pairs = 2B items per step) and seed; each mode runs in its own child
process so its peak memory (max RSS on CPU, max allocated on GPU) is its own, and the ratios are
computed within one run. Plain: one forward+backward over all 2B items (activations of the whole
batch alive at once). GradCache: 2B items in chunks of --chunk (activations of one chunk alive).

    python eval/bench_train.py                                  # CPU, small random Qwen2-VL, B=32
    python eval/bench_train.py --batch-pairs 64 --chunk 8 --steps 4
    python eval/bench_train.py --device cuda --batch-pairs 1024 --chunk 64     # on a GPU
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

from common import header, peak_rss_mb

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _model(args: argparse.Namespace, work: Path) -> Path:
    from mllmrec.testing.qwen import cached_tiny_qwen

    return cached_tiny_qwen(
        "qwen2-vl", size=args.size, cache_dir=work / "cache", vocab_size=args.vocab or None
    )


def _child(
    mode: str, args: argparse.Namespace, model: str, items: str, pairs: str, out: str, q: mp.Queue
) -> None:
    import torch

    from mllmrec.train.config import TrainConfig
    from mllmrec.train.trainer import Trainer, load_train_encoder

    torch.set_num_threads(args.threads)
    cfg = TrainConfig(
        pairs=pairs,
        out=out,
        model=model,
        catalog=items,
        batch_pairs=args.batch_pairs,
        chunk_size=args.chunk if mode == "gradcache" else None,
        steps=args.steps + 1,
        grad_checkpointing=args.grad_checkpointing,
        device=args.device,
        progress=False,
        valid_every=0,
        lr=1e-4,
    )
    tr = Trainer(cfg, load_train_encoder(cfg, args.device))
    cuda = args.device.startswith("cuda")
    tr.train_step()  # warm-up (allocator, lazy init), not timed
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    losses = [tr.train_step()["loss"] for _ in range(args.steps)]
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb()
    q.put(
        {
            "mode": mode,
            "seconds": round(dt, 3),
            "pairs_per_s": round(args.steps * args.batch_pairs / dt, 3),
            "peak_mb": round(peak, 1),
            "peak_kind": "cuda max allocated" if cuda else "max RSS",
            "losses": [round(v, 5) for v in losses],
            "trainable_parameters": sum(p.numel() for p in tr.params.values()),
        }
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="small", choices=["tiny", "small"], help="Random Qwen2-VL size.")
    ap.add_argument(
        "--vocab",
        type=int,
        default=0,
        help="Vocabulary size of the random model (0: the offline tokenizer's).",
    )
    ap.add_argument("--items", type=int, default=200, help="Synthetic catalogue size.")
    ap.add_argument("--batch-pairs", type=int, default=32, help="Pairs per step (B).")
    ap.add_argument("--chunk", type=int, default=8, help="GradCache chunk size in items.")
    ap.add_argument("--steps", type=int, default=3, help="Timed steps per mode (after one warm-up step).")
    ap.add_argument(
        "--grad-checkpointing", action="store_true", help="Also checkpoint activations in the LM."
    )
    ap.add_argument("--device", default="cpu", help="cpu or cuda.")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads per child.")
    ap.add_argument("--out", default=None, help="Write the results JSON here.")
    args = ap.parse_args()

    from mllmrec.catalog.config import PairsConfig
    from mllmrec.catalog.pairs import run_pairs
    from mllmrec.datasets.config import SyntheticConfig
    from mllmrec.datasets.synthetic import make_synthetic

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = make_synthetic(SyntheticConfig(out=str(work / "data"), n_items=args.items, n_users=args.items))
        run_pairs(
            PairsConfig(
                interactions=str(data.interactions),
                out=str(work / "pairs"),
                catalog=str(data.items),
                overwrite=True,
            )
        )
        model = _model(args, work)
        ctx = mp.get_context("spawn")
        results = []
        for mode in ("plain", "gradcache"):
            q = ctx.Queue()
            p = ctx.Process(
                target=_child,
                args=(
                    mode,
                    args,
                    str(model),
                    str(data.items),
                    str(work / "pairs"),
                    str(work / f"run-{mode}"),
                    q,
                ),
            )
            p.start()
            res = q.get()
            p.join()
            results.append(res)
            print(
                f"{mode:10s} {res['pairs_per_s']:8.2f} pairs/s  peak {res['peak_mb']:8.1f} MB ({res['peak_kind']})"
            )
    plain, cached = results
    ratio = {
        "speed_gradcache_over_plain": round(cached["pairs_per_s"] / plain["pairs_per_s"], 3),
        "memory_gradcache_over_plain": round(cached["peak_mb"] / plain["peak_mb"], 3),
    }
    print(
        f"GradCache / plain: speed {ratio['speed_gradcache_over_plain']:.2f}x, "
        f"peak memory {ratio['memory_gradcache_over_plain']:.2f}x"
    )
    report = {
        **header(args.device),
        "settings": vars(args),
        "results": results,
        "ratios": ratio,
        "load_average_1_5_15_min_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
