"""Backbone configs: which model to load, and how a composed MLLM is built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mllmrec.config import REQUIRED, Checked, opt


@dataclass(frozen=True, kw_only=True)
class ModelSpec(Checked):
    """Which backbone to load and how."""

    model: str = opt(
        REQUIRED,
        "Backbone: a hub id (e.g. Qwen/Qwen2-VL-2B-Instruct), a local transformers directory, or a "
        "directory written by `mllmrec compose`.",
    )
    revision: str | None = opt(None, "Hub revision (branch, tag or commit) of --model.")
    device: str = opt("auto", "Device: auto (cuda if available), cpu, cuda, cuda:1 ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = opt(
        "auto", "Compute precision; auto = bfloat16 on GPU, float32 on CPU."
    )
    min_pixels: int | None = opt(None, "Smallest image area after resizing (Qwen-VL); default: the model's.")
    max_pixels: int | None = opt(
        None, "Largest image area after resizing (Qwen-VL), bounds image tokens; default: the model's."
    )
    trust_remote_code: bool = opt(False, "Allow model code from the hub (off unless you ask).")


@dataclass(frozen=True, kw_only=True)
class ComposeConfig(Checked):
    """NoteLLM-2's own construction: causal LM + vision encoder + connector, saved as one directory."""

    lm: str = opt(
        REQUIRED,
        "Causal language model: hub id or local directory (with --gguf-file: where the GGUF file is).",
    )
    gguf_file: str | None = opt(
        None, "Load the LM from this GGUF file inside --lm (transformers' gguf_file=; needs the gguf extra)."
    )
    vision: str | None = opt(
        None,
        "Vision encoder: hub id or local directory of any transformers vision model (CLIP, SigLIP ...); "
        "omit for a text-only composed model.",
    )
    connector: Literal["mlp", "qformer"] = opt(
        "mlp",
        "Connector from vision features to LM embeddings: a 2-layer MLP per patch, or a Q-Former "
        "with --query-tokens learned queries.",
    )
    query_tokens: int = opt(32, "Q-Former: number of query tokens spliced into the prompt per image.")
    qformer_layers: int = opt(2, "Q-Former: cross-attention layers.")
    out: str = opt(REQUIRED, "Directory to write the composed model into.")
    seed: int = opt(0, "Seed for the connector's initialisation.")
    trust_remote_code: bool = opt(False, "Allow model code from the hub (off unless you ask).")
