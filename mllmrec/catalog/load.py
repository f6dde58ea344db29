"""Turn a catalogue file into `Item`s, following a `CatalogSpec`.

Whole-catalogue problems (unreadable file, a misspelt column, missing or duplicate ids) stop with
a `CatalogError`, because no output built from such a file could be trusted. Per-item problems do
not: an item with neither text nor image is recorded as a `Rejection`, so every input row ends up
either in `Catalog.items` or in `Catalog.rejected` (DESIGN.md: nothing is dropped silently).
Images are only referenced here; `images.load_item_images` opens them later.
"""

from __future__ import annotations

import difflib
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllmrec.catalog.config import CatalogSpec, parse_text_fields
from mllmrec.catalog.readers import CatalogError, read_records
from mllmrec.fsutil import file_sha256
from mllmrec.types import Item, Rejection

NO_CONTENT = "no text and no image"
_SHOW = 10  # how many offending ids/rows an error message lists


@dataclass(frozen=True)
class Catalog:
    """The items of one catalogue file, the rows left out, and where the file is.

    `base_dir` is the folder relative image paths are resolved against; `sha256` (of the file's
    bytes) lets a manifest record exactly which catalogue a run read.
    """

    items: list[Item]
    rejected: list[Rejection]
    base_dir: Path
    path: Path
    sha256: str


def _is_null(value: Any) -> bool:
    """None, or a float NaN (how pandas-written Parquet/JSON marks a missing value)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _norm_id(value: Any) -> str:
    """Item id as a stripped string ("" when missing). Integral floats lose their '.0'.

    So 7, "7" and 7.0 (an int column that went through a float dtype) are one id.
    """
    if _is_null(value):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _norm_text(value: Any, limit: int | None) -> str:
    """Stripped text, cut to `limit` characters; missing -> "", non-strings -> str(). A lone UTF-16
    surrogate (JSON's "\\ud800", which Python's json accepts) becomes U+FFFD, as undecodable bytes
    do: the tokenizer cannot encode it and would stop the whole run (found by eval/fuzz_inputs.py)."""
    if _is_null(value):
        return ""
    text = value if isinstance(value, str) else str(value)
    text = _LONE_SURROGATE.sub("\ufffd", text).strip()
    if limit is not None and len(text) > limit:
        text = text[:limit].rstrip()
    return text


def _norm_refs(value: Any, field: str, row: int, max_images: int) -> tuple[str, ...]:
    """The first `max_images` non-empty image references of one cell (a string or a list)."""
    if _is_null(value):
        return ()
    values = value if isinstance(value, (list, tuple)) else [value]
    refs: list[str] = []
    for v in values:
        if _is_null(v):
            continue
        if isinstance(v, (dict, bytes, bytearray, list, tuple)):
            raise CatalogError(
                f"image field {field!r} in row {row} holds a {type(v).__name__}; expected a path "
                "string (or a list of them)"
            )
        ref = str(v).strip()
        if ref:
            refs.append(ref)
    return tuple(refs[:max_images])


def _columns(records: list[dict[str, Any]]) -> list[str]:
    """Every column that appears in at least one row, in first-seen order."""
    seen: dict[str, None] = {}
    for rec in records:
        seen.update(dict.fromkeys(rec))
    return list(seen)


def _check_field(kind: str, name: str, columns: list[str]) -> None:
    """Refuse a field that no row has: almost always a typo in the spec."""
    if name in columns:
        return
    hint = difflib.get_close_matches(name, columns, n=1)
    shown = ", ".join(columns[:50]) + (f" ... ({len(columns)} in all)" if len(columns) > 50 else "")
    raise CatalogError(
        f"unknown {kind} {name!r}; columns are {shown}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
    )


def _listing(values: list[str], noun: str) -> str:
    """'a, b, c' for the first few values plus the total count."""
    shown = ", ".join(values[:_SHOW]) + (", ..." if len(values) > _SHOW else "")
    return f"{shown} ({len(values)} {noun})"


def load_catalog(spec: CatalogSpec) -> Catalog:
    """Read `spec.catalog` into a Catalog, in the file's row order.

    Raises CatalogError for an unreadable or empty file, an id/text/image field that appears in no
    row, missing or empty ids (naming the rows) and duplicate ids (naming them). Text values are
    stripped and truncated per field; images are the first `max_images` non-empty references.
    Rows with all texts empty and no image reference become Rejection(reason="no text and no image").
    """
    path = Path(spec.catalog).resolve()
    image_field = spec.image_field
    records = read_records(path, list_fields=(image_field,) if image_field else ())
    if not records:
        raise CatalogError(f"{path}: the catalogue has no rows")
    text_fields = parse_text_fields(spec.text_fields)

    columns = _columns(records)
    _check_field("id field", spec.id_field, columns)
    for name, _ in text_fields:
        _check_field("text field", name, columns)
    if image_field:
        _check_field("image field", image_field, columns)

    ids = [_norm_id(rec.get(spec.id_field)) for rec in records]
    missing = [str(row) for row, item_id in enumerate(ids, start=1) if not item_id]
    if missing:
        raise CatalogError(
            f"{path}: missing or empty id (field {spec.id_field!r}) in row(s) "
            + _listing(missing, "rows; rows count from 1, header not counted")
        )
    dups = [item_id for item_id, n in Counter(ids).items() if n > 1]
    if dups:
        raise CatalogError(
            f"{path}: duplicate item ids (compared as strings): "
            + _listing([repr(d) for d in dups], "ids occur more than once")
        )

    items: list[Item] = []
    rejected: list[Rejection] = []
    for row, (item_id, rec) in enumerate(zip(ids, records, strict=True), start=1):
        texts = {name: _norm_text(rec.get(name), limit) for name, limit in text_fields}
        refs = _norm_refs(rec.get(image_field), image_field, row, spec.max_images) if image_field else ()
        if not refs and not any(texts.values()):
            rejected.append(Rejection(item_id, NO_CONTENT))
            continue
        items.append(Item(id=item_id, texts=texts, image_refs=refs))
    return Catalog(items=items, rejected=rejected, base_dir=path.parent, path=path, sha256=file_sha256(path))
