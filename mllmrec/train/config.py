"""The train and merge stages' configs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mllmrec.backbone.config import ModelSpec
from mllmrec.catalog.config import CatalogSpec
from mllmrec.config import REQUIRED, Checked, ConfigError, opt


@dataclass(frozen=True, kw_only=True)
class TrainConfig(CatalogSpec, ModelSpec):
    """Tune a backbone contrastively on co-interaction pairs (NoteLLM-2 with LoRA).

    Loss: symmetric in-batch InfoNCE over all 2B items of a batch of B pairs (self-similarity
    masked, learnable logit scale starting at e^3); with the mICL prompt the visual channel gets its
    own InfoNCE, weighted text:visual 9:1 by default. LoRA (peft) on the language model; the
    connector, late-fusion gate and projection head train in full. Writes a run directory with the
    adapter, the heads and a manifest; `mllmrec embed --adapter RUN` uses it.
    """

    pairs: str = opt(
        REQUIRED,
        "Pairs directory written by `mllmrec pairs` (pairs.parquet + manifest.json).",
        positional=True,
    )
    out: str = opt(REQUIRED, "Run directory (adapter, heads, checkpoints, manifest).")
    prompt: str = opt(
        "notellm2", "Prompt template: built-in name or YAML file (notellm2-micl adds the visual loss)."
    )
    loss: str = opt("infonce", "Contrastive loss by name (see mllmrec.train.losses.LOSSES).")
    visual_weight: float = opt(
        0.1, "Weight of the visual channel's loss (mICL); the mm/fused loss gets 1 - this."
    )
    logit_scale_init: float = opt(
        3.0, "Initial log of the learnable logit scale (e^3 = 20, temperature 0.05)."
    )
    lora_rank: int = opt(8, "LoRA rank r.")
    lora_alpha: float = opt(16.0, "LoRA alpha (scaling alpha / r).")
    lora_dropout: float = opt(0.0, "Dropout on the LoRA branch.")
    lora_targets: tuple[str, ...] = opt(
        (),
        "LM module names LoRA wraps; default: the backbone family's preset "
        "(Qwen / composed: q_proj k_proj v_proj o_proj).",
    )
    vision_lora: bool = opt(False, "Also put LoRA on the vision tower.")
    vision_lora_targets: tuple[str, ...] = opt(
        (),
        "Vision module names for --vision-lora; default: the preset "
        "(Qwen: qkv proj; CLIP/SigLIP: q/k/v/out_proj).",
    )
    train_connector: bool = opt(True, "Train the composed model's connector in full.")
    fusion_gate: bool = opt(
        False, "Train a NoteLLM-2 late-fusion gate (Qwen backbones); the loss then uses `fused`."
    )
    proj_dim: int | None = opt(
        None, "Train a projection head to this dimension (default: keep the hidden size)."
    )
    matryoshka_dims: tuple[int, ...] = opt(
        (), "Also apply the loss to these leading dimensions (Matryoshka), e.g. 64 128."
    )
    batch_pairs: int = opt(32, "Pairs per step (B); the loss sees all 2B items (times processes).")
    chunk_size: int | None = opt(
        None,
        "GradCache: encode the batch in chunks of this many items with cached "
        "gradients, so B is limited by time, not memory. Default: no GradCache.",
    )
    grad_checkpointing: bool = opt(
        False, "Gradient checkpointing in the language model (less memory, ~30% slower)."
    )
    modality_dropout: float = opt(
        0.0, "Share of items per batch that lose their image or their text (50/50) when they have both."
    )
    steps: int | None = opt(None, "Optimizer steps (default: one pass over the training pairs).")
    epochs: float = opt(1.0, "Passes over the training pairs when --steps is not given.")
    lr: float = opt(1e-4, "AdamW learning rate for LoRA weights and heads.")
    weight_decay: float = opt(0.0, "AdamW weight decay.")
    warmup_steps: int = opt(0, "Linear learning-rate warm-up steps.")
    quantize: Literal["none", "4bit"] = opt(
        "none", "Load the LM's base weights in 4 bit (QLoRA; needs bitsandbytes)."
    )
    checkpoint_every: int = opt(100, "Save a checkpoint every N steps (and at the end).")
    valid_every: int = opt(
        100,
        "Validation i2i Recall@{10,50,100} before training, every N steps and at the end; "
        "each pass embeds every validation item (the sampled queries and all valid candidates: "
        "often thousands of forward passes, minutes on a CPU). 0 = no validation at all (the "
        "test part is still scored once at the end).",
    )
    max_valid_queries: int = opt(2000, "At most this many validation queries (seeded sample).")
    seed: int = opt(0, "Seed for data order, modality dropout and new weights.")
    resume: bool = opt(False, "Continue from the last checkpoint in --out with the same data order.")
    overwrite: bool = opt(False, "Delete an existing run in --out and start again.")
    progress: bool = opt(True, "Show a progress bar with loss and pairs/s.")

    def __post_init__(self) -> None:
        CatalogSpec.__post_init__(self)
        if self.batch_pairs < 2:
            raise ConfigError(f"batch_pairs must be >= 2 (in-batch negatives), got {self.batch_pairs}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if not 0 <= self.visual_weight <= 1:
            raise ConfigError(f"visual_weight must be in [0, 1], got {self.visual_weight}")
        if not 0 <= self.modality_dropout <= 1:
            raise ConfigError(f"modality_dropout must be in [0, 1], got {self.modality_dropout}")
        if self.lora_rank < 1 or (self.steps is not None and self.steps < 1) or self.epochs <= 0:
            raise ConfigError("lora_rank and steps must be >= 1 and epochs > 0")
        if self.checkpoint_every < 1 or self.valid_every < 0:
            raise ConfigError("checkpoint_every must be >= 1 and valid_every >= 0")
        if self.proj_dim is not None and self.proj_dim < 1:
            raise ConfigError(f"proj_dim must be >= 1, got {self.proj_dim}")
        if any(m < 1 for m in self.matryoshka_dims) or (
            self.proj_dim is not None and any(m > self.proj_dim for m in self.matryoshka_dims)
        ):
            raise ConfigError(
                f"matryoshka_dims {self.matryoshka_dims} must lie in 1..proj_dim ({self.proj_dim})"
            )
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other")


@dataclass(frozen=True, kw_only=True)
class MergeConfig(Checked):
    """Merge a train run's LoRA adapter (and trained connector) into its base model, written as a plain
    model directory that transformers (and vLLM) load without peft. Trained heads (projection, fusion
    gate) are saved beside it; `mllmrec embed --model DIR` applies them."""

    run: str = opt(REQUIRED, "Train run directory (`mllmrec train --out`).", positional=True)
    out: str = opt(REQUIRED, "Directory for the merged model (must not exist or be empty).")
    model: str | None = opt(None, "Base model location if it moved since training (default: the run's).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = opt(
        "float32", "Precision of the merged weights."
    )
    trust_remote_code: bool = opt(
        False,
        "Allow model code from the hub for the base model. Never taken from the run's manifest: a run "
        "folder may come from anyone, so only this command's flag turns remote code on.",
    )
