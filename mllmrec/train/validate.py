"""Item-to-item evaluation of tuned vectors on held-out pairs (NoteLLM's protocol).

For one part of the mined pairs (valid or test): every query item gets one ground-truth partner
(its highest-scored partner that is not itself a query), the candidate pool is every item of the
part except the queries, and Recall@k asks whether the partner is among the query's k nearest
candidates by cosine (`mllmrec.metrics.ranking.i2i_recall`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mllmrec.metrics.ranking import i2i_recall

I2I_KS = (10, 50, 100)


@dataclass(frozen=True)
class I2IProtocol:
    queries: list[str]  # [q] query item ids
    candidates: list[str]  # [c] candidate item ids (no query among them)
    truth: np.ndarray  # [q] index into candidates of each query's partner
    dropped_queries: int  # queries whose every partner is itself a query

    @property
    def items(self) -> list[str]:
        """Every item the protocol needs a vector for (queries, then candidates)."""
        return self.queries + self.candidates


def i2i_protocol(
    query_ids: Sequence[str],
    partner_ids: Sequence[str],
    scores: Sequence[float],
    max_queries: int | None = None,
    seed: int = 0,
) -> I2IProtocol:
    """Build the protocol from one part's pairs (rows need not be sorted)."""
    q = np.asarray(query_ids, dtype=object)
    p = np.asarray(partner_ids, dtype=object)
    s = np.asarray(scores, dtype=np.float64)
    queries = sorted(set(q.tolist()))
    if max_queries is not None and len(queries) > max_queries:
        pick = np.random.default_rng(seed).choice(len(queries), size=max_queries, replace=False)
        queries = sorted(queries[i] for i in pick)
    qset = set(queries)
    all_queries = set(q.tolist())  # every query of the part stays out of the pool, sampled or not
    candidates = sorted((set(p.tolist()) | all_queries) - all_queries)
    cpos = {c: n for n, c in enumerate(candidates)}
    order = np.lexsort((p.astype(str), -s))  # best score first, ties by partner id
    best: dict[str, str] = {}
    for r in order:
        if q[r] in qset and q[r] not in best and p[r] in cpos:
            best[q[r]] = p[r]
    kept = [x for x in queries if x in best]
    return I2IProtocol(
        kept, candidates, np.array([cpos[best[x]] for x in kept], dtype=np.int64), len(queries) - len(kept)
    )


def evaluate_i2i(
    proto: I2IProtocol, vectors: Callable[[list[str]], np.ndarray], ks: Sequence[int] = I2I_KS
) -> dict[str, float]:
    """Recall@k for vectors given by `vectors(ids) -> [n, d]`; k beyond the pool is capped there."""
    if not proto.queries or not proto.candidates:
        return {}
    v = vectors(proto.items)  # [q + c, d]
    nq = len(proto.queries)
    return i2i_recall(v[:nq], v[nq:], proto.truth, ks=tuple(ks))
