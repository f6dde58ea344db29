"""Open the right Encoder for a model reference (hub id, transformers dir, composed dir)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mllmrec.backbone.base import BackboneError
from mllmrec.backbone.config import ModelSpec

HEADS_SUBDIR = "mllmrec_heads"  # trained heads beside a merged model (see `mllmrec merge`)


def open_encoder(spec: ModelSpec, device: str | None = None, *, load_in_4bit: bool = False) -> Any:
    """Load the backbone named by `spec.model`: a `mllmrec compose` directory or a Qwen-VL model.

    A model directory written by `mllmrec merge` carries trained heads (projection, fusion gate,
    in `mllmrec_heads/`); they are attached, so the merged model gives the tuned run's vectors.
    """
    from mllmrec.backbone.composed import ComposedEncoder, is_composed_dir

    dev = device or spec.device
    check_model_reference(spec.model)
    if is_composed_dir(spec.model):
        enc = ComposedEncoder.load(spec.model, device=dev, dtype=spec.dtype, load_in_4bit=load_in_4bit)
    else:
        from mllmrec.backbone.hf import QwenVLEncoder

        enc = QwenVLEncoder.load(
            spec.model, revision=spec.revision, device=dev, dtype=spec.dtype, min_pixels=spec.min_pixels,
            max_pixels=spec.max_pixels, trust_remote_code=spec.trust_remote_code, load_in_4bit=load_in_4bit,
        )
    heads = Path(spec.model) / HEADS_SUBDIR
    if heads.is_dir():
        from mllmrec.backbone.trained_run import load_heads

        load_heads(enc, heads)
    return enc


def check_model_reference(model: str) -> None:
    """A reference that is clearly a path (./x, /x, ~/x, a/b/c) must exist; hub ids are `org/name`.

    Without this, a mistyped local path reaches the hub client and fails with a message about
    repository-id syntax that says nothing about the missing directory.
    """
    p = Path(model).expanduser()
    looks_local = model.startswith((".", "/", "~")) or model.count("/") >= 2 or p.suffix in (".gguf", ".safetensors")
    if looks_local and not p.is_dir():
        near = sorted(q.name for q in p.parent.iterdir() if q.is_dir())[:8] if p.parent.is_dir() else []
        hint = f"; folders in {p.parent}: {', '.join(near)}" if near else ""
        raise BackboneError(f"no such model directory: {model}{hint}")


def open_renderer(model: str, trust_remote_code: bool = False) -> tuple[Any, str]:
    """(chat function, image placeholder) for rendering prompts without loading any weights."""
    check_model_reference(model)
    from transformers import AutoConfig, AutoTokenizer

    from mllmrec.backbone.base import render_with_chat_template
    from mllmrec.backbone.composed import COMPOSED_TOKENIZER_SUBDIR, IMAGE_TOKEN, is_composed_dir
    from mllmrec.backbone.presets import family_for

    if is_composed_dir(model):
        tok = AutoTokenizer.from_pretrained(f"{model}/{COMPOSED_TOKENIZER_SUBDIR}")
        placeholder = IMAGE_TOKEN
    else:
        placeholder = family_for(AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code).model_type).image_placeholder
        tok = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
    return (lambda user, system: render_with_chat_template(tok, user, system)), placeholder
