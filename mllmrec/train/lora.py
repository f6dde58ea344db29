"""LoRA through peft on an encoder's language model (and optionally its vision tower).

peft injects the LoRA layers *in place*, so the encoder keeps calling the same modules and the
train stage needs no second forward path. Which modules get LoRA, and how, comes from the encoder's
family row (`backbone/families.py`); target names are overridable:

- a family with scopes (Qwen-VL): one peft model over the whole `encoder.network`, targets matched
  by a regex scoped to `lm_scope` (and, with vision LoRA, to `vision_scope`), so the ViT's
  `qkv`/`proj` and the LM's `q_proj` never get mixed up. Saved as `adapter/` (standard peft layout).
- a family without (composed): a peft model on the LM (`adapter/`, loadable with plain
  `PeftModel.from_pretrained(AutoModelForCausalLM...)`) and, with vision LoRA, one on
  `encoder.vision` (`vision_adapter/`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from mllmrec.backbone.trained_run import ADAPTER_DIR, VISION_ADAPTER_DIR, LoraError

if TYPE_CHECKING:
    from mllmrec.backbone.base import Encoder


@dataclass(frozen=True)
class LoraSpec:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ()  # LM module names; () = preset
    vision: bool = False
    vision_targets: tuple[str, ...] = ()  # () = preset
    connector: bool = False  # train the family's full_train_modules in full (Qwen-VL: the merger)


def _names_regex(scope: str, names: Sequence[str]) -> str:
    return f"{scope}\\.({'|'.join(re.escape(n) for n in names)})"


def lora_plan(encoder: Encoder, spec: LoraSpec) -> list[tuple[str, nn.Module, Any]]:
    """[(adapter dir name, module to wrap, target_modules)] for `encoder` under `spec`. (A connector
    held outside `network` is trained by the trainer directly: it is not inside a peft model.)"""
    fam = encoder.family
    lm_names = spec.targets or fam.lora_targets
    vision_names = spec.vision_targets or fam.vision_lora_targets
    if fam.lm_scope is None:
        main: Any = list(lm_names)
    else:
        main = _names_regex(fam.lm_scope, lm_names)
    if spec.vision and fam.vision_scope is not None:  # the tower lives inside `network`: one regex
        main = f"({main})|({_names_regex(fam.vision_scope, vision_names)})"
    plan: list[tuple[str, nn.Module, Any]] = [(ADAPTER_DIR, encoder.network, main)]
    if spec.vision and fam.vision_scope is None:
        if encoder.vision is None:
            raise LoraError(f"--vision-lora: this {fam.name} model is text-only (no vision tower)")
        plan.append((VISION_ADAPTER_DIR, encoder.vision, list(vision_names)))
    return plan


def attach_lora(encoder: Encoder, spec: LoraSpec) -> list[tuple[str, Any]]:
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
        # A connector inside the wrapped model (Qwen-VL's visual.merger): peft trains it in full,
        # saves it with the adapter and merges it back.
        in_full = list(encoder.family.full_train_modules)
        full = in_full if spec.connector and in_full and name == ADAPTER_DIR else None
        cfg = LoraConfig(
            r=spec.rank,
            lora_alpha=spec.alpha,
            lora_dropout=spec.dropout,
            target_modules=targets,
            bias="none",
            modules_to_save=full,
        )
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
        raise LoraError(
            f"LoRA targets {targets!r} match no linear layer; linear layer names here: "
            f"{', '.join(leaves[:20])}"
        )


def save_adapters(peft_models: list[tuple[str, Any]], run_dir: Path) -> None:
    for name, pm in peft_models:
        pm.save_pretrained(str(run_dir / name))
