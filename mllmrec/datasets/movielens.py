"""MovieLens-100K, read from the copy that ships inside the `recbole==1.2.1` wheel.

The data is never committed and never fetched at run time. Get it once with

    pip download --no-deps recbole==1.2.1 -d eval/data

and point `find_ml100k` at that folder (the wheel is read as a zip; nothing is installed). The
catalogue it writes has no images (MovieLens is a text-only check) and one of two text layouts:
`description` (`title`, `description` "1995. Genres: Animation, Children's, Comedy") or `genres`
(`title` "Toy Story (1995)", `genres` "Animation, Children's, Comedy"; the item-to-item tuning
check's layout, eval/configs/train-ml100k.yaml).
"""

from __future__ import annotations

import csv
import json
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mllmrec.errors import MllmrecError
from mllmrec.fsutil import atomic_path

WHEEL_GLOB = "recbole-1.2.1-*.whl"
MEMBER = "recbole/dataset_example/ml-100k/ml-100k.{}"
HOW_TO_GET = (
    "MovieLens-100K ships inside the recbole 1.2.1 wheel. Fetch it once (nothing is installed):\n"
    "  pip download --no-deps recbole==1.2.1 -d eval/data\n"
    "then pass that folder (or the wheel, or a folder holding ml-100k.inter and ml-100k.item)."
)


class DatasetNotFound(MllmrecError, FileNotFoundError):
    """The data is not where we looked; the message says how to get it."""


@dataclass(frozen=True)
class PreparedDataset:
    catalog: Path  # items.jsonl (id, title, description)
    interactions: Path  # interactions.csv (user_id, item_id, rating, timestamp)
    n_items: int
    n_interactions: int


def find_ml100k(places: Iterable[str | Path]) -> Path:
    """The first place holding ML-100K: a recbole wheel, a folder with one, or the extracted files."""
    tried = []
    for place in map(Path, places):
        tried.append(str(place))
        if place.is_file() and place.suffix == ".whl":
            return place
        if place.is_dir():
            if (place / "ml-100k.inter").is_file() and (place / "ml-100k.item").is_file():
                return place
            wheels = sorted(place.glob(WHEEL_GLOB))
            if wheels:
                return wheels[-1]
    raise DatasetNotFound(
        f"MovieLens-100K not found (looked in: {', '.join(tried) or 'nowhere'}).\n{HOW_TO_GET}"
    )


def _read(source: Path, ext: str) -> list[list[str]]:
    """Rows of ml-100k.<ext> (header dropped), from the wheel or an extracted folder."""
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as z:
            text = z.read(MEMBER.format(ext)).decode("utf-8", errors="replace")
    else:
        text = (source / f"ml-100k.{ext}").read_text(encoding="utf-8", errors="replace")
    return [line.split("\t") for line in text.splitlines()[1:] if line.strip()]


CatalogText = Literal["description", "genres"]
CATALOG_FILES: dict[str, str] = {"description": "items.jsonl", "genres": "items-genres.jsonl"}


def _catalog_row(row: list[str], text: CatalogText) -> dict[str, str]:
    """One catalogue row of an ml-100k.item row (id, title, year, genres) in the `text` layout."""
    item_id, title, year, genres = (x.strip() for x in (row + [""] * 4)[:4])
    genre_list = ", ".join(genres.split())
    if text == "genres":
        return {"id": item_id, "title": f"{title} ({year})" if year else title, "genres": genre_list}
    desc = ". ".join(p for p in (year, f"Genres: {genre_list}" if genre_list else "") if p)
    return {"id": item_id, "title": title, "description": desc}


def prepare_ml100k(
    source: str | Path, out_dir: str | Path, *, text: CatalogText = "description"
) -> PreparedDataset:
    """Write ML-100K as an mllmrec catalogue (text layout `text`, see the module docstring) + interaction
    log (idempotent, atomic files; each layout has its own catalogue file)."""
    source, out = Path(source), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = _read(source, "item")
    inter = _read(source, "inter")
    catalog, log = out / CATALOG_FILES[text], out / "interactions.csv"
    with atomic_path(catalog) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in items:
            f.write(json.dumps(_catalog_row(row, text), ensure_ascii=False) + "\n")
    with atomic_path(log) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "rating", "timestamp"])
        w.writerows(row[:4] for row in inter)
    return PreparedDataset(catalog, log, len(items), len(inter))
