"""Open the right Encoder for a model reference (hub id, transformers dir, composed dir).

Which Encoder class opens it comes from the family table (`backbone/families.py`), keyed by what
the model declares itself to be; nothing here names an encoder class.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllmrec.backbone.base import BackboneError
from mllmrec.backbone.config import ModelSpec

if TYPE_CHECKING:
    from mllmrec.backbone.base import Encoder

HEADS_SUBDIR = "mllmrec_heads"  # trained heads beside a merged model (see `mllmrec merge`)


def open_encoder(spec: ModelSpec, device: str | None = None, *, load_in_4bit: bool = False) -> Encoder:
    """Load the backbone named by `spec.model` with its family's Encoder (Qwen-VL, composed ...).

    A model directory written by `mllmrec merge` carries trained heads (projection, fusion gate,
    in `mllmrec_heads/`); they are attached, so the merged model gives the tuned run's vectors.
    """
    from mllmrec.backbone.families import family_of

    check_model_reference(spec.model)
    family = family_of(spec.model, spec.revision, spec.trust_remote_code)
    enc = family.open(spec, device, load_in_4bit=load_in_4bit)
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
    from transformers import AutoTokenizer

    from mllmrec.backbone.base import render_with_chat_template
    from mllmrec.backbone.families import family_of

    family = family_of(model, trust_remote_code=trust_remote_code)
    where = f"{model}/{family.tokenizer_subdir}" if family.tokenizer_subdir else model
    tok = AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code)
    return (lambda user, system: render_with_chat_template(tok, user, system)), family.image_placeholder
