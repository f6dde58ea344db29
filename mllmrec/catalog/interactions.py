"""Interaction logs in: who engaged with which item, and (when the file says) when and how much.

`read_interactions` reads CSV, Parquet, JSON Lines and the tab-separated `.inter` files of MMRec
(`userID itemID rating timestamp x_label`) and RecBole (`user_id:token ...`; `:type` is stripped).
Ids are always strings ("007" stays "007", numeric ids match the catalogue's). The log is kept as
written, duplicates included (`dedupe` folds them); `index_ids` / `to_matrix` give integer codes.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from mllmrec.errors import MllmrecError

FORMATS = ("auto", "csv", "tsv", "inter", "parquet", "jsonl")  # "inter" = "tsv": MMRec / RecBole files
LABEL_FIELD = "x_label"  # MMRec's split column (0 train, 1 valid, 2 test), read whenever a file has it
_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".inter": "tsv",
    ".parquet": "parquet",
    ".jsonl": "jsonl",
    ".json": "jsonl",
}
# Other spellings tried only when the caller left a field at its default (MMRec writes userID/itemID).
_ALIASES = {"user_id": ("userID",), "item_id": ("itemID",)}
_RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")


class InteractionsError(MllmrecError, ValueError):
    """The interaction file cannot be read as asked; the message names the file and what to change."""


@dataclass(frozen=True, eq=False)
class Interactions:
    """One interaction per row, in file order. Sequences are accepted and coerced in `__post_init__`.

    users/items: [n] object arrays of str; timestamps/ratings: [n] float64 (NaN where a cell was
    empty) or None when the file has no such column; labels: [n] int8 MMRec x_label or None.
    """

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray | None = None
    ratings: np.ndarray | None = None
    labels: np.ndarray | None = None
    source: str = "<memory>"

    def __post_init__(self) -> None:
        src, set_ = self.source, object.__setattr__
        set_(self, "users", _as_ids(self.users, "user", src))
        set_(self, "items", _as_ids(self.items, "item", src))
        for name in ("timestamps", "ratings"):
            if getattr(self, name) is not None:
                set_(self, name, np.asarray(getattr(self, name), dtype=np.float64).reshape(-1))
        if self.labels is not None:
            set_(self, "labels", _as_labels(self.labels, src))
        sizes = {
            k: len(v)
            for k in ("users", "items", "timestamps", "ratings", "labels")
            if (v := getattr(self, k)) is not None
        }
        if len(set(sizes.values())) > 1:
            raise InteractionsError(f"{src}: columns differ in length: {sizes}")

    def __len__(self) -> int:
        return len(self.users)

    def take(self, rows: np.ndarray) -> Interactions:
        """The rows selected by an index array or a boolean mask, in that order (fields kept)."""
        rest = [None if a is None else a[rows] for a in (self.timestamps, self.ratings, self.labels)]
        return Interactions(self.users[rows], self.items[rows], *rest, source=self.source)


def _id_str(v: Any) -> str | None:
    """One id cell as text, None if missing (None, NaN, ''); integral floats drop '.0' (pandas
    turns int columns with gaps into floats)."""
    if isinstance(v, float) and v == v and v.is_integer():
        return str(int(v))
    return None if v is None or v != v else (str(v) or None)


def _as_ids(values: Any, what: str, path: str = "<memory>") -> np.ndarray:
    """[n] object array of non-empty str ids; the error names the first missing row (1-based)."""
    arr = np.asarray(values).reshape(-1)
    if arr.dtype.kind in "iu":
        return arr.astype(str).astype(object)
    arr = arr.astype(object)
    if not all(type(v) is str and v for v in arr):
        conv = [_id_str(v) for v in arr]
        bad = next((r for r, v in enumerate(conv) if v is None), None)
        if bad is not None:
            raise InteractionsError(f"{path}: {what} id missing on data row {bad + 1}")
        arr = np.asarray(conv, dtype=object)
    return arr


def _as_labels(raw: Any, path: str) -> np.ndarray:
    """int8 x_label values; anything but 0/1/2 is an error (MMRec defines only those)."""
    vals = _floats(raw, LABEL_FIELD, path)
    bad = ~np.isin(vals, (0, 1, 2))
    if bad.any():
        raise InteractionsError(
            f"{path}: {LABEL_FIELD} must be 0 (train), 1 (valid) or 2 (test); "
            f"data row {int(np.argmax(bad)) + 1} has {vals[bad][0]!r}"
        )
    return vals.astype(np.int8)


def _floats(values: Any, name: str, path: str) -> np.ndarray:
    """Numbers, numeric strings or dates (-> Unix seconds) as [n] float64; None/''/NaT become NaN."""
    arr = np.asarray(values).reshape(-1)
    if arr.dtype.kind in "fiub":
        return arr.astype(np.float64)
    if arr.dtype.kind != "M":
        cells = [np.nan if v is None or (isinstance(v, str) and not v.strip()) else v for v in arr]
        try:
            return np.asarray(cells, dtype=np.float64)
        except (ValueError, TypeError):
            try:
                arr = np.asarray(
                    ["NaT" if isinstance(v, float) else v for v in cells], dtype="datetime64[ns]"
                )
            except (ValueError, TypeError) as e:
                raise InteractionsError(
                    f"{path}: column {name!r} must hold numbers or ISO dates ({e})"
                ) from e
    out = arr.astype("datetime64[ns]").astype(np.int64).astype(np.float64) / 1e9
    out[np.isnat(arr)] = np.nan
    return out


def _values(col: Any) -> Any:
    """A column's cells: JSON lists as they are, Arrow columns as numpy (dictionaries decoded)."""
    if isinstance(col, list):
        return col
    import pyarrow as pa

    if pa.types.is_dictionary(col.type):
        col = col.cast(pa.string())
    return col.to_numpy(zero_copy_only=False)


def _header(path: Path, fmt: str) -> list[str]:
    """The header row (csv: quoted cells allowed; tsv: RecBole `:type` suffixes stripped)."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        line = f.readline()
    if not line.strip():
        raise InteractionsError(f"{path}: the file is empty (no header row)")
    cells = next(csv.reader([line])) if fmt == "csv" else line.rstrip("\r\n").split("\t")
    names = [c.strip() for c in cells]
    if fmt != "csv":
        names = [n.rsplit(":", 1)[0] if n.rsplit(":", 1)[-1] in _RECBOLE_TYPES else n for n in names]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InteractionsError(f"{path}: column(s) named twice in the header: {', '.join(dup)}")
    return names


def _read_delimited(path: Path, fmt: str) -> dict[str, Any]:
    """CSV or tab-separated text through pyarrow, every column as text (ids keep leading zeros)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    names = _header(path, fmt)
    tab = fmt != "csv"
    try:
        table = pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pcsv.ParseOptions(delimiter="\t" if tab else ",", quote_char=False if tab else '"'),
            convert_options=pcsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, OSError) as e:
        raise InteractionsError(f"{path}: cannot read as {'tab-separated' if tab else 'CSV'}: {e}") from e
    return {n: table.column(n) for n in names}


def _read_parquet(path: Path, wanted: set[str]) -> dict[str, Any]:
    """Parquet columns named in `wanted` (other columns, e.g. review text, are never loaded); the
    rest of the file's column names map to None so errors can still list them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
        table = pq.read_table(path, columns=[n for n in names if n in wanted])
    except (pa.ArrowException, OSError) as e:
        raise InteractionsError(f"{path}: cannot read as Parquet: {e}") from e
    return {n: table.column(n) if n in wanted else None for n in names}


def _read_jsonl(path: Path) -> dict[str, Any]:
    """JSON Lines (or a `.json` array of objects) into columns; keys a row lacks become None."""
    text = path.read_text(encoding="utf-8-sig")
    as_array = path.suffix.lower() == ".json" and text.lstrip().startswith("[")
    try:
        rows = (
            json.loads(text) if as_array else [json.loads(line) for line in text.split("\n") if line.strip()]
        )
    except json.JSONDecodeError as e:
        raise InteractionsError(f"{path}: malformed JSON: {e}") from e
    if not all(isinstance(r, dict) for r in rows):
        raise InteractionsError(f"{path}: every JSON row must be an object")
    names = list(dict.fromkeys(k for r in rows for k in r))
    return {n: [r.get(n) for r in rows] for n in names}


def _detect(path: Path) -> str:
    """Format by extension; an unknown extension whose header has tabs is read as `.inter`."""
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is not None:
        return fmt
    with open(path, "rb") as f:
        if b"\t" in f.readline():
            return "tsv"
    raise InteractionsError(
        f"{path}: cannot tell the format from {path.suffix or 'no extension'!r}; "
        f"use one of {', '.join(sorted(_SUFFIXES))} or pass fmt= ({', '.join(FORMATS[1:])})"
    )


def _pick(names: list[str], wanted: str, default: str, path: Path, role: str, required: bool) -> str | None:
    """The column for one field (a default name also tries MMRec's spelling); None only for an optional
    field left at its default, since an explicit name that is absent is a typo."""
    tries = [wanted, *(_ALIASES.get(default, ()) if wanted == default else ())]
    found = next((t for t in tries if t in names), None)
    if found is None and (required or wanted != default):
        raise InteractionsError(
            f"{path}: no {role} column {wanted!r}; the file's columns are: "
            f"{', '.join(names) or '(none)'}; name it with --{role}-field (Python: {role}_field=)"
        )
    return found


def read_interactions(
    path: str | Path,
    *,
    user_field: str = "user_id",
    item_field: str = "item_id",
    time_field: str = "timestamp",
    rating_field: str = "rating",
    fmt: str = "auto",
) -> Interactions:
    """Read an interaction log (formats: module docstring). `InteractionsError` for a missing or empty
    file, absent columns (listing those there are), missing ids, non-numeric times/ratings."""
    path = Path(path)
    if fmt not in FORMATS:
        raise InteractionsError(f"unknown interactions format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise InteractionsError(f"interactions file not found (or not a file): {path}")
    kind = _detect(path) if fmt == "auto" else ("tsv" if fmt == "inter" else fmt)
    try:
        if kind == "parquet":
            fields = (user_field, item_field, time_field, rating_field, LABEL_FIELD)
            cols = _read_parquet(path, {*fields, *(a for alias in _ALIASES.values() for a in alias)})
        elif kind == "jsonl":
            cols = _read_jsonl(path)
        else:
            cols = _read_delimited(path, kind)
    except UnicodeDecodeError as e:
        raise InteractionsError(f"{path}: not valid UTF-8 text (byte {e.start})") from e
    if not (names := list(cols)):
        raise InteractionsError(f"{path}: the file is empty")
    u = str(_pick(names, user_field, "user_id", path, "user", True))  # required: never None
    i = str(_pick(names, item_field, "item_id", path, "item", True))
    t = _pick(names, time_field, "timestamp", path, "time", False)
    r = _pick(names, rating_field, "rating", path, "rating", False)
    if len(cols[u]) == 0:
        raise InteractionsError(f"{path}: the file has no interactions (header only)")

    def num(name: str | None) -> np.ndarray | None:
        return None if name is None else _floats(_values(cols[name]), name, str(path))

    return Interactions(
        _values(cols[u]),
        _values(cols[i]),
        num(t),
        num(r),
        num(LABEL_FIELD if LABEL_FIELD in cols else None),
        source=str(path),
    )


def dedupe(inter: Interactions, keep: str = "last") -> Interactions:
    """One row per (user, item): the first or last occurrence in row order (sort by time first if
    "last" should mean the latest). Kept rows stay in their original order."""
    if keep not in ("first", "last"):
        raise InteractionsError(f"keep must be 'first' or 'last', got {keep!r}")
    _, u = index_ids(inter.users)
    items, i = index_ids(inter.items)
    key = u * max(len(items), 1) + i
    if keep == "last":
        key = key[::-1]
    rows = np.unique(key, return_index=True)[1]
    return inter.take(np.sort(rows if keep == "first" else len(key) - 1 - rows))


def index_ids(values: Iterable[str]) -> tuple[dict[str, int], np.ndarray]:
    """(id -> code in first-seen order, [n] int64 codes): raw ids to dense integers."""
    index: dict[str, int] = {}
    vals = list(values)
    codes = np.fromiter((index.setdefault(v, len(index)) for v in vals), dtype=np.int64, count=len(vals))
    return index, codes


def to_matrix(
    inter: Interactions, user_index: dict[str, int], item_index: dict[str, int], *, missing: str = "error"
) -> sp.csr_matrix:
    """Binary [len(user_index), len(item_index)] float32 CSR matrix (duplicates count once).

    missing="error" raises on a user/item the indexes lack; "skip" leaves those rows out.
    """
    if missing not in ("error", "skip"):
        raise InteractionsError(f"missing must be 'error' or 'skip', got {missing!r}")
    rows = np.fromiter((user_index.get(v, -1) for v in inter.users), dtype=np.int64, count=len(inter))
    cols = np.fromiter((item_index.get(v, -1) for v in inter.items), dtype=np.int64, count=len(inter))
    ok = (rows >= 0) & (cols >= 0)
    if missing == "error" and not ok.all():
        b = int(np.argmax(~ok))
        raise InteractionsError(
            f"{inter.source}: {int((~ok).sum())} rows name a user or item outside the "
            f"index, e.g. row {b + 1} ({inter.users[b]!r}, {inter.items[b]!r})"
        )
    shape = (len(user_index), len(item_index))
    m = sp.csr_matrix((np.ones(int(ok.sum()), np.float32), (rows[ok], cols[ok])), shape=shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    return m
