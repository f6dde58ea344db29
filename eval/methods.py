"""The methods `eval/run.py` compares, built from config entries, trained with validation-only
model selection, and scored on the test part (all items, warm items, cold items, popularity buckets).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from grid_config import DISTILL_METHODS, BprTrain, MethodConfig  # noqa: E402  (eval/ is on sys.path)

_TEACHERS: dict[tuple, Any] = {}  # (split fingerprint, seed, settings) -> trained teacher, shared by students


@dataclass
class MethodRun:
    method: str
    seed: int
    test: dict[str, float]  # all test positives
    warm: dict[str, float]  # positives among items seen in training
    cold: dict[str, float]  # positives among items never seen in training (cold-start split)
    buckets: dict[str, float]  # recall@20 by training popularity of the positive item
    valid: dict[str, float]  # the selected model's validation metrics
    best_epoch: int | None
    seconds: float


def build(spec: MethodConfig, split: Any, features: dict[str, np.ndarray] | None, seed: int = 0) -> Any:
    """A recsys registry model for one method entry (features: {channel: [n_items, d]})."""
    import torch

    from mllmrec.recsys.registry import build_model
    from mllmrec.recsys.registry import spec as model_spec

    feats = None
    if model_spec(spec.name).features:
        if features is None:
            raise ValueError(f"method {spec.name!r} needs item features (an `embed:` or `store:` entry)")
        channel = spec.embed.channel if spec.embed else "mm"
        feats = torch.from_numpy(np.ascontiguousarray(features[channel], dtype=np.float32))
    # models with their own sampling follow the grid's seed
    return build_model(spec.name, split.matrix("train"), feats, run_seed=seed, **spec.params)


def distill_settings(spec: MethodConfig, seed: int, train_cfg: BprTrain, progress: bool) -> Any:
    """DistillSettings from the grid's `train:` block plus the method entry's own keys."""
    from mllmrec.config import from_dict
    from mllmrec.distill.config import DistillSettings

    shared = train_cfg.given()
    if "epochs" in shared:
        shared["teacher_epochs"] = shared["epochs"]
    channels = spec.embed.channels if spec.embed else None
    return from_dict(
        DistillSettings,
        {
            **shared,
            **spec.params,
            "seed": seed,
            "progress": progress,
            **({"channels": channels} if channels else {}),
        },
    )


def run_distill(
    spec: MethodConfig,
    split: Any,
    features: dict[str, np.ndarray] | None,
    seed: int,
    train_cfg: BprTrain,
    valid_pos: list[np.ndarray],
    progress: bool,
) -> tuple[Any, Any]:
    """(model to test, its TrainResult) for the teacher or a student; the teacher of a (split, seed,
    teacher settings) is trained once and shared by every student entry."""
    import dataclasses
    import json

    from mllmrec.distill.trainer import distill, train_teacher

    if features is None:
        raise ValueError(f"method {spec.name!r} needs item features (an `embed:` or `store:` entry)")
    s = distill_settings(spec, seed, train_cfg, progress)
    chans = (
        [c for c in features if c in ("mm", "visual", "text")]
        if s.channels == ("auto",)
        else list(s.channels)
    )
    feats = {c: features[c] for c in chans}
    train = split.matrix("train")
    # Every setting the teacher reads: its own (teacher_* and prompt_tokens) and the shared ones.
    teacher_keys = sorted(
        f.name
        for f in dataclasses.fields(s)
        if f.name.startswith("teacher_") or f.name in ("prompt_tokens", "batch_size", "patience", "reg")
    )
    key = (
        split.fingerprint(),
        seed,
        json.dumps(chans),
        json.dumps({k: getattr(s, k) for k in teacher_keys}),
        s.teacher_lr or s.lr,
    )
    if spec.name == "teacher" or (s.kd and key not in _TEACHERS):
        if key not in _TEACHERS:
            _TEACHERS[key] = train_teacher(feats, train, valid_pos, s)
        if spec.name == "teacher":
            return _TEACHERS[key]
    teacher, teacher_result = _TEACHERS.get(key, (None, None)) if s.kd else (None, None)
    result = distill(feats, train, valid_pos, s, teacher=teacher, teacher_result=teacher_result)
    return result.tables, result.student_result


def run(
    spec: MethodConfig,
    split: Any,
    features: dict[str, np.ndarray] | None,
    seed: int,
    train_cfg: BprTrain,
    ks: list[int],
    progress: bool = True,
) -> MethodRun:
    """Train on train, select on valid, then evaluate once on test."""
    import torch

    from mllmrec.metrics.ranking import full_ranking_metrics
    from mllmrec.recsys.trainer import train_bpr

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    train = split.matrix("train")
    counts = np.asarray(train.sum(axis=0)).ravel()  # training interactions per item
    # Model selection uses validation positives among items with training interactions, for every
    # method alike: cold validation items would otherwise dominate the choice of epoch for ID models
    # (which cannot score them) and favour barely trained models.
    valid_pos = [p[counts[p] > 0] for p in split.positives("valid")]
    if spec.name in DISTILL_METHODS:
        model, result = run_distill(spec, split, features, seed, train_cfg, valid_pos, progress)
    else:
        model = build(spec, split, features, seed)
        result = train_bpr(model, train, valid_pos, seed=seed, progress=progress, **train_cfg.given())
    model.eval()

    def score(users: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model.full_sort(torch.as_tensor(users, dtype=torch.long)).float().numpy()

    # DESIGN.md: full ranking with the training items masked.
    seen = train
    test_pos = split.positives("test")
    users = np.arange(train.shape[0])

    def evaluate(keep: np.ndarray) -> dict[str, float]:
        """Metrics over the test positives whose item is in `keep` (bool [n_items]); {} if none."""
        pos = [p[keep[p]] for p in test_pos]
        return full_ranking_metrics(score, users, pos, seen, ks=ks) if any(len(p) for p in pos) else {}

    # Warm and cold follow the training counts, whatever the protocol (labels can leave cold items too).
    cold = counts == 0
    buckets = {
        name: evaluate((counts >= lo) & (counts < hi)).get("recall@20", float("nan"))
        for name, (lo, hi) in _popularity_buckets(counts).items()
    }
    return MethodRun(
        method=spec.title,
        seed=seed,
        test=evaluate(np.ones_like(cold)),
        warm=evaluate(~cold),
        cold=evaluate(cold),
        buckets=buckets,
        valid=result.best_valid,
        best_epoch=result.best_epoch,
        seconds=time.perf_counter() - t0,
    )


def _popularity_buckets(counts: np.ndarray) -> dict[str, tuple[float, float]]:
    """Tail / torso / head: training-count tertiles among items WITH training interactions (cold
    items are reported on their own, never as tail)."""
    seen = counts[counts > 0]
    if len(seen) == 0:
        return {}
    lo, hi = np.quantile(seen, [1 / 3, 2 / 3])
    return {"tail": (1, lo), "torso": (lo, hi), "head": (hi, np.inf)}
