"""The embed stage's config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mllmrec.backbone.config import ModelSpec
from mllmrec.catalog.config import CatalogSpec
from mllmrec.config import REQUIRED, ConfigError, opt


@dataclass(frozen=True, kw_only=True)
class EmbedConfig(CatalogSpec, ModelSpec):
    """Embed a catalogue (image + text per item) through a compression prompt into an embedding store.

    The vector of an item is the hidden state of the last prompt token (NoteLLM-2). The store is
    written in shards; an interrupted run continues with --resume.
    """

    out: str = opt(REQUIRED, "Output directory for the embedding store.")
    prompt: str = opt(
        "notellm2", "Prompt template: a built-in name (see `mllmrec prompts list`) or a YAML file."
    )
    max_tokens: int | None = opt(
        None, "Most tokens per item prompt (default: the model's context length). Longer items lose text "
        "from the end; the manifest lists them under \"truncated\". Bounds one batch's memory too."
    )
    batch_size: int = opt(16, "Items per forward pass (sorted by length to limit padding).")
    shard_size: int = opt(1024, "Items per shard file; a crash loses at most one shard of work per process.")
    store_dtype: Literal["float32", "float16"] = opt(
        "float32", "Precision of the stored vectors."
    )
    format: Literal["safetensors", "parquet"] = opt(
        "safetensors", "File format of the stored vectors."
    )
    adapter: str | None = opt(
        None, "Train run directory (`mllmrec train --out`): embed with its LoRA adapter and heads."
    )
    resume: bool = opt(False, "Continue an interrupted run in --out (refused if model or prompt differ).")
    overwrite: bool = opt(False, "Delete an existing store in --out and start again.")
    progress: bool = opt(True, "Show a progress bar with items/s.")

    def __post_init__(self) -> None:
        CatalogSpec.__post_init__(self)
        if self.batch_size < 1 or self.shard_size < 1:
            raise ConfigError("batch_size and shard_size must be >= 1")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ConfigError("max_tokens must be >= 1")
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other")
