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

import numpy as np
import scipy.sparse as sp

from mllmrec.artifacts import MANIFEST
from mllmrec.distill.artifact import DistillRun
from mllmrec.distill.config import RecommendConfig, ServeConfig
from mllmrec.distill.errors import DistillError, UnknownUserError
from mllmrec.index.mips import IndexParams, MipsIndex, choose_kind
from mllmrec.index.mips_store import fingerprint, load_or_build

log = logging.getLogger(__name__)
VIA_TABLE, VIA_MAPPING, VIA_POPULARITY = "table", "new-item mapping", "popularity"


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    via: str


class Recommender:
    """Top-k recommendations from a distill run (see the module docstring)."""

    def __init__(
        self,
        run: DistillRun,
        item_ids: list[str],
        items: np.ndarray,
        via: np.ndarray,
        popularity: np.ndarray,
        seen: sp.csr_matrix,
        labels: dict[str, str],
        use_gpu: bool | None = None,
        index: MipsIndex | None = None,
        index_info: dict | None = None,
    ):
        self.run, self.item_ids, self.via, self.labels = run, item_ids, via, labels
        self.users = run.user_table()  # [U, d]
        self.items = items  # [I, d]
        self.popularity, self.seen = popularity, seen
        if index is None:
            from mllmrec.index.mips import build

            index = build(items, IndexParams("exact"), use_gpu=use_gpu)
        self.index, self.on_gpu = index, index.on_gpu
        self.index_info = index_info or {"kind": index.kind}
        self._popular = np.argsort(-popularity, kind="stable")

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
        seen = sp.csr_matrix(
            (np.ones(int(keep.sum()), np.float32), (s_users[keep], cols[keep])),
            shape=(len(run.user_ids), len(pos)),
        )
        all_ids = item_ids + extra
        items = np.ascontiguousarray(items, np.float32)
        kind = choose_kind(len(all_ids), index)
        params = replace(index_params or IndexParams(), kind=kind)
        source = {
            "run_manifest_sha256": hashlib.sha256((run.path / MANIFEST).read_bytes()).hexdigest(),
            "new_items": len(extra),
        }
        fp = fingerprint(_ids_sha256(all_ids), items, source) if kind != "exact" else {}
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
        return cls(run, all_ids, items, via, popularity, seen, labels, use_gpu, built, info)

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
        rows = [self.run.user_index_of(u) for u in user_ids]
        unknown = [u for u, r in zip(user_ids, rows, strict=True) if r is None]
        if unknown and unknown_users == "error":
            raise UnknownUserError(
                f"{len(unknown)} user(s) unknown to the run, e.g. {[str(u) for u in unknown[:5]]}; "
                "use unknown_users='popularity' (--unknown-users popularity) for a popularity fallback"
            )
        known = np.asarray([r for r in rows if r is not None], np.int64)
        hits = self._search(known, k, exclude_seen) if known.size else []
        out, it = [], iter(hits)
        for r in rows:
            out.append(
                next(it)
                if r is not None
                else [
                    Recommendation(self.item_ids[i], float(self.popularity[i]), VIA_POPULARITY)
                    for i in self._popular[:k]
                ]
            )
        return out

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
            recs = [
                Recommendation(self.item_ids[i], float(s), str(self.via[i]))
                for i, s in zip(idx[b], scores[b], strict=True)
                if i >= 0 and i not in seen
            ]
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


def _ids_sha256(ids: list[str]) -> str:
    h = hashlib.sha256()
    for start in range(0, len(ids), 100_000):
        h.update("\n".join(ids[start : start + 100_000]).encode("utf-8") + b"\n")
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
