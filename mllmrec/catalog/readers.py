"""Read a catalogue file into plain records, one dict per row.

Readers know file formats and nothing about fields: mapping columns to `Item`s is `load.py`'s job.
Every failure is a `CatalogError` whose message says which file and, where it can, which line, so
a user can fix the file without a traceback.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from mllmrec.errors import MllmrecError

# Separator between several image references in one CSV cell (CSV has no list type).
CSV_LIST_SEP = "|"


class CatalogError(MllmrecError, ValueError):
    """The catalogue file cannot be read or its rows do not fit the spec; the message says why."""


def _read_text(path: Path) -> str:
    """The file as text (UTF-8; a leading byte-order mark is dropped)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise CatalogError(f"{path}: not valid UTF-8 text (byte {e.start}): {e.reason}") from e


def _read_json_lines(path: Path, list_fields: Collection[str]) -> list[dict[str, Any]]:
    """JSON Lines: one object per line; blank lines are skipped.

    A `.json` file whose content starts with '[' is read as one JSON array of objects instead, so
    both common JSON exports work.
    """
    text = _read_text(path)
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise CatalogError(f"{path}: malformed JSON array at line {e.lineno}: {e.msg}") from e
        for i, row in enumerate(rows, start=1):
            if not isinstance(row, dict):
                raise CatalogError(f"{path}: element {i} of the JSON array is not an object")
        return rows
    records: list[dict[str, Any]] = []
    # split on "\n" only: str.splitlines() would also cut at U+2028 etc., legal inside JSON strings.
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise CatalogError(f"{path}: malformed JSON on line {lineno}: {e.msg} (column {e.colno})") from e
        if not isinstance(row, dict):
            raise CatalogError(f"{path}: line {lineno} is not a JSON object (got {type(row).__name__})")
        records.append(row)
    return records


def _read_csv(path: Path, list_fields: Collection[str]) -> list[dict[str, Any]]:
    """CSV with a header row. Cells are strings; cells of `list_fields` are split on '|'."""
    text = _read_text(path)
    # StringIO(newline="") keeps quoted newlines intact and splits only on \r / \n.
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            return []
        header = [h.strip() for h in header]
        dup = sorted({h for h in header if header.count(h) > 1})
        if dup:
            raise CatalogError(f"{path}: column(s) named twice in the header: {', '.join(dup)}")
        records: list[dict[str, Any]] = []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue  # blank line
            if len(cells) > len(header):
                raise CatalogError(
                    f"{path}: line {reader.line_num} has {len(cells)} cells but the header has "
                    f"{len(header)} columns"
                )
            row: dict[str, Any] = dict(zip(header, cells, strict=False))  # short rows: cells missing
            for name in list_fields:
                if isinstance(row.get(name), str):
                    row[name] = row[name].split(CSV_LIST_SEP)
            records.append(row)
        return records
    except csv.Error as e:
        raise CatalogError(f"{path}: malformed CSV on line {reader.line_num}: {e}") from e


def _read_parquet(path: Path, list_fields: Collection[str]) -> list[dict[str, Any]]:
    """Parquet via pyarrow; list columns stay Python lists."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise CatalogError(f"{path}: cannot read as Parquet: {e}") from e
    return table.to_pylist()


_READERS: dict[str, Callable[[Path, Collection[str]], list[dict[str, Any]]]] = {
    ".jsonl": _read_json_lines,
    ".json": _read_json_lines,
    ".csv": _read_csv,
    ".parquet": _read_parquet,
}
SUPPORTED_SUFFIXES = tuple(_READERS)


def read_records(path: str | Path, *, list_fields: Collection[str] = ()) -> list[dict[str, Any]]:
    """All rows of a catalogue file, in file order, as dicts of column -> value.

    The format is picked by extension (.jsonl/.json = JSON Lines, .csv, .parquet). JSON and
    Parquet keep their value types (lists included); CSV yields strings, and the cells of the
    columns named in `list_fields` (the image column) are split on '|' into lists, since CSV has
    no list type.
    """
    path = Path(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise CatalogError(
            f"{path}: unsupported catalogue format {path.suffix or '(no extension)'!r}; "
            f"supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not path.exists():
        raise CatalogError(f"catalogue file not found: {path}")
    if not path.is_file():
        raise CatalogError(f"catalogue path is not a file: {path}")
    try:
        return reader(path, list_fields)
    except OSError as e:
        raise CatalogError(f"{path}: cannot read: {e}") from e
