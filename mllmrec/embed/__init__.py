"""Stage 1, embed: catalogue -> compression prompt -> backbone -> embedding store.

    run.py      run_embed(cfg) -> manifest (shards, resume, multi-process, rejected/degraded
                records); `main` is the CLI wrapper
    external.py run_import(cfg) -> manifest: `mllmrec import`, vectors made elsewhere (files or a
                sentence-transformers folder) as a store
    config.py   EmbedConfig, ImportConfig

Importing this package imports neither torch nor the run module (names resolve on first use).
"""

from __future__ import annotations

from mllmrec.lazy import lazy_exports

_EXPORTS = dict.fromkeys(["EmbedError", "embed_items", "output_channels", "run_embed"], "run")
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
