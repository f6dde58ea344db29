"""Inputs for the adapter examples: a synthetic catalogue and an embedding store made from it by the
real embed pipeline with a tiny RANDOM Qwen2-VL (offline, seconds). The vectors show the wiring,
not quality; point the examples at your own store for real numbers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

DEFAULT_WORK = Path(tempfile.gettempdir()) / "mllmrec-adapter-demo"


def demo_inputs(
    store: str | None = None,
    data: str | None = None,
    work: str | Path = DEFAULT_WORK,
    n_items: int = 80,
    seed: int = 0,
) -> tuple[Path, Path]:
    """(synthetic data folder, store folder): the given ones, or built (and reused) under `work`.

    The store is embedded with the notellm2-micl prompt, so it has an `mm` and a `visual` channel.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(work)
    if data is None:
        from mllmrec.datasets.config import SyntheticConfig
        from mllmrec.datasets.synthetic import make_synthetic

        data_dir = work / "data"
        if not (data_dir / "meta.json").is_file():
            make_synthetic(
                SyntheticConfig(out=str(data_dir), n_items=n_items, n_users=n_items, image_size=32, seed=seed)
            )
    else:
        data_dir = Path(data)
    if store is not None:
        return data_dir, Path(store)
    from transformers.utils import logging as hf_logging

    from mllmrec.embed import run_embed
    from mllmrec.embed.config import EmbedConfig
    from mllmrec.testing.qwen import cached_tiny_qwen

    hf_logging.disable_progress_bar()
    model = cached_tiny_qwen("qwen2-vl", seed=seed, cache_dir=work / "models")
    out = work / "store"
    run_embed(
        EmbedConfig(
            catalog=str(data_dir / "items.jsonl"),
            model=str(model),
            out=str(out),
            prompt="notellm2-micl",
            resume=(out / "manifest.json").is_file(),
            progress=False,
            batch_size=16,
            shard_size=64,
        ),
        command=["adapters example"],
    )
    return data_dir, out
