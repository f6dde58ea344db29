"""Applying a train run to an encoder: what a run directory holds, and putting it onto a backbone.

Lives beside the backbone (not in train/) so that embed and backbone loading can apply a tuned
model without importing the training stage.

    manifest.json            stage "train", config, base backbone fingerprint, prompt, data
                             fingerprints, report of unusable inputs, history, validation recalls
    adapter/                 peft LoRA adapter (standard layout)
    vision_adapter/          peft LoRA adapter on a composed model's vision tower (--vision-lora)
    connector.safetensors    trained connector of a composed model
    projection.*             projection head (--proj-dim)
    fusion_gate.*            late-fusion gate (--fusion-gate)
    checkpoints/step-N/      resumable state (trainable weights, optimizer, step)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllmrec.errors import MllmrecError
from mllmrec.fusion.gate import GATE_CONFIG, LateFusionGate
from mllmrec.fusion.projection import ProjectionHead

if TYPE_CHECKING:
    from mllmrec.backbone.base import Encoder

CONNECTOR_FILE = "connector.safetensors"
MANIFEST = "manifest.json"
ADAPTER_DIR, VISION_ADAPTER_DIR = "adapter", "vision_adapter"
# Files that make up the tuned model (hashed into `adapter_sha256`); checkpoints are not part of it.
_ARTEFACTS = (
    "adapter",
    "vision_adapter",
    CONNECTOR_FILE,
    "projection.safetensors",
    "projection.json",
    "fusion_gate.safetensors",
    GATE_CONFIG,
)


class LoraError(MllmrecError, ValueError):
    """LoRA cannot be attached or applied as asked (e.g. target modules that match nothing)."""


class RunDirError(MllmrecError, ValueError):
    """A train run directory is missing, incomplete or does not fit the backbone."""


def read_run_manifest(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise RunDirError(f"{run_dir} is not a train run directory (no {MANIFEST})")
    man = json.loads(path.read_text(encoding="utf-8"))
    if man.get("stage") != "train":
        raise RunDirError(f"{run_dir}: manifest stage is {man.get('stage')!r}, not 'train'")
    if man.get("status") != "complete":
        raise RunDirError(
            f"{run_dir}: the train run is not complete (status {man.get('status')!r}); "
            "finish it with `mllmrec train ... --resume`"
        )
    return man


def artefacts_sha256(run_dir: str | Path) -> str:
    """One hash over every file of the tuned model (sorted relative paths and contents)."""
    root, h = Path(run_dir), hashlib.sha256()
    for name in _ARTEFACTS:
        p = root / name
        files = (
            sorted(q for q in p.rglob("*") if q.is_file() and q.name != "README.md")
            if p.is_dir()
            else ([p] if p.is_file() else [])
        )
        for f in files:
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def save_heads(encoder: Encoder, out: Path) -> None:
    """Write the fully trained pieces (connector, gate, projection) the encoder carries."""
    from safetensors.torch import save_file

    connector = encoder.connector
    if connector is not None and any(p.requires_grad for p in connector.parameters()):
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in connector.state_dict().items()},
            str(out / CONNECTOR_FILE),
        )
    if encoder.fusion_gate is not None:
        encoder.fusion_gate.save(out)
    if encoder.projection is not None:
        encoder.projection.save(out)


def load_heads(encoder: Encoder, directory: Path) -> None:
    """Put saved heads onto the encoder (connector weights, gate, projection) on its device."""
    from safetensors.torch import load_file

    dev = next(encoder.network.parameters()).device
    if (directory / CONNECTOR_FILE).is_file():
        if encoder.connector is None:
            raise RunDirError(f"{directory} has a trained connector but the backbone has none")
        encoder.connector.load_state_dict(load_file(str(directory / CONNECTOR_FILE)))
    if (directory / GATE_CONFIG).is_file():
        if not encoder.supports_fusion_gate:
            raise RunDirError(f"{directory} has a fusion gate but {type(encoder).__name__} cannot apply one")
        encoder.fusion_gate = LateFusionGate.load(directory).to(dev)
    if ProjectionHead.present(directory):
        encoder.projection = ProjectionHead.load(directory).to(dev)


def apply_run(encoder: Encoder, run_dir: str | Path) -> dict[str, Any]:
    """Make `encoder` the tuned model of `run_dir` (adapters merged in, heads attached).

    Refuses a backbone whose weights differ from the run's base model. Returns the manifest's
    identity of the adapter ({"run": path, "adapter_sha256": ...}).
    """
    run_dir = Path(run_dir)
    man = read_run_manifest(run_dir)
    base, now = man["backbone"], encoder.fingerprint()
    # The weights hash covers dtypes: a run trained in bf16 (GPU) and applied in fp32 (CPU) is
    # checked by architecture below, like a 4-bit run.
    exact = base["weights_fingerprint"] is not None and base.get("dtype") == now.get("dtype")
    if exact and base["weights_fingerprint"] != now["weights_fingerprint"]:
        raise RunDirError(
            f"{run_dir} was trained on a backbone with weights fingerprint "
            f"{base['weights_fingerprint'][:12]}..., but this backbone's is "
            f"{now['weights_fingerprint'][:12]}... ({base.get('backbone')} at training)"
        )
    # A QLoRA run saw 4-bit weights, whose hash says nothing about the full model: compare the
    # architecture facts instead (family / composition sources).
    arch = [k for k in ("family", "kind", "sources", "connector") if k in base or k in now]
    if not exact and any(base.get(k) != now.get(k) for k in arch):
        raise RunDirError(
            f"{run_dir} was trained on {base.get('backbone')} ({base.get('dtype')}), which differs "
            f"from this backbone in {', '.join(k for k in arch if base.get(k) != now.get(k))}"
        )
    load_adapters(encoder, run_dir, merge=True)
    load_heads(encoder, run_dir)
    encoder.weights_changed()  # hash again on demand
    return {
        "run": str(run_dir),
        "adapter_sha256": man["adapter_sha256"],
        "base_weights_fingerprint": base["weights_fingerprint"],
        "prompt": man.get("prompt", {}).get("name"),
    }


def load_adapters(encoder: Encoder, run_dir: str | Path, *, merge: bool = True) -> list[str]:
    """Put a run's saved adapters onto `encoder` (in place); merged into the weights by default
    (faster inference, same vectors to float rounding). Returns the adapter dirs applied."""
    from peft import PeftModel  # lazy: peft is heavy

    from mllmrec.backbone.checkpointing import quiet_peft_probe

    run_dir = Path(run_dir)
    targets = {ADAPTER_DIR: encoder.network, VISION_ADAPTER_DIR: encoder.vision}
    applied = []
    for name, module in targets.items():
        if not (run_dir / name / "adapter_config.json").is_file():
            continue
        if module is None:
            raise LoraError(f"{run_dir / name}: the backbone has no vision tower for this adapter")
        with quiet_peft_probe():
            pm = PeftModel.from_pretrained(module, str(run_dir / name))
        if merge:
            pm.merge_and_unload()
        applied.append(name)
    if not applied:
        raise LoraError(f"{run_dir} holds no adapter ({ADAPTER_DIR}/adapter_config.json)")
    return applied
