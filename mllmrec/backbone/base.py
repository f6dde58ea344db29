"""The Encoder protocol every backbone implements, its shared base, and the small pieces they share.

`encode(batch of RenderedItem) -> {channel: Tensor[n, d]}` (DESIGN.md). `mm` is always the hidden
state of the last prompt token; extra channels (e.g. `visual` for mICL) come from the slots the
prompt marks. Vectors are returned as float32 on the CPU, in batch order.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mllmrec.errors import MllmrecError
from mllmrec.types import RenderedItem

if TYPE_CHECKING:
    import torch
    from torch import nn

    from mllmrec.backbone.families import Family


@runtime_checkable
class Encoder(Protocol):
    """Everything the stages use of a backbone (embed, train, merge, applying a trained run).

    Family differences are data on `family` (the row of `backbone/families.py`), not members
    that some encoders lack; `EncoderBase` implements the members every kind shares.
    """

    name: str  # backbone id as the user gave it (hub id or path)
    family: Family  # the family row: image-token rule, LoRA targets, 4-bit skips, gate support
    image_placeholder: str  # what the prompt renderer inserts once per image
    hidden_size: int  # width of the LM's hidden states (the vectors before a projection head)
    accepts_images: bool  # False for a text-only model: items must be rendered without images
    special_tokens: tuple[str, ...]  # control-token strings item text must not contain
    tokenizer: Any
    vision: nn.Module | None  # a vision tower held outside `network` (composed); None when inside it
    connector: nn.Module | None  # a vision->LM connector held outside `network` (composed), else None
    fusion_gate: nn.Module | None  # late-fusion gate of a trained run; adds the `fused` channel
    projection: nn.Module | None  # projection head of a trained run; maps every channel to `out_dim`

    @property
    def network(self) -> nn.Module:
        """The module the train stage wraps with LoRA (Qwen-VL: the whole model; composed: the LM)."""

    @property
    def out_dim(self) -> int:
        """Width of every output channel: the projection's, else `hidden_size`."""

    @property
    def supports_fusion_gate(self) -> bool:
        """Whether pooled vision features exist for a late-fusion gate (from the family row)."""

    def networks(self) -> dict[str, nn.Module]:
        """The encoder's own modules by name (not the heads); the names prefix trainable weights in
        train checkpoints."""

    def render_chat(self, user_text: str, system: str | None = None) -> str | None:
        """Wrap a user message with the model's chat template (generation prompt opened), or None
        when the tokenizer has no chat template."""

    def fingerprint(self) -> dict[str, Any]:
        """Identity of the weights for manifests: backbone id, revision, weights fingerprint."""

    def weights_changed(self) -> None:
        """Forget the cached weights fingerprint (after adapters were merged in)."""

    def estimate_tokens(self, text_chars: int, image_sizes: Sequence[tuple[int, int]]) -> int:
        """Cheap token-count estimate from text length and image (width, height) sizes, used to sort
        items into batches of similar length before their images are decoded."""

    def prepare(self, batch: Sequence[RenderedItem]) -> Any:
        """CPU-side work for a batch (kept apart so a pipeline can prepare the next batch ahead)."""

    def features(self, prepared: Any) -> dict[str, torch.Tensor]:
        """{channel: [n, out_dim]} on the model's device, with autograd (the train stage's forward)."""

    def forward(self, prepared: Any) -> dict[str, torch.Tensor]:
        """`features` without autograd, as float32 CPU tensors."""

    def encode(self, batch: Sequence[RenderedItem]) -> dict[str, torch.Tensor]:
        """Embed a batch: {channel: float32 CPU tensor [len(batch), out_dim]}."""

    def save(self, out: str | os.PathLike[str]) -> Path:
        """Write the model as a directory this package (and, for Qwen-VL, plain transformers) loads."""


class EncoderBase:
    """The members every encoder kind shares; subclasses set the attributes the Protocol lists and
    implement `prepare`, `features`, `networks`, `fingerprint`, `estimate_tokens` and `save`."""

    family: Family
    tokenizer: Any
    hidden_size: int
    projection: Any = None
    fusion_gate: Any = None
    _weights_fp: str | None = None

    @property
    def out_dim(self) -> int:
        return int(self.projection.out_dim) if self.projection is not None else self.hidden_size

    @property
    def supports_fusion_gate(self) -> bool:
        return self.family.fusion_gate

    def render_chat(self, user_text: str, system: str | None = None) -> str | None:
        return render_with_chat_template(self.tokenizer, user_text, system)

    def weights_changed(self) -> None:
        self._weights_fp = None

    def weights_hash(self) -> str:
        """`weights_fingerprint` of `_hashed_weights()`, computed once (hashing a large LM is not free)."""
        if self._weights_fp is None:
            self._weights_fp = weights_fingerprint(self._hashed_weights())
        return self._weights_fp

    def _hashed_weights(self) -> nn.Module:
        raise NotImplementedError

    def features(self, prepared: Any) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def prepare(self, batch: Sequence[RenderedItem]) -> Any:
        raise NotImplementedError

    def forward(self, prepared: Any) -> dict[str, torch.Tensor]:
        import torch

        with torch.inference_mode():
            return {ch: v.float().cpu() for ch, v in self.features(prepared).items()}

    def encode(self, batch: Sequence[RenderedItem]) -> dict[str, torch.Tensor]:
        if not batch:
            import torch

            return {"mm": torch.zeros(0, self.out_dim)}
        return self.forward(self.prepare(batch))


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
    return {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }[dtype]


def four_bit_config(compute_dtype: Any, skip: list[str]) -> Any:
    """bitsandbytes 4-bit (NF4) settings for QLoRA; `skip` names modules kept in full precision
    (matched from the start of the module name: the vision tower and the LM head)."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise BackboneError("--quantize 4bit needs bitsandbytes: pip install 'mllmrec[qlora]'") from e
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=compute_dtype,
        llm_int8_skip_modules=skip,
    )
