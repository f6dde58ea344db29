"""Stage 0, data in: catalogues, interaction logs, splits and co-interaction pairs.

    readers.py / load.py   item files -> `Item`s (and the rows left out, with reasons)
    images.py              image references opened safely under the `on_bad_image` policy
    interactions.py        interaction logs (user, item, time, x_label)
    splits.py              split protocols (MMRec random 8:1:1, temporal, cold-start, saved labels)
    saved_splits.py        a split as a folder, fingerprinted
    pairs.py               NoteLLM co-interaction pair mining (`mllmrec pairs`)
    config.py              CatalogSpec, PairsConfig

Importing this package imports none of them (names resolve on first use); none imports torch.
"""

from __future__ import annotations

from mllmrec.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        [
            "BadImage",
            "BadImageError",
            "load_image",
            "load_item_images",
            "probe_image_sizes",
            "resolve_image_ref",
        ],
        "images",
    ),
    "Catalog": "load",
    "load_catalog": "load",
    "CatalogError": "readers",
    "read_records": "readers",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
