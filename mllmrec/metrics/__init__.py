"""Pure ranking metrics (no I/O): MMRec full ranking with training items masked, NoteLLM i2i
recall. Split protocols live with the data they read (mllmrec.catalog.splits); the evaluation
scripts that use both are in the top-level eval/ folder."""

from __future__ import annotations

from mllmrec.metrics.ranking import (
    KS,
    METRIC_NAMES,
    EvalError,
    full_ranking_metrics,
    i2i_recall,
    ranking_metrics,
    summarize,
    topk_items,
)

__all__ = [
    "KS",
    "METRIC_NAMES",
    "EvalError",
    "full_ranking_metrics",
    "i2i_recall",
    "ranking_metrics",
    "summarize",
    "topk_items",
]
