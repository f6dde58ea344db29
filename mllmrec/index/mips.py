"""Maximum-inner-product search for serving a distill run's student: exact or approximate.

The student scores s(u, i) = user[u] · item[i] with unnormalised vectors, so cosine indexes
(`mllmrec.index.search`) do not apply. Kinds:

    exact   faiss IndexFlatIP: every item scored; the right choice up to EXACT_MAX_ITEMS items
    hnsw    graph search (IndexHNSWFlat); search knob ef_search
    ivf     inverted lists over k-means cells (IndexIVFFlat); search knob nprobe
    ivfpq   IVF with product-quantised codes (IndexIVFPQ, ~8x smaller than float32 vectors); nprobe

The approximate kinds use the MIPS-to-L2 transform (Bachrach et al. 2014): with M = max ||x||,

    x' = [x ; sqrt(M² − ||x||²)],  q' = [q ; 0]   =>   ||q' − x'||² = ||q||² + M² − 2 q·x

so the L2 nearest neighbours of q' are the largest inner products of q (HNSW graphs and k-means
cells are built for a metric; inner product is not one). Candidates (`refine` × k of them) are then
re-scored exactly against the item table, so every returned score is the true u·i and the ordering
among candidates is exact: only a missed candidate costs recall.

`choose_kind(n)` is the default: exact up to EXACT_MAX_ITEMS, ivf above (in eval/bench_serve.py on
2 CPU cores, ivf met recall@100 0.95 at ~20x exact's throughput at 100k items and built as fast as
hnsw; hnsw needed efSearch so high for k = 100 that it was barely faster than exact). `tune` picks the smallest ef_search / nprobe whose
recall@k against exact search on sample queries meets a target. faiss is imported lazily.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from mllmrec.index.search import MAX_TRAIN, MIN_POINTS_PER_LIST, SearchError, _faiss

KINDS = ("exact", "hnsw", "ivf", "ivfpq")
EXACT_MAX_ITEMS = 200_000
KNOB = {"hnsw": "ef_search", "ivf": "nprobe", "ivfpq": "nprobe"}


def choose_kind(n_items: int, kind: str = "auto") -> str:
    """The index kind to use: `kind` itself, or for 'auto' exact up to EXACT_MAX_ITEMS items, ivf above."""
    if kind == "auto":
        return "exact" if n_items <= EXACT_MAX_ITEMS else "ivf"
    if kind not in KINDS:
        raise SearchError(f"unknown index {kind!r}; choose auto or one of {', '.join(KINDS)}")
    return kind


@dataclass(frozen=True)
class IndexParams:
    """Build and search parameters (recorded with a saved index; None = derived from the item count)."""

    kind: str = "exact"
    hnsw_m: int = 32
    ef_construction: int = 64
    ef_search: int = 128
    nlist: int | None = None
    nprobe: int = 32
    pq_dims: int = 2  # dimensions per PQ sub-vector (2: ~1 byte per 2 floats)
    refine: int | None = None  # candidates re-scored exactly per requested item; None: 4 for ivfpq, else 1
    seed: int = 0

    def candidates(self, k: int) -> int:
        """How many candidates the approximate search returns for k results: PQ distances are
        approximate, so ivfpq fetches 4k and the exact re-scoring orders them; L2 on the augmented
        vectors is exact, so hnsw and ivf need only k."""
        return k * max(1, self.refine if self.refine is not None else 4 if self.kind == "ivfpq" else 1)

    def knob(self) -> int | None:
        return getattr(self, KNOB[self.kind]) if self.kind in KNOB else None

    def with_knob(self, value: int) -> IndexParams:
        return replace(self, **{KNOB[self.kind]: int(value)})


def augment(x: np.ndarray, max_norm: float, width: int) -> np.ndarray:
    """[x ; sqrt(M² − ||x||²) ; 0 …] as float32 [n, width] (width ≥ d + 1; padding for PQ)."""
    x = np.asarray(x, dtype=np.float32)
    out = np.zeros((x.shape[0], width), np.float32)  # [n, width]
    out[:, : x.shape[1]] = x
    out[:, x.shape[1]] = np.sqrt(np.maximum(max_norm**2 - np.einsum("nd,nd->n", x, x), 0.0))
    return out


def pad_queries(q: np.ndarray, width: int) -> np.ndarray:
    """[q ; 0 …] as float32 [m, width]."""
    out = np.zeros((q.shape[0], width), np.float32)
    out[:, : q.shape[1]] = q
    return out


def _width(kind: str, d: int, params: IndexParams) -> int:
    if kind != "ivfpq":
        return d + 1
    return params.pq_dims * math.ceil((d + 1) / params.pq_dims)


class MipsIndex:
    """A faiss index over item vectors plus the table its candidates are re-scored against."""

    def __init__(
        self, index: Any, items: np.ndarray, params: IndexParams, max_norm: float = 0.0, on_gpu: bool = False
    ) -> None:
        self.index, self.items, self.params, self.max_norm, self.on_gpu = (
            index,
            items,
            params,
            max_norm,
            on_gpu,
        )
        self.kind = params.kind
        self.set_knob(params.knob())

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def set_knob(self, value: int | None) -> None:
        """Set ef_search (hnsw) or nprobe (ivf, ivfpq); exact has no knob."""
        if value is None or self.kind == "exact":
            return
        if value < 1:
            raise SearchError(f"{KNOB[self.kind]} must be >= 1, got {value}")
        self.params = self.params.with_knob(value)
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = int(value)
        else:
            self.index.nprobe = int(value)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores [m, k'], rows [m, k']) of the top k' = min(k, n) inner products per query q [m, d].

        Approximate kinds may return fewer hits for a query: those slots hold row -1, score -inf.
        """
        q = np.ascontiguousarray(np.atleast_2d(q), dtype=np.float32)  # [m, d]
        if q.shape[1] != self.items.shape[1]:
            raise SearchError(f"query vectors have dimension {q.shape[1]}, the items {self.items.shape[1]}")
        k = min(int(k), self.ntotal)
        if self.kind == "exact":
            return self.index.search(q, k)
        kc = min(self.ntotal, self.params.candidates(k))
        # Per-call parameters, not index state: concurrent searches (the HTTP server) never race.
        faiss = _faiss()
        sp = (
            faiss.SearchParametersHNSW(efSearch=max(self.params.ef_search, kc))
            if self.kind == "hnsw"
            else faiss.SearchParametersIVF(nprobe=int(self.params.nprobe))
        )
        _, cand = self.index.search(pad_queries(q, self.index.d), kc, params=sp)  # [m, kc]
        valid = cand >= 0
        vecs = np.asarray(self.items[np.where(valid, cand, 0).ravel()], np.float32).reshape(*cand.shape, -1)
        scores = np.einsum("mkd,md->mk", vecs, q)  # [m, kc] exact u·i
        scores[~valid] = -np.inf
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # [m, k]
        rows = np.take_along_axis(cand, top, 1)
        return np.take_along_axis(scores, top, 1), np.where(np.take_along_axis(valid, top, 1), rows, -1)


def build(items: np.ndarray, params: IndexParams, use_gpu: bool | None = False) -> MipsIndex:
    """Build an index of `params.kind` over items [n, d] (not saved: see mllmrec.index.mips_store)."""
    faiss = _faiss()
    n, d = items.shape
    if n == 0:
        raise SearchError("no items to index")
    if params.kind == "exact":
        from mllmrec.index.search import inner_product_index

        index, on_gpu = inner_product_index(items, use_gpu)
        return MipsIndex(index, items, params, on_gpu=on_gpu)
    max_norm = float(np.sqrt(max(float(np.einsum("nd,nd->n", b, b).max()) for b in _blocks(items))))
    width = _width(params.kind, d, params)
    if params.kind == "hnsw":
        index = faiss.IndexHNSWFlat(width, params.hnsw_m)
        index.hnsw.efConstruction = params.ef_construction
    else:
        nlist = params.nlist or _default_nlist(n)
        params = replace(params, nlist=nlist)
        quantizer = faiss.IndexFlatL2(width)
        if params.kind == "ivf":
            index = faiss.IndexIVFFlat(quantizer, width, nlist)
        else:
            nbits = (
                8
                if n >= 256 * MIN_POINTS_PER_LIST
                else max(1, min(8, int(math.log2(max(2, n // MIN_POINTS_PER_LIST)))))
            )
            index = faiss.IndexIVFPQ(quantizer, width, nlist, width // params.pq_dims, nbits)
        index.cp.seed = params.seed
        sample = np.sort(np.random.default_rng(params.seed).choice(n, size=min(n, MAX_TRAIN), replace=False))
        index.train(augment(items[sample], max_norm, width))
    for start in range(0, n, 65536):
        index.add(augment(items[start : start + 65536], max_norm, width))
    return MipsIndex(index, items, params, max_norm)


def _blocks(x: np.ndarray, rows: int = 65536) -> list[np.ndarray]:
    return [np.asarray(x[s : s + rows], np.float32) for s in range(0, x.shape[0], rows)]


def _default_nlist(n: int) -> int:
    """About 4·sqrt(n) cells, no more than the k-means sample can fill."""
    return max(1, min(round(4 * math.sqrt(n)), min(n, MAX_TRAIN) // MIN_POINTS_PER_LIST, n))


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found ∩ truth| / |truth| (rows [m, k] each; -1 = no hit)."""
    hits = sum(
        len(set(f[f >= 0].tolist()) & set(t[t >= 0].tolist())) for f, t in zip(found, truth, strict=True)
    )
    return hits / max(1, int((truth >= 0).sum()))


def exact_top(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k rows [m, k] (the ground truth recall is measured against)."""
    return build(items, IndexParams("exact"), use_gpu=False).search(queries, k)[1]


def measure(index: MipsIndex, queries: np.ndarray, truth: np.ndarray, k: int) -> dict[str, float]:
    """recall@k against `truth` and search milliseconds per query at the index's current knob."""
    t = time.perf_counter()
    _, rows = index.search(queries, k)
    ms = (time.perf_counter() - t) * 1e3 / max(1, len(queries))
    return {"recall": round(recall_at_k(rows, truth), 4), "ms_per_query": round(ms, 4)}


def knob_grid(index: MipsIndex, k: int) -> list[int]:
    """Candidate ef_search (>= k) or nprobe (<= nlist) values, cheapest first."""
    if index.kind == "hnsw":
        kc = index.params.candidates(k)
        return sorted({max(kc, v) for v in (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)})
    nlist = int(index.params.nlist or 1)
    return sorted({min(nlist, v) for v in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)})


def tune(
    index: MipsIndex, queries: np.ndarray, truth: np.ndarray, k: int, target: float | None
) -> dict[str, Any]:
    """Measure recall@k on sample queries; with `target`, set the knob to the smallest grid value that
    reaches it (the largest, with a warning flag, if none does). Returns what was measured."""
    if index.kind == "exact":
        return {"k": k, "queries": len(queries), "recall": 1.0, "knob": None}
    name = KNOB[index.kind]
    trials: list[dict[str, Any]] = []
    if target is None:
        trials.append({name: index.params.knob(), **measure(index, queries, truth, k)})
        chosen = trials[0]
    else:
        chosen = None
        for v in knob_grid(index, k):
            index.set_knob(v)
            trials.append({name: v, **measure(index, queries, truth, k)})
            if trials[-1]["recall"] >= target:
                chosen = trials[-1]
                break
        chosen = chosen or trials[-1]
        index.set_knob(chosen[name])
    return {
        "k": k,
        "queries": len(queries),
        "target": target,
        "knob": name,
        name: chosen[name],
        "recall": chosen["recall"],
        "met_target": target is None or chosen["recall"] >= target,
        "trials": trials,
        "params": asdict(index.params),
    }
