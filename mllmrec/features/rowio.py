"""Row I/O for the FeatureProvider: raw ids -> source rows, and reading rows without a full load."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mllmrec.errors import MllmrecError
from mllmrec.store import StoreError


class ProviderError(MllmrecError, ValueError):
    """A feature request that cannot be served as asked (unknown channel, policy, id type, source)."""


def match_rows(src_ids: Any, ids: Any) -> np.ndarray:
    """[len(ids)] int64 position of each asked id in `src_ids` (an Arrow string array), -1 if absent.

    One pass of Arrow's hash lookup over the source's id column against the (deduplicated) asked
    ids: O(n_source + n_asked) time, no Python dict of the whole catalogue (0.11 s for 10k ids
    against 10M on this project's 2-core machine).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    asked = pa.array(as_id_strings(ids), pa.string())
    if len(asked) == 0:
        return np.zeros(0, np.int64)
    uniq = pc.unique(asked)
    back = pc.index_in(asked, value_set=uniq).to_numpy(zero_copy_only=False)  # asked -> uniq position
    hit = pc.index_in(src_ids, value_set=uniq)  # source row -> uniq position or null
    valid = hit.is_valid().to_numpy(zero_copy_only=False)
    uniq_rows = np.full(len(uniq), -1, np.int64)
    uniq_rows[hit.filter(hit.is_valid()).to_numpy(zero_copy_only=False)] = np.flatnonzero(valid)
    return uniq_rows[back]


def read_rows(mat: Any, rows: np.ndarray) -> np.ndarray:
    """mat[rows] for ascending `rows`. A file-backed np.memmap is read with positioned reads
    (os.preadv straight into the result, one call per run of consecutive rows) instead of through
    the mapping: touching a mapping faults in whole neighbourhoods of pages (fault-around), which
    for 10k scattered rows of a 512 MB store had mapped 360 MB into the process; preadv maps nothing.
    """
    if not (isinstance(mat, np.memmap) and mat.filename and mat.flags.c_contiguous and mat.ndim == 2):
        return np.asarray(mat[rows])
    out = np.empty((len(rows), mat.shape[1]), mat.dtype)  # [len(rows), d]
    if len(rows) == 0:
        return out
    row_bytes = mat.shape[1] * mat.dtype.itemsize
    starts = np.flatnonzero(
        np.diff(rows, prepend=rows[0] - 2) != 1
    )  # a new run where rows stop ascending by 1
    ends = np.append(starts[1:], len(rows))
    per_read = max(1, (64 << 20) // max(row_bytes, 1))  # at most 64 MB per call
    fd = os.open(mat.filename, os.O_RDONLY)
    try:
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            for s in range(a, b, per_read):
                e = min(b, s + per_read)
                got = os.preadv(
                    fd, [memoryview(out[s:e]).cast("B")], int(mat.offset) + int(rows[s]) * row_bytes
                )
                if got != (e - s) * row_bytes:
                    raise StoreError(f"{mat.filename}: file ends before row {int(rows[e - 1])} (truncated?)")
    finally:
        os.close(fd)
    return out


def as_id_strings(ids: Any) -> Any:
    """Raw ids as strings (ints match by their string form); Arrow string arrays pass through."""
    import pyarrow as pa

    if isinstance(ids, (pa.Array, pa.ChunkedArray)) and pa.types.is_string(ids.type):
        return ids
    if isinstance(ids, (str, bytes, int)):
        raise ProviderError(
            f"ids must be a sequence of ids, got the single value {ids!r} (wrap it in a list)"
        )
    if isinstance(ids, np.ndarray):
        if ids.dtype.kind in "iu":
            return ids.astype(str).tolist()
        if ids.dtype.kind == "U":
            return ids.tolist()
        if ids.dtype.kind != "O":
            raise ProviderError(f"item ids must be str or int, got an array of {ids.dtype}")
    out = []
    for v in ids:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            out.append(str(v))
        else:
            raise ProviderError(f"item ids must be str or int, got {type(v).__name__} {v!r}")
    return out
