"""The methods `eval/run.py` compares, built from config entries, trained with validation-only
model selection, and scored on the test part (all items, warm items, cold items, popularity buckets).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

ID_METHODS = ("popularity", "mf", "lightgcn")
CONTENT_METHODS = ("content-knn", "vbpr")


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


def build(spec: dict[str, Any], split: Any, features: np.ndarray | None) -> Any:
    """A model for one method entry of the config."""
    import torch

    from mllmrec.recsys import MF, VBPR, ContentKNN, LightGCN, Popularity
    from mllmrec.recsys.graph import normalized_adjacency

    train = split.matrix("train")
    n_users, n_items = train.shape
    name, dim = spec["name"], int(spec.get("dim", 64))
    if name == "popularity":
        return Popularity(train)
    if name == "mf":
        return MF(n_users, n_items, dim)
    if name == "lightgcn":
        return LightGCN(n_users, n_items, dim, int(spec.get("layers", 2)), normalized_adjacency(train))
    if features is None:
        raise ValueError(f"method {name!r} needs item features (an `embed:` entry)")
    feats = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    if name == "content-knn":
        return ContentKNN(feats, train)
    if name == "vbpr":
        return VBPR(n_users, n_items, dim, feats)
    raise ValueError(f"unknown method {name!r}; known: {', '.join(ID_METHODS + CONTENT_METHODS)}")


def run(spec: dict[str, Any], split: Any, features: np.ndarray | None, seed: int, train_cfg: dict[str, Any],
        ks: list[int], progress: bool = True) -> MethodRun:
    """Train on train, select on valid, then evaluate once on test."""
    import torch

    from mllmrec.eval.metrics import full_ranking_metrics
    from mllmrec.recsys.trainer import train_bpr

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model = build(spec, split, features)
    train = split.matrix("train")
    valid_pos = split.positives("valid")
    result = train_bpr(model, train, valid_pos, seed=seed, progress=progress,
                       **{k: v for k, v in train_cfg.items() if k in ("epochs", "batch_size", "lr", "patience")})
    model.eval()

    def score(users: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model.full_sort(torch.as_tensor(users, dtype=torch.long)).float().numpy()

    # DESIGN.md: full ranking with the training items masked.
    seen = train
    test_pos = split.positives("test")
    users = np.arange(train.shape[0])
    cold = set(np.asarray(split.cold_items).tolist())

    def restricted(keep) -> list[np.ndarray]:
        return [p[np.fromiter((keep(int(i)) for i in p), bool, len(p))] if len(p) else p for p in test_pos]

    evaluate = lambda pos: full_ranking_metrics(score, users, pos, seen, ks=ks)  # noqa: E731
    counts = np.asarray(train.sum(axis=0)).ravel()
    buckets = _popularity_buckets(counts)
    return MethodRun(
        method=spec["name"], seed=seed,
        test=evaluate(test_pos),
        warm=evaluate(restricted(lambda i: i not in cold)),
        cold=evaluate(restricted(lambda i: i in cold)) if cold else {},
        buckets={name: evaluate(restricted(lambda i, b=b: b[0] <= counts[i] < b[1])).get("recall@20", float("nan"))
                 for name, b in buckets.items()},
        valid=result.best_valid, best_epoch=result.best_epoch, seconds=time.perf_counter() - t0,
    )


def _popularity_buckets(counts: np.ndarray) -> dict[str, tuple[float, float]]:
    """Tail / torso / head by training count tertiles of the items that have interactions."""
    seen = counts[counts > 0]
    if len(seen) == 0:
        return {}
    lo, hi = np.quantile(seen, [1 / 3, 2 / 3])
    return {"tail": (0, lo), "torso": (lo, hi), "head": (hi, np.inf)}
