"""Embedding stores written straight from arrays (no model), for tests and examples of the readers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np


def write_array_store(
    out: str | Path, ids: list[str], vectors: dict[str, np.ndarray], *, fmt: str = "safetensors"
) -> Path:
    """A complete store in `out` holding `vectors` ({channel: [len(ids), d]}) for `ids`, in that order.

    The manifest says where the vectors came from (`backbone: arrays`), so nobody mistakes such a
    store for a model's output; its identity hashes the content, so rewritten vectors change it.
    """
    from mllmrec import __version__, artifacts
    from mllmrec import store as st

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for ch, v in vectors.items():
        if v.ndim != 2 or v.shape[0] != len(ids):
            raise ValueError(f"channel {ch}: expected [{len(ids)}, d], got {v.shape}")
    st.write_vectors(out, fmt, ids, [f"item {i}" for i in ids], vectors)
    h = hashlib.sha256(json.dumps(ids).encode())
    for ch, v in vectors.items():
        h.update(ch.encode() + np.ascontiguousarray(v).tobytes())
    artifacts.write_manifest(
        out,
        {
            "stage": "embed",
            "status": "complete",
            "mllmrec_version": __version__,
            "completed": "array store",
            "config": {"format": fmt},
            "identity": {"backbone": "arrays", "content_sha256": h.hexdigest()},
            "backbone": {"model": "arrays"},
            "channels": list(vectors),
            "dims": {ch: int(v.shape[1]) for ch, v in vectors.items()},
            "dtype": str(next(iter(vectors.values())).dtype) if vectors else "float32",
            "counts": {"input": len(ids), "embedded": len(ids), "rejected": 0, "text_only": 0},
            "rejected": [],
            "degraded": [],
        },
    )
    return out
