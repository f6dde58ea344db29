"""`mllmrec demo`: the main job end to end, offline, in well under a minute on a CPU.

Synthetic catalogue -> tiny random backbone (built locally, no download) -> `embed` with the mICL
prompt (two channels) -> faiss index -> nearest neighbours -> co-interaction pairs -> a few steps
of contrastive LoRA tuning, with validation item-to-item recall before and after. The vectors of a
random tiny model carry no meaning; the demo shows the machinery and the artefacts. Real use needs
a real model.
"""

from __future__ import annotations

import os
from pathlib import Path

from mllmrec.datasets.config import DemoConfig, SyntheticConfig
from mllmrec.embed.config import EmbedConfig


def build_demo_model(family: str, cache_dir: Path, seed: int) -> Path:
    if family == "composed":
        from mllmrec.testing.composed import cached_tiny_composed

        return cached_tiny_composed(cache_dir=cache_dir, seed=seed)
    from mllmrec.testing.qwen import cached_tiny_qwen

    return cached_tiny_qwen(family, seed=seed, cache_dir=cache_dir)


def run_demo(cfg: DemoConfig, command: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the demo never needs the hub
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight-loading bars of a 0.3 MB model are only noise here
    from mllmrec.datasets.synthetic import make_synthetic
    from mllmrec.embed import run_embed
    from mllmrec.index.search import build_index, neighbors

    root = Path(cfg.out)
    print(f"[1/6] synthetic catalogue -> {root / 'data'}")
    data = make_synthetic(
        SyntheticConfig(
            out=str(root / "data"), n_items=cfg.n_items, n_users=max(20, cfg.n_items // 2), seed=cfg.seed
        )
    )
    print(f"[2/6] tiny random {cfg.family} backbone (offline, random weights)")
    model = build_demo_model(cfg.family, root / "models", cfg.seed)
    store = root / "store"
    print(f"[3/6] embed {cfg.n_items} items with the notellm2-micl prompt -> {store}")
    result = run_embed(
        EmbedConfig(
            catalog=str(data.items),
            model=str(model),
            out=str(store),
            prompt="notellm2-micl",
            overwrite=True,
            batch_size=16,
            shard_size=64,
        ),
        command=["mllmrec", "demo", "--out", str(root), "--family", cfg.family],
    )
    c = result["counts"]
    dims = ", ".join(f"{ch}[{d}]" for ch, d in result["dims"].items())
    print(
        f"      embedded {c['embedded']}/{c['input']} items in {result['seconds_last_run']:.1f} s; channels {dims}"
    )
    print("[4/6] faiss index and nearest neighbours")
    build_index(store, "mm")
    from mllmrec.store import EmbeddingStore

    s = EmbeddingStore.open(store)
    ids = s.ids[:2]
    for item_id in ids:
        print(f"  query {item_id} ({s.labels[s.index_of(item_id)][:50]}):")
        for h in neighbors(store, item_id, k=3):
            print(f"      {h.id}  {h.score:.3f}  {h.label[:60]}")
    run = demo_train(cfg, root, data, model)
    demo_distill(root, data, store, cfg.seed)
    print(
        f"\nDone. The store (vectors, items, manifest.json) is in {store}\n"
        "These vectors come from a tiny RANDOM model, so the neighbours mean nothing. For real use:\n"
        f"  mllmrec embed --catalog {data.items} --model Qwen/Qwen2-VL-2B-Instruct --out my-store\n"
        f"  mllmrec neighbors my-store {ids[0]} -k 10\n"
        "  mllmrec pairs interactions.csv --out my-pairs --catalog items.jsonl\n"
        "  mllmrec train my-pairs --catalog items.jsonl --model Qwen/Qwen2-VL-2B-Instruct --out my-run\n"
        "  mllmrec embed --catalog items.jsonl --model Qwen/Qwen2-VL-2B-Instruct --adapter my-run --out tuned-store\n"
        + (f"(the demo's tuned run is in {run})" if run else ""),
    )
    return 0


def demo_train(cfg: DemoConfig, root: Path, data: object, model: Path) -> Path | None:
    """Mine pairs from the synthetic interactions and LoRA-tune the tiny model for a few steps."""
    from mllmrec.catalog.config import PairsConfig
    from mllmrec.catalog.pairs import run_pairs
    from mllmrec.train.config import TrainConfig
    from mllmrec.train.trainer import run_train

    pairs, run = root / "pairs", root / "run"
    print(f"[5/6] co-interaction pairs -> {pairs}")
    mined = run_pairs(
        PairsConfig(
            interactions=str(data.interactions),
            out=str(pairs),
            catalog=str(data.items),
            valid_share=0.3,
            test_share=0.1,
            top_t=5,
            seed=cfg.seed,
            overwrite=True,
        )
    )
    print(f"      {mined['pairs']} pairs from {mined['rows_used']} interactions of {mined['users']} users")
    if cfg.train_steps == 0:
        print("[6/6] contrastive LoRA tuning skipped (--train-steps 0)")
        return None
    # From item text only: a few dozen steps move the tiny random LM measurably, while its random ViT
    # would need far more (with images, 30 steps did not lift recall in our runs).
    print(f"[6/6] contrastive LoRA tuning on item text, {cfg.train_steps} steps -> {run}")
    man = run_train(
        TrainConfig(
            pairs=str(pairs),
            out=str(run),
            catalog=str(data.items),
            model=str(model),
            image_field=None,
            batch_pairs=32,
            steps=cfg.train_steps,
            lr=2e-3,
            valid_every=cfg.train_steps,  # before and after only
            overwrite=True,
            seed=cfg.seed,
            progress=False,
        ),
        command=["mllmrec", "demo", "--out", str(root)],
    )
    before, after = man["history"]["valid"][0], man["history"]["valid"][-1]
    print(
        "      valid item-to-item recall (NoteLLM protocol, "
        f"{man['data']['valid_queries']} queries, {man['data']['valid_candidates']} candidates):"
    )
    for k in ("recall@10", "recall@50"):
        print(f"        {k}: zero-shot {before[k]:.3f} -> tuned {after[k]:.3f}")
    return run


def demo_distill(root: Path, data: object, store: Path, seed: int) -> Path:
    """Distil the store's vectors into a LightGCN student (a few epochs) and print one user's top 5
    from the served tables (`mllmrec distill` + `mllmrec recommend`)."""
    import torch

    from mllmrec.distill.config import DistillConfig
    from mllmrec.distill.recommend import Recommender
    from mllmrec.distill.run import print_summary, run_distill

    out = root / "distill"
    print(f"[distill] PromptMM teacher over the store's vectors -> LightGCN student, a few epochs -> {out}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster, and robust on a busy machine
    try:
        manifest = run_distill(
            DistillConfig(
                store=str(store),
                interactions=str(data.interactions),
                out=str(out),
                overwrite=True,
                epochs=5,
                teacher_epochs=5,
                dim=16,
                teacher_dim=16,
                batch_size=512,
                seed=seed,
                progress=False,
            ),
            command=["mllmrec", "demo"],
        )
    finally:
        torch.set_num_threads(threads)
    print_summary(out, manifest)
    rec = Recommender.load(out)
    user = rec.run.user_ids[0]
    print(f"  top 5 for user {user} (seen items left out):")
    for r in rec.recommend([user], 5)[0]:
        print(f"      {r.item_id}  {r.score:.3f}  {rec.labels.get(r.item_id, '')[:60]}")
    return out
