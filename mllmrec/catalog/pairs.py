"""Co-interaction item pairs (NoteLLM): which item a user engages with after which.

    score(A -> B) = sum over users u who engaged with A and then B of 1 / N_u

N_u is the number of distinct items u engaged with, so heavy users (who pair everything with
everything) weigh less. A user counts once per (A, B) however often they repeated it. "Then" is

* window  (`window_seconds=W`): 0 < t_B - t_A <= W;
* session (`session_gap=G`): consecutive events with gaps <= G form a session, A before B in it;
* timed, neither given: any later event (strictly later time);
* none    (`order="none"`, or a log without timestamps): any two distinct items of the history, both
  directions (score = X^T diag(1/N) X off the diagonal, X the binary user x item matrix).

Timed modes look at most `max_lag` events ahead (bounded work: one vectorised pass per lag, never a
loop over users); `stats["reachable_beyond_max_lag"]` counts events whose partners may go further.
Partners scoring above `max_score` or below `min_score` are dropped, the `top_t` best are kept
(ties by partner id), and query items are split train/valid/test with a seeded permutation, so no
query appears in two parts.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from mllmrec.artifacts import WriterLock, prepare_dir, write_manifest
from mllmrec.catalog.config import PairsConfig
from mllmrec.catalog.interactions import Interactions
from mllmrec.config import to_dict
from mllmrec.errors import MllmrecError
from mllmrec.fsutil import file_sha256

PARTS = ("train", "valid", "test")
BLOCK_WORK = 20_000_000  # multiply-adds (and at most this many entries) per block of query rows
CHUNK_EVENTS = 2_000_000  # events per user-aligned chunk in the timed modes
N_EXAMPLES = 5


STAGE = "pairs"


class PairsError(MllmrecError, ValueError):
    """The interactions cannot be turned into pairs as asked; the message says why."""


@dataclass(frozen=True)
class Pairs:
    """Mined pairs, one row each: query_id/partner_id [m] str, score [m] float64, part [m] str.
    Rows are sorted by query id, then score descending, then partner id."""

    query_id: np.ndarray
    partner_id: np.ndarray
    score: np.ndarray
    part: np.ndarray

    def __len__(self) -> int:
        return len(self.score)

    def to_table(self) -> Any:
        import pyarrow as pa

        return pa.table(
            {
                "query_id": pa.array(self.query_id, pa.string()),
                "partner_id": pa.array(self.partner_id, pa.string()),
                "score": self.score,
                "part": pa.array(self.part, pa.string()),
            }
        )


def _encode(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique ids sorted as text [k] object, codes [n] int64): code order is id order, which makes
    "ties by partner id" a tie on the code. Hash-based (pyarrow), so 10M rows take about a second."""
    import pyarrow as pa

    enc = pa.array(ids, type=pa.string()).dictionary_encode()
    uniq = np.asarray(enc.dictionary.to_numpy(zero_copy_only=False), dtype=object)
    order = np.argsort(uniq, kind="stable")
    rank = np.empty(len(uniq), np.int64)
    rank[order] = np.arange(len(uniq))
    return uniq[order], rank[enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)]


def _select(S: sp.csr_matrix, row0: int, cfg: PairsConfig, stats: dict[str, int]) -> tuple[np.ndarray, ...]:
    """Threshold and top-t one block of score rows (global row = row0 + local row).
    Returns (query codes, partner codes, scores), sorted by query, score desc, partner."""
    r = np.repeat(np.arange(S.shape[0], dtype=np.int64), np.diff(S.indptr)) + row0
    c, d = S.indices.astype(np.int64), S.data
    keep = c != r  # an item is never its own partner
    stats["candidates"] += int(keep.sum())
    if cfg.max_score is not None:
        stats["dropped_above_max"] += int((keep & (d > cfg.max_score)).sum())
        keep &= d <= cfg.max_score
    if cfg.min_score is not None:
        stats["dropped_below_min"] += int((keep & (d < cfg.min_score)).sum())
        keep &= d >= cfg.min_score
    r, c, d = r[keep], c[keep], d[keep]
    # Prune each long row to scores >= its t-th largest (np.partition, O(nnz)) before the full sort.
    bounds = np.searchsorted(r, np.arange(row0, row0 + S.shape[0] + 1))
    kth = np.full(S.shape[0], -np.inf)
    for row in np.flatnonzero(np.diff(bounds) > cfg.top_t).tolist():
        lo, hi = bounds[row], bounds[row + 1]
        kth[row] = np.partition(d[lo:hi], hi - lo - cfg.top_t)[hi - lo - cfg.top_t]
    keep = d >= kth[r - row0]
    r, c, d = r[keep], c[keep], d[keep]
    order = np.lexsort((c, -d, r))
    r, c, d = r[order], c[order], d[order]
    first = np.searchsorted(r, r, side="left")  # start of each entry's row in the sorted block
    top = (np.arange(len(r)) - first) < cfg.top_t
    return r[top], c[top], d[top]


def _row_blocks(work: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive row ranges whose summed work stays near BLOCK_WORK (one row at least)."""
    bounds, lo, acc = [], 0, 0.0
    for row, w in enumerate(work.tolist()):
        if acc and acc + w > BLOCK_WORK:
            bounds.append((lo, row))
            lo, acc = row, 0.0
        acc += w
    bounds.append((lo, len(work)))
    return bounds


def _scores_unordered(X: sp.csr_matrix, inv_n: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """(Xt items x users, W X): S[A] = Xt[A] @ (diag(1/N) X), computed per block of query rows."""
    return X.T.tocsr(), sp.csr_matrix(sp.diags(inv_n) @ X)


def _triplets_timed(
    u: np.ndarray, i: np.ndarray, t: np.ndarray, cfg: PairsConfig, n_items: int, stats: dict[str, int]
) -> np.ndarray:
    """Distinct (user, A, B) keys u*n_items^2 + A*n_items + B of one user-aligned, time-sorted chunk."""
    if cfg.session_gap is not None:  # session id: new at each user change or gap > G
        brk = np.ones(len(u), bool)
        brk[1:] = (u[1:] != u[:-1]) | (np.diff(t) > cfg.session_gap)
        group = np.cumsum(brk)
    else:
        group = u
    limit = np.inf if cfg.window_seconds is None else cfg.window_seconds
    keys = []
    for k in range(1, cfg.max_lag + 1):
        if k >= len(u):
            break
        dt = t[k:] - t[:-k]
        reach = (group[k:] == group[:-k]) & (dt <= limit)
        if not reach.any():  # sorted by time: further lags reach no further
            break
        if k == cfg.max_lag:
            stats["reachable_beyond_max_lag"] += int(reach.sum())
        j = np.flatnonzero(reach & (dt > 0) & (i[k:] != i[:-k]))
        keys.append((u[j] * n_items + i[j]) * n_items + i[j + k])
    if not keys:
        return np.zeros(0, np.int64)
    out = np.sort(np.concatenate(keys))  # sort + neighbour test: faster than np.unique's hash path
    return out[np.r_[True, out[1:] != out[:-1]]]


def _scores_timed(
    u: np.ndarray,
    i: np.ndarray,
    t: np.ndarray,
    inv_n: np.ndarray,
    n_items: int,
    cfg: PairsConfig,
    stats: dict[str, int],
) -> sp.csr_matrix:
    """Score matrix [items, items] of the timed modes, summed over user-aligned event chunks."""
    if len(inv_n) * float(n_items) ** 2 >= 2**62:
        raise PairsError(f"{len(inv_n)} users x {n_items}^2 items overflow the int64 pair keys")
    order = np.lexsort((t, u))  # by user, then time; stable, so equal times keep file order
    u, i, t = u[order], i[order], t[order]
    S = sp.csr_matrix((n_items, n_items), dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    at = np.searchsorted(starts, np.arange(0, len(u), CHUNK_EVENTS))  # first user start >= boundary
    cuts = np.unique(starts[at[at < len(starts)]])
    for lo, hi in zip(cuts.tolist(), [*cuts[1:].tolist(), len(u)], strict=True):
        keys = _triplets_timed(u[lo:hi], i[lo:hi], t[lo:hi], cfg, n_items, stats)
        users, ab = np.divmod(keys, n_items * n_items)
        a, b = np.divmod(ab, n_items)
        S = S + sp.csr_matrix((inv_n[users], (a, b)), shape=(n_items, n_items))
    return S


def mine_pairs(
    inter: Interactions, cfg: PairsConfig, *, known_items: set[str] | None = None
) -> tuple[Pairs, dict[str, Any]]:
    """Mine, filter, top-t and split pairs (module docstring). `known_items`: item ids that exist
    (a catalogue); rows naming others are counted, listed (first examples) and left out.
    Returns (pairs, stats): stats holds counts per part, the mode and thresholds applied."""
    t0 = time.perf_counter()
    stats: dict[str, Any] = {"interactions": len(inter)}
    item_ids, i = _encode(inter.items)
    if known_items is not None:
        known = np.fromiter((x in known_items for x in item_ids), bool, count=len(item_ids))
        bad_rows = ~known[i]
        bad_codes, first = np.unique(i[bad_rows], return_index=True)
        examples = item_ids[bad_codes[np.argsort(first)][:N_EXAMPLES]].tolist()
        stats["unknown_items"] = {
            "ids": int((~known).sum()),
            "rows": int(bad_rows.sum()),
            "examples": examples,
        }
        if bad_rows.any():
            inter = inter.take(~bad_rows)
            remap = np.cumsum(known) - 1
            item_ids, i = item_ids[known], remap[i[~bad_rows]]
    if len(inter) == 0:
        raise PairsError("no interactions left to mine pairs from")
    user_ids, u = _encode(inter.users)
    n_users, n_items = len(user_ids), len(item_ids)
    X = sp.csr_matrix((np.ones(len(u)), (u, i)), shape=(n_users, n_items))
    X.sum_duplicates()
    X.data[:] = 1.0
    n_u = np.diff(X.indptr)  # N_u: distinct items per user
    inv_n = 1.0 / n_u
    timed = cfg.order == "time" and inter.timestamps is not None
    if timed and np.isnan(inter.timestamps).any():
        raise PairsError(
            f"{int(np.isnan(inter.timestamps).sum())} interactions have no timestamp; "
            "fill them or pass --order none"
        )
    mode = (
        "none"
        if not timed
        else "window"
        if cfg.window_seconds is not None
        else "session"
        if cfg.session_gap is not None
        else "later"
    )
    counts = {"candidates": 0, "dropped_above_max": 0, "dropped_below_min": 0, "reachable_beyond_max_lag": 0}
    if timed:
        S = _scores_timed(u, i, inter.timestamps, inv_n, n_items, cfg, counts)
        blocks = _row_blocks(np.diff(S.indptr).astype(float))
        parts = [_select(S[lo:hi], lo, cfg, counts) for lo, hi in blocks]
    else:
        Xt, WX = _scores_unordered(X, inv_n)
        blocks = _row_blocks(Xt @ n_u.astype(float))
        parts = [_select(sp.csr_matrix(Xt[lo:hi] @ WX), lo, cfg, counts) for lo, hi in blocks]
    q, p, s = (np.concatenate(x) for x in zip(*parts, strict=True))

    queries = np.unique(q)
    n_q = len(queries)
    n_test = int(round(cfg.test_share * n_q))
    n_valid = min(int(round(cfg.valid_share * n_q)), n_q - n_test)
    sizes = np.array([n_q - n_valid - n_test, n_valid, n_test])
    part_of = np.full(n_items, -1, np.int8)
    part_of[np.random.default_rng(cfg.seed).permutation(queries)] = np.repeat(
        np.arange(3, dtype=np.int8), sizes
    )
    # A relation must not be trained on and then evaluated: when {A, B} occurs in two parts (A->B
    # in one, B->A in another), only the later part keeps it (test > valid > train).
    pk = part_of[q]
    key = np.minimum(q, p).astype(np.int64) * n_items + np.maximum(q, p)
    uniq, inv = np.unique(key, return_inverse=True)
    top = np.zeros(len(uniq), np.int8)
    np.maximum.at(top, inv, pk)
    keep = pk == top[inv]
    dropped = {name: int(((pk == k) & ~keep).sum()) for k, name in enumerate(PARTS)}
    q, p, s, pk = q[keep], p[keep], s[keep], pk[keep]
    pairs = Pairs(item_ids[q], item_ids[p], s, np.asarray(PARTS, dtype=object)[pk])
    stats.update(
        mode=mode,
        users=n_users,
        items=n_items,
        rows_used=len(inter),
        **counts,
        pairs=len(pairs),
        dropped_cross_part=dropped,
        per_part={
            name: {"queries": int(sizes[k]), "pairs": int((pk == k).sum())} for k, name in enumerate(PARTS)
        },
        thresholds={
            "min_score": cfg.min_score,
            "max_score": cfg.max_score,
            "top_t": cfg.top_t,
            "window_seconds": cfg.window_seconds if mode == "window" else None,
            "session_gap": cfg.session_gap if mode == "session" else None,
            "max_lag": cfg.max_lag if timed else None,
        },
        seconds=round(time.perf_counter() - t0, 3),
    )
    return pairs, stats


def restrict_to_split(inter: Interactions, split: Any) -> tuple[Interactions, int]:
    """Only the rows whose (user, item) is a training pair of a saved `Split`; also the rows dropped."""
    ui = {x: k for k, x in enumerate(split.user_ids)}
    ii = {x: k for k, x in enumerate(split.item_ids)}
    uniq_u, cu = _encode(inter.users)
    uniq_i, ci = _encode(inter.items)
    su = np.fromiter((ui.get(x, -1) for x in uniq_u), np.int64, count=len(uniq_u))[cu]
    si = np.fromiter((ii.get(x, -1) for x in uniq_i), np.int64, count=len(uniq_i))[ci]
    n = max(len(split.item_ids), 1)
    train = split.train[:, 0] * n + split.train[:, 1]
    keep = (su >= 0) & (si >= 0) & np.isin(su * n + si, train)
    return inter.take(keep), int((~keep).sum())


def run_pairs(cfg: PairsConfig) -> dict[str, Any]:
    """Mine pairs and write `pairs.parquet` + `manifest.json` (atomically, under the folder's writer
    lock); returns the manifest (library entry point of `mllmrec pairs`; never prints)."""
    with WriterLock(cfg.out, stage=STAGE):
        return _mine_to_folder(cfg)


def _mine_to_folder(cfg: PairsConfig) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from mllmrec.catalog.interactions import read_interactions
    from mllmrec.fsutil import atomic_path

    t0 = time.perf_counter()
    inter = read_interactions(
        cfg.interactions, user_field=cfg.user_field, item_field=cfg.item_field, time_field=cfg.time_field
    )
    inputs: dict[str, Any] = {
        "interactions": {"path": str(cfg.interactions), "sha256": file_sha256(cfg.interactions)}
    }
    known = None
    if cfg.catalog:
        from mllmrec.catalog import load_catalog
        from mllmrec.catalog.config import CatalogSpec

        cat = load_catalog(
            CatalogSpec(catalog=cfg.catalog, id_field=cfg.catalog_id_field, text_fields=(), image_field=None)
        )
        known = {it.id for it in cat.items} | {r.item_id for r in cat.rejected}
        inputs["catalog"] = {"path": str(cfg.catalog), "sha256": cat.sha256}
    dropped_split = None
    if cfg.interactions_train_only:
        from mllmrec.catalog.saved_splits import load_split

        split = load_split(cfg.interactions_train_only)
        inter, dropped_split = restrict_to_split(inter, split)
        inputs["split"] = {
            "path": str(cfg.interactions_train_only),
            "fingerprint": split.fingerprint(),
            "rows_not_in_train": dropped_split,
        }
    pairs, stats = mine_pairs(inter, cfg, known_items=known)
    out = Path(cfg.out)
    prepare_dir(out, stage=STAGE, mode="overwrite" if cfg.overwrite else "fresh", resumable=False)
    with atomic_path(out / "pairs.parquet") as tmp:
        pq.write_table(pairs.to_table(), str(tmp))
    manifest = {
        "status": "complete",
        "config": to_dict(cfg),
        "inputs": inputs,
        **stats,
        "dropped_split_rows": dropped_split,
        "seconds_total": round(time.perf_counter() - t0, 3),
    }
    return write_manifest(out, manifest, stage=STAGE)


def main(cfg: PairsConfig, command: list[str]) -> int:
    """`mllmrec pairs`: mine, then print what was used, left out and written."""
    stats = run_pairs(cfg)
    out, dropped_split = Path(cfg.out), stats["dropped_split_rows"]

    th = stats["thresholds"]
    if cfg.order == "time" and stats["mode"] == "none":
        print("the log has no timestamps: pairs are unordered (both directions)")
    print(
        f"mode: {stats['mode']} (window_seconds={th['window_seconds']}, session_gap={th['session_gap']}, "
        f"max_lag={th['max_lag']}); min_score={cfg.min_score}, max_score={cfg.max_score}, "
        f"top_t={cfg.top_t}, valid/test shares={cfg.valid_share}/{cfg.test_share}, seed={cfg.seed}"
    )
    if dropped_split is not None:
        print(f"  {dropped_split} interactions outside the split's training part left out")
    if (unk := stats.get("unknown_items")) and unk["ids"]:
        print(
            f"  {unk['ids']} item ids not in the catalogue ({unk['rows']} interactions) left out, "
            f"e.g. {', '.join(unk['examples'])}"
        )
    if stats["reachable_beyond_max_lag"]:
        print(
            f"  {stats['reachable_beyond_max_lag']} events still had partners in reach at lag "
            f"{cfg.max_lag}; raise --max-lag to look further"
        )
    print(
        f"  {stats['rows_used']} interactions, {stats['users']} users, {stats['items']} items -> "
        f"{stats['pairs']} pairs ({stats['candidates']} candidates, {stats['dropped_above_max']} above "
        f"max, {stats['dropped_below_min']} below min)"
    )
    if any(stats["dropped_cross_part"].values()):
        d = stats["dropped_cross_part"]
        print(
            f"  left out as the reverse of a later part's pair (no leak between parts): train {d['train']}, "
            f"valid {d['valid']}"
        )
    for name, c in stats["per_part"].items():
        print(f"  {name}: {c['queries']} queries, {c['pairs']} pairs")
    print(f"wrote {out / 'pairs.parquet'} and manifest.json")
    if stats["pairs"] == 0:
        print(
            "error: no pair was mined, so there is nothing to train on; lower --min-score, widen "
            "--window-seconds/--session-gap, or check --user-field/--item-field",
            file=sys.stderr,
        )
        return 1
    return 0
