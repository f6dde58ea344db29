"""Per-family facts about supported backbones, in one table instead of scattered if-branches."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str
    model_type: str  # transformers config.model_type
    image_pad: str  # the token repeated once per merged image patch
    image_placeholder: str  # what a prompt holds per image before expansion
    lora_targets: tuple[str, ...]  # language-model modules LoRA tunes by default (train stage)
    vision_lora_targets: tuple[str, ...] = ("qkv", "proj")  # vision-tower modules for --vision-lora
    # Where those modules live (regexes over full module names), so LM names never match the ViT.
    lm_scope: str = r".*language_model\..*"
    vision_scope: str = r".*visual\.blocks\..*"


_QWEN_IMG = "<|vision_start|><|image_pad|><|vision_end|>"
_QWEN_LORA = ("q_proj", "k_proj", "v_proj", "o_proj")
# A composed model: LoRA goes on the causal LM and (with --vision-lora) on the CLIP/SigLIP tower.
COMPOSED_LORA = ("q_proj", "k_proj", "v_proj", "o_proj")
COMPOSED_VISION_LORA = ("q_proj", "k_proj", "v_proj", "out_proj")

FAMILIES: dict[str, Family] = {
    f.model_type: f
    for f in (
        Family("qwen2-vl", "qwen2_vl", "<|image_pad|>", _QWEN_IMG, _QWEN_LORA),
        Family("qwen2.5-vl", "qwen2_5_vl", "<|image_pad|>", _QWEN_IMG, _QWEN_LORA),
        Family("qwen3-vl", "qwen3_vl", "<|image_pad|>", _QWEN_IMG, _QWEN_LORA),
    )
}


def family_for(model_type: str) -> Family:
    try:
        return FAMILIES[model_type]
    except KeyError:
        known = ", ".join(f"{f.name} ({t})" for t, f in FAMILIES.items())
        from mllmrec.backbone.base import BackboneError

        raise BackboneError(
            f"model type {model_type!r} is not a supported vision-language backbone; supported: {known}, "
            "or a composed model directory (`mllmrec compose`)"
        ) from None
