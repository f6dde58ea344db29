"""`mllmrec index` and `mllmrec neighbors`: thin printing wrappers around `mllmrec.index.search`.

Kept apart from the search code so that module holds only what the Python API needs.
"""

from __future__ import annotations

import json

from mllmrec.index.config import IndexConfig, NeighborsConfig
from mllmrec.index.search import NeighborIndex, build_index

LABEL_WIDTH = 70  # a label longer than this is cut, so each table row stays on one terminal line


def run_index(cfg: IndexConfig, command: list[str] | None = None) -> int:
    """`mllmrec index`: build and save an index, then say where it went and how long it took."""
    path = build_index(
        cfg.store,
        cfg.channel,
        cfg.kind,
        nlist=cfg.nlist,
        nprobe=cfg.nprobe,
        hnsw_m=cfg.hnsw_m,
        ef_search=cfg.ef_search,
    )
    meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    params = ", ".join(f"{k}={v}" for k, v in meta["params"].items())
    print(
        f"index: {path}  {meta['kind']}{f' ({params})' if params else ''} over {meta['n']} x {meta['dim']} "
        f"{cfg.channel!r} vectors, built in {meta['build_seconds']:.2f} s"
    )
    return 0


def run_neighbors(cfg: NeighborsConfig, command: list[str] | None = None) -> int:
    """`mllmrec neighbors`: print the query item, then its nearest items as a table."""
    ix = NeighborIndex.load(cfg.store, cfg.channel)
    row = ix.store.index_of(cfg.item)
    hits = ix.neighbors(cfg.item, cfg.k)
    print(f"query {ix.ids[row]}: {_short(ix.labels[row])}")
    how = "exact, built in memory" if ix.in_memory else f"saved {ix.kind} index"
    print(f"{len(hits)} nearest by cosine similarity of {cfg.channel!r} vectors ({how})")
    width = max([len("id"), *(len(h.id) for h in hits)])
    print(f"{'rank':>4}  {'id':<{width}}  {'score':>6}  label")
    for rank, h in enumerate(hits, 1):
        print(f"{rank:>4}  {h.id:<{width}}  {h.score:>6.3f}  {_short(h.label)}")
    return 0


def _short(label: str | None, width: int = LABEL_WIDTH) -> str:
    """One-line label cut to `width` characters ('...' marks the cut)."""
    text = " ".join((label or "").split())
    return text if len(text) <= width else text[: width - 3] + "..."
