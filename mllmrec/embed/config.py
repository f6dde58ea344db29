"""The embed stage's config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mllmrec.backbone.config import ModelSpec
from mllmrec.catalog.config import CatalogSpec, parse_text_fields
from mllmrec.config import REQUIRED, Checked, ConfigError, opt


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
        None,
        "Most tokens per item prompt (default: the model's context length). Longer items lose text "
        'from the end; the manifest lists them under "truncated". Bounds one batch\'s memory too.',
    )
    batch_size: int = opt(16, "Items per forward pass (sorted by length to limit padding).")
    shard_size: int = opt(1024, "Items per shard file; a crash loses at most one shard of work per process.")
    store_dtype: Literal["float32", "float16"] = opt("float32", "Precision of the stored vectors.")
    format: Literal["safetensors", "parquet"] = opt("safetensors", "File format of the stored vectors.")
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


@dataclass(frozen=True, kw_only=True)
class ImportConfig(Checked):
    """Turn vectors made elsewhere into an embedding store that every stage reads like our own.

    SOURCE is a vectors file (.npy or .safetensors with --ids; .parquet with an id column and a
    vector column) or a sentence-transformers model folder, which is run over --catalog's text
    fields (mean/CLS pooling and normalisation as the folder's modules.json says; nothing is
    downloaded). The manifest records the source, its hash and dims.
    """

    source: str = opt(
        REQUIRED,
        "Vectors file (.npy, .safetensors, .parquet) or a sentence-transformers model folder.",
        positional=True,
    )
    out: str = opt(REQUIRED, "Output directory for the embedding store.")
    ids: str | None = opt(
        None, ".npy/.safetensors: item ids, row i = the i-th id (.txt one per line, or .json list)."
    )
    tensor: str | None = opt(None, ".safetensors: name of the tensor to import (default: the only one).")
    vector_field: str = opt("vector", ".parquet: column holding each item's vector (a list of floats).")
    channel: str = opt("mm", "Channel name the vectors get in the store (stages read mm by default).")
    catalog: str | None = opt(
        None,
        "Model folder: the catalogue to embed (its --text-fields, joined by spaces); "
        "vectors files: optional, for item labels and to check the ids.",
    )
    id_field: str = opt("id", "Column holding the item id, in --catalog and in a .parquet SOURCE.")
    text_fields: tuple[str, ...] = opt(
        ("title", "description"),
        "Model folder: --catalog's text columns, in order (NAME or NAME:MAX_CHARS), joined by spaces.",
    )
    batch_size: int = opt(64, "Model folder: texts per forward pass.")
    device: str = opt("auto", "Model folder: auto (cuda if available), cpu, cuda ...")
    store_dtype: Literal["float32", "float16"] = opt("float32", "Precision of the stored vectors.")
    format: Literal["safetensors", "parquet"] = opt("safetensors", "File format of the stored vectors.")
    overwrite: bool = opt(
        False, "Replace an earlier store in --out (a folder holding anything else is never deleted)."
    )
    progress: bool = opt(True, "Show a progress bar (model folder).")

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_text_fields(self.text_fields)
        if self.batch_size < 1:
            raise ConfigError("batch_size must be >= 1")
