"""Random-weight Qwen2-VL / Qwen2.5-VL / Qwen3-VL models, built offline in about a second.

Tests and the demo need a real `...ForConditionalGeneration` (so the embedding, LoRA and pooling code
runs unchanged against it) but may not download anything. `build_tiny_qwen` makes one from a config
and saves it with the offline tokenizer and a PIL image processor, in the layout `from_pretrained`
expects. `cached_tiny_qwen` builds each variant once per cache directory.

The configs follow the real models' shapes scaled down; the constraints that keep a scaled-down
model working on transformers 5.x are noted where they are applied.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mllmrec.backbone.families import family_for
from mllmrec.errors import MllmrecError
from mllmrec.testing.cache import cached_build

FAMILIES = ("qwen2-vl", "qwen2.5-vl", "qwen3-vl")
SIZES = ("tiny", "small")
Size = Literal["tiny", "small"]

# Bump whenever the builder's output changes, so stale cached models are not reused.
# 2: cached builds carry mllmrec.testing.cache's completion marker instead of relying on MARKER_FILE.
BUILDER_VERSION = 2
# What was built (family, size, seed, ...); written last by build_tiny_qwen, so a directory
# without it is an unfinished build. The cache tests completion with its own marker.
MARKER_FILE = "mllmrec_tiny_model.json"

_FAMILY_TO_CLASSES = {
    "qwen2-vl": ("Qwen2VLConfig", "Qwen2VLForConditionalGeneration"),
    "qwen2.5-vl": ("Qwen2_5_VLConfig", "Qwen2_5_VLForConditionalGeneration"),
    "qwen3-vl": ("Qwen3VLConfig", "Qwen3VLForConditionalGeneration"),
}


@dataclass(frozen=True)
class _Dims:
    """Layer sizes of one model size; the same for every family so families compare like for like."""

    text_hidden: int
    text_layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vit_width: int
    vit_depth: int
    vit_heads: int
    # Qwen2.5-VL: blocks with full (not windowed) attention. Qwen3-VL: blocks whose output feeds
    # the LLM's early layers. Both must index existing blocks (< vit_depth).
    fullatt_blocks: tuple[int, ...]
    deepstack_blocks: tuple[int, ...]


_DIMS = {
    "tiny": _Dims(64, 2, 4, 2, 128, 32, 2, 2, fullatt_blocks=(1,), deepstack_blocks=(0,)),
    "small": _Dims(256, 4, 4, 2, 512, 128, 4, 4, fullatt_blocks=(1, 3), deepstack_blocks=(1, 2)),
}

# Pixel budget of the saved image processor: a 64x64 image becomes 4 image tokens, a 224x224 one
# 64 (Qwen2/2.5, 14-px patches) or 49 (Qwen3, 16-px patches); larger images are shrunk to that.
_MIN_PIXELS = 56 * 56
_MAX_PIXELS = 224 * 224


class TinyModelError(MllmrecError, ValueError):
    """An unknown family, size or vision kind was asked of a tiny-model builder."""


def family_of_model_type(model_type: str) -> str:
    """Map a saved config's `model_type` (e.g. `qwen2_5_vl`) to our family name (`qwen2.5-vl`).

    A thin wrapper over `backbone.families.family_for`, which owns the table (and the error for an
    unknown type), so the tiny models and the real loaders can never disagree.
    """
    return family_for(model_type).name


def _check_choice(kind: str, value: str, allowed: tuple[str, ...]) -> None:
    """Raise an error naming the allowed values, rather than a KeyError deep in the builder."""
    if value not in allowed:
        raise TinyModelError(f"unknown {kind} {value!r}; choose one of {', '.join(allowed)}")


def _mrope_section(family: str, head_dim: int) -> list[int]:
    """Split the rotary half-dimension into (temporal, height, width) parts.

    M-RoPE requires the parts to sum to head_dim / 2; the library default ([16, 24, 24] or
    [24, 20, 20]) assumes head_dim 128 and breaks smaller models. Proportions follow the real ones.
    """
    half = head_dim // 2
    if family == "qwen3-vl":
        spatial = half * 5 // 16  # real: 24/20/20 of 64
        return [half - 2 * spatial, spatial, spatial]
    temporal = half // 4  # real: 16/24/24 of 64
    spatial = (half - temporal) // 2
    return [half - 2 * spatial, spatial, spatial]


def _vision_config(family: str, d: _Dims) -> dict[str, Any]:
    """Vision tower settings; its output width must equal the LLM's hidden size in every family."""
    if family == "qwen2-vl":
        # Qwen2-VL names the ViT width `embed_dim`; `hidden_size` is the merger's output width.
        return {
            "depth": d.vit_depth,
            "embed_dim": d.vit_width,
            "hidden_size": d.text_hidden,
            "num_heads": d.vit_heads,
        }
    common = {
        "depth": d.vit_depth,
        "hidden_size": d.vit_width,
        "intermediate_size": 4 * d.vit_width,
        "num_heads": d.vit_heads,
        "out_hidden_size": d.text_hidden,
    }
    if family == "qwen2.5-vl":
        return {**common, "fullatt_block_indexes": list(d.fullatt_blocks)}
    # Qwen3-VL learns a square grid of position embeddings and interpolates it; the default
    # 2304 (48x48) would dominate a tiny model's parameter count.
    return {**common, "num_position_embeddings": 256, "deepstack_visual_indexes": list(d.deepstack_blocks)}


def _text_config(family: str, d: _Dims, tokenizer: Any, vocab_size: int | None = None) -> dict[str, Any]:
    """LLM settings; vocabulary and special ids come from the tokenizer so they always agree."""
    head_dim = d.text_hidden // d.heads
    eos = tokenizer.eos_token_id
    cfg: dict[str, Any] = {
        "vocab_size": max(vocab_size or 0, len(tokenizer)),
        "hidden_size": d.text_hidden,
        "num_hidden_layers": d.text_layers,
        "num_attention_heads": d.heads,
        "num_key_value_heads": d.kv_heads,
        "intermediate_size": d.intermediate,
        "max_position_embeddings": 4096,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1e6,
            "mrope_section": _mrope_section(family, head_dim),
        },
        # Qwen uses <|endoftext|> as bos; without ids inside the vocabulary transformers warns
        # that the (1516xx) defaults are out of range.
        "bos_token_id": eos,
        "eos_token_id": eos,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if family == "qwen3-vl":
        cfg["head_dim"] = head_dim  # Qwen3 sets head_dim independently of hidden/heads (default 128)
    return cfg


def _model_config(family: str, size: str, tokenizer: Any, vocab_size: int | None = None) -> Any:
    """The full `...VLConfig` for one family and size, with multimodal ids taken from the tokenizer."""
    import transformers

    d = _DIMS[size]
    config_cls = getattr(transformers, _FAMILY_TO_CLASSES[family][0])
    ids = tokenizer.convert_tokens_to_ids
    return config_cls(
        text_config=_text_config(family, d, tokenizer, vocab_size),
        vision_config=_vision_config(family, d),
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )


def _image_processor(family: str) -> Any:
    """The PIL image processor (the torchvision one cannot load on this CPU stack).

    Qwen3-VL has no image processor of its own: it is Qwen2-VL's with 16-px patches and 0.5 mean/std.
    """
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    kwargs: dict[str, Any] = {"size": {"shortest_edge": _MIN_PIXELS, "longest_edge": _MAX_PIXELS}}
    if family == "qwen3-vl":
        kwargs.update(patch_size=16, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return Qwen2VLImageProcessorPil(**kwargs)


def build_tiny_qwen(
    family: str, out_dir: str | Path, *, size: Size = "tiny", seed: int = 0, vocab_size: int | None = None
) -> Path:
    """Build a random-weight `...ForConditionalGeneration` and save model, tokenizer and image processor.

    The same (family, size, seed) always gives bit-identical weights: initialisation runs under a
    forked RNG seeded with `seed`, so the caller's global RNG state is left untouched. The result
    loads offline with `AutoModelForImageTextToText`, `AutoTokenizer` and `AutoImageProcessor`.
    Returns `out_dir` as a Path. `vocab_size` pads the embedding and LM head to a real model's
    vocabulary (Qwen2-VL: 151,936) so benchmarks pay their true cost; the tokenizer never emits the
    extra ids.
    """
    _check_choice("family", family, FAMILIES)
    _check_choice("size", size, SIZES)
    import torch
    import transformers

    from mllmrec.testing.tokenizer import build_tokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    config = _model_config(family, size, tokenizer, vocab_size)
    model_cls = getattr(transformers, _FAMILY_TO_CLASSES[family][1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _image_processor(family).save_pretrained(out)
    # Written last (see MARKER_FILE).
    meta = {
        "family": family,
        "size": size,
        "seed": seed,
        "vocab_size": config.text_config.vocab_size,
        "builder_version": BUILDER_VERSION,
    }
    (out / MARKER_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def default_cache_dir() -> Path:
    """Where built models are kept: `$MLLMREC_CACHE`, else `~/.cache/mllmrec`."""
    env = os.environ.get("MLLMREC_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "mllmrec"


def cached_tiny_qwen(
    family: str,
    *,
    size: str = "tiny",
    seed: int = 0,
    cache_dir: str | Path | None = None,
    vocab_size: int | None = None,
) -> Path:
    """Return the directory of a built tiny model, building it on first use.

    Path: `<cache_dir>/tiny-models/<family>-<size>-s<seed>-v<BUILDER_VERSION>`. Built once by
    `mllmrec.testing.cache.cached_build`, so concurrent test workers never see a half-written
    model; if another process finishes first, its copy is used and ours discarded.
    """
    _check_choice("family", family, FAMILIES)
    _check_choice("size", size, SIZES)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    vocab = f"-vocab{vocab_size}" if vocab_size else ""
    final = root / "tiny-models" / f"{family}-{size}-s{seed}{vocab}-v{BUILDER_VERSION}"

    def build(tmp: Path) -> None:
        # Looked up at call time (not bound earlier), so tests can count builds by patching it.
        build_tiny_qwen(family, tmp, size=size, seed=seed, vocab_size=vocab_size)  # type: ignore[arg-type]

    return cached_build(final, build)
