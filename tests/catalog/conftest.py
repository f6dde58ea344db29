"""Fixtures for catalogue tests, all built in code under tmp_path: catalogues in every format and
images good and bad (corrupt, truncated, over-sized, crafted decompression-bomb headers)."""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image


def png_with_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR claims width x height but whose pixel data is a few bytes.

    Decoding it would fail (or explode); only a check made from the header can reject it for its
    size, which is what the tests want to see.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
    path.write_bytes(data + chunk(b"IEND", b""))
    return path


@pytest.fixture
def make_image() -> Callable[..., Path]:
    """make_image(path, size=(8, 8), color=(200, 30, 30), mode="RGB") -> path (format by suffix)."""

    def make(
        path: Path, size: tuple[int, int] = (8, 8), color: Any = (200, 30, 30), mode: str = "RGB"
    ) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new(mode, size, color).save(path)
        return path

    return make


@pytest.fixture
def cat_dir(tmp_path: Path, make_image: Callable[..., Path]) -> Path:
    """A catalogue folder with one image of each kind, plus a file outside it.

    Layout: tmp_path/cat/{good.png, good.jpg, img/second.png, with space.png, noise.png, noise.jpg,
    truncated.png, truncated.jpg (first halves of the noise files), random.jpg, empty.png,
    fake.eps, big.png (64x64), header_bomb.png (claims 10000x10000), huge_bomb.png (claims
    20000x20000), escape.png -> ../outside/secret.png, inner_link.png -> good.png} and
    tmp_path/outside/secret.png.
    """
    d = tmp_path / "cat"
    make_image(d / "good.png")
    make_image(d / "good.jpg", color=(10, 120, 240))
    make_image(d / "img" / "second.png", color=(0, 255, 0))
    make_image(d / "with space.png")
    make_image(d / "big.png", size=(64, 64))
    noise = Image.frombytes("RGB", (32, 32), os.urandom(32 * 32 * 3))  # incompressible pixel data
    noise.save(d / "noise.png")
    noise.save(d / "noise.jpg")
    for name in ("noise.png", "noise.jpg"):
        full = (d / name).read_bytes()
        (d / f"truncated{Path(name).suffix}").write_bytes(full[: len(full) // 2])
    (d / "random.jpg").write_bytes(os.urandom(2048))
    (d / "empty.png").write_bytes(b"")
    (d / "fake.eps").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    png_with_header(d / "header_bomb.png", 10_000, 10_000)
    png_with_header(d / "huge_bomb.png", 20_000, 20_000)
    make_image(tmp_path / "outside" / "secret.png")
    (d / "escape.png").symlink_to(tmp_path / "outside" / "secret.png")
    (d / "inner_link.png").symlink_to(d / "good.png")
    return d


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix
    if suffix in (".jsonl", ".json"):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif suffix == ".csv":
        import csv

        cols = list(dict.fromkeys(k for r in rows for k in r))
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for r in rows:
                cells = [r.get(c) for c in cols]
                w.writerow(["|".join(v) if isinstance(v, list) else ("" if v is None else v) for v in cells])
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        raise ValueError(suffix)
    return path


@pytest.fixture
def write_catalog(tmp_path: Path) -> Callable[..., Path]:
    """write_catalog(rows, name="cat/items.jsonl") -> path; format by suffix (CSV joins lists with '|')."""

    def write(rows: list[dict[str, Any]], name: str = "cat/items.jsonl") -> Path:
        return _write(tmp_path / name, rows)

    return write
