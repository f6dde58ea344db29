"""Saved splits: a `Split` as a folder, so every method, seed re-run and report sees the very same split.

Layout (no pickle):

    users.parquet                   id (string), row = user index
    items.parquet                   id (string), cold (bool), row = item index
    train|valid|test.parquet        user, item (int64 indices)
    meta.json                       format, version, fingerprint, stats, meta

Each file is written atomically and `meta.json` last (an older one is removed first), so a folder
without it is an unfinished save. `load_split` recomputes the fingerprint from the files and refuses
a mismatch: a split that was edited or partly overwritten is never used silently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mllmrec.catalog.splits import PARTS, Split, SplitError
from mllmrec.fsutil import atomic_path, atomic_write_text

FORMAT = "mllmrec-split"
VERSION = 1
META_FILE = "meta.json"


def _jsonable(value: Any) -> Any:
    """json.dumps fallback for numpy values a caller may have put into `meta`."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _write_table(path: Path, columns: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(pa.table(columns), str(tmp))


def save_split(split: Split, directory: str | Path) -> Path:
    """Write `split` into `directory` (created if needed; an earlier save there is replaced)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    try:
        doc = json.dumps(
            {
                "format": FORMAT,
                "version": VERSION,
                "fingerprint": split.fingerprint(),
                "stats": split.stats(),
                "meta": split.meta,
            },
            indent=2,
            default=_jsonable,
        )
    except TypeError as e:
        raise SplitError(f"split meta cannot be saved as JSON: {e}") from e
    (d / META_FILE).unlink(missing_ok=True)
    cold = np.zeros(split.n_items, bool)
    cold[split.cold_items] = True
    _write_table(d / "users.parquet", {"id": np.asarray(split.user_ids, dtype=object)})
    _write_table(d / "items.parquet", {"id": np.asarray(split.item_ids, dtype=object), "cold": cold})
    for part in PARTS:
        pairs = split.pairs(part)
        _write_table(d / f"{part}.parquet", {"user": pairs[:, 0].copy(), "item": pairs[:, 1].copy()})
    atomic_write_text(d / META_FILE, doc + "\n")
    return d


def _read_table(path: Path, columns: list[str]) -> dict[str, np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise SplitError(f"saved split is incomplete: {path} is missing")
    try:
        table = pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as e:
        raise SplitError(f"{path}: cannot read the saved split: {e}") from e
    return {c: table.column(c).to_numpy(zero_copy_only=False) for c in columns}


def load_split(directory: str | Path) -> Split:
    """Read a split written by `save_split`; raises `SplitError` when files are missing, malformed,
    of another format version, or do not hash to the fingerprint in meta.json."""
    d = Path(directory)
    meta_path = d / META_FILE
    if not meta_path.is_file():
        raise SplitError(f"no saved split in {d} ({META_FILE} missing; an interrupted save leaves none)")
    try:
        doc = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SplitError(f"{meta_path}: not valid JSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise SplitError(f"{meta_path}: not a {FORMAT} version {VERSION} file")
    users = _read_table(d / "users.parquet", ["id"])
    items = _read_table(d / "items.parquet", ["id", "cold"])
    parts = {}
    for part in PARTS:
        t = _read_table(d / f"{part}.parquet", ["user", "item"])
        parts[part] = np.stack([t["user"], t["item"]], axis=1).astype(np.int64)
    try:
        split = Split(
            user_ids=[str(x) for x in users["id"]],
            item_ids=[str(x) for x in items["id"]],
            **parts,
            cold_items=np.flatnonzero(items["cold"]),
            meta=doc.get("meta", {}),
        )
    except SplitError as e:
        raise SplitError(f"{d}: saved split is inconsistent: {e}") from e
    found = split.fingerprint()
    if found != doc.get("fingerprint"):
        raise SplitError(
            f"{d}: the files hash to {found[:16]}… but {META_FILE} records "
            f"{str(doc.get('fingerprint'))[:16]}…; the split was changed or partly overwritten. "
            "Delete the folder and split again."
        )
    return split
