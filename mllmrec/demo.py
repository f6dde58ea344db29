"""`mllmrec demo`: the main job end to end, offline, in well under a minute on a CPU.

Synthetic catalogue -> tiny random backbone (built locally, no download) -> `embed` with the mICL
prompt (two channels) -> faiss index -> nearest neighbours. The vectors of a random tiny model
carry no meaning; the demo shows the machinery and the artefacts. Real use needs a real model.
"""

from __future__ import annotations

import os
from pathlib import Path

from mllmrec.config import DemoConfig, EmbedConfig, SyntheticConfig


def build_demo_model(family: str, cache_dir: Path, seed: int) -> Path:
    if family == "composed":
        from mllmrec.testing.composed import cached_tiny_composed

        return cached_tiny_composed(cache_dir=cache_dir, seed=seed)
    from mllmrec.testing.qwen import cached_tiny_qwen

    return cached_tiny_qwen(family, seed=seed, cache_dir=cache_dir)


def run_demo(cfg: DemoConfig) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the demo never needs the hub
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight-loading bars of a 0.3 MB model are only noise here
    from mllmrec.datasets.synthetic import make_synthetic
    from mllmrec.embed import run_embed
    from mllmrec.index.search import build_index, neighbors

    root = Path(cfg.out)
    print(f"[1/4] synthetic catalogue -> {root / 'data'}")
    data = make_synthetic(SyntheticConfig(out=str(root / "data"), n_items=cfg.n_items,
                                          n_users=max(20, cfg.n_items // 2), seed=cfg.seed))
    print(f"[2/4] tiny random {cfg.family} backbone (offline, random weights)")
    model = build_demo_model(cfg.family, root / "models", cfg.seed)
    store = root / "store"
    print(f"[3/4] embed {cfg.n_items} items with the notellm2-micl prompt -> {store}")
    result = run_embed(EmbedConfig(catalog=str(data.items), model=str(model), out=str(store),
                                   prompt="notellm2-micl", overwrite=True, batch_size=16, shard_size=64),
                       command=["mllmrec", "demo", "--out", str(root), "--family", cfg.family])
    c = result.manifest["counts"]
    dims = ", ".join(f"{ch}[{d}]" for ch, d in result.manifest["dims"].items())
    print(f"      embedded {c['embedded']}/{c['input']} items in {result.seconds:.1f} s; channels {dims}")
    print("[4/4] faiss index and nearest neighbours")
    build_index(store, "mm")
    from mllmrec.index.store import EmbeddingStore

    s = EmbeddingStore.open(store)
    ids = s.ids[:2]
    for item_id in ids:
        print(f"  query {item_id} ({s.labels[s.index_of(item_id)][:50]}):")
        for h in neighbors(store, item_id, k=3):
            print(f"      {h.id}  {h.score:.3f}  {h.label[:60]}")
    print(
        f"\nDone. The store (vectors, items, manifest.json) is in {store}\n"
        "These vectors come from a tiny RANDOM model, so the neighbours mean nothing. For real use:\n"
        f"  mllmrec embed --catalog {data.items} --model Qwen/Qwen2-VL-2B-Instruct --out my-store\n"
        f"  mllmrec neighbors my-store {ids[0]} -k 10",
    )
    return 0
