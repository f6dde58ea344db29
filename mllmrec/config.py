"""Typed stage configs: frozen dataclasses with help text; YAML in, unknown keys are an error.

Every field carries its help text in `metadata["help"]`; `cli.py` turns the fields into flags, so
`--help` documents every option and a YAML file (`--config`) can set the same keys. Flags given on
the command line win over the YAML file.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mllmrec.errors import MllmrecError


def opt(default: Any, help: str, *, positional: bool = False, short: str | None = None, **kw: Any):
    """A dataclass field with CLI metadata (`short`: an extra flag such as "-k"). Choices come from
    the field's Literal type."""
    meta = {"help": help, "positional": positional, "short": short}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda d=tuple(default): d, metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


REQUIRED = dataclasses.MISSING


class ConfigError(MllmrecError, ValueError):
    """A config value or key is wrong; the message says which and why."""


class _Checked:
    """Checks choice (Literal) fields however the config was built (CLI, YAML or Python)."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            tp = hints[f.name]
            if typing.get_origin(tp) is Literal and getattr(self, f.name) not in typing.get_args(tp):
                raise ConfigError(f"{f.name}: {getattr(self, f.name)!r} is not one of "
                                  f"{', '.join(map(str, typing.get_args(tp)))}")


# ---------------------------------------------------------------------------------------------
# Stage 0: catalogue
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class CatalogSpec(_Checked):
    """How to read a catalogue file into Items."""

    catalog: str = opt(REQUIRED, "Catalogue file: .jsonl, .csv or .parquet, one item per row.")
    id_field: str = opt("id", "Column holding the item id (ids are compared as strings).")
    text_fields: tuple[str, ...] = opt(
        ("title", "description"),
        "Text columns in prompt order, each NAME or NAME:MAX_CHARS (truncation in characters), "
        "e.g. --text-fields title:64 description:512.",
    )
    image_field: str | None = opt(
        "image",
        "Column holding an image reference (path relative to the catalogue file, absolute path or "
        "file:// URI) or a list of them. 'none' for text-only catalogues.",
    )
    max_images: int = opt(1, "Use at most the first N images of an item.")
    on_bad_image: Literal["text-only", "reject", "error"] = opt(
        "text-only",
        "What to do with an item whose image is missing, unreadable, corrupt, too large or outside "
        "the catalogue folder: embed it from its text, leave it out (both recorded in the "
        "manifest), or stop with an error."
    )
    allow_outside_paths: bool = opt(
        False, "Allow image paths that point outside the catalogue file's folder."
    )
    max_image_pixels: int = opt(
        40_000_000,
        "Refuse images with more pixels than this before decoding them (decompression bombs).",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.image_field is not None and self.image_field.lower() in ("", "none", "null"):
            object.__setattr__(self, "image_field", None)
        if self.max_images < 1:
            raise ConfigError(f"max_images must be >= 1, got {self.max_images}")
        if self.max_image_pixels < 1:
            raise ConfigError(f"max_image_pixels must be >= 1, got {self.max_image_pixels}")
        parse_text_fields(self.text_fields)


def parse_text_fields(specs: tuple[str, ...]) -> list[tuple[str, int | None]]:
    """['title:64', 'description'] -> [('title', 64), ('description', None)]."""
    out = []
    for spec in specs:
        name, _, limit = spec.partition(":")
        if not name:
            raise ConfigError(f"empty text field name in {spec!r}")
        if limit and (not limit.isdigit() or int(limit) < 1):
            raise ConfigError(f"text field {spec!r}: the limit after ':' must be a positive integer")
        out.append((name, int(limit) if limit else None))
    if len({n for n, _ in out}) != len(out):
        raise ConfigError(f"text field listed twice in {list(specs)}")
    return out


# ---------------------------------------------------------------------------------------------
# Backbone and prompt (shared by embed and prompts show)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ModelSpec(_Checked):
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
class EmbedConfig(CatalogSpec, ModelSpec):
    """Embed a catalogue (image + text per item) through a compression prompt into an embedding store.

    The vector of an item is the hidden state of the last prompt token (NoteLLM-2). The store is
    written in shards; an interrupted run continues with --resume.
    """

    out: str = opt(REQUIRED, "Output directory for the embedding store.")
    prompt: str = opt(
        "notellm2", "Prompt template: a built-in name (see `mllmrec prompts list`) or a YAML file."
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
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other")


@dataclass(frozen=True, kw_only=True)
class PromptShowConfig(CatalogSpec):
    """Print one catalogue item rendered through a prompt template (slots marked as <<slot:NAME>>)."""

    name: str = opt(REQUIRED, "Template name or YAML file.", positional=True)
    item: str = opt(REQUIRED, "Id of the item to render.")
    model: str | None = opt(
        None, "Render with this backbone's tokenizer (chat template, image placeholder); "
        "default: plain text with a generic <image> placeholder."
    )


@dataclass(frozen=True, kw_only=True)
class ComposeConfig(_Checked):
    """NoteLLM-2's own construction: causal LM + vision encoder + connector, saved as one directory."""

    lm: str = opt(REQUIRED, "Causal language model: hub id or local directory (with --gguf-file: where the GGUF file is).")
    gguf_file: str | None = opt(None, "Load the LM from this GGUF file inside --lm (transformers' gguf_file=; needs the gguf extra).")
    vision: str | None = opt(
        None, "Vision encoder: hub id or local directory of any transformers vision model (CLIP, SigLIP ...); "
        "omit for a text-only composed model."
    )
    connector: Literal["mlp", "qformer"] = opt(
        "mlp", "Connector from vision features to LM embeddings: a 2-layer MLP per patch, or a Q-Former "
        "with --query-tokens learned queries."
    )
    query_tokens: int = opt(32, "Q-Former: number of query tokens spliced into the prompt per image.")
    qformer_layers: int = opt(2, "Q-Former: cross-attention layers.")
    out: str = opt(REQUIRED, "Directory to write the composed model into.")
    seed: int = opt(0, "Seed for the connector's initialisation.")
    trust_remote_code: bool = opt(False, "Allow model code from the hub (off unless you ask).")


# ---------------------------------------------------------------------------------------------
# Search
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class IndexConfig(_Checked):
    """Build a faiss index over one channel of an embedding store (cosine similarity)."""

    store: str = opt(REQUIRED, "Embedding store directory written by `mllmrec embed`.", positional=True)
    channel: str = opt("mm", "Which vector channel to index (mm, visual, fused ...).")
    kind: Literal["flat", "ivf", "hnsw"] = opt(
        "flat", "Index type: exact inner product (flat), IVF-Flat or HNSW."
    )
    nlist: int | None = opt(None, "IVF: number of lists (default ~ 4*sqrt(n), at most n/39 so each list trains on 39+ points).")
    nprobe: int = opt(16, "IVF: lists probed per query.")
    hnsw_m: int = opt(32, "HNSW: neighbours per node.")
    ef_search: int = opt(128, "HNSW: search breadth.")


@dataclass(frozen=True, kw_only=True)
class NeighborsConfig(_Checked):
    """Print the nearest items to a query item, with their titles."""

    store: str = opt(REQUIRED, "Embedding store directory.", positional=True)
    item: str = opt(REQUIRED, "Query item id.", positional=True)
    k: int = opt(10, "How many neighbours to print.", short="-k")
    channel: str = opt("mm", "Vector channel to search.")


# ---------------------------------------------------------------------------------------------
# Synthetic data and demo
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class SyntheticConfig(_Checked):
    """Write a deterministic synthetic multimodal catalogue: some attributes only in the image, some
    only in the text; users prefer attributes of both kinds."""

    out: str = opt(REQUIRED, "Directory to write the synthetic catalogue into.", positional=True)
    n_items: int = opt(400, "Number of items.")
    n_users: int = opt(300, "Number of users.")
    interactions_per_user: int = opt(20, "Mean interactions per user.")
    image_size: int = opt(64, "Side of the rendered square images, in pixels.")
    seed: int = opt(0, "Random seed (same seed, same files).")


@dataclass(frozen=True, kw_only=True)
class DemoConfig(_Checked):
    """Run the main job end to end offline: synthetic catalogue, tiny random backbone, embed, index,
    neighbours, pair mining and a few steps of LoRA tuning. Real use needs a real model, e.g. `mllmrec embed --model Qwen/Qwen2-VL-2B-Instruct`."""

    out: str = opt("mllmrec-demo", "Working directory for the demo's catalogue, model and store.")
    family: Literal["qwen2-vl", "qwen2.5-vl", "qwen3-vl", "composed"] = opt(
        "qwen2-vl", "Tiny random backbone family to build."
    )
    n_items: int = opt(200, "Synthetic catalogue size.")
    seed: int = opt(0, "Seed for data and the random model.")
    train_steps: int = opt(30, "Contrastive LoRA steps the demo trains (0 skips training).")


@dataclass(frozen=True, kw_only=True)
class PairsConfig(_Checked):
    """Mine co-interaction item pairs (NoteLLM): score(A->B) = sum over users u who engaged with A and
    then B of 1/N_u, N_u = number of distinct items u engaged with. Keeps the top-t partners per item
    and splits the pairs into train/valid/test by query item."""

    interactions: str = opt(REQUIRED, "Interaction log (.csv, .tsv/.inter, .parquet, .jsonl).", positional=True)
    out: str = opt(REQUIRED, "Output directory (pairs.parquet + manifest.json).")
    user_field: str = opt("user_id", "Column holding the user id.")
    item_field: str = opt("item_id", "Column holding the item id.")
    time_field: str = opt("timestamp", "Column holding the event time (numbers or ISO dates).")
    order: Literal["time", "none"] = opt(
        "time", "'time': A must come before B (needs timestamps; a log without them falls back to "
        "'none'); 'none': any two items of a user's history, both directions."
    )
    window_seconds: float | None = opt(None, "Pair A with B when 0 < t_B - t_A <= W seconds.")
    session_gap: float | None = opt(
        None, "Pair A with any later B of the same session; a session ends at a gap > G seconds."
    )
    max_lag: int = opt(50, "Timed modes: look at most this many events ahead in a user's history.")
    min_score: float | None = opt(None, "Drop partners whose score is below this.")
    max_score: float | None = opt(None, "Drop partners whose score is above this (too-generic items).")
    top_t: int = opt(10, "Keep at most this many partners per query item (ties by partner id).")
    valid_share: float = opt(0.1, "Share of the query items (with all their pairs) in the valid part.")
    test_share: float = opt(0.1, "Share of the query items in the test part; train gets the rest.")
    seed: int = opt(0, "Seed of the query-item split.")
    catalog: str | None = opt(None, "Catalogue file; interactions with item ids not in it are reported and dropped.")
    catalog_id_field: str = opt("id", "Column of --catalog holding the item id.")
    interactions_train_only: str | None = opt(
        None, "Saved split folder: build pairs only from its training interactions."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.window_seconds is not None and self.session_gap is not None:
            raise ConfigError("window_seconds and session_gap: give one of them, not both")
        if self.window_seconds is not None and self.window_seconds <= 0:
            raise ConfigError(f"window_seconds must be > 0, got {self.window_seconds}")
        if self.session_gap is not None and self.session_gap < 0:
            raise ConfigError(f"session_gap must be >= 0, got {self.session_gap}")
        if self.max_lag < 1 or self.top_t < 1:
            raise ConfigError("max_lag and top_t must be >= 1")
        if min(self.valid_share, self.test_share) < 0 or self.valid_share + self.test_share > 1:
            raise ConfigError(f"valid_share {self.valid_share} and test_share {self.test_share} must be "
                              ">= 0 and sum to at most 1")
        if self.min_score is not None and self.max_score is not None and self.min_score > self.max_score:
            raise ConfigError(f"min_score {self.min_score} is above max_score {self.max_score}")


@dataclass(frozen=True, kw_only=True)
class TrainConfig(CatalogSpec, ModelSpec):
    """Tune a backbone contrastively on co-interaction pairs (NoteLLM-2 with LoRA).

    Loss: symmetric in-batch InfoNCE over all 2B items of a batch of B pairs (self-similarity
    masked, learnable logit scale starting at e^3); with the mICL prompt the visual channel gets its
    own InfoNCE, weighted text:visual 9:1 by default. LoRA (peft) on the language model; the
    connector, late-fusion gate and projection head train in full. Writes a run directory with the
    adapter, the heads and a manifest; `mllmrec embed --adapter RUN` uses it.
    """

    pairs: str = opt(REQUIRED, "Pairs directory written by `mllmrec pairs` (pairs.parquet + manifest.json).",
                     positional=True)
    out: str = opt(REQUIRED, "Run directory (adapter, heads, checkpoints, manifest).")
    prompt: str = opt("notellm2", "Prompt template: built-in name or YAML file (notellm2-micl adds the visual loss).")
    loss: str = opt("infonce", "Contrastive loss by name (see mllmrec.train.losses.LOSSES).")
    visual_weight: float = opt(0.1, "Weight of the visual channel's loss (mICL); the mm/fused loss gets 1 - this.")
    logit_scale_init: float = opt(3.0, "Initial log of the learnable logit scale (e^3 = 20, temperature 0.05).")
    lora_rank: int = opt(8, "LoRA rank r.")
    lora_alpha: float = opt(16.0, "LoRA alpha (scaling alpha / r).")
    lora_dropout: float = opt(0.0, "Dropout on the LoRA branch.")
    lora_targets: tuple[str, ...] = opt((), "LM module names LoRA wraps; default: the backbone family's preset "
                                        "(Qwen / composed: q_proj k_proj v_proj o_proj).")
    vision_lora: bool = opt(False, "Also put LoRA on the vision tower.")
    vision_lora_targets: tuple[str, ...] = opt((), "Vision module names for --vision-lora; default: the preset "
                                               "(Qwen: qkv proj; CLIP/SigLIP: q/k/v/out_proj).")
    train_connector: bool = opt(True, "Train the composed model's connector in full.")
    fusion_gate: bool = opt(False, "Train a NoteLLM-2 late-fusion gate (Qwen backbones); the loss then uses `fused`.")
    proj_dim: int | None = opt(None, "Train a projection head to this dimension (default: keep the hidden size).")
    matryoshka_dims: tuple[int, ...] = opt((), "Also apply the loss to these leading dimensions (Matryoshka), "
                                           "e.g. 64 128.")
    batch_pairs: int = opt(32, "Pairs per step (B); the loss sees all 2B items (times processes).")
    chunk_size: int | None = opt(None, "GradCache: encode the batch in chunks of this many items with cached "
                                 "gradients, so B is limited by time, not memory. Default: no GradCache.")
    grad_checkpointing: bool = opt(False, "Gradient checkpointing in the language model (less memory, ~30% slower).")
    modality_dropout: float = opt(0.0, "Share of items per batch that lose their image or their text (50/50) "
                                  "when they have both.")
    steps: int | None = opt(None, "Optimizer steps (default: one pass over the training pairs).")
    epochs: float = opt(1.0, "Passes over the training pairs when --steps is not given.")
    lr: float = opt(1e-4, "AdamW learning rate for LoRA weights and heads.")
    weight_decay: float = opt(0.0, "AdamW weight decay.")
    warmup_steps: int = opt(0, "Linear learning-rate warm-up steps.")
    quantize: Literal["none", "4bit"] = opt("none", "Load the LM's base weights in 4 bit (QLoRA; needs bitsandbytes).")
    checkpoint_every: int = opt(100, "Save a checkpoint every N steps (and at the end).")
    valid_every: int = opt(100, "Validation i2i Recall@{10,50,100} every N steps (and before and after); 0 = only then.")
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
                self.proj_dim is not None and any(m > self.proj_dim for m in self.matryoshka_dims)):
            raise ConfigError(f"matryoshka_dims {self.matryoshka_dims} must lie in 1..proj_dim ({self.proj_dim})")
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other")


@dataclass(frozen=True, kw_only=True)
class MergeConfig(_Checked):
    """Merge a train run's LoRA adapter (and trained connector) into its base model, written as a plain
    model directory that transformers (and vLLM) load without peft. Trained heads (projection, fusion
    gate) are saved beside it; `mllmrec embed --model DIR` applies them."""

    run: str = opt(REQUIRED, "Train run directory (`mllmrec train --out`).", positional=True)
    out: str = opt(REQUIRED, "Directory for the merged model (must not exist or be empty).")
    model: str | None = opt(None, "Base model location if it moved since training (default: the run's).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = opt("float32", "Precision of the merged weights.")


# ---------------------------------------------------------------------------------------------
# Export into other recommenders
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ExportConfig(_Checked):
    """Write item vectors (from an embedding store or a distill run) in another framework's layout,
    with rows aligned to that framework's item ids: MMRec image_feat.npy/text_feat.npy, a RecBole
    pretrained-embedding atomic file, Cornac-ready .npy + ids, or plain npy / parquet."""

    source: str = opt(REQUIRED, "Embedding store (`mllmrec embed`) or distill run (`mllmrec distill`) directory.",
                      positional=True)
    format: Literal["mmrec", "recbole", "cornac", "npy", "parquet"] = opt(
        REQUIRED, "Target layout: mmrec (image_feat.npy + text_feat.npy, row i = MMRec item id i), recbole "
        "(<dataset>.itememb atomic file), cornac (features.npy + ids.json for FeatureModality/ImageModality), "
        "npy (features.npy + ids.json) or parquet (features.parquet: id + vector)."
    )
    out: str = opt(REQUIRED, "Output directory (for mmrec: the MMRec dataset folder, data/<dataset>/).")
    channel: str | None = opt(
        None, "Channel to export (not mmrec): mm, visual, text, fused, or student for a distill run; "
        "default: mm for a store, student for a distill run."
    )
    ids: str | None = opt(
        None, "Id list or id-map file fixing the row order (row i = its i-th id): .txt (one id per line), "
        ".json, or .csv/.tsv/.parquet with an id column and a row column such as MMRec's i_id_mapping.csv "
        "(asin, itemID). For mmrec with an MMRec .inter: maps MMRec itemID -> raw id."
    )
    interactions: str | None = opt(
        None, "Interaction log. mmrec: the dataset's MMRec .inter file (userID, itemID, x_label; n_items = "
        "max itemID + 1), or any other log (csv/tsv/parquet/jsonl with raw ids), which is remapped to "
        "MMRec ids 0..n-1 and written as <dataset>.inter with id-mapping files beside it. Other formats: "
        "every item of the log gets a row (RecBole would silently zero items without one)."
    )
    user_field: str = opt("user_id", "Column of --interactions holding the user id (MMRec's userID is found too).")
    item_field: str = opt("item_id", "Column of --interactions holding the item id (MMRec's itemID is found too).")
    missing: Literal["error", "zero", "mean", "new-item"] = opt(
        "error", "Items the source has no vector for: stop with an error naming them, or fill with zeros, "
        "the channel mean, or (distill runs) the learned new-item mapping; counts go into the manifest."
    )
    image_channel: str = opt("visual", "mmrec: channel written to image_feat.npy ('none': no image file).")
    text_channel: str = opt("mm", "mmrec: channel written to text_feat.npy ('none': no text file).")
    single_channel: Literal["both", "image", "text"] = opt(
        "both", "mmrec: when the source has only one of --image-channel/--text-channel, write that one "
        "into both files, only image_feat.npy, or only text_feat.npy."
    )
    stale_caches: Literal["delete", "warn"] = opt(
        "delete", "mmrec: graph caches that MMRec models build from the features and keep in the dataset "
        "folder (*_adj_*.pt) would silently reuse the old features: delete them, or only warn."
    )
    dataset: str | None = opt(None, "Dataset name for <dataset>.inter / <dataset>.itememb (default: the --out folder name).")
    seed: int = opt(0, "mmrec with a raw log: seed of the MMRec 8:1:1 per-user split written as x_label "
                       "(a log with its own x_label column keeps it).")
    recbole_id_field: str = opt("iid", "recbole: id column of the embedding file (must differ from the item "
                                       "id field of your .inter; list it in alias_of_item_id).")
    recbole_emb_field: str = opt("item_emb", "recbole: embedding column of the file (float_seq).")
    store: str | None = opt(None, "Distill runs: embedding store for the new-item mapping and non-student "
                                  "channels (default: the store the run was trained from).")
    overwrite: bool = opt(False, "Replace output files that already exist.")


# ---------------------------------------------------------------------------------------------
# Distillation and serving
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class DistillSettings(_Checked):
    """How the teacher and the student are built and trained (no paths: eval scripts reuse these)."""

    channels: tuple[str, ...] = opt(
        ("auto",), "Store channels the teacher reads; auto = mm plus visual/text when the store has them."
    )
    teacher_dim: int = opt(64, "Teacher: dimension of each channel's projection and user vectors.")
    teacher_layers: int = opt(2, "Teacher: graph propagation layers over the user-item graph.")
    prompt_tokens: int = opt(16, "Teacher: PCA hard tokens per channel that the soft prompts are built from.")
    teacher_item_ids: bool = opt(False, "Teacher: add item ID embeddings to the item features (zeroed for untrained items).")
    teacher_kind: Literal["promptmm", "freedom"] = opt(
        "promptmm", "Teacher model: promptmm (features + soft prompts over the user-item graph) or freedom "
        "(frozen item kNN graphs + degree-pruned LightGCN + projected content; mllmrec.recsys.freedom)."
    )
    teacher_knn: int = opt(10, "Freedom teacher: neighbours per item in each channel's frozen item-item graph.")
    teacher_item_layers: int = opt(1, "Freedom teacher: propagation layers over the item-item graph.")
    teacher_edge_keep: float = opt(0.2, "Freedom teacher: share of user-item edges kept each epoch (degree-sensitive "
                                   "pruning; 0.2 = FREEDOM's dropout 0.8).")
    teacher_content_loss: float = opt(0.01, "Freedom teacher: weight of the BPR loss of users against projected content.")
    teacher_content_in_score: bool = opt(False, "Freedom teacher: add the projected content to the item vectors it "
                                         "scores (lost on Office validation; content then enters via the item graph).")
    teacher_prompt: bool = opt(False, "Freedom teacher: add PromptMM soft prompts (from --prompt-tokens PCA hard tokens).")
    teacher_reg: float | None = opt(None, "L2 weight of the teacher; default: --reg for promptmm, 0 for freedom.")
    student: Literal["mf", "lightgcn"] = opt("lightgcn", "Student ID tower: matrix factorisation or LightGCN.")
    dim: int = opt(64, "Student embedding dimension (e.g. 32 or 64).")
    student_layers: int = opt(2, "LightGCN student: propagation layers.")
    losses: tuple[str, ...] = opt(
        ("bpr", "pairwise_kd:0.5", "listwise_kd:1", "embedding_kd:0.1"),
        "Student losses as NAME[:WEIGHT]: bpr, pairwise_kd, listwise_kd, embedding_kd.",
    )
    kd: bool = opt(True, "Distil from the teacher; --no-kd trains the same student with its bpr loss only.")
    tau: float = opt(1.0, "Temperature of the pairwise and list-wise KD losses.")
    alpha: float = opt(2.0, "Exponent of the embedding KD loss (1 - cos)^alpha.")
    negatives: int = opt(10, "List-wise KD: sampled negatives per positive.")
    tune_prompt: bool = opt(True, "Tune the teacher's prompt module again during distillation (PromptMM).")
    teacher_bpr: float = opt(1.0, "Weight of the teacher's own BPR while its prompts are tuned during distillation.")
    epochs: int = opt(200, "Student: most epochs (early stopping on validation Recall@20).")
    teacher_epochs: int = opt(200, "Teacher: most epochs (early stopping on validation Recall@20).")
    batch_size: int = opt(2048, "Training pairs per batch.")
    lr: float = opt(0.005, "Adam learning rate of the student (and of the teacher unless --teacher-lr).")
    teacher_lr: float | None = opt(None, "Adam learning rate of the teacher; default: --lr.")
    patience: int = opt(
        20, "Stop after this many epochs without a better validation Recall@20 (KD students can plateau for "
        "a while before improving)."
    )
    reg: float = opt(1e-4, "L2 weight on the batch's embedding rows.")
    mapping_l2: float | None = opt(
        None, "Ridge penalty of the new-item mapping; default: picked on held-out training items."
    )
    seed: int = opt(0, "Seed for the split, initialisation and sampling.")
    device: str = opt("cpu", "Torch device (cpu, cuda, cuda:1 ...).")
    progress: bool = opt(True, "Show progress bars.")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("teacher_dim", "prompt_tokens", "dim", "negatives", "epochs", "teacher_epochs",
                     "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.teacher_layers < 0 or self.student_layers < 0:
            raise ConfigError("teacher_layers and student_layers must be >= 0")
        if not (self.tau > 0 and self.alpha > 0 and self.lr > 0 and self.reg >= 0 and self.teacher_bpr >= 0):
            raise ConfigError("tau, alpha and lr must be > 0; reg and teacher_bpr >= 0")
        if self.teacher_knn < 1 or self.teacher_item_layers < 0 or not 0 < self.teacher_edge_keep <= 1:
            raise ConfigError("teacher_knn >= 1, teacher_item_layers >= 0, 0 < teacher_edge_keep <= 1")
        if self.teacher_content_loss < 0 or (self.teacher_reg is not None and self.teacher_reg < 0):
            raise ConfigError("teacher_content_loss and teacher_reg must be >= 0")
        if self.teacher_lr is not None and not self.teacher_lr > 0:
            raise ConfigError(f"teacher_lr must be > 0, got {self.teacher_lr}")
        if self.mapping_l2 is not None and not self.mapping_l2 > 0:
            raise ConfigError(f"mapping_l2 must be > 0, got {self.mapping_l2}")


@dataclass(frozen=True, kw_only=True)
class DistillConfig(DistillSettings):
    """Distil a multimodal teacher into an ID tower (PromptMM): serving becomes a table lookup plus a
    nearest-neighbour search. Teacher: frozen store vectors + soft prompts + graph propagation, BPR.
    Student: MF or LightGCN trained with BPR + pairwise, list-wise and embedding KD. Model selection
    on validation Recall@20 only; test is evaluated once, after selection. Store items without
    training interactions get student vectors from a learned mapping of their MLLM vectors."""

    store: str = opt(REQUIRED, "Embedding store written by `mllmrec embed` (channel mm, optional visual/text).",
                     positional=True)
    interactions: str = opt(REQUIRED, "Interaction log (.csv, .tsv/.inter, .parquet, .jsonl).")
    out: str = opt(REQUIRED, "Run directory to write (tables, id maps, new-item mapping, manifest).")
    user_field: str = opt("user_id", "Column of the log holding the user id.")
    item_field: str = opt("item_id", "Column of the log holding the item id (matched against the store's ids).")
    time_field: str = opt("timestamp", "Column of the log holding the time (for --split temporal).")
    split: str = opt(
        "random", "random (MMRec per-user 8:1:1 with --seed), temporal, labels (MMRec x_label) or the "
        "folder of a saved split (mllmrec.datasets.splits)."
    )
    missing_items: Literal["drop", "error"] = opt(
        "drop", "Log items that have no vector in the store: drop their interactions (counted and listed in "
        "the manifest) or stop with an error."
    )
    overwrite: bool = opt(False, "Replace an existing run directory in --out.")


@dataclass(frozen=True, kw_only=True)
class RecommendConfig(_Checked):
    """Top-k items for users from a distill run: faiss inner-product search over the student's item
    table (GPU faiss when installed). Items the user interacted with are left out unless
    --no-exclude-seen; store items that had no training interactions come through the new-item mapping."""

    run: str = opt(REQUIRED, "Run directory written by `mllmrec distill`.", positional=True)
    user: str | None = opt(None, "One user id to recommend for (printed).")
    users_file: str | None = opt(None, "CSV or parquet file of user ids (column --user-field); writes --out.")
    user_field: str = opt("user_id", "Column of --users-file holding the user ids.")
    out: str | None = opt(None, "With --users-file: output .parquet or .csv (user_id, rank, item_id, score, via).")
    k: int = opt(20, "Number of items per user.", short="-k")
    exclude_seen: bool = opt(True, "Leave out items the user already interacted with (in the run's log).")
    unknown_users: Literal["popularity", "error"] = opt(
        "popularity", "A user the run has no vector for: recommend the most popular items, or stop with an error."
    )
    store: str | None = opt(None, "Embedding store for new items; default: the store the run was trained on.")
    new_items: bool = opt(True, "Also recommend store items without training interactions (via the mapping).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.user is None) == (self.users_file is None):
            raise ConfigError("give exactly one of --user and --users-file")
        if self.users_file is not None and self.out is None:
            raise ConfigError("--users-file needs --out (a .parquet or .csv file)")
        if self.out is not None and not self.out.endswith((".parquet", ".csv")):
            raise ConfigError(f"--out must end in .parquet or .csv, got {self.out!r}")
        if self.k < 1:
            raise ConfigError(f"k must be >= 1, got {self.k}")


# ---------------------------------------------------------------------------------------------
# Loading from dicts / YAML
# ---------------------------------------------------------------------------------------------
def _coerce(name: str, tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if value is None:
        if type(None) in args or tp is type(None):
            return None
        raise ConfigError(f"{name}: a value is required")
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _coerce(name, inner[0], value)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{name}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        return tuple(_coerce(name, args[0], v) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{name}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError as e:
            raise ConfigError(f"{name}: expected an integer, got {value!r}") from e
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{name}: expected a number, got {value!r}") from e
    if tp is str:
        if isinstance(value, (list, dict, tuple)):
            raise ConfigError(f"{name}: expected a single value, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type, data: dict[str, Any]):
    """Build a config, refusing unknown keys and values of the wrong type."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        import difflib

        hints = [f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(k, fields, n=1)) else k
                 for k in unknown]
        raise ConfigError(f"unknown option(s): {', '.join(hints)}; known: {', '.join(sorted(fields))}")
    missing = [n for n, f in fields.items() if n not in data and f.default is REQUIRED and f.default_factory is REQUIRED]
    if missing:
        flags = ", ".join(n.upper() if f.metadata.get("positional") else "--" + n.replace("_", "-")
                          for n, f in fields.items() if n in missing)
        raise ConfigError(f"missing required option(s): {flags} (YAML keys: {', '.join(missing)})")
    return cls(**{k: _coerce(k, hints[k], v) for k, v in data.items()})


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of keys to values")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{path}: keys must be names, got {bad!r}")
    return {k.replace("-", "_"): v for k, v in data.items()}


def to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-ready dict of a config (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def diff_values(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """[(dotted key, a's value, b's value)] where two nested dicts (e.g. run identities) differ;
    tuples and lists compare alike."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in diff_values(a.get(k), b.get(k), f"{prefix}{k}.")]
    a, b = (list(a) if isinstance(a, tuple) else a), (list(b) if isinstance(b, tuple) else b)
    return [] if a == b else [(prefix.rstrip("."), a, b)]
