"""Offline evaluation: pure metric functions and protocols (MMRec full ranking, NoteLLM i2i recall)."""

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
