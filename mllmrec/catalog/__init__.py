"""Stage 0, catalogue input: read item files, map columns to `Item`s, load their images safely.

`load_catalog(spec)` gives the items (and the rows it left out, with reasons); images are opened
per item with `load_item_images`, which applies the `on_bad_image` policy. Importing this package
does not import torch.
"""

from __future__ import annotations

from mllmrec.catalog.images import (
    BadImage,
    BadImageError,
    load_image,
    load_item_images,
    probe_image_sizes,
    resolve_image_ref,
)
from mllmrec.catalog.load import Catalog, load_catalog
from mllmrec.catalog.readers import CatalogError, read_records

__all__ = [
    "BadImage",
    "BadImageError",
    "Catalog",
    "CatalogError",
    "load_catalog",
    "load_image",
    "load_item_images",
    "probe_image_sizes",
    "read_records",
    "resolve_image_ref",
]
