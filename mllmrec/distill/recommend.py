"""Serving a distill run: `Recommender` (Python) and `mllmrec recommend` (CLI).

The student's score is an inner product, s(u, i) = user[u] · item[i], so top-k retrieval is a
maximum-inner-product search (mllmrec.index.mips): exact (faiss IndexFlatIP; GPU faiss when it is
installed and sees a GPU) or approximate (hnsw, ivf, ivfpq), chosen by `index` ("auto": exact up to
EXACT_MAX_ITEMS items, ivf above). An approximate index is built once, saved in the run directory
with its recall@k against exact search on a sample of the run's users, and refused once the tables
or the new items it was built from change (mllmrec.index.mips_store). Items = the run's table rows, then (unless new_items=False) every
item of the store without a row, mapped from its MLLM vectors by the run's new-item mapping; each
recommendation says which way its item came (`via`: "table" or "new-item mapping").

Seen items: asking faiss for k + (the user's seen count) hits and dropping the seen ones gives
exactly the top k unseen. Unknown users get the most popular items (via "popularity") or an
UnknownUserError, by choice; a batch never crashes on one of them.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from mllmrec.artifacts import MANIFEST
from mllmrec.distill.artifact import DistillRun
from mllmrec.distill.config import RecommendConfig, ServeConfig
from mllmrec.distill.errors import DistillError, UnknownUserError
from mllmrec.ids import IdList
from mllmrec.index.mips import IndexParams, MipsIndex, choose_kind
from mllmrec.index.mips_store import fingerprint, load_or_build
from mllmrec.store import EmbeddingStore

log = logging.getLogger(__name__)
VIA_TABLE, VIA_MAPPING, VIA_POPULARITY = "table", "new-item mapping", "popularity"
VIAS = (VIA_TABLE, VIA_MAPPING)  # Recommender._via_code indexes this


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    via: str


class Recommender:
    """Top-k recommendations from a distill run (see the module docstring).

    Ids and labels stay in pyarrow arrays and sorted id indexes (mllmrec.ids): no dict of every item
    is built, so a catalogue of 10M new items costs their vectors plus ~(id bytes + 8) per item."""

    def __init__(
        self,
        run: DistillRun,
        item_ids: IdList,
        items: np.ndarray,
        via_code: np.ndarray,
        popularity: np.ndarray,
        seen: sp.csr_matrix,
        store: EmbeddingStore | None,
        use_gpu: bool | None = None,
        index: MipsIndex | None = None,
        index_info: dict | None = None,
    ):
        self.run, self.item_ids, self._via_code, self.store = run, item_ids, via_code, store
        self.users = run.user_table()  # [U, d]
        self.items = items  # [I, d]
        self.popularity, self.seen = popularity, seen
        if index is None:
            from mllmrec.index.mips import build

            index = build(items, IndexParams("exact"), use_gpu=use_gpu)
        self.index, self.on_gpu = index, index.on_gpu
        self.index_info = index_info or {"kind": index.kind}
        self._popular = np.argsort(-popularity, kind="stable")

    @property
    def via(self) -> np.ndarray:
        """[I] how each item came: "table" or "new-item mapping"."""
        return np.asarray(VIAS, dtype=object)[self._via_code]

    @property
    def labels(self) -> _Labels:
        """Item labels from the store (`.get(item_id, default)`), looked up on demand."""
        return _Labels(self.store)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        store: str | Path | None = None,
        new_items: bool = True,
        use_gpu: bool | None = None,
        index: str = "auto",
        target_recall: float | None = None,
        rebuild_index: bool = False,
        recall_k: int = 100,
        index_params: IndexParams | None = None,
    ) -> Recommender:
        """Open a run; with new_items, add the store's items that have no table row (via the mapping).
        The run's own store is used unless `store` names another (checked to fit the mapping); if the
        run's store is gone, new items are skipped with a warning.

        index: auto, exact, hnsw, ivf or ivfpq (module docstring). An approximate index is loaded from
        the run directory (memory-mapped) or built and saved there; `target_recall` tunes its search
        knob to the cheapest value whose recall@recall_k on a sample of users meets it; a saved index
        built from other vectors raises StaleIndexError unless rebuild_index."""
        import pyarrow as pa

        run = DistillRun.open(path)
        ids = pa.array(run.item_ids, pa.string())
        items = run.item_table()  # [n, d]
        extra_rows = np.zeros(0, np.int64)
        st = label_store = None
        if new_items or store is not None:
            try:
                st = label_store = run.open_store(store)
            except DistillError as e:
                if store is not None:
                    raise
                log.warning("no new items: %s; serving table items only", e)  # says what is gone or differs
                label_store = _open_for_labels(run.store_path)
        if st is not None and new_items:
            # store rows of the run's items, found through the store's sorted id index (no dict)
            taken = np.ones(len(st.id_array()), bool)
            in_run = st.positions(ids)
            taken[in_run[in_run >= 0]] = False
            extra_rows = np.flatnonzero(taken)
            if extra_rows.size:
                items = np.concatenate([items, run.new_item_vectors_at(extra_rows, st)])  # [n + m, d]
                ids = pa.concat_arrays([ids, st.id_array().take(pa.array(extra_rows))])
        n_table, n_extra = len(run.item_ids), len(extra_rows)
        via_code = np.concatenate([np.zeros(n_table, np.int8), np.ones(n_extra, np.int8)])
        popularity = np.concatenate([run.popularity(), np.zeros(n_extra, np.int64)])
        s_users, s_items = run.seen()
        cols = run.item_rows(s_items)  # table rows come first, so a table row is its item's column
        miss = np.flatnonzero(cols < 0)
        if miss.size and n_extra:
            # Seen items without a table row (valid/test pairs of items cold in training, pairs the
            # split dropped) are served as new items: find their columns through the store's rows.
            col_of_row = np.full(len(st.id_array()), -1, np.int64)
            col_of_row[extra_rows] = n_table + np.arange(n_extra)
            rows = st.positions(s_items.take(pa.array(miss)))
            cols[miss[rows >= 0]] = col_of_row[rows[rows >= 0]]
        keep = cols >= 0
        seen = sp.csr_matrix(
            (np.ones(int(keep.sum()), np.float32), (s_users[keep], cols[keep])),
            shape=(len(run.user_ids), n_table + n_extra),
        )
        items = np.ascontiguousarray(items, np.float32)
        kind = choose_kind(len(ids), index)
        params = replace(index_params or IndexParams(), kind=kind)
        source = {
            "run_manifest_sha256": hashlib.sha256((run.path / MANIFEST).read_bytes()).hexdigest(),
            "new_items": n_extra,
        }
        fp = fingerprint(_ids_sha256(ids), items, source) if kind != "exact" else {}
        built, info = load_or_build(
            run.path,
            items,
            fp,
            params,
            queries=run.user_table(),
            k=recall_k,
            target_recall=target_recall,
            rebuild=rebuild_index,
            use_gpu=use_gpu,
        )
        return cls(run, IdList(ids), items, via_code, popularity, seen, label_store, use_gpu, built, info)

    def recommend(
        self,
        user_ids: list[str | int],
        k: int = 20,
        *,
        exclude_seen: bool = True,
        unknown_users: str = "popularity",
    ) -> list[list[Recommendation]]:
        """Top-k per user, best first. unknown_users: 'popularity' or 'error' (UnknownUserError)."""
        if k < 1:
            raise DistillError(f"k must be >= 1, got {k}")
        if unknown_users not in ("popularity", "error"):
            raise DistillError(f"unknown_users must be 'popularity' or 'error', got {unknown_users!r}")
        found = self.run.user_rows([str(u) for u in user_ids])
        rows = [int(r) if r >= 0 else None for r in found]
        unknown = [u for u, r in zip(user_ids, rows, strict=True) if r is None]
        if unknown and unknown_users == "error":
            raise UnknownUserError(
                f"{len(unknown)} user(s) unknown to the run, e.g. {[str(u) for u in unknown[:5]]}; "
                "use unknown_users='popularity' (--unknown-users popularity) for a popularity fallback"
            )
        known = np.asarray([r for r in rows if r is not None], np.int64)
        hits = self._search(known, k, exclude_seen) if known.size else []
        popular = [
            Recommendation(i, float(self.popularity[r]), VIA_POPULARITY)
            for i, r in zip(self.item_ids.take(self._popular[:k]), self._popular[:k], strict=True)
        ]
        it = iter(hits)
        return [next(it) if r is not None else list(popular) for r in rows]

    def _search(self, rows: np.ndarray, k: int, exclude_seen: bool) -> list[list[Recommendation]]:
        n_seen = np.diff(self.seen.indptr)[rows] if exclude_seen else np.zeros(len(rows), np.int64)
        kk = int(min(len(self.item_ids), k + (n_seen.max() if len(rows) else 0)))
        scores, idx = self.index.search(
            np.ascontiguousarray(self.users[rows], dtype=np.float32), kk
        )  # [b, kk] each
        out = []
        for b, r in enumerate(rows):
            seen = (
                set(self.seen.indices[self.seen.indptr[r] : self.seen.indptr[r + 1]].tolist())
                if exclude_seen
                else set()
            )
            keep = [n for n, i in enumerate(idx[b]) if i >= 0 and i not in seen][:k]
            hit, sc = idx[b][keep], scores[b][keep]
            if len(hit) < min(k, len(self.item_ids) - len(seen)):
                # An approximate index can return fewer candidates than asked (IVF cells probed
                # held too few unseen items): score this user exactly so the list is never short.
                hit, sc = self._exact_top(r, k, seen)
            out.append(
                [
                    Recommendation(i, float(x), VIAS[v])
                    for i, x, v in zip(self.item_ids.take(hit), sc, self._via_code[hit], strict=True)
                ]
            )
        return out

    def _exact_top(self, row: int, k: int, seen: set[int]) -> tuple[np.ndarray, np.ndarray]:
        """(items, scores) of one user's exact top k unseen, by a full pass over the item table."""
        s = self.items @ np.asarray(self.users[row], np.float32)  # [I]
        if seen:
            s[np.fromiter(seen, np.int64, len(seen))] = -np.inf
        top = np.argpartition(-s, min(k, len(s) - 1))[:k]
        top = top[np.argsort(-s[top], kind="stable")]
        top = top[np.isfinite(s[top])]
        return top, s[top]


class _Labels:
    """Labels by item id from a store's items.parquet, found through its sorted id index."""

    def __init__(self, store: EmbeddingStore | None) -> None:
        self.store = store

    def __bool__(self) -> bool:
        return self.store is not None and len(self.store.id_array()) > 0

    def get(self, item_id: str, default: str = "") -> str:
        if self.store is None:
            return default
        row = self.store.id_index().position(str(item_id))
        return self.store.label_of([row])[0] if row >= 0 else default


def _open_for_labels(path: Path | None) -> EmbeddingStore | None:
    """A store whose vectors cannot be used (re-embedded with another model) still has the right
    labels (they come from the catalogue); None when it cannot be read at all."""
    from mllmrec.errors import MllmrecError

    if path is None:
        return None
    try:
        return EmbeddingStore.open(path)
    except (MllmrecError, OSError):
        return None


def _ids_sha256(ids: Any) -> str:
    """sha256 of the ids (a pyarrow string array), 100k at a time, newline-separated."""
    h = hashlib.sha256()
    for start in range(0, len(ids), 100_000):
        h.update("\n".join(ids.slice(start, 100_000).to_pylist()).encode("utf-8") + b"\n")
    return h.hexdigest()


def _read_users(path: str, field: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise DistillError(f"--users-file {p} does not exist")
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    if p.suffix == ".parquet":
        table = pq.read_table(p)
    elif p.suffix in (".csv", ".tsv", ".txt"):
        opts = pcsv.ConvertOptions(column_types={field: "string"})
        table = pcsv.read_csv(
            p,
            parse_options=pcsv.ParseOptions(delimiter="\t" if p.suffix == ".tsv" else ","),
            convert_options=opts,
        )
    else:
        raise DistillError(f"--users-file must be .csv, .tsv or .parquet, got {p.name}")
    if field not in table.column_names:
        raise DistillError(
            f"--users-file {p} has no column {field!r} (columns: {', '.join(table.column_names)}); "
            "name it with --user-field"
        )
    values = table.column(field).to_pylist()
    bad = [n for n, v in enumerate(values) if v is None or str(v) == ""]
    if bad:
        raise DistillError(f"--users-file {p}: empty user id on data row {bad[0] + 1}")
    return [str(v) for v in values]


def load_for(cfg: RecommendConfig | ServeConfig) -> Recommender:
    """The Recommender a RecommendConfig (CLI, serve) asks for. Under torchrun, process 0 loads (and
    if need be builds and saves the index) first; the others then load what it saved."""
    from mllmrec.dist import barrier, dist_info

    rank, world = dist_info()
    if rank != 0:
        barrier(world)
    rec = Recommender.load(
        cfg.run,
        store=cfg.store,
        new_items=cfg.new_items,
        index=cfg.index,
        target_recall=cfg.target_recall,
        rebuild_index=cfg.rebuild_index and rank == 0,
    )
    if rank == 0:
        barrier(world)
    info = rec.index_info
    if info.get("kind") != "exact":
        r = info.get("recall", {})
        log.info(
            "serving with a %s index (recall@%s %s on %s sample users)",
            info["kind"],
            r.get("k"),
            r.get("recall"),
            r.get("queries"),
        )
    return rec


def run_recommend(cfg: RecommendConfig, command: list[str] | None = None) -> int:
    """`mllmrec recommend`: print one user's top-k, or write a file of top-k for many users."""
    rec = load_for(cfg)
    if cfg.all_users:
        from mllmrec.distill.batch import recommend_all

        recommend_all(rec, cfg, command)
        return 0
    users = [cfg.user] if cfg.user is not None else _read_users(cfg.users_file, cfg.user_field)
    results = rec.recommend(users, cfg.k, exclude_seen=cfg.exclude_seen, unknown_users=cfg.unknown_users)
    if cfg.user is not None:
        recs = results[0]
        note = " (unknown user: most popular items)" if recs and recs[0].via == VIA_POPULARITY else ""
        print(f"top {len(recs)} for user {cfg.user}{note}:")
        for n, r in enumerate(recs, 1):
            tag = "" if r.via == VIA_TABLE else f"  [{r.via}]"
            print(f"{n:3d}. {r.item_id}  {r.score:.4f}  {rec.labels.get(r.item_id, '')[:60]}{tag}")
        return 0
    from mllmrec.distill.batch import write_part

    write_part(Path(cfg.out), users, results)
    vias: dict[str, int] = {}
    for recs in results:
        for r in recs:
            vias[r.via] = vias.get(r.via, 0) + 1
    print(
        f"wrote top-{cfg.k} for {len(users)} users to {cfg.out} ({', '.join(f'{v}: {n}' for v, n in vias.items())})"
    )
    return 0
