"""Datasets: the synthetic multimodal generator (`mllmrec make-synthetic`) and loaders for known
public formats (MovieLens-100K from the RecBole wheel). Importing this package imports neither."""

from __future__ import annotations

from mllmrec.lazy import lazy_exports

_EXPORTS = {"SyntheticSummary": "synthetic", "make_synthetic": "synthetic"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
