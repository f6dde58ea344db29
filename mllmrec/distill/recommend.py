"""Serving a distill run: `Recommender` (Python) and `mllmrec recommend` (CLI).

The student's score is an inner product, s(u, i) = user[u] · item[i], so top-k retrieval is a
maximum-inner-product search: a faiss IndexFlatIP over the raw item vectors (exact; GPU faiss when
it is installed and sees a GPU). Items = the run's table rows, then (unless new_items=False) every
item of the store without a row, mapped from its MLLM vectors by the run's new-item mapping; each
recommendation says which way its item came (`via`: "table" or "new-item mapping").

Seen items: asking faiss for k + (the user's seen count) hits and dropping the seen ones gives
exactly the top k unseen. Unknown users get the most popular items (via "popularity") or an
UnknownUserError, by choice; a batch never crashes on one of them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from mllmrec.distill.artifact import DistillRun
from mllmrec.distill.config import RecommendConfig
from mllmrec.distill.errors import DistillError, UnknownUserError
from mllmrec.index.search import inner_product_index

log = logging.getLogger(__name__)
VIA_TABLE, VIA_MAPPING, VIA_POPULARITY = "table", "new-item mapping", "popularity"


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    via: str


class Recommender:
    """Top-k recommendations from a distill run (see the module docstring)."""

    def __init__(self, run: DistillRun, item_ids: list[str], items: np.ndarray, via: np.ndarray,
                 popularity: np.ndarray, seen: sp.csr_matrix, labels: dict[str, str], use_gpu: bool | None = None):
        self.run, self.item_ids, self.via, self.labels = run, item_ids, via, labels
        self.users = run.user_table()  # [U, d]
        self.items = items  # [I, d]
        self.popularity, self.seen = popularity, seen
        self.index, self.on_gpu = inner_product_index(items, use_gpu)
        self._popular = np.argsort(-popularity, kind="stable")

    @classmethod
    def load(cls, path: str | Path, *, store: str | Path | None = None, new_items: bool = True,
             use_gpu: bool | None = None) -> Recommender:
        """Open a run; with new_items, add the store's items that have no table row (via the mapping).
        The run's own store is used unless `store` names another (checked to fit the mapping); if the
        run's store is gone, new items are skipped with a warning."""
        run = DistillRun.open(path)
        item_ids = list(run.item_ids)
        items = run.item_table()  # [n, d]
        labels: dict[str, str] = {}
        extra: list[str] = []
        st = None
        if new_items or store is not None:
            try:
                st = run.open_store(store)
            except DistillError as e:
                if store is not None:
                    raise
                log.warning("no new items: %s; serving table items only", e)  # says what is gone or differs
                labels = _labels_of(run.store_path)
        if st is not None:
            labels = dict(zip(st.ids, st.labels, strict=True))
            if new_items:
                have = set(item_ids)
                extra = [i for i in st.ids if i not in have]
                if extra:
                    items = np.concatenate([items, run.new_item_vectors(extra, st)])  # [n + m, d]
        via = np.array([VIA_TABLE] * len(run.item_ids) + [VIA_MAPPING] * len(extra), dtype=object)
        popularity = np.concatenate([run.popularity(), np.zeros(len(extra), np.int64)])
        pos = {i: n for n, i in enumerate(item_ids + extra)}
        s_users, s_items = run.seen()
        cols = np.fromiter((pos.get(i, -1) for i in s_items), np.int64, len(s_items))
        keep = cols >= 0
        seen = sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (s_users[keep], cols[keep])),
                             shape=(len(run.user_ids), len(pos)))
        return cls(run, item_ids + extra, items.astype(np.float32), via, popularity, seen, labels, use_gpu)

    def recommend(self, user_ids: list[str | int], k: int = 20, *, exclude_seen: bool = True,
                  unknown_users: str = "popularity") -> list[list[Recommendation]]:
        """Top-k per user, best first. unknown_users: 'popularity' or 'error' (UnknownUserError)."""
        if k < 1:
            raise DistillError(f"k must be >= 1, got {k}")
        if unknown_users not in ("popularity", "error"):
            raise DistillError(f"unknown_users must be 'popularity' or 'error', got {unknown_users!r}")
        rows = [self.run.user_index_of(u) for u in user_ids]
        unknown = [u for u, r in zip(user_ids, rows, strict=True) if r is None]
        if unknown and unknown_users == "error":
            raise UnknownUserError(f"{len(unknown)} user(s) unknown to the run, e.g. {[str(u) for u in unknown[:5]]}; "
                                   "use unknown_users='popularity' (--unknown-users popularity) for a popularity fallback")
        known = np.asarray([r for r in rows if r is not None], np.int64)
        hits = self._search(known, k, exclude_seen) if known.size else []
        out, it = [], iter(hits)
        for r in rows:
            out.append(next(it) if r is not None else [
                Recommendation(self.item_ids[i], float(self.popularity[i]), VIA_POPULARITY) for i in self._popular[:k]])
        return out

    def _search(self, rows: np.ndarray, k: int, exclude_seen: bool) -> list[list[Recommendation]]:
        n_seen = np.diff(self.seen.indptr)[rows] if exclude_seen else np.zeros(len(rows), np.int64)
        kk = int(min(len(self.item_ids), k + (n_seen.max() if len(rows) else 0)))
        scores, idx = self.index.search(np.ascontiguousarray(self.users[rows], dtype=np.float32), kk)  # [b, kk] each
        out = []
        for b, r in enumerate(rows):
            seen = set(self.seen.indices[self.seen.indptr[r]:self.seen.indptr[r + 1]].tolist()) if exclude_seen else set()
            recs = [Recommendation(self.item_ids[i], float(s), str(self.via[i]))
                    for i, s in zip(idx[b], scores[b], strict=True) if i >= 0 and i not in seen]
            out.append(recs[:k])
        return out


def _labels_of(store: Path | None) -> dict[str, str]:
    """Item labels of a store whose vectors cannot be used (re-embedded with another model): the
    labels come from the catalogue and are still right; {} when the store cannot be read at all."""
    from mllmrec.errors import MllmrecError
    from mllmrec.store import EmbeddingStore

    if store is None:
        return {}
    try:
        st = EmbeddingStore.open(store)
        return dict(zip(st.ids, st.labels, strict=True))
    except (MllmrecError, OSError):
        return {}


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
        table = pcsv.read_csv(p, parse_options=pcsv.ParseOptions(delimiter="\t" if p.suffix == ".tsv" else ","),
                              convert_options=opts)
    else:
        raise DistillError(f"--users-file must be .csv, .tsv or .parquet, got {p.name}")
    if field not in table.column_names:
        raise DistillError(f"--users-file {p} has no column {field!r} (columns: {', '.join(table.column_names)}); "
                           "name it with --user-field")
    values = table.column(field).to_pylist()
    bad = [n for n, v in enumerate(values) if v is None or str(v) == ""]
    if bad:
        raise DistillError(f"--users-file {p}: empty user id on data row {bad[0] + 1}")
    return [str(v) for v in values]


def run_recommend(cfg: RecommendConfig, command: list[str] | None = None) -> int:
    """`mllmrec recommend`: print one user's top-k, or write a file of top-k for many users."""
    rec = Recommender.load(cfg.run, store=cfg.store, new_items=cfg.new_items)
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
    _write_results(Path(cfg.out), users, results)
    vias: dict[str, int] = {}
    for recs in results:
        for r in recs:
            vias[r.via] = vias.get(r.via, 0) + 1
    print(f"wrote top-{cfg.k} for {len(users)} users to {cfg.out} ({', '.join(f'{v}: {n}' for v, n in vias.items())})")
    return 0


def _write_results(out: Path, users: list[str], results: list[list[Recommendation]]) -> None:
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from mllmrec.fsutil import atomic_path

    cols: dict[str, list] = {"user_id": [], "rank": [], "item_id": [], "score": [], "via": []}
    for u, recs in zip(users, results, strict=True):
        for n, r in enumerate(recs, 1):
            for key, v in zip(cols, (u, n, r.item_id, r.score, r.via), strict=True):
                cols[key].append(v)
    table = pa.table({"user_id": pa.array(cols["user_id"], pa.string()), "rank": pa.array(cols["rank"], pa.int32()),
                      "item_id": pa.array(cols["item_id"], pa.string()), "score": pa.array(cols["score"], pa.float32()),
                      "via": pa.array(cols["via"], pa.string())})
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        if out.suffix == ".parquet":
            pq.write_table(table, str(tmp))
        else:
            pcsv.write_csv(table, str(tmp))
