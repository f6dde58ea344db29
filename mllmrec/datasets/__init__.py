"""Datasets: the synthetic multimodal generator (and, later, loaders for known public formats)."""

from __future__ import annotations

from mllmrec.datasets.synthetic import SyntheticSummary, make_synthetic

__all__ = ["SyntheticSummary", "make_synthetic"]
