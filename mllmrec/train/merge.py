"""`mllmrec merge RUN --out DIR`: a tuned model that plain transformers (and vLLM) can load.

The LoRA weights are merged into the base weights (W + (α/r)·B·A) in full precision, also when the
run trained on 4-bit base weights. Qwen-VL: a transformers model directory (model, tokenizer,
image processor). Composed: a `mllmrec compose` directory whose `lm/` is a plain causal LM and
whose connector is the trained one. Trained heads (projection, fusion gate) cannot live inside a
transformers model; they go to `DIR/mllmrec_heads/`, which `mllmrec embed --model DIR` applies.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mllmrec.backbone.config import ModelSpec
from mllmrec.backbone.load import HEADS_SUBDIR
from mllmrec.backbone.trained_run import RunDirError, apply_run, read_run_manifest
from mllmrec.train.config import MergeConfig


def merge_run(cfg: MergeConfig) -> Path:
    """Merge `cfg.run` into its base model at `cfg.out`. The base model's location, revision and
    image bounds come from the run's manifest; remote code only from `cfg.trust_remote_code`."""
    from mllmrec.backbone.load import open_encoder
    from mllmrec.fsutil import temp_name

    man = read_run_manifest(cfg.run)
    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()):
        raise RunDirError(f"{out} exists and is not empty; choose a new directory for the merged model")
    base = cfg.model or man["config"]["model"]
    c = man["config"]  # the image bounds the run trained with go into the saved image processor
    spec = ModelSpec(
        model=base,
        revision=c.get("revision"),
        device="cpu",
        dtype=cfg.dtype,
        min_pixels=c.get("min_pixels"),
        max_pixels=c.get("max_pixels"),
        trust_remote_code=cfg.trust_remote_code,
    )  # the user's flag, never the run's
    encoder = open_encoder(spec)
    adapter = apply_run(encoder, cfg.run)
    tmp = temp_name(out)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        encoder.save(tmp)  # Qwen-VL: a plain transformers directory; composed: a compose directory
        heads = tmp / HEADS_SUBDIR
        if encoder.projection is not None or encoder.fusion_gate is not None:
            heads.mkdir()
            for h in (encoder.projection, encoder.fusion_gate):
                if h is not None:
                    h.save(heads)
        (tmp / "mllmrec_merge.json").write_text(json.dumps({"base": base, **adapter}, indent=2) + "\n")
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def run_merge(cfg: MergeConfig, command: list[str] | None = None) -> int:
    out = merge_run(cfg)
    print(f"merged {cfg.run} into {out}")
    return 0
