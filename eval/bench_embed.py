"""Benchmark: the batched embed pipeline against a naive one-item-at-a-time loop.

Both paths use the same model, catalogue and prompt, and both start from image files on disk, so
the comparison includes image decoding and preprocessing. Each method runs in its own child
process so its peak memory (max RSS) is its own; the ratios are computed within one run.

    python eval/bench_embed.py                     # CPU, small random Qwen2-VL (82M params with Qwen's vocabulary)
    python eval/bench_embed.py --items 512 --size small --batch-size 32

Methods:
  naive-hf     per item: PIL load, image processor, tokenizer, full model forward with
               output_hidden_states=True (the LM head runs too), last token of the last layer.
               This is the loop most people write first.
  naive-base   per item, but through the base model only (no LM head): isolates batching.
  batched      `mllmrec embed` itself (run_embed): threaded image loading, length-sorted batches,
               base model only, shards written to disk.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

from common import header, peak_rss_mb

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _naive(kind: str, model_dir: str, catalog: str, n: int) -> dict:
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    from mllmrec.catalog import load_catalog, load_item_images
    from mllmrec.catalog.config import CatalogSpec
    from mllmrec.prompts import load_template, render

    spec = CatalogSpec(catalog=catalog)
    cat = load_catalog(spec)
    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    ip = AutoImageProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    tmpl = load_template("notellm2")
    placeholder = "<|vision_start|><|image_pad|><|vision_end|>"
    pad_id = model.config.image_token_id

    def chat(user, system):
        return tok.apply_chat_template(
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
        )

    t0 = time.perf_counter()
    vecs, tokens, image_tokens = [], [], []
    for item in cat.items[:n]:
        images, _ = load_item_images(item, cat.base_dir, spec)
        r = render(tmpl, item, images, image_placeholder=placeholder, chat=chat)
        px = ip(images=r.images, return_tensors="pt")
        n_tok = int(px["image_grid_thw"].prod() // ip.merge_size**2)
        enc = tok([r.text.replace("<|image_pad|>", "<|image_pad|>" * n_tok)], return_tensors="pt")
        mm = (enc["input_ids"] == pad_id).int()
        tokens.append(int(enc["input_ids"].shape[1]))  # the whole prompt, image tokens included
        image_tokens.append(n_tok)
        with torch.no_grad():
            if kind == "naive-hf":
                out = model(**enc, **px, mm_token_type_ids=mm, output_hidden_states=True)
                vecs.append(out.hidden_states[-1][0, -1])
            else:
                vecs.append(model.model(**enc, **px, mm_token_type_ids=mm).last_hidden_state[0, -1])
    secs = time.perf_counter() - t0
    # Speed is per item, but cost is per token: a figure means little without the tokens per item.
    return {
        "items": n,
        "seconds": secs,
        "vectors": torch.stack(vecs).tolist(),
        "tokens_per_item": sum(tokens) / n,
        "image_tokens_per_item": sum(image_tokens) / n,
    }


def _batched(model_dir: str, catalog: str, n: int, batch_size: int) -> dict:
    from mllmrec.embed import run_embed
    from mllmrec.embed.config import EmbedConfig
    from mllmrec.store import EmbeddingStore

    # The catalogue is cut to n items by writing a head file, so all methods see the same items.
    head = Path(catalog).with_name(f"head-{n}.jsonl")
    head.write_text("".join(Path(catalog).read_text().splitlines(keepends=True)[:n]))
    out = Path(tempfile.mkdtemp()) / "store"
    cfg = EmbedConfig(
        catalog=str(head),
        model=model_dir,
        out=str(out),
        batch_size=batch_size,
        shard_size=max(256, batch_size),
        progress=False,
    )
    from mllmrec.backbone.load import open_encoder

    enc = open_encoder(cfg)
    t0 = time.perf_counter()
    run_embed(cfg, encoder=enc)
    secs = time.perf_counter() - t0
    return {"items": n, "seconds": secs, "vectors": EmbeddingStore.open(out).vectors("mm").tolist()}


def _child(q, fn, args):
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
    res = fn(*args)
    res["peak_rss_mb"] = peak_rss_mb()
    q.put(res)


def run_in_child(fn, *args) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q, fn, args))
    p.start()
    res = q.get()
    p.join()
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=256, help="Items embedded by each method.")
    ap.add_argument("--size", default="small", choices=["tiny", "small"], help="Random Qwen2-VL size.")
    ap.add_argument("--image-size", type=int, default=224, help="Synthetic image side in pixels.")
    ap.add_argument(
        "--vocab",
        type=int,
        default=151_936,
        help="Vocabulary size of the random model (default: Qwen2-VL's, so the LM head costs what it "
        "costs in a real model; 0 = the tiny tokenizer's own ~700).",
    )
    ap.add_argument("--batch-size", type=int, default=32, help="Batch size of the batched pipeline.")
    ap.add_argument("--out", default=None, help="Write the results as JSON here.")
    args = ap.parse_args()

    from mllmrec.datasets.config import SyntheticConfig
    from mllmrec.datasets.synthetic import make_synthetic
    from mllmrec.testing.qwen import cached_tiny_qwen

    work = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    data = make_synthetic(
        SyntheticConfig(out=str(work / "data"), n_items=args.items, n_users=20, image_size=args.image_size)
    )
    model = str(
        cached_tiny_qwen("qwen2-vl", size=args.size, cache_dir=work / "models", vocab_size=args.vocab or None)
    )
    results = {}
    for name in ("naive-hf", "naive-base", "batched"):
        if name == "batched":
            res = run_in_child(_batched, model, str(data.items), args.items, args.batch_size)
        else:
            res = run_in_child(_naive, name, model, str(data.items), args.items)
        res["items_per_s"] = res["items"] / res["seconds"]
        results[name] = res
        print(
            f"{name:11s} {res['items_per_s']:8.1f} items/s  {res['seconds']:7.2f} s  peak RSS {res['peak_rss_mb']:7.0f} MB",
            flush=True,
        )
    import numpy as np

    ref = np.asarray(results["naive-base"]["vectors"])
    for name in ("naive-hf", "batched"):
        diff = float(np.abs(np.asarray(results[name]["vectors"]) - ref).max())
        results[name]["max_abs_diff_vs_naive_base"] = diff
    speed = {
        f"batched_vs_{k}": results["batched"]["items_per_s"] / results[k]["items_per_s"]
        for k in ("naive-hf", "naive-base")
    }
    for k, v in speed.items():
        print(f"{k}: {v:.2f}x")
    print(f"max |batched - naive-base| = {results['batched']['max_abs_diff_vs_naive_base']:.2e}")
    tokens = {k: results["naive-base"][k] for k in ("tokens_per_item", "image_tokens_per_item")}
    print(
        f"tokens per item: {tokens['tokens_per_item']:.1f} ({tokens['image_tokens_per_item']:.1f} of them image)"
    )
    summary = {
        **header("CPU"),
        "items": args.items,
        "model": f"random Qwen2-VL ({args.size}, vocab {args.vocab or 'tiny'})",
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        **tokens,
        "methods": {k: {kk: vv for kk, vv in v.items() if kk != "vectors"} for k, v in results.items()},
        "ratios": speed,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
