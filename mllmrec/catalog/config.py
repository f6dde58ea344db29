"""Catalogue and pair-mining configs (stage 0)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mllmrec.config import REQUIRED, Checked, ConfigError, opt


@dataclass(frozen=True, kw_only=True)
class CatalogSpec(Checked):
    """How to read a catalogue file into Items."""

    catalog: str = opt(REQUIRED, "Catalogue file: .jsonl, .csv or .parquet, one item per row.")
    id_field: str = opt("id", "Column holding the item id (ids are compared as strings).")
    text_fields: tuple[str, ...] = opt(
        ("title", "description"),
        "Text columns in prompt order, each NAME or NAME:MAX_CHARS (truncation in characters), "
        "e.g. --text-fields title:64 description:512.",
    )
    image_field: str | None = opt(
        "image",
        "Column holding an image reference (path relative to the catalogue file, absolute path or "
        "file:// URI) or a list of them. 'none' for text-only catalogues.",
    )
    max_images: int = opt(1, "Use at most the first N images of an item.")
    on_bad_image: Literal["text-only", "reject", "error"] = opt(
        "text-only",
        "What to do with an item whose image is missing, unreadable, corrupt, too large or outside "
        "the catalogue folder: embed it from its text, leave it out (both recorded in the "
        "manifest), or stop with an error.",
    )
    allow_outside_paths: bool = opt(
        False, "Allow image paths that point outside the catalogue file's folder."
    )
    max_image_pixels: int = opt(
        40_000_000,
        "Refuse images with more pixels than this before decoding them (decompression bombs).",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.image_field is not None and self.image_field.lower() in ("", "none", "null"):
            object.__setattr__(self, "image_field", None)
        if self.max_images < 1:
            raise ConfigError(f"max_images must be >= 1, got {self.max_images}")
        if self.max_image_pixels < 1:
            raise ConfigError(f"max_image_pixels must be >= 1, got {self.max_image_pixels}")
        parse_text_fields(self.text_fields)


def parse_text_fields(specs: tuple[str, ...]) -> list[tuple[str, int | None]]:
    """['title:64', 'description'] -> [('title', 64), ('description', None)]."""
    out = []
    for spec in specs:
        name, _, limit = spec.partition(":")
        if not name:
            raise ConfigError(f"empty text field name in {spec!r}")
        if limit and (not limit.isdigit() or int(limit) < 1):
            raise ConfigError(f"text field {spec!r}: the limit after ':' must be a positive integer")
        out.append((name, int(limit) if limit else None))
    if len({n for n, _ in out}) != len(out):
        raise ConfigError(f"text field listed twice in {list(specs)}")
    return out


@dataclass(frozen=True, kw_only=True)
class PairsConfig(Checked):
    """Mine co-interaction item pairs (NoteLLM): score(A->B) = sum over users u who engaged with A and
    then B of 1/N_u, N_u = number of distinct items u engaged with. Keeps the top-t partners per item
    and splits the pairs into train/valid/test by query item."""

    interactions: str = opt(
        REQUIRED, "Interaction log (.csv, .tsv/.inter, .parquet, .jsonl).", positional=True
    )
    out: str = opt(REQUIRED, "Output directory (pairs.parquet + manifest.json).")
    user_field: str = opt("user_id", "Column holding the user id.")
    item_field: str = opt("item_id", "Column holding the item id.")
    time_field: str = opt("timestamp", "Column holding the event time (numbers or ISO dates).")
    order: Literal["time", "none"] = opt(
        "time",
        "'time': A must come before B (needs timestamps; a log without them falls back to "
        "'none'); 'none': any two items of a user's history, both directions.",
    )
    window_seconds: float | None = opt(None, "Pair A with B when 0 < t_B - t_A <= W seconds.")
    session_gap: float | None = opt(
        None, "Pair A with any later B of the same session; a session ends at a gap > G seconds."
    )
    max_lag: int = opt(50, "Timed modes: look at most this many events ahead in a user's history.")
    min_score: float | None = opt(None, "Drop partners whose score is below this.")
    max_score: float | None = opt(None, "Drop partners whose score is above this (too-generic items).")
    top_t: int = opt(10, "Keep at most this many partners per query item (ties by partner id).")
    valid_share: float = opt(0.1, "Share of the query items (with all their pairs) in the valid part.")
    test_share: float = opt(0.1, "Share of the query items in the test part; train gets the rest.")
    seed: int = opt(0, "Seed of the query-item split.")
    catalog: str | None = opt(
        None, "Catalogue file; interactions with item ids not in it are reported and dropped."
    )
    catalog_id_field: str = opt("id", "Column of --catalog holding the item id.")
    overwrite: bool = opt(
        False,
        "Replace an earlier pairs folder in --out (a folder that holds anything else is never deleted).",
    )
    interactions_train_only: str | None = opt(
        None, "Saved split folder: build pairs only from its training interactions."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.window_seconds is not None and self.session_gap is not None:
            raise ConfigError("window_seconds and session_gap: give one of them, not both")
        if self.window_seconds is not None and self.window_seconds <= 0:
            raise ConfigError(f"window_seconds must be > 0, got {self.window_seconds}")
        if self.session_gap is not None and self.session_gap < 0:
            raise ConfigError(f"session_gap must be >= 0, got {self.session_gap}")
        if self.max_lag < 1 or self.top_t < 1:
            raise ConfigError("max_lag and top_t must be >= 1")
        if min(self.valid_share, self.test_share) < 0 or self.valid_share + self.test_share > 1:
            raise ConfigError(
                f"valid_share {self.valid_share} and test_share {self.test_share} must be "
                ">= 0 and sum to at most 1"
            )
        if self.min_score is not None and self.max_score is not None and self.min_score > self.max_score:
            raise ConfigError(f"min_score {self.min_score} is above max_score {self.max_score}")
