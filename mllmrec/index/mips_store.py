"""Saving a serving index (`mllmrec.index.mips`) inside the directory whose tables it indexes.

    <dir>/index/mips-<kind>.faiss   the faiss index (written to a temporary name, then renamed)
    <dir>/index/mips-<kind>.json    kind, parameters, n, dim, the MIPS transform's max norm, build
                                    seconds, recall@k measured against exact search, and the
                                    fingerprint of the item vectors it was built from

The json is removed first and written last, under the directory's writer lock, so a reader sees
either a complete pair or none. `load_or_build` refuses a saved index whose fingerprint differs from
the tables as they are now (rebuild=True replaces it): serving neighbours of vectors that no longer
exist would be silently wrong. The index is read with IO_FLAG_MMAP, so its pages are shared by every
process that serves the same file and only the touched ones are resident.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mllmrec import __version__
from mllmrec.artifacts import WriterLock
from mllmrec.errors import MllmrecError
from mllmrec.fsutil import atomic_path, atomic_write_text
from mllmrec.index.mips import IndexParams, MipsIndex, build, exact_top, tune
from mllmrec.index.search import _faiss

log = logging.getLogger(__name__)
RECALL_QUERIES = 1000  # sample queries recall is measured on


class StaleIndexError(MllmrecError, ValueError):
    """A saved index was built from other item vectors than the ones being served."""


def paths(out: str | Path, kind: str) -> tuple[Path, Path]:
    d = Path(out) / "index"
    return d / f"mips-{kind}.faiss", d / f"mips-{kind}.json"


def read_meta(out: str | Path, kind: str) -> dict[str, Any] | None:
    _, meta_path = paths(out, kind)
    return json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else None


def load_or_build(
    out: str | Path,
    items: np.ndarray,
    fingerprint: dict[str, Any],
    params: IndexParams,
    *,
    queries: np.ndarray | None = None,
    k: int = 100,
    target_recall: float | None = None,
    rebuild: bool = False,
    stage: str = "serve-index",
    use_gpu: bool | None = None,
) -> tuple[MipsIndex, dict[str, Any]]:
    """The saved `params.kind` index of `out` if it fits `fingerprint`; else build, measure, save it.

    queries [m, d] (e.g. a sample of user vectors) measure recall@k against exact search; with
    target_recall the search knob is tuned on them before saving. A saved index is re-tuned (not
    rebuilt) when a new target_recall is asked for.
    """
    if params.kind == "exact":
        return build(items, params, use_gpu=use_gpu), {"kind": "exact", "recall": {"recall": 1.0}}
    faiss_path, meta_path = paths(out, params.kind)
    meta = read_meta(out, params.kind)
    if meta is not None and not rebuild:
        if meta.get("fingerprint") != fingerprint:
            diff = ", ".join(
                f"{key} {meta.get('fingerprint', {}).get(key)!r} -> {v!r}"
                for key, v in fingerprint.items()
                if meta.get("fingerprint", {}).get(key) != v
            )
            raise StaleIndexError(
                f"the saved {params.kind} index in {faiss_path.parent} was built from other item "
                f"vectors ({diff}); rebuild it (--rebuild-index, or rebuild=True)"
            )
        index = _read(faiss_path, meta, items)
        if target_recall is not None and target_recall != meta["recall"].get("target"):
            meta = _tune_and_save(out, index, meta, queries, k, target_recall, stage)
        return index, meta
    t0 = time.perf_counter()
    index = build(items, params)
    seconds = time.perf_counter() - t0
    meta = {
        "kind": params.kind,
        "n": index.ntotal,
        "dim": int(items.shape[1]),
        "max_norm": index.max_norm,
        "build_seconds": round(seconds, 3),
        "fingerprint": fingerprint,
        "faiss_version": _faiss().__version__,
        "mllmrec_version": __version__,
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    meta = _tune_and_save(out, index, meta, queries, k, target_recall, stage, new_file=True)
    log.info(
        "built a %s index over %d items in %.1f s (recall@%d %.3f)",
        params.kind,
        index.ntotal,
        seconds,
        k,
        meta["recall"]["recall"],
    )
    return index, meta


def _tune_and_save(
    out: str | Path,
    index: MipsIndex,
    meta: dict[str, Any],
    queries: np.ndarray | None,
    k: int,
    target: float | None,
    stage: str,
    new_file: bool = False,
) -> dict[str, Any]:
    recall: dict[str, Any] = {"k": k, "queries": 0, "recall": None, "note": "no sample queries given"}
    if queries is not None and len(queries):
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(len(queries), size=min(len(queries), RECALL_QUERIES), replace=False))
        q = np.asarray(queries[sample], np.float32)
        recall = tune(index, q, exact_top(index.items, q, k), k, target)
    meta = {**meta, "params": asdict(index.params), "recall": recall}
    faiss_path, meta_path = paths(out, index.kind)
    faiss_path.parent.mkdir(parents=True, exist_ok=True)
    with WriterLock(out, stage=stage):
        meta_path.unlink(missing_ok=True)
        if new_file:
            with atomic_path(faiss_path) as tmp:
                _faiss().write_index(index.index, str(tmp))
        meta["file_bytes"] = faiss_path.stat().st_size
        atomic_write_text(meta_path, json.dumps(meta, indent=2))
    return meta


def _read(faiss_path: Path, meta: dict[str, Any], items: np.ndarray) -> MipsIndex:
    if not faiss_path.is_file() or faiss_path.stat().st_size != meta.get("file_bytes"):
        raise StaleIndexError(
            f"{faiss_path} is missing or does not match its metadata; rebuild it (--rebuild-index)"
        )
    faiss = _faiss()
    index = faiss.read_index(str(faiss_path), faiss.IO_FLAG_MMAP)
    return MipsIndex(index, items, IndexParams(**meta["params"]), float(meta["max_norm"]))


def fingerprint(item_ids_sha256: str, items: np.ndarray, source: dict[str, Any]) -> dict[str, Any]:
    """What identifies the vectors an index is built from: the ids (hashed), shape, a hash of a
    strided sample of the vectors (cheap at 10M rows, and any retraining changes it) and `source`."""
    stride = max(1, items.shape[0] // 4096)
    sample = np.ascontiguousarray(items[::stride], np.float32)
    import hashlib

    return {
        "items_sha256": item_ids_sha256,
        "shape": [int(s) for s in items.shape],
        "vectors_sample_sha256": hashlib.sha256(sample.tobytes()).hexdigest(),
        **source,
    }
