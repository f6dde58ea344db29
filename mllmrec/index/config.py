"""Search and export configs. The export formats, and which of the flat export options each one
reads, come from the exporters registry (`index.exporters`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mllmrec.config import REQUIRED, Checked, opt


@dataclass(frozen=True, kw_only=True)
class IndexConfig(Checked):
    """Build a faiss index over one channel of an embedding store (cosine similarity)."""

    store: str = opt(REQUIRED, "Embedding store directory written by `mllmrec embed`.", positional=True)
    channel: str = opt("mm", "Which vector channel to index (mm, visual, fused ...).")
    kind: Literal["flat", "ivf", "hnsw"] = opt(
        "flat", "Index type: exact inner product (flat), IVF-Flat or HNSW."
    )
    nlist: int | None = opt(
        None, "IVF: number of lists (default ~ 4*sqrt(n), at most n/39 so each list trains on 39+ points)."
    )
    nprobe: int = opt(16, "IVF: lists probed per query.")
    hnsw_m: int = opt(32, "HNSW: neighbours per node.")
    ef_search: int = opt(128, "HNSW: search breadth.")


@dataclass(frozen=True, kw_only=True)
class NeighborsConfig(Checked):
    """Print the nearest items to a query item, with their titles."""

    store: str = opt(REQUIRED, "Embedding store directory.", positional=True)
    item: str = opt(REQUIRED, "Query item id.", positional=True)
    k: int = opt(10, "How many neighbours to print.", short="-k")
    channel: str = opt("mm", "Vector channel to search.")
