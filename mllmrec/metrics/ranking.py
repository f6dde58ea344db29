"""Offline ranking metrics: MMRec's full-ranking protocol and NoteLLM's item-to-item recall.

Pure numpy functions, no I/O. Conventions (binary relevance throughout):

- ``topk_items`` ranks by descending score; ties go to the lower item index, so results are
  deterministic. Masked (training) items get ``-inf`` and therefore rank after every other item.
- ``ranking_metrics`` averages per-user values over users that have at least one held-out item;
  users without positives are skipped, not counted as zeros.
- NDCG's ideal DCG and MAP's normaliser use ``min(|pos|, k)`` (MMRec), so a user with more
  positives than ``k`` can still reach 1.0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from mllmrec.errors import MllmrecError

KS: tuple[int, ...] = (5, 10, 20, 50)
"""MMRec's default cut-offs."""

METRIC_NAMES: tuple[str, ...] = ("recall", "ndcg", "precision", "map", "hit", "mrr")
"""Per-cut-off metrics ``ranking_metrics`` reports, as ``f"{name}@{k}"``."""

_I2I_CHUNK_ELEMENTS = 1 << 22  # similarity entries per query chunk (32 MiB in float64)


class EvalError(MllmrecError, ValueError):
    """Inputs to a metric that cannot be evaluated as given (shapes, ranges, NaN scores)."""


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    """Validate cut-offs: a non-empty sequence of positive ints."""
    out = tuple(int(k) for k in ks)
    if not out or any(k < 1 for k in out):
        raise EvalError(f"ks must be a non-empty sequence of positive integers, got {tuple(ks)!r}")
    return out


def topk_items(
    scores: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None = None,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Indices of the ``k`` best-scored items per row, best first.

    Row ``r`` of ``scores`` [n, n_items] belongs to user ``rows[r]`` of ``exclude``
    [n_users_total, n_items] (``rows`` defaults to ``arange(n)``); every stored entry of that
    user's ``exclude`` row is set to ``-inf`` before ranking (the caller's array is not modified).
    Order: descending score, ties by ascending item index. If a user has fewer than ``k``
    unmasked items, masked ones fill the tail (still by ascending index).

    Cost: one ``partition`` over the catalogue plus a sort of the ``k`` selected items per row.
    Returns an int64 array [n, k].
    """
    s = np.asarray(scores)
    if s.ndim != 2:
        raise EvalError(f"scores must be 2-D [n, n_items], got shape {s.shape}")
    n, n_items = s.shape
    k = int(k)
    if not 1 <= k <= n_items:
        raise EvalError(f"k must be in [1, n_items={n_items}], got {k}")
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    if np.isnan(s).any():
        raise EvalError("scores contain NaN; a model producing NaN cannot be ranked")

    if exclude is not None:
        ex = sp.csr_matrix(exclude)
        if ex.shape[1] != n_items:
            raise EvalError(f"exclude has {ex.shape[1]} item columns, scores have {n_items}")
        idx = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
        if idx.shape[0] != n:
            raise EvalError(f"rows has {idx.shape[0]} entries for {n} score rows")
        if n and (idx.min() < 0 or idx.max() >= ex.shape[0]):
            raise EvalError(f"rows must index exclude's {ex.shape[0]} users")
        sub = ex[idx]
        s = s.copy()
        row_of = np.repeat(np.arange(n), np.diff(sub.indptr))
        s[row_of, sub.indices] = -np.inf  # [n, n_items]
    elif rows is not None and np.asarray(rows).reshape(-1).shape[0] != n:
        raise EvalError(f"rows has {np.asarray(rows).size} entries for {n} score rows")
    if n == 0:
        return np.zeros((0, k), dtype=np.int64)

    # threshold = k-th largest score per row; everything strictly above it is in the top k
    # (partitioning s itself, not -s: numpy's introselect crawls on -s when many ties meet +inf)
    thresh = np.partition(s, n_items - k, axis=1)[:, n_items - k, None]  # [n, 1]
    above = s > thresh  # [n, n_items]
    at = s == thresh  # [n, n_items]
    need = k - above.sum(axis=1, keepdims=True)  # [n, 1] tied slots left, >= 1
    crowded = np.flatnonzero(at.sum(axis=1) > need[:, 0])  # rows with more ties than slots
    if crowded.size:
        # keep the lowest-index tied items
        at[crowded] &= np.cumsum(at[crowded], axis=1, dtype=np.int32) <= need[crowded]
    chosen = np.nonzero(above | at)[1].reshape(n, k)  # ascending item index per row
    order = np.argsort(-s[np.arange(n)[:, None], chosen], axis=1, kind="stable")  # [n, k]
    return np.take_along_axis(chosen, order, axis=1).astype(np.int64, copy=False)


def _per_user(
    topk: np.ndarray, positives: Sequence[np.ndarray], ks: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """Per-user metric values for users with positives; see ``ranking_metrics``."""
    top = np.asarray(topk)
    if top.ndim != 2 or not np.issubdtype(top.dtype, np.integer):
        raise EvalError(f"topk must be a 2-D integer array, got {top.dtype} of shape {top.shape}")
    kmax = max(ks)
    if top.shape[1] < kmax:
        raise EvalError(f"topk has {top.shape[1]} columns, fewer than max(ks)={kmax}")
    if len(positives) != top.shape[0]:
        raise EvalError(f"{len(positives)} positive sets for {top.shape[0]} ranked users")
    top = top[:, :kmax].astype(np.int64)
    n = top.shape[0]
    if n and top.min() < 0:
        raise EvalError("topk contains negative item indices")
    srt = np.sort(top, axis=1)
    if np.any(srt[:, 1:] == srt[:, :-1]):
        raise EvalError("topk repeats an item within a user's ranking")

    pos = [np.asarray(p, dtype=np.int64).reshape(-1) for p in positives]
    owner = np.repeat(np.arange(n, dtype=np.int64), [p.size for p in pos])
    flat = np.concatenate(pos) if pos else np.zeros(0, dtype=np.int64)
    if flat.size and flat.min() < 0:
        raise EvalError("positives contain negative item indices")
    width = int(max(top.max(initial=0), flat.max(initial=0))) + 1
    pos_keys = np.unique(owner * width + flat)  # duplicates within a user count once
    n_pos = np.bincount(pos_keys // width, minlength=n)  # [n]
    hits = np.isin(np.arange(n, dtype=np.int64)[:, None] * width + top, pos_keys)  # [n, kmax]

    counted = n_pos > 0
    hits, n_pos = hits[counted], n_pos[counted]
    if hits.shape[0] == 0:
        raise EvalError("no user has held-out positives; nothing to evaluate")

    ranks = np.arange(1, kmax + 1)  # [kmax]
    discount = 1.0 / np.log2(ranks + 1.0)  # [kmax]
    ideal = np.cumsum(discount)  # ideal[j] = IDCG with j+1 relevant items
    cum_hits = np.cumsum(hits, axis=1)  # [m, kmax]
    prec_at = cum_hits / ranks  # precision@r
    cum_dcg = np.cumsum(hits * discount, axis=1)
    cum_ap = np.cumsum(hits * prec_at, axis=1)
    first = np.where(hits.any(axis=1), np.argmax(hits, axis=1), kmax)  # 0-based first hit

    out: dict[str, np.ndarray] = {}
    for k in ks:
        h = cum_hits[:, k - 1].astype(np.float64)
        norm = np.minimum(n_pos, k)
        out[f"recall@{k}"] = h / n_pos
        out[f"ndcg@{k}"] = cum_dcg[:, k - 1] / ideal[norm - 1]
        out[f"precision@{k}"] = h / k
        out[f"map@{k}"] = cum_ap[:, k - 1] / norm
        out[f"hit@{k}"] = (h > 0).astype(np.float64)
        out[f"mrr@{k}"] = np.where(first < k, 1.0 / (first + 1.0), 0.0)
    return out


def ranking_metrics(
    topk: np.ndarray, positives: Sequence[np.ndarray], ks: Sequence[int] = KS
) -> dict[str, float]:
    """Mean top-k metrics over users with at least one held-out item.

    ``topk`` [n, K >= max(ks)] holds ranked item indices (best first); ``positives[i]`` holds user
    ``i``'s held-out items (duplicates count once). With ``rel_r`` = 1 if the item at rank ``r``
    (1-based) is a positive, ``H_k = Σ_{r≤k} rel_r`` and ``m = min(|pos|, k)``, per user:

    - ``recall@k    = H_k / |pos|``
    - ``precision@k = H_k / k``
    - ``ndcg@k      = DCG_k / IDCG_k``, ``DCG_k = Σ_{r≤k} rel_r / log2(r + 1)``,
      ``IDCG_k = Σ_{r≤m} 1 / log2(r + 1)``
    - ``map@k       = (1 / m) · Σ_{r≤k} rel_r · H_r / r``
    - ``hit@k       = 1[H_k > 0]``
    - ``mrr@k       = 1 / r*`` for the first hit rank ``r* ≤ k``, else 0

    Each is averaged over the counted users; ``"users"`` is their number (as a float).
    Raises ``EvalError`` if no user has positives.
    """
    per = _per_user(topk, positives, _check_ks(ks))
    out = {name: float(v.mean()) for name, v in per.items()}
    out["users"] = float(next(iter(per.values())).shape[0])
    return out


def full_ranking_metrics(
    score_fn: Callable[[np.ndarray], np.ndarray],
    users: np.ndarray,
    positives: Sequence[np.ndarray],
    train: sp.csr_matrix,
    ks: Sequence[int] = KS,
    batch_size: int = 1024,
) -> dict[str, float]:
    """MMRec's full-ranking evaluation: score every item, mask training items, rank, measure.

    ``users`` are row indices into ``train`` [n_users, n_items]; ``positives[i]`` are the
    held-out items of ``users[i]``. ``score_fn(user_batch)`` must return scores [b, n_items]
    (anything ``np.asarray`` accepts). Users are scored ``batch_size`` at a time, but the result
    is the mean over all users with positives (not a mean of batch means), so it does not
    depend on ``batch_size``. Metric definitions: ``ranking_metrics``.
    """
    ks_t = _check_ks(ks)
    if batch_size < 1:
        raise EvalError(f"batch_size must be >= 1, got {batch_size}")
    tr = sp.csr_matrix(train)
    n_users, n_items = tr.shape
    u = np.asarray(users, dtype=np.int64).reshape(-1)
    if len(positives) != u.shape[0]:
        raise EvalError(f"{len(positives)} positive sets for {u.shape[0]} users")
    if u.size and (u.min() < 0 or u.max() >= n_users):
        raise EvalError(f"users must be row indices into train's {n_users} users")
    kmax = max(ks_t)
    if kmax > n_items:
        raise EvalError(f"max(ks)={kmax} exceeds the catalogue of {n_items} items; pass smaller ks")

    top = np.empty((u.shape[0], kmax), dtype=np.int64)
    for start in range(0, u.shape[0], batch_size):
        batch = u[start : start + batch_size]
        scores = np.asarray(score_fn(batch))
        if scores.shape != (batch.shape[0], n_items):
            raise EvalError(f"score_fn returned shape {scores.shape}, expected ({batch.shape[0]}, {n_items})")
        top[start : start + batch.shape[0]] = topk_items(scores, kmax, exclude=tr, rows=batch)
    return ranking_metrics(top, positives, ks_t)


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm; all-zero rows stay zero."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)  # [n, 1]
    return x / np.where(norm > 0, norm, 1.0)


def i2i_recall(
    queries: np.ndarray,
    candidates: np.ndarray,
    truth: np.ndarray,
    ks: Sequence[int] = (10, 50, 100),
) -> dict[str, float]:
    """NoteLLM's item-to-item Recall@k: is each query's one partner among its k nearest candidates?

    ``queries`` [q, d] and ``candidates`` [c, d] are compared by cosine similarity
    ``cos(a, b) = a·b / (‖a‖‖b‖)`` (zero vectors stay zero, so they score 0 against everything);
    ``truth[i]`` is the index into ``candidates`` of query ``i``'s ground-truth partner. The
    partner's rank is ``1 + #{j : s_j > s_t} + #{j < t : s_j = s_t}`` (ties to the lower index,
    as in ``topk_items``), and

        ``recall@k = (1 / q) · Σ_i 1[rank_i ≤ k]``.

    ``k ≥ c`` gives 1.0. Queries are processed in chunks so memory stays bounded.
    """
    ks_t = _check_ks(ks)
    qv = np.asarray(queries, dtype=np.float64)
    cv = np.asarray(candidates, dtype=np.float64)
    t = np.asarray(truth).reshape(-1)
    if qv.ndim != 2 or cv.ndim != 2 or qv.shape[1] != cv.shape[1]:
        raise EvalError(f"queries {qv.shape} and candidates {cv.shape} must be [q, d] and [c, d]")
    if qv.shape[0] == 0 or cv.shape[0] == 0:
        raise EvalError("i2i_recall needs at least one query and one candidate")
    if t.shape[0] != qv.shape[0] or not np.issubdtype(t.dtype, np.integer):
        raise EvalError(f"truth must hold one integer index per query ({qv.shape[0]}), got {t.shape}")
    if t.min() < 0 or t.max() >= cv.shape[0]:
        raise EvalError(f"truth must index the {cv.shape[0]} candidates")
    if not (np.isfinite(qv).all() and np.isfinite(cv).all()):
        raise EvalError("queries and candidates must be finite")

    qn, cn = _l2_normalise(qv), _l2_normalise(cv)
    c = cn.shape[0]
    cols = np.arange(c)
    ranks = np.empty(qn.shape[0], dtype=np.int64)
    step = max(1, _I2I_CHUNK_ELEMENTS // c)
    for start in range(0, qn.shape[0], step):
        sim = qn[start : start + step] @ cn.T  # [b, c]
        tt = t[start : start + step]
        st = sim[np.arange(sim.shape[0]), tt][:, None]  # [b, 1]
        before = (sim > st) | ((sim == st) & (cols < tt[:, None]))  # [b, c]
        ranks[start : start + step] = before.sum(axis=1) + 1
    return {f"recall@{k}": float(np.mean(ranks <= k)) for k in ks_t}


def summarize(runs: Sequence[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Mean and sample standard deviation of each metric over runs (e.g. seeds).

    ``std = sqrt(Σ (x − mean)² / (n − 1))`` (ddof = 1); a single run has std 0.
    Every run must report the same metric names.
    """
    if not runs:
        raise EvalError("summarize needs at least one run")
    keys = list(runs[0])
    for i, r in enumerate(runs[1:], start=1):
        if set(r) != set(keys):
            raise EvalError(f"run {i} reports {sorted(r)}, run 0 reports {sorted(keys)}")
    out: dict[str, tuple[float, float]] = {}
    for key in keys:
        vals = np.array([float(r[key]) for r in runs], dtype=np.float64)
        std = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
        out[key] = (float(vals.mean()), std)
    return out
