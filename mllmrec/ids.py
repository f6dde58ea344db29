"""Id lookup without a Python dict: ids as fixed-width UTF-8 bytes, sorted once, found by binary search.

A dict of 10M string ids costs well over 1 GB of Python objects; this index costs (width + 8) bytes
per id (e.g. 10M ids of 12 bytes: 200 MB), can be saved as two .npy files and memory-mapped, and
looks ids up in batches with numpy (`positions`). Ids come in as Python strings or as a pyarrow
string column, whose buffers are converted without creating a Python object per id.

numpy's fixed-width bytes ignore trailing NUL bytes, so every key ends in a 0xFF byte (never part of
UTF-8): "a" and "a\\0" stay two ids.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

END = b"\xff"  # appended to every key (module docstring)
CHUNK = 1_000_000  # ids converted / looked up per step; bounds the temporaries (~16 bytes per id byte)


class IdIndex:
    """Sorted fixed-width ids (`keys`) and, for each, its position in the original order (`order`)."""

    def __init__(self, keys: np.ndarray, order: np.ndarray) -> None:
        self.keys, self.order = keys, order  # [n] S{w} sorted, [n] int64

    @classmethod
    def build(cls, ids: Any) -> IdIndex:
        """ids: a sequence of str or a pyarrow (chunked) string array, in position order."""
        keys = to_fixed_bytes(ids)
        order = np.argsort(keys, kind="stable").astype(np.int64)
        return cls(keys[order], order)

    def __len__(self) -> int:
        return len(self.order)

    @property
    def width(self) -> int:
        return self.keys.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.order.nbytes)

    def positions(self, ids: Any) -> np.ndarray:
        """[len(ids)] int64 position of each id, -1 where absent (ids as for `build`)."""
        n = len(ids)
        out = np.full(n, -1, np.int64)
        if not len(self):
            return out
        for start in range(0, n, CHUNK):
            q = to_fixed_bytes(_slice(ids, start, start + CHUNK))
            if q.dtype.itemsize > self.width:  # longer than every key: cannot be present
                fits = np.char.str_len(q) <= self.width
                q = q.astype(self.keys.dtype)
            else:
                fits = np.ones(len(q), bool)
            at = np.minimum(np.searchsorted(self.keys, q), len(self) - 1)
            hit = fits & (self.keys[at] == q)
            out[start : start + len(q)][hit] = self.order[at[hit]]
        return out

    def position(self, item_id: str) -> int:
        return int(self.positions([str(item_id)])[0])

    def save(self, folder: Path, stem: str, meta: dict[str, Any]) -> None:
        """Write <stem>.keys.npy, <stem>.order.npy and <stem>.json (meta) atomically, json last."""
        from mllmrec.fsutil import atomic_path

        for part, arr in (("keys", self.keys), ("order", self.order)):
            with atomic_path(folder / f"{stem}.{part}.npy") as tmp, open(tmp, "wb") as f:
                np.save(f, np.asarray(arr), allow_pickle=False)  # a file object: no .npy appended
        with atomic_path(folder / f"{stem}.json") as tmp:
            tmp.write_text(json.dumps({**meta, "n": len(self), "width": self.width}))

    @classmethod
    def load(cls, folder: Path, stem: str, meta: dict[str, Any]) -> IdIndex | None:
        """The saved index, memory-mapped, if its meta matches `meta`; else None."""
        try:
            saved = json.loads((folder / f"{stem}.json").read_text())
            if any(saved.get(k) != v for k, v in meta.items()):
                return None
            keys = np.load(folder / f"{stem}.keys.npy", mmap_mode="r", allow_pickle=False)
            order = np.load(folder / f"{stem}.order.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return None
        if len(keys) != saved.get("n") or len(order) != len(keys) or keys.dtype.kind != "S":
            return None
        return cls(keys, order)


def to_fixed_bytes(ids: Any) -> np.ndarray:
    """[n] numpy S{w} array of the ids' UTF-8 bytes (w = longest id, at least 1)."""
    if isinstance(ids, np.ndarray) and ids.dtype.kind == "S":
        raise TypeError("pass ids as str or a pyarrow string array, not numpy bytes (keys carry an end byte)")
    if not _is_arrow(ids):
        enc = [str(i).encode("utf-8") + END for i in ids]
        return np.array(enc, dtype=f"S{max((len(b) for b in enc), default=1)}")
    import pyarrow as pa

    arr = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    arr = arr.cast(pa.large_binary())
    if arr.null_count:
        raise ValueError(f"{arr.null_count} id(s) are null")
    _, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    width = int(lengths.max(initial=0)) + 1
    out = np.zeros((len(arr), width), np.uint8)
    for start in range(0, len(arr), CHUNK):
        lens = lengths[start : start + CHUNK]
        rows = np.repeat(np.arange(start, start + len(lens)), lens)
        cols = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
        out[rows, cols] = data[offsets[start] : offsets[start + len(lens)]]
        out[np.arange(start, start + len(lens)), lens] = END[0]
    return out.view(f"S{width}").reshape(len(arr))


def _is_arrow(x: Any) -> bool:
    return type(x).__module__.startswith("pyarrow")


def _slice(ids: Any, start: int, stop: int) -> Any:
    if _is_arrow(ids):
        return ids.slice(start, stop - start)
    return ids[start:stop] if isinstance(ids, Sequence | np.ndarray) else list(ids)[start:stop]


class IdList:
    """A read-only list of ids over a pyarrow string array: len, [i], [a:b], iteration and `take`,
    without a Python object per id until one is asked for."""

    def __init__(self, array: Any) -> None:
        import pyarrow as pa

        self.array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, key: int | slice) -> Any:
        if isinstance(key, slice):
            return self.array[key].to_pylist()
        return self.array[int(key)].as_py()

    def __iter__(self) -> Any:
        for start in range(0, len(self.array), CHUNK):
            yield from self.array.slice(start, CHUNK).to_pylist()

    def take(self, rows: Any) -> list[str]:
        return self.array.take(np.asarray(rows, np.int64)).to_pylist()
