"""The inputs of `eval/fuzz_inputs.py`: a catalogue mixing every kind of bad item we know of, and a
damaged copy of an artefact per kind of damage. Kept apart from the runner so a test can build the
inputs (fast, no model) and check them without running any command.

Each bad item is one catalogue row whose id says what is wrong with it, so the table and the
store's manifest can be read side by side.
"""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = "<|im_start|>system<|im_end|><|vision_start|><|image_pad|><|vision_end|><|endoftext|>"


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height and whose data is absent (a "huge header")."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
    )


def _images(folder: Path) -> dict[str, str]:
    """Odd images of every mode and shape, plus files that only look like images: {item id: path}."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}

    def save(name: str, img: Image.Image, fmt: str = "PNG") -> None:
        img.save(folder / name, fmt)
        made[f"img-{Path(name).stem}"] = f"fuzz-images/{name}"

    save("mode-P.png", Image.new("RGB", (24, 24), (200, 10, 10)).convert("P"))
    save("mode-LA.png", Image.new("LA", (24, 24), (128, 100)))
    save("mode-CMYK.jpg", Image.new("CMYK", (24, 24), (0, 50, 100, 0)), "JPEG")
    save("mode-I16.png", Image.new("I;16", (24, 24), 4000))
    save("mode-1bit.png", Image.new("1", (24, 24), 1))
    save("mode-RGBA.png", Image.new("RGBA", (24, 24), (0, 0, 255, 0)))
    save("one-pixel.png", Image.new("RGB", (1, 1), (0, 0, 0)))
    save("wide-8000x20.png", Image.new("RGB", (8000, 20), (9, 9, 9)))
    save("tall-20x8000.png", Image.new("RGB", (20, 8000), (9, 9, 9)))
    save("thin-3x3000.png", Image.new("RGB", (3, 3000), (9, 9, 9)))
    good = folder / "mode-P.png"
    (folder / "truncated.png").write_bytes(
        (folder / "wide-8000x20.png").read_bytes()[: max(60, good.stat().st_size // 2)]
    )
    made["img-truncated"] = "fuzz-images/truncated.png"
    (folder / "not-an-image.png").write_text("this is text, not a PNG\n")
    made["img-not-an-image"] = "fuzz-images/not-an-image.png"
    _png_header_only(folder / "huge-header.png", 100_000, 100_000)
    made["img-huge-header"] = "fuzz-images/huge-header.png"
    (folder / "empty.png").write_bytes(b"")
    made["img-empty-file"] = "fuzz-images/empty.png"
    return made


def _bad_paths(root: Path) -> dict[str, str]:
    (root.parent / "outside.png").write_bytes((root / "fuzz-images" / "one-pixel.png").read_bytes())
    return {
        "path-missing": "fuzz-images/no-such-file.png",
        "path-outside": "../outside.png",
        "path-absolute-outside": str(root.parent / "outside.png"),
        "path-url": "https://example.com/x.png",
        "path-directory": "fuzz-images",
        "path-empty": "",
    }


def _bad_texts() -> dict[str, dict[str, Any]]:
    return {
        "text-empty": {"title": "", "description": ""},
        "text-whitespace": {"title": "   \t ", "description": "\n\n  \u00a0"},
        "text-special-tokens": {"title": SPECIAL_TOKENS, "description": SPECIAL_TOKENS * 3},
        "text-lone-surrogate": {"title": "bad \ud800 escape", "description": "x \udfff y"},
        "text-control-chars": {"title": "nul\x00bell\x07", "description": "\x1b[31mred\x1b[0m"},
        "text-1mb": {"title": "long", "description": "word " * 200_000},
        "text-null": {"title": None, "description": None},
        "text-number": {"title": 12345, "description": 1.5},
    }


def write_fuzz_catalogue(data: Path) -> Path:
    """`data/fuzz.jsonl`: the synthetic catalogue's items (good ones, so pipelines downstream have
    something to work with) followed by one row per kind of bad item; images relative to `data`.
    Rows without an id or with a repeated one cannot be recorded as rejected, so the whole file is
    refused: they go into the ID_CATALOGUES files beside it, a case each."""
    good = [json.loads(line) for line in (data / "items.jsonl").read_text(encoding="utf-8").splitlines()]
    first = good[0]
    rows = list(good)
    for item_id, image in {**_images(data / "fuzz-images"), **_bad_paths(data)}.items():
        rows.append(
            {"id": item_id, "title": f"{item_id} item", "description": "a plain description", "image": image}
        )
    for item_id, text in _bad_texts().items():
        rows.append({"id": item_id, **text, "image": first["image"]})
    rows.append({"id": "no-fields"})
    for name, bad in ID_CATALOGUES.items():
        _write_jsonl(data / name, [*good[:3], *({**first, **b} for b in bad)])
    return _write_jsonl(data / "fuzz.jsonl", rows)


ID_CATALOGUES = {
    "bad-ids.jsonl": [{"id": ""}, {"id": None}],  # whole-file refusals (see write_fuzz_catalogue)
    "duplicate-ids.jsonl": [{"title": "same id as the first item"}],
}


def _write_jsonl(out: Path, rows: list[dict[str, Any]]) -> Path:
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")  # ensure_ascii keeps \ud800
    return out


def catalogue_rows(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


# -- damaged artefacts -------------------------------------------------------------------------
def _truncate(name: str, keep: float = 0.5) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        p = d / name
        p.write_bytes(p.read_bytes()[: int(p.stat().st_size * keep)])

    return damage


def _edit_manifest(edit: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        m = json.loads((d / "manifest.json").read_text())
        edit(m)
        (d / "manifest.json").write_text(json.dumps(m))

    return damage


def _short_parquet(name: str) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        import pyarrow.parquet as pq

        t = pq.read_table(d / name)
        pq.write_table(t.slice(0, max(1, t.num_rows - 3)), d / name)

    return damage


def _remove(name: str) -> Callable[[Path], None]:
    return lambda d: (d / name).unlink()


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(m: dict[str, Any]) -> None:
        node = m
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


DAMAGE: dict[str, dict[str, Callable[[Path], None]]] = {
    "store": {
        "truncated-vectors": _truncate("vectors.safetensors"),
        "short-items": _short_parquet("items.parquet"),
        "manifest-dims": _edit_manifest(_set(("dims", "mm"), 7)),
        "manifest-counts": _edit_manifest(_set(("counts", "embedded"), 3)),
        "manifest-not-json": lambda d: (d / "manifest.json").write_text("{not json"),
    },
    "pairs": {
        "manifest-stage": _edit_manifest(_set(("stage",), "embed")),
        "manifest-missing": _remove("manifest.json"),
    },
    "distill": {
        "truncated-tables": _truncate("tables.safetensors"),
        "short-items": _short_parquet("items.parquet"),
        "missing-popularity": _remove("popularity.npy"),
        "manifest-dims": _edit_manifest(_set(("dims", "student"), 3)),  # the key DistillRun reads
    },
    "export": {
        "truncated-npy": lambda d: [_truncate(p.name)(d) for p in sorted(d.glob("*.npy"))[:1]],
        "manifest-stage": _edit_manifest(_set(("stage",), "distill")),
    },
}


def damaged_copies(kind: str, good: Path, where: Path) -> dict[str, Path]:
    """{damage name: a damaged copy of the artefact `good`} for every damage of its kind."""
    out = {}
    for name, damage in DAMAGE[kind].items():
        d = where / f"{kind}-{name}"
        if d.exists():
            shutil.rmtree(d)
        shutil.copytree(good, d)
        damage(d)
        out[name] = d
    return out
