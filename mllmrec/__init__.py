"""mllmrec: multimodal-LLM item representations for recommender systems.

Kept import-light on purpose: `import mllmrec` and `mllmrec --help` must not pull in torch or
transformers. Heavy pieces are imported from their submodules when used; the names below are
resolved lazily on first access (`mllmrec.FeatureProvider`).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {"FeatureProvider": "mllmrec.features.provider"}

__all__ = ["FeatureProvider", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mllmrec' has no attribute {name!r}")
