"""LoRA through peft on an encoder's language model (and optionally its vision tower).

peft injects the LoRA layers *in place*, so the encoder keeps calling the same modules and the
train stage needs no second forward path. Which modules get LoRA comes from the backbone family's
preset (`backbone/presets.py`), overridable by name:

- Qwen-VL: one peft model over the whole `...ForConditionalGeneration`, targets matched by a regex
  scoped to `language_model` (and, with vision LoRA, to `visual.blocks`), so the ViT's `qkv`/`proj`
  and the LM's `q_proj` never get mixed up. Saved as `adapter/` (standard peft layout).
- composed: a peft model on the causal LM (`adapter/`, loadable with plain
  `PeftModel.from_pretrained(AutoModelForCausalLM...)`) and, with vision LoRA, one on the vision
  tower (`vision_adapter/`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from mllmrec.backbone.presets import COMPOSED_LORA, COMPOSED_VISION_LORA
from mllmrec.backbone.trained_run import ADAPTER_DIR, VISION_ADAPTER_DIR, LoraError


@dataclass(frozen=True)
class LoraSpec:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ()  # LM module names; () = preset
    vision: bool = False
    vision_targets: tuple[str, ...] = ()  # () = preset
    connector: bool = False  # Qwen-VL: train the vision->LM merger in full (peft modules_to_save)


def _names_regex(scope: str, names: Sequence[str]) -> str:
    return f"{scope}\\.({'|'.join(re.escape(n) for n in names)})"


def lora_plan(encoder: Any, spec: LoraSpec) -> list[tuple[str, nn.Module, Any]]:
    """[(adapter dir name, module to wrap, target_modules)] for `encoder` under `spec`. (A composed
    model's connector is trained by the trainer directly: it is not inside a peft-wrapped model.)"""
    if hasattr(encoder, "family"):  # Qwen-VL
        fam = encoder.family
        regex = _names_regex(fam.lm_scope, spec.targets or fam.lora_targets)
        if spec.vision:
            vision = _names_regex(fam.vision_scope, spec.vision_targets or fam.vision_lora_targets)
            regex = f"({regex})|({vision})"
        return [(ADAPTER_DIR, encoder.network, regex)]
    plan: list[tuple[str, nn.Module, Any]] = [(ADAPTER_DIR, encoder.network, list(spec.targets or COMPOSED_LORA))]
    if spec.vision:
        if encoder.vision is None:
            raise LoraError("--vision-lora: this composed model is text-only (no vision tower)")
        plan.append((VISION_ADAPTER_DIR, encoder.vision, list(spec.vision_targets or COMPOSED_VISION_LORA)))
    return plan


def attach_lora(encoder: Any, spec: LoraSpec) -> list[tuple[str, Any]]:
    """Wrap the encoder's modules with fresh LoRA adapters; returns [(dir name, PeftModel)].

    Base weights are frozen; only LoRA weights train. Raises LoraError naming the module names
    that exist when a target matches nothing.
    """
    from peft import LoraConfig, get_peft_model

    from mllmrec.backbone.checkpointing import quiet_peft_probe

    out = []
    for name, module, targets in lora_plan(encoder, spec):
        for p in module.parameters():
            p.requires_grad_(False)
        _check_targets(module, targets)
        # Qwen-VL's connector (visual.merger) sits inside the wrapped model: peft trains it in full,
        # saves it with the adapter and merges it back.
        full = ["merger"] if spec.connector and hasattr(encoder, "family") and name == ADAPTER_DIR else None
        cfg = LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=spec.dropout, target_modules=targets,
                         bias="none", modules_to_save=full)
        with quiet_peft_probe():
            out.append((name, get_peft_model(module, cfg)))
    return out


def _check_targets(module: nn.Module, targets: Any) -> None:
    names = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    if isinstance(targets, str):
        hit = any(re.fullmatch(targets, n) for n in names)
    else:
        hit = any(n.rsplit(".", 1)[-1] in targets for n in names)
    if not hit:
        leaves = sorted({n.rsplit(".", 1)[-1] for n in names})
        raise LoraError(f"LoRA targets {targets!r} match no linear layer; linear layer names here: "
                        f"{', '.join(leaves[:20])}")


def save_adapters(peft_models: list[tuple[str, Any]], run_dir: Path) -> None:
    for name, pm in peft_models:
        pm.save_pretrained(str(run_dir / name))
