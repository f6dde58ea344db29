"""Cheap structural checks of artefact files against what their manifest says, before any read.

A truncated or hand-edited file otherwise surfaces deep inside a reader as `mmap length is greater
than file size`, `SafetensorError: incomplete metadata` or an IndexError three commands later,
naming no file. These checks read only headers and footers (a safetensors JSON header, a parquet
footer), so opening an artefact stays O(1) in its size, and every failure is one `DamagedFileError`
line: the file, what disagrees, and what to do.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from mllmrec.artifacts import ArtifactError

_DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}
_MAX_HEADER = 100 << 20  # safetensors' own limit on the JSON header


class DamagedFileError(ArtifactError):
    """An artefact file is missing, truncated, unreadable or disagrees with its manifest."""


def safetensors_shapes(path: Path, fix: str) -> dict[str, list[int]]:
    """{tensor: shape} of a safetensors file after checking its header and that the file holds every
    byte the header promises (a truncated file is caught here, not by a failing mmap)."""
    if not path.is_file():
        raise DamagedFileError(f"{path}: missing; {fix}")
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > min(size - 8, _MAX_HEADER):
                raise ValueError(f"header length {n} is beyond the file's {size} bytes")
            header = json.loads(f.read(n))
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        end = 8 + n + max((int(v["data_offsets"][1]) for v in tensors.values()), default=0)
        for k, v in tensors.items():
            start, stop = v["data_offsets"]
            count = 1
            for s in v["shape"]:
                count *= int(s)
            if stop - start != count * _DTYPE_BYTES.get(v["dtype"], 0):
                raise ValueError(f"tensor {k!r} has {stop - start} bytes for shape {v['shape']} {v['dtype']}")
    except (struct.error, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise DamagedFileError(f"{path}: not a readable safetensors file ({e}); {fix}") from None
    if size < end:
        raise DamagedFileError(f"{path}: truncated ({size} bytes, its header needs {end}); {fix}")
    return {k: [int(s) for s in v["shape"]] for k, v in tensors.items()}


def parquet_rows(path: Path, fix: str) -> tuple[int, list[str]]:
    """(row count, column names) from a parquet file's footer, or DamagedFileError naming it."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DamagedFileError(f"{path}: missing; {fix}")
    try:
        pf = pq.ParquetFile(path)
        meta, names = pf.metadata, list(pf.schema_arrow.names)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a damaged footer
        raise DamagedFileError(
            f"{path}: not a readable parquet file ({type(e).__name__}: {e}); {fix}"
        ) from None
    return int(meta.num_rows), names


def expect_equal(what: str, found: Any, expected: Any, fix: str) -> None:
    """One line when a file's `found` value is not the manifest's `expected` one."""
    if found != expected:
        raise DamagedFileError(f"{what}: found {found}, the manifest says {expected}; {fix}")
