"""Nearest-neighbour search over one channel of an embedding store (cosine similarity, faiss).

Cosine similarity is computed as the inner product of L2-normalised float32 vectors, so every
index kind is built with the inner-product metric over normalised copies (the store's own files,
possibly memory-mapped, are never modified). Zero vectors stay zero and score 0 against everything.

`mllmrec index` writes two files into the store:

    index/<channel>.faiss     the faiss index (written to a temporary name, then renamed)
    index/<channel>.json      kind, parameters, n, dim, faiss version, and the store identity

The store identity (the manifest's `completed` timestamp, its counts, the size of the vectors
file and a hash of the embedding settings in its `identity`) is what makes a saved index go stale:
once the store is re-embedded, `NeighborIndex.load` refuses the old index instead of returning
neighbours of vectors that no longer exist. Without a saved index, `NeighborIndex.load` builds an
exact (flat) index in memory. The CLI commands that print results live in `search_cli`.

faiss is imported inside functions only, so importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mllmrec import __version__
from mllmrec.errors import MllmrecError
from mllmrec.fsutil import atomic_path, atomic_write_text
from mllmrec.store import VECTOR_FILES, EmbeddingStore, StoreError

log = logging.getLogger(__name__)

INDEX_DIR = "index"
KINDS = ("flat", "ivf", "hnsw")
MAX_TRAIN = 100_000  # IVF k-means trains on a seeded sample of at most this many vectors
MIN_POINTS_PER_LIST = 39  # faiss k-means wants >= 39 training points per centroid
HNSW_EF_CONSTRUCTION = 40  # faiss' default, recorded in the index metadata
CHUNK_FLOATS = 1 << 24  # normalise/add ~64 MB of float32 at a time


class SearchError(MllmrecError, ValueError):
    """A bad index parameter or a query that does not fit the index; the message says which."""


@dataclass(frozen=True)
class Neighbor:
    """One search hit: the item's id, its display label and its cosine similarity to the query."""

    id: str
    label: str
    score: float


def _faiss() -> Any:
    """Import faiss on first use (it is heavy and only the search stages need it)."""
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - faiss-cpu is a dependency
        raise ImportError("mllmrec's search needs faiss: pip install faiss-cpu (or faiss-gpu-cu12)") from e
    return faiss


def index_paths(store_dir: str | Path, channel: str) -> tuple[Path, Path]:
    """(<store>/index/<channel>.faiss, <store>/index/<channel>.json)."""
    d = Path(store_dir) / INDEX_DIR
    return d / f"{channel}.faiss", d / f"{channel}.json"


def store_identity(store: EmbeddingStore) -> dict[str, Any]:
    """What identifies the store contents an index was built from; a re-embedded store differs.

    The timestamp has one-second resolution and the counts and file size stay the same when only
    the settings change (model, prompt, embed config), so the manifest's `identity` is hashed in too.
    """
    vec_file = store.path / VECTOR_FILES[store.format]
    settings = json.dumps(store.manifest.get("identity"), sort_keys=True)  # key order is not identity
    return {
        "completed": store.manifest.get("completed"),
        "counts": store.manifest.get("counts"),
        "vectors_bytes": vec_file.stat().st_size if vec_file.is_file() else None,
        "identity_sha256": hashlib.sha256(settings.encode("utf-8")).hexdigest(),
    }


# ---------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------
def normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2-normalised float32 copy of x [m, d]; zero rows stay zero.

    Non-finite values are refused: faiss would silently rank them arbitrarily.
    """
    out = np.array(x, dtype=np.float32, copy=True)  # [m, d]
    if not np.isfinite(out).all():
        bad = int((~np.isfinite(out).all(axis=1)).sum())
        raise StoreError(f"{bad} vector(s) contain NaN or inf; re-embed the store")
    norms = np.linalg.norm(out, axis=1, keepdims=True)  # [m, 1]
    np.divide(out, norms, out=out, where=norms > 0)
    return out


def _chunks(vectors: np.ndarray) -> Iterator[np.ndarray]:
    """Normalised float32 copies of consecutive row blocks of `vectors` (a memmap stays unread
    until its block is needed, so memory holds one block at a time)."""
    rows = max(1, CHUNK_FLOATS // max(1, vectors.shape[1]))
    for start in range(0, vectors.shape[0], rows):
        try:
            yield normalize(vectors[start : start + rows])
        except StoreError as e:
            raise StoreError(f"rows {start}..{min(start + rows, len(vectors)) - 1}: {e}") from None


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------
def default_nlist(n: int) -> int:
    """IVF list count: about 4*sqrt(n), but no more lists than the training sample can fill
    (MIN_POINTS_PER_LIST points each), at least 1."""
    n_train = min(n, MAX_TRAIN)
    return max(1, min(round(4 * math.sqrt(n)), n_train // MIN_POINTS_PER_LIST, n))


def _build(
    vectors: np.ndarray,
    kind: str = "flat",
    *,
    nlist: int | None = None,
    nprobe: int = 16,
    hnsw_m: int = 32,
    ef_search: int = 128,
    seed: int = 0,
) -> tuple[Any, dict[str, Any]]:
    """Build an in-memory faiss index over `vectors` [n, d]; returns (index, parameters used)."""
    faiss = _faiss()
    n, d = vectors.shape
    if n == 0:
        raise StoreError("the store holds no vectors: nothing to index")
    if min(nprobe, hnsw_m, ef_search) < 1:
        raise SearchError(f"nprobe, hnsw_m and ef_search must be >= 1, got {nprobe}, {hnsw_m}, {ef_search}")
    if kind == "flat":
        index, params = faiss.IndexFlatIP(d), {}
    elif kind == "ivf":
        nlist = default_nlist(n) if nlist is None else nlist
        if not 1 <= nlist <= n:
            raise SearchError(f"nlist must be between 1 and the number of vectors ({n}), got {nlist}")
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, size=min(n, MAX_TRAIN), replace=False))  # sorted: sequential reads
        index.train(normalize(vectors[sample]))
        index.nprobe = nprobe
        params = {"nlist": nlist, "nprobe": nprobe, "train_size": len(sample), "seed": seed}
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = ef_search
        params = {"m": hnsw_m, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": ef_search}
    else:
        raise SearchError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
    for block in _chunks(vectors):
        index.add(block)
    return index, params


def inner_product_index(vectors: np.ndarray, use_gpu: bool | None = None) -> tuple[Any, bool]:
    """(exact inner-product index over raw vectors [n, d], whether it lives on a GPU): the serving
    index of a distill run's student scores u·i (no normalisation, unlike `build_index`'s cosine).
    use_gpu=None: on a GPU when faiss can see one (faiss-gpu installed and a device present)."""
    faiss = _faiss()

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if use_gpu or (use_gpu is None and gpus > 0):
        if gpus == 0:
            raise SearchError(
                "GPU faiss was asked for, but faiss sees no GPU (install faiss-gpu-cu12 on a GPU machine)"
            )
        return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index), True
    return index, False


def build_index(
    store_dir: str | Path,
    channel: str = "mm",
    kind: str = "flat",
    *,
    nlist: int | None = None,
    nprobe: int = 16,
    hnsw_m: int = 32,
    ef_search: int = 128,
    seed: int = 0,
) -> Path:
    """Build a cosine-similarity index over one channel and save it inside the store.

    Returns the path of the `.faiss` file. The metadata JSON is removed first and written last,
    so a crash mid-build leaves no metadata pointing at a half-written or mismatched index.
    """
    faiss = _faiss()
    store = EmbeddingStore.open(store_dir)
    vectors = store.vectors(channel)  # [n, d], memmap for safetensors
    t0 = time.perf_counter()
    index, params = _build(
        vectors, kind, nlist=nlist, nprobe=nprobe, hnsw_m=hnsw_m, ef_search=ef_search, seed=seed
    )
    seconds = time.perf_counter() - t0
    faiss_path, meta_path = index_paths(store.path, channel)
    faiss_path.parent.mkdir(parents=True, exist_ok=True)
    meta_path.unlink(missing_ok=True)
    with atomic_path(faiss_path) as tmp:
        faiss.write_index(index, str(tmp))
    meta = {
        "kind": kind,
        "channel": channel,
        "params": params,
        "n": int(index.ntotal),
        "dim": int(index.d),
        "metric": "cosine (inner product of L2-normalised float32 vectors)",
        "faiss_version": faiss.__version__,
        "mllmrec_version": __version__,
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "build_seconds": round(seconds, 3),
        "file_bytes": faiss_path.stat().st_size,
        "store": store_identity(store),
    }
    atomic_write_text(meta_path, json.dumps(meta, indent=2))
    return faiss_path


# ---------------------------------------------------------------------------------------------
# Searching
# ---------------------------------------------------------------------------------------------
class NeighborIndex:
    """A searchable index over one channel of a store, with item ids and labels for the results."""

    def __init__(self, store: EmbeddingStore, channel: str, index: Any, meta: dict[str, Any] | None) -> None:
        self.store, self.channel, self.index, self.meta = store, channel, index, meta
        self.ids, self.labels = store.ids, store.labels
        self._vectors: np.ndarray | None = None

    @property
    def kind(self) -> str:
        """'flat', 'ivf' or 'hnsw' (an index built in memory is always 'flat')."""
        return self.meta["kind"] if self.meta else "flat"

    @property
    def in_memory(self) -> bool:
        """True when no saved index existed and an exact one was built on load."""
        return self.meta is None

    @classmethod
    def load(cls, store_dir: str | Path, channel: str = "mm") -> NeighborIndex:
        """Open the saved index of `channel`, or build an exact one in memory if none was saved.

        A saved index built from an earlier version of the store is refused (StoreError).
        """
        store = EmbeddingStore.open(store_dir)
        faiss_path, meta_path = index_paths(store.path, channel)
        if not meta_path.is_file():
            if faiss_path.exists():
                log.warning("%s has no metadata (interrupted build?); ignoring it", faiss_path)
            log.info(
                "no saved index for channel %r in %s: building an exact flat index in memory "
                "(run `mllmrec index` to save one)",
                channel,
                store.path,
            )
            index, _ = _build(store.vectors(channel), "flat")
            return cls(store, channel, index, None)
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        _check_fresh(store, channel, meta, faiss_path)
        index = _faiss().read_index(str(faiss_path))
        if meta["kind"] == "ivf":
            index.nprobe = meta["params"]["nprobe"]
        elif meta["kind"] == "hnsw":
            index.hnsw.efSearch = meta["params"]["ef_search"]
        return cls(store, channel, index, meta)

    def search_vectors(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows for each query in q [m, d]: (scores [m, k'], rows [m, k']), k' = min(k, n).

        Scores are cosine similarities. An approximate index may find fewer than k' hits for a
        query; those slots hold row -1 and score -inf.
        """
        q = np.atleast_2d(np.asarray(q))
        if q.shape[1] != self.index.d:
            raise SearchError(
                f"query vectors have dimension {q.shape[1]}; the {self.channel!r} index has {self.index.d}"
            )
        k = min(int(k), int(self.index.ntotal))
        if k < 1:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        scores, rows = self.index.search(normalize(q), k)  # [m, k], [m, k]
        scores[rows < 0] = -np.inf
        return scores, rows

    def search(self, vector: np.ndarray, k: int = 10) -> list[Neighbor]:
        """The k items most similar to an arbitrary query vector [d] (any scale)."""
        scores, rows = self.search_vectors(np.asarray(vector).reshape(1, -1), k)
        return [self._neighbor(r, s) for r, s in zip(rows[0], scores[0], strict=True) if r >= 0]

    def neighbors(self, item_id: str | int, k: int = 10, exclude_self: bool = True) -> list[Neighbor]:
        """The k items most similar to a stored item (itself left out unless exclude_self=False).

        Raises KeyError naming the id if it is not in the store. Asking for more neighbours than
        exist returns all there are.
        """
        row = self.store.index_of(item_id)
        scores, rows = self.search_vectors(self.vector(row).reshape(1, -1), k + int(exclude_self))
        hits = [
            (int(r), float(s))
            for r, s in zip(rows[0], scores[0], strict=True)
            if r >= 0 and not (exclude_self and r == row)
        ]
        return [self._neighbor(r, s) for r, s in hits[:k]]

    def vector(self, row: int) -> np.ndarray:
        """The stored (unnormalised) vector [d] of one row."""
        if self._vectors is None:
            self._vectors = self.store.vectors(self.channel)  # memmap, or loaded once for parquet
        return np.asarray(self._vectors[row], dtype=np.float32)

    def _neighbor(self, row: int, score: float) -> Neighbor:
        return Neighbor(self.ids[row], self.labels[row], float(score))


def _check_fresh(store: EmbeddingStore, channel: str, meta: dict[str, Any], faiss_path: Path) -> None:
    """Refuse a saved index that was not built from the store as it is now."""
    rebuild = f"rebuild it with `mllmrec index {store.path} --channel {channel} --kind {meta.get('kind')}`"
    if not faiss_path.is_file() or faiss_path.stat().st_size != meta.get("file_bytes"):
        raise StoreError(f"the index file {faiss_path} is missing or does not match its metadata; {rebuild}")
    now = store_identity(store)
    if meta.get("store") != now:
        diff = ", ".join(
            f"{k} {meta.get('store', {}).get(k)!r} -> {now[k]!r}"
            for k in now
            if meta.get("store", {}).get(k) != now[k]
        )
        raise StoreError(
            f"the saved {channel!r} index in {faiss_path.parent} is stale: the store changed "
            f"since it was built ({diff}); {rebuild}"
        )


def neighbors(store_dir: str | Path, item_id: str | int, k: int = 10, channel: str = "mm") -> list[Neighbor]:
    """The k nearest items to `item_id` in a store (Python convenience around NeighborIndex)."""
    return NeighborIndex.load(store_dir, channel).neighbors(item_id, k)
