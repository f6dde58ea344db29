"""`mllmrec distill`: store + interaction log + split in, a distill run directory out.

1. Read the store and the log. Log items without a vector in the store are dropped with their
   interactions (or, with --missing-items error, stop the run); all of them are listed in the manifest.
2. Split the log (MMRec per-user random 8:1:1 by default, or temporal / labels / a saved split).
3. Index = the split's items, then the store items the log never mentions (new items).
4. `trainer.distill` trains teacher and student on train, selecting on validation Recall@20 among
   items with training interactions; test is evaluated once, after selection, and only reported.
5. Write tables (users; items with training interactions), id maps, the new-item mapping, popularity,
   every logged interaction (so serving can leave seen items out) and the manifest.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from mllmrec.artifacts import WriterLock, prepare_dir, read_manifest
from mllmrec.config import to_dict
from mllmrec.distill.artifact import STAGE, store_compat, store_fingerprint, write_run
from mllmrec.distill.config import DistillConfig
from mllmrec.distill.errors import DistillError

if TYPE_CHECKING:
    from mllmrec.distill.losses import LossSpec

OPTIONAL_CHANNELS = ("visual", "text")


def _loss_names(cfg: DistillConfig, losses: Sequence[LossSpec] | None, parsed: dict[str, Any]) -> list[str]:
    """The losses as the manifest records them: the config's specs, or NAME:WEIGHT of objects passed in."""
    if losses is None:
        return list(cfg.losses) if cfg.kd else ["bpr"]
    return [f"{name}:{weight:g}" for name, (_, weight) in parsed.items()]


def resolve_channels(requested: tuple[str, ...], available: list[str]) -> list[str]:
    """('auto',) -> mm plus visual/text when present; otherwise the named channels, which must exist."""
    if tuple(requested) == ("auto",):
        if "mm" not in available:
            raise DistillError(f"the store has no 'mm' channel (has {', '.join(available)}); name --channels")
        return ["mm", *(c for c in OPTIONAL_CHANNELS if c in available)]
    missing = [c for c in requested if c not in available]
    if missing:
        raise DistillError(f"channels {missing} are not in the store (it has {', '.join(available)})")
    return list(dict.fromkeys(requested))


def make_split(cfg: DistillConfig, inter: Any) -> Any:
    """A protocol of the split table (mllmrec.catalog.splits.PROTOCOLS) or a saved split folder."""
    from mllmrec.catalog.saved_splits import load_split
    from mllmrec.catalog.splits import PROTOCOLS
    from mllmrec.catalog.splits import make_split as make

    if cfg.split in PROTOCOLS:
        return make(cfg.split, inter, cfg.seed)
    if Path(cfg.split).is_dir():
        return load_split(cfg.split)
    raise DistillError(f"--split {cfg.split!r}: not one of {', '.join(PROTOCOLS)} or a saved split folder")


def run_distill(
    cfg: DistillConfig, command: list[str] | None = None, *, losses: Sequence[LossSpec] | None = None
) -> dict[str, Any]:
    """Library entry point of `mllmrec distill`; returns the manifest it wrote (never prints). `losses`
    (names, loss objects or (object, weight) pairs; see distill.losses) replaces `cfg.losses`. The
    output folder is written under its writer lock (mllmrec.artifacts)."""
    with WriterLock(cfg.out, stage=STAGE):
        return _distill(cfg, command, losses)


def _distill(
    cfg: DistillConfig, command: list[str] | None, losses: Sequence[LossSpec] | None
) -> dict[str, Any]:
    import torch

    from mllmrec.catalog.interactions import read_interactions
    from mllmrec.distill.losses import parse_losses
    from mllmrec.distill.trainer import distill, loss_specs
    from mllmrec.fsutil import file_sha256
    from mllmrec.metrics.ranking import full_ranking_metrics
    from mllmrec.store import EmbeddingStore

    t0 = time.perf_counter()
    out = Path(cfg.out)
    store = EmbeddingStore.open(cfg.store)
    channels = resolve_channels(cfg.channels, store.channels)
    parsed = parse_losses(
        loss_specs(cfg, losses), tau=cfg.tau, alpha=cfg.alpha
    )  # bad specs fail before any work
    prepare_dir(out, stage=STAGE, mode="overwrite" if cfg.overwrite else "fresh", resumable=False)
    inter = read_interactions(
        cfg.interactions, user_field=cfg.user_field, item_field=cfg.item_field, time_field=cfg.time_field
    )
    store_ids = store.ids
    known = set(store_ids)
    has_vec = np.fromiter((i in known for i in inter.items), bool, len(inter))
    missing = sorted(set(inter.items[~has_vec].tolist()))
    if missing and cfg.missing_items == "error":
        raise DistillError(
            f"{len(missing)} log item(s) have no vector in the store, e.g. {missing[:5]}; embed them "
            "or pass --missing-items drop"
        )
    inter = inter.take(has_vec)
    if len(inter) == 0:
        raise DistillError(
            "no interaction of the log names an item of the store; check --item-field and the ids"
        )
    split = make_split(cfg, inter)
    outside = [i for i in split.item_ids if i not in known]
    if outside:
        raise DistillError(f"the split names {len(outside)} item(s) the store lacks, e.g. {outside[:5]}")

    split_items = set(split.item_ids)
    item_ids = list(split.item_ids) + [i for i in store_ids if i not in split_items]  # new items last
    rows = np.asarray([store.index_of(i) for i in item_ids])
    features = {c: np.asarray(store.vectors(c), dtype=np.float32)[rows] for c in channels}
    n_users, n_items = split.n_users, len(item_ids)

    def matrix(part: str) -> sp.csr_matrix:
        m = split.matrix(part)
        return sp.csr_matrix((m.data, m.indices, m.indptr), shape=(n_users, n_items))

    train = matrix("train")
    counts = np.asarray(train.sum(axis=0)).ravel().astype(np.int64)  # [I]
    valid = [p[counts[p] > 0] for p in split.positives("valid")]  # selection on warm items only
    result = distill(features, train, valid, cfg, losses=losses)

    test_pos = split.positives("test")
    model = result.tables

    def score(users: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model.full_sort(torch.as_tensor(users, dtype=torch.long)).numpy()

    ks = tuple(k for k in (10, 20, 50) if k <= n_items) or (n_items,)
    test = (
        full_ranking_metrics(score, np.arange(n_users), test_pos, train, ks=ks)
        if any(len(p) for p in test_pos)
        else {}
    )

    warm = np.flatnonzero(counts > 0)
    users_all = np.concatenate([split.pairs(p)[:, 0] for p in ("train", "valid", "test")])
    items_all = np.concatenate([split.pairs(p)[:, 1] for p in ("train", "valid", "test")])
    # Interactions the split dropped (items without training pairs) still count as seen.
    dropped = _dropped_pairs(inter, split)
    seen_users = np.concatenate([users_all, dropped[0]])
    seen_items = [split.item_ids[i] for i in items_all] + dropped[1]
    teacher = result.teacher
    manifest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command or [],
        "config": to_dict(cfg),
        "store": {
            "path": str(Path(cfg.store).resolve()),
            "manifest_sha256": store_fingerprint(store),
            "channels": channels,
            "compat": store_compat(store),
        },
        "interactions": {
            "path": str(Path(cfg.interactions).resolve()),
            "sha256": file_sha256(cfg.interactions),
        },
        "split": {
            "protocol": split.meta.get("protocol"),
            "fingerprint": split.fingerprint(),
            "stats": split.stats(),
        },
        "teacher": None
        if teacher is None
        else {
            "kind": cfg.teacher_kind,
            "channels": list(teacher.channels),
            "dim": teacher.dim,
            "layers": teacher.n_layers,
            "prompt_tokens": cfg.prompt_tokens,
            "item_ids": cfg.teacher_item_ids,
            "parameters": sum(p.numel() for p in teacher.parameters()),
            "best_epoch": result.teacher_result.best_epoch,
            "valid": result.teacher_result.best_valid,
            # the EASE channel mixed into the teacher's scores (mllmrec.recsys.cf_blend): chosen w,
            # λ and every validation point tried
            "cf_blend": getattr(teacher, "cf_choice", None),
        },
        "student": {
            "kind": cfg.student,
            "dim": cfg.dim,
            "layers": cfg.student_layers if cfg.student == "lightgcn" else 0,
            "losses": _loss_names(cfg, losses, parsed),
            "kd": cfg.kd,
            "best_epoch": result.student_result.best_epoch,
            "valid": result.student_result.best_valid,
        },
        "selection": "validation recall@20 over items with training interactions; test never read for selection",
        "test": {"metrics": test, "note": "evaluated once after selection (reported, never used to choose)"},
        "dims": {"student": cfg.dim},
        "counts": {
            "users": n_users,
            "items": int(warm.size),
            "new_items": int(n_items - warm.size),
            "store_items": len(store_ids),
            "interactions_used": len(inter),
            "missing_items": len(missing),
            "missing_interactions": int((~has_vec).sum()),
        },
        "missing_items": missing,
        "new_items": {
            "kind": "ridge",
            "channels": list(result.mapping.channels),
            "in_dims": result.mapping.in_dims,
            "dim": result.mapping.dim,
            "l2": result.mapping.l2,
            "file": "new_items.safetensors",
        },
        "seconds": round(time.perf_counter() - t0, 3),
    }
    write_run(
        out,
        manifest,
        user_ids=split.user_ids,
        item_ids=[item_ids[i] for i in warm],
        user_table=model.user.numpy(),
        item_table=model.item[torch.from_numpy(warm)].numpy(),
        mapping_tensors=result.mapping.tensors(),
        popularity=counts[warm],
        seen_users=seen_users,
        seen_items=seen_items,
    )
    return read_manifest(out, expect_stage=STAGE)


def main(cfg: DistillConfig, command: list[str]) -> int:
    """`mllmrec distill`: distil, then print what was trained and how it scored on validation."""
    print_summary(Path(cfg.out), run_distill(cfg, command))
    return 0


def _dropped_pairs(inter: Any, split: Any) -> tuple[np.ndarray, list[str]]:
    """(user rows, item ids) of logged pairs of known users whose item the split left out."""
    users = {u: n for n, u in enumerate(split.user_ids)}
    items = set(split.item_ids)
    pairs = {
        (u, i)
        for u, i in zip(inter.users.tolist(), inter.items.tolist(), strict=True)
        if i not in items and u in users
    }
    ordered = sorted(pairs)
    return np.asarray([users[u] for u, _ in ordered], np.int64), [i for _, i in ordered]


def print_summary(out: Path, m: dict[str, Any]) -> None:
    c, s = m["counts"], m["student"]
    print(f"distill run: {out}")
    print(
        f"  {c['users']} users, {c['items']} items with student rows, {c['new_items']} new items (via the "
        f"mapping from {', '.join(m['new_items']['channels'])})"
    )
    if c["missing_items"]:
        print(
            f"  {c['missing_items']} log items had no store vector: {c['missing_interactions']} interactions "
            "dropped (listed in manifest.json)"
        )
    if m["teacher"]:
        t = m["teacher"]
        print(
            f"  teacher: valid recall@20 {t['valid']['recall@20']:.4f} (epoch {t['best_epoch']}, "
            f"{t['parameters']:,} parameters)"
        )
        cf = t.get("cf_blend") or {}
        if cf.get("weight"):
            print(f"  teacher mixes EASE (l2 {cf['l2']:g}) at weight {cf['weight']:g}, chosen on validation")
    print(
        f"  student {s['kind']} d={s['dim']} ({', '.join(s['losses'])}): valid recall@20 "
        f"{s['valid']['recall@20']:.4f} (epoch {s['best_epoch']})"
    )
    if "recall@20" in m["test"]["metrics"]:
        print(f"  test recall@20 {m['test']['metrics']['recall@20']:.4f} (read once, after selection)")
    print(f"  serve: mllmrec recommend {out} --user USER -k 20")
