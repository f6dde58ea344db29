"""Open the right Encoder for a model reference (hub id, transformers dir, composed dir).

Which Encoder class opens it comes from the family table (`backbone/families.py`), keyed by what
the model declares itself to be; nothing here names an encoder class.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
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
    with opening(spec.model):
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
    looks_local = (
        model.startswith((".", "/", "~")) or model.count("/") >= 2 or p.suffix in (".gguf", ".safetensors")
    )
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

    with opening(model):
        family = family_of(model, trust_remote_code=trust_remote_code)
        where = f"{model}/{family.tokenizer_subdir}" if family.tokenizer_subdir else model
        tok = AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code)
    return (lambda user, system: render_with_chat_template(tok, user, system)), family.image_placeholder


@contextmanager
def opening(model: str) -> Iterator[None]:
    """Turn the hub client's failure to find a model's files (an OSError from transformers /
    huggingface_hub: offline and not cached, no such repository, a gated one) into one line naming
    the model and what to do, instead of a transformers traceback that never names our option."""
    try:
        yield
    except OSError as e:
        if Path(model).expanduser().is_dir() and not isinstance(e, FileNotFoundError):
            raise  # a local folder with a real I/O problem: keep the traceback
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        todo = (
            f"HF_HUB_OFFLINE is set and it is not in the local cache: download it first "
            f"(`hf download {model}` with network) or pass a model directory"
            if offline
            else "check the id (org/name), your network and access rights, or pass a model directory"
        )
        raise BackboneError(f"cannot open model {model!r}: {todo} ({first})") from None
