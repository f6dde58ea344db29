"""The backbone family table: one row per kind of backbone, carrying everything the code branches on.

A row says which Encoder class opens the model, how images appear in a prompt, where LoRA goes,
which modules train in full, what stays in full precision under 4-bit, and whether the encoder can
feed a late-fusion gate. Loading, LoRA, merging and the tests read the row instead of testing the
encoder's type, so adding a family is one row here (plus its Encoder class if it is a new kind).

Rows are keyed by what a model directory declares itself to be: transformers' `config.model_type`,
or the `format` of a `mllmrec compose` directory's `composed.json`.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mllmrec.backbone.base import Encoder
    from mllmrec.backbone.config import ModelSpec

COMPOSED_FORMAT = "mllmrec-composed"  # `format` in composed.json; the composed row's model_type
COMPOSED_META = "composed.json"
COMPOSED_IMAGE_TOKEN = "<image>"


@dataclass(frozen=True)
class Family:
    """One backbone family and the behaviour that differs between families."""

    name: str  # recorded in manifests (Qwen-VL fingerprints carry it as "family")
    model_type: str  # transformers config.model_type, or a composed directory's format
    encoder: str  # "module:Class" of its Encoder; imported only when a model is opened (torch is heavy)
    # Image-token rule: a prompt holds `image_placeholder` once per image; the encoder repeats
    # `image_pad` once per image token (Qwen: per merged patch of the processor's grid; composed:
    # the connector's fixed tokens per image).
    image_placeholder: str
    image_pad: str
    lora_targets: tuple[str, ...]  # language-model modules LoRA wraps by default
    vision_lora_targets: tuple[str, ...]  # vision-tower modules for --vision-lora
    # Where LoRA targets live. With scopes (regexes over full module names) one peft model wraps
    # `encoder.network` and matches both LM and ViT modules in it, so LM names never match the ViT.
    # Without (None), `network` is the LM alone, matched by leaf name, and vision LoRA is a second
    # adapter on `encoder.vision`.
    lm_scope: str | None = None
    vision_scope: str | None = None
    # With --train-connector: modules inside `network` trained in full (peft modules_to_save).
    # A connector held outside `network` (`encoder.connector`) is trained by the trainer directly.
    full_train_modules: tuple[str, ...] = ()
    quant_skip: tuple[str, ...] = ("lm_head",)  # modules kept in full precision under --quantize 4bit
    fusion_gate: bool = False  # the encoder gives pooled vision features, so a late-fusion gate applies
    tokenizer_subdir: str = ""  # where the tokenizer lives inside the model directory

    def __post_init__(self) -> None:
        if self.vision_scope is not None and self.lm_scope is None:
            raise ValueError(f"family {self.name}: vision LoRA inside the network needs an lm_scope too")

    def encoder_class(self) -> Any:
        """The Encoder class (imported now)."""
        module, _, cls = self.encoder.partition(":")
        return getattr(importlib.import_module(module), cls)

    def open(self, spec: ModelSpec, device: str | None = None, *, load_in_4bit: bool = False) -> Encoder:
        """Load `spec.model` with this family's Encoder class."""
        return self.encoder_class().open(spec, device or spec.device, load_in_4bit=load_in_4bit)


_QWEN_LORA = ("q_proj", "k_proj", "v_proj", "o_proj")
_QWEN = {
    "encoder": "mllmrec.backbone.hf:QwenVLEncoder",
    "image_placeholder": "<|vision_start|><|image_pad|><|vision_end|>",
    "image_pad": "<|image_pad|>",
    "lora_targets": _QWEN_LORA,
    "vision_lora_targets": ("qkv", "proj"),
    "lm_scope": r".*language_model\..*",
    "vision_scope": r".*visual\.blocks\..*",
    "full_train_modules": ("merger",),  # visual.merger, the vision->LM connector
    "quant_skip": ("model.visual", "lm_head"),  # the ViT is small and often narrower than bnb's blocks
    "fusion_gate": True,
}

FAMILIES: dict[str, Family] = {
    f.model_type: f
    for f in (
        Family("qwen2-vl", "qwen2_vl", **_QWEN),
        Family("qwen2.5-vl", "qwen2_5_vl", **_QWEN),
        Family("qwen3-vl", "qwen3_vl", **_QWEN),
        # Any causal LM + vision encoder + connector (`mllmrec compose`): LoRA on the LM and, with
        # --vision-lora, on the CLIP/SigLIP tower; the late-fusion gate is not wired for it yet.
        Family(
            "composed",
            COMPOSED_FORMAT,
            "mllmrec.backbone.composed:ComposedEncoder",
            image_placeholder=COMPOSED_IMAGE_TOKEN,
            image_pad=COMPOSED_IMAGE_TOKEN,
            lora_targets=("q_proj", "k_proj", "v_proj", "o_proj"),
            vision_lora_targets=("q_proj", "k_proj", "v_proj", "out_proj"),
            tokenizer_subdir="lm",
        ),
    )
}


def family_for(model_type: str) -> Family:
    """The row for a declared model type; a BackboneError naming the supported ones otherwise."""
    try:
        return FAMILIES[model_type]
    except KeyError:
        known = ", ".join(f"{f.name} ({t})" for t, f in FAMILIES.items() if t != COMPOSED_FORMAT)
        from mllmrec.backbone.base import BackboneError

        raise BackboneError(
            f"model type {model_type!r} is not a supported vision-language backbone; supported: {known}, "
            "or a composed model directory (`mllmrec compose`)"
        ) from None


def declared_type(model: str, revision: str | None = None, trust_remote_code: bool = False) -> str:
    """What a model reference declares itself to be: a composed directory's format, else transformers'
    `config.model_type` (read from the config file only, no weights)."""
    meta = Path(model) / COMPOSED_META
    if meta.is_file():
        return str(json.loads(meta.read_text(encoding="utf-8")).get("format"))
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(
        model, revision=revision, trust_remote_code=trust_remote_code
    ).model_type


def family_of(model: str, revision: str | None = None, trust_remote_code: bool = False) -> Family:
    """The family row of a model reference (hub id, transformers directory or composed directory)."""
    return family_for(declared_type(model, revision, trust_remote_code))
