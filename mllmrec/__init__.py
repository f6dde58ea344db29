"""mllmrec: multimodal-LLM item representations for recommender systems.

Kept import-light on purpose: `import mllmrec` and `mllmrec --help` must not pull in torch or
transformers. Heavy pieces are imported from their submodules when used.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
