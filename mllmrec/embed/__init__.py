"""Stage 1, embed: catalogue -> compression prompt -> backbone -> embedding store.

    run.py   `run_embed(cfg)`: shards, resume, multi-process, rejected/degraded records
"""

from __future__ import annotations

from mllmrec.embed.run import EmbedError, EmbedResult, embed_items, output_channels, run_embed

__all__ = ["EmbedError", "EmbedResult", "embed_items", "output_channels", "run_embed"]
