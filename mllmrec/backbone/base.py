"""The Encoder protocol every backbone implements, and the small pieces they share.

`encode(batch of RenderedItem) -> {channel: Tensor[n, d]}` (DESIGN.md). `mm` is always the hidden
state of the last prompt token; extra channels (e.g. `visual` for mICL) come from the slots the
prompt marks. Vectors are returned as float32 on the CPU, in batch order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mllmrec.errors import MllmrecError
from mllmrec.types import RenderedItem

if TYPE_CHECKING:
    import torch


@runtime_checkable
class Encoder(Protocol):
    name: str  # backbone id as the user gave it (hub id or path)
    image_placeholder: str  # what the prompt renderer inserts once per image
    hidden_size: int

    def render_chat(self, user_text: str, system: str | None = None) -> str | None:
        """Wrap a user message with the model's chat template (generation prompt opened), or None
        when the tokenizer has no chat template."""

    def fingerprint(self) -> dict[str, Any]:
        """Identity of the weights for manifests: backbone id, revision, weights fingerprint."""

    def estimate_tokens(self, text_chars: int, image_sizes: Sequence[tuple[int, int]]) -> int:
        """Cheap token-count estimate from text length and image (width, height) sizes, used to sort
        items into batches of similar length before their images are decoded."""

    def encode(self, batch: Sequence[RenderedItem]) -> dict[str, torch.Tensor]:
        """Embed a batch: {channel: float32 CPU tensor [len(batch), hidden_size]}."""


class BackboneError(MllmrecError, ValueError):
    """The model cannot be found, is of an unsupported kind, or is asked for something it cannot do."""


def render_with_chat_template(tokenizer: Any, user_text: str, system: str | None = None) -> str | None:
    """Shared implementation of `Encoder.render_chat` for tokenizer-backed encoders."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user_text}
    ]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def special_strings(tokenizer: Any) -> tuple[str, ...]:
    """The tokenizer's special/control token strings (Qwen: `<|im_end|>`, `<|image_pad|>` ...)."""
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    found = {t.content for t in added.values() if getattr(t, "special", False)}
    found |= set(getattr(tokenizer, "all_special_tokens", []) or [])
    return tuple(sorted(found))


def weights_fingerprint(module: torch.nn.Module, sample: int = 1024) -> str:
    """A cheap, stable fingerprint of a model's weights.

    Hashing every byte of a 2B-parameter model would take longer than embedding a small catalogue,
    so each tensor contributes its name, shape, dtype and a strided sample of at most `sample`
    values. Different checkpoints of the same architecture (or a different random init) differ in
    the sample with overwhelming probability.
    """
    import torch

    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        flat = t.detach().reshape(-1)
        step = max(1, flat.numel() // sample)
        picked = flat[::step][:sample].to("cpu", torch.float32).contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(picked.numpy().tobytes())
    return h.hexdigest()


def resolve_device(device: str | None) -> str:
    """'auto'/None -> cuda when available, else cpu."""
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str | None, device: str):
    """Default precision: bf16 on GPU, fp32 on CPU (DESIGN.md / issue 2)."""
    import torch

    if dtype in (None, "auto"):
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
            "float16": torch.float16, "fp16": torch.float16}[dtype]


def four_bit_config(compute_dtype: Any, skip: list[str]) -> Any:
    """bitsandbytes 4-bit (NF4) settings for QLoRA; `skip` names modules kept in full precision
    (matched from the start of the module name: the vision tower and the LM head)."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise BackboneError("--quantize 4bit needs bitsandbytes: pip install 'mllmrec[qlora]'") from e
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype,
                              llm_int8_skip_modules=skip)
