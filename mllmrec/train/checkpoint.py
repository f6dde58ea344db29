"""Checkpoints of a train run: `checkpoints/step-N/` with the trainable weights, the optimizer and
scheduler state, and the history. Data order and dropout depend only on (seed, step), so a run
resumed from step N continues exactly as an uninterrupted run would.

Written atomically (a temp folder renamed into place); the newest complete one is used on resume.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from mllmrec.artifacts import check_identity, read_manifest

CKPT_DIR = "checkpoints"
KEEP = 2  # older checkpoints are deleted once a newer one is complete


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, rest = {}, {"param_groups": state["param_groups"], "state": {}}
    for idx, per in state["state"].items():
        rest["state"][str(idx)] = {}
        for k, v in per.items():
            if torch.is_tensor(v):
                tensors[f"{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                rest["state"][str(idx)][k] = v
    return tensors, rest


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in rest["state"].items()}
    for name, t in tensors.items():
        idx, k = name.split(".", 1)
        state.setdefault(int(idx), {})[k] = t
    return {"state": state, "param_groups": rest["param_groups"]}


def save(tr: Any, out: Path) -> Path:
    """Write checkpoint step-N for trainer `tr` and drop all but the newest KEEP."""
    from safetensors.torch import save_file

    root = out / CKPT_DIR
    final = root / f"step-{tr.step:08d}"
    tmp = root / f".tmp-{os.getpid()}-{tr.step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(tr.trainable_state(), str(tmp / "trainable.safetensors"))
    opt_tensors, opt_rest = _flatten_optimizer(tr.optimizer.state_dict())
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    meta = {
        "step": tr.step,
        "optimizer": opt_rest,
        "scheduler": tr.scheduler.state_dict(),
        "history": tr.history,
    }
    (tmp / "state.json").write_text(json.dumps(meta, default=str), encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in sorted(root.glob("step-*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest(out: Path) -> Path | None:
    done = sorted(p for p in (out / CKPT_DIR).glob("step-*") if (p / "state.json").is_file())
    return done[-1] if done else None


def resume(tr: Any, out: Path, identity: dict[str, Any]) -> None:
    """Restore trainer `tr` from the newest checkpoint in `out`, after checking the run's identity."""
    from safetensors.torch import load_file

    stored = read_manifest(out, expect_stage="train").get("identity", {})
    check_identity(stored, json.loads(json.dumps(identity, default=str)), out=out, what="train run")
    ck = latest(out)
    if ck is None:  # stopped before the first checkpoint: start over in the same folder
        return
    meta = json.loads((ck / "state.json").read_text(encoding="utf-8"))
    tr.load_trainable_state(load_file(str(ck / "trainable.safetensors")))
    tr.optimizer.load_state_dict(
        _unflatten_optimizer(load_file(str(ck / "optimizer.safetensors")), meta["optimizer"])
    )
    tr.scheduler.load_state_dict(meta["scheduler"])
    tr.step, tr.history = int(meta["step"]), meta["history"]
