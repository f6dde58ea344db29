"""Id-map files: which raw item id each row of a framework's feature matrix belongs to.

Misaligned feature rows are the classic silent bug when features move between frameworks, so an
id map is read strictly: every row 0..n-1 must be named exactly once and every raw id must occur
once. Accepted files (row i = the i-th id unless a file gives rows explicitly):

    .txt / .ids           one raw id per line
    .json                 a list of ids, or an object {raw id: row}
    .csv / .tsv / .inter  a header row, then either one column (ids in row order) or a row column
                          (named itemID, item_index, index, idx or row) beside raw-id columns, e.g.
                          MMRec's `i_id_mapping.csv` (`asin<TAB>itemID`) or the three columns its
                          preprocessing and forks write (`orig_item_id,itemID,raw_item_id`); tab or comma
    .parquet              the same column rules as csv

With several raw-id columns, `id_column` names the one to use; without it the column is the one
whose values the source knows (`known()`: most matches, and more than any other column), so a map
is never read by the wrong column silently: no unique winner is an error naming the columns.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import numpy as np

from mllmrec.errors import MllmrecError

ROW_COLUMNS = ("itemID", "item_index", "index", "idx", "row")


class IdMapError(MllmrecError, ValueError):
    """An id-map file cannot be read as an unambiguous row -> raw id mapping."""


def read_id_map(
    path: str | Path, *, id_column: str | None = None, known: Callable[[], Collection[str]] | None = None
) -> list[str]:
    """Raw ids in row order (list index = row) from an id-map file (formats and the choice of the
    id column: module docstring). `known()` gives the source's ids; it is called only for a map
    with several raw-id columns and no `id_column`."""
    path = Path(path)
    if not path.is_file():
        raise IdMapError(f"id-map file not found (or not a file): {path}")
    suffix = path.suffix.lower()
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, list):
            return _check_ids([_id(v, path) for v in data], path)
        if isinstance(data, dict):
            return _from_pairs(list(data), list(data.values()), path)
        raise IdMapError(f"{path}: a JSON id map must be a list of ids or an object {{id: row}}")
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return _from_columns(
            {n: table.column(n).to_pylist() for n in table.column_names}, path, id_column, known
        )
    if suffix in (".csv", ".tsv", ".inter"):
        return _from_columns(_read_delimited(path), path, id_column, known)
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()  # a trailing newline is not an id
    blank = [n + 1 for n, line in enumerate(lines) if not line.strip()]
    if blank:
        raise IdMapError(f"{path}: line {blank[0]} is empty; every line must hold one id")
    return _check_ids([line.strip() for line in lines], path)


def _read_delimited(path: Path) -> dict[str, list[Any]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        text = f.read()
    first = text.split("\n", 1)[0]
    rows = list(csv.reader(text.splitlines(), delimiter="\t" if "\t" in first else ","))
    if not rows:
        raise IdMapError(f"{path}: the file is empty")
    header, body = [h.strip() for h in rows[0]], [r for r in rows[1:] if r]
    if len(set(header)) != len(header):
        raise IdMapError(f"{path}: a column is named twice in the header {header}")
    bad = next((n for n, r in enumerate(body) if len(r) != len(header)), None)
    if bad is not None:
        raise IdMapError(f"{path}: data row {bad + 1} has {len(body[bad])} cells, the header {len(header)}")
    return {h: [r[k].strip() for r in body] for k, h in enumerate(header)}


def _from_columns(
    cols: dict[str, list[Any]],
    path: Path,
    id_column: str | None = None,
    known: Callable[[], Collection[str]] | None = None,
) -> list[str]:
    names = list(cols)
    if id_column is not None and id_column not in cols:
        raise IdMapError(f"{path}: no column {id_column!r} (the id column asked for); columns {names}")
    if len(names) == 1:
        return _check_ids([_id(v, path) for v in cols[names[0]]], path)
    row_cols = [n for n in names if n in ROW_COLUMNS and n != id_column]
    if len(row_cols) != 1:
        raise IdMapError(
            f"{path}: expected one id column, or id columns and one row column named "
            f"{' / '.join(ROW_COLUMNS)}; found columns {names}"
        )
    id_col = id_column or _pick_id_column(cols, [n for n in names if n != row_cols[0]], path, known)
    return _from_pairs(cols[id_col], cols[row_cols[0]], path)


def _pick_id_column(
    cols: dict[str, list[Any]], candidates: list[str], path: Path, known: Callable[[], Collection[str]] | None
) -> str:
    """The only raw-id column, or the one whose values the source knows best (a unique winner)."""
    if len(candidates) == 1:
        return candidates[0]
    hint = "name the raw-id column with --id-column (Python: id_column=)"
    if known is None:
        raise IdMapError(f"{path}: several columns could hold the raw id ({', '.join(candidates)}); {hint}")
    ids = set(known())
    hits = {c: sum(str(v) in ids for v in cols[c]) for c in candidates}
    best = max(hits.values())
    winners = [c for c, n in hits.items() if n == best]
    if best == 0 or len(winners) > 1:
        found = ", ".join(f"{c}: {n}" for c, n in hits.items())
        raise IdMapError(
            f"{path}: cannot tell which column holds the source's ids (ids found per column: {found}); {hint}"
        )
    return winners[0]


def _from_pairs(raw_ids: list[Any], rows: list[Any], path: Path) -> list[str]:
    """ids placed at their rows; the rows must be exactly 0..n-1."""
    try:
        r = np.array([int(v) for v in rows], dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise IdMapError(f"{path}: row numbers must be integers ({e})") from None
    n = len(r)
    counts = np.bincount(r[(r >= 0) & (r < n)], minlength=n) if n else np.zeros(0, np.int64)
    if n and (r.min() < 0 or r.max() >= n or (counts != 1).any()):
        gaps = np.flatnonzero(counts == 0)[:5].tolist()
        twice = np.flatnonzero(counts > 1)[:5].tolist()
        raise IdMapError(
            f"{path}: the rows must be 0..{n - 1}, each once (MMRec/RecBole ids are dense); "
            f"range {int(r.min())}..{int(r.max())}, missing rows {gaps}, rows given twice {twice}"
        )
    out: list[str] = [""] * n
    for raw, row in zip(raw_ids, r.tolist(), strict=True):
        out[row] = _id(raw, path)
    return _check_ids(out, path)


def _id(v: Any, path: Path) -> str:
    if isinstance(v, bool) or not isinstance(v, (str, int, np.integer)) or v == "":
        raise IdMapError(f"{path}: ids must be non-empty strings or integers, got {v!r}")
    return str(v)


def _check_ids(ids: list[str], path: Path) -> list[str]:
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = [i for i in ids if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
        raise IdMapError(f"{path}: {len(dup)} id(s) occur more than once, e.g. {dup[:5]}")
    return ids
