"""Synthetic multimodal catalogue whose item attributes are split between image and text.

Why: NoteLLM-2 reports "visual neglect": a multimodal LLM embedding leans on the text and
ignores the image. To measure it, every item here has attributes that only the image shows
(colour and shape: drawn, never written) and attributes that only the text states (category and
material: written, never drawn). Every user prefers one value of each kind, so a recommender that
reads only one modality can recover only half of a user's taste and measurably loses.

Interactions: user u picks items without replacement with probability
    p(i | u) ∝ pop(i) · B_color^[color(i) = color(u)] · B_category^[category(i) = category(u)]
where pop(i) = rank(i)^(-POPULARITY_EXPONENT) is a long-tailed (Zipf) base popularity over a
random ranking of the items. The order in which items are drawn is the order of the timestamps.

Files written into `cfg.out` (the same config gives byte-identical files):
    items.jsonl        {"id", "title", "description", "image"}: the catalogue a pipeline reads
    images/<id>.png    one image_size x image_size RGB image per item
    interactions.csv   user_id,item_id,timestamp,rating; per user in time order
    attributes.jsonl   ground truth per item: every attribute, plus which are image-/text-only
    users.jsonl        ground truth per user: {"id", "prefers": {attribute: value}}
    meta.json          config, counts, attribute values, generator version; written LAST, so a
                       folder without it is an unfinished catalogue
    .mllmrec-synthetic marker written FIRST, so an unfinished folder can be regenerated over
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from mllmrec import __version__
from mllmrec.artifacts import WriterLock, contents, stage_of, write_manifest
from mllmrec.config import ConfigError, to_dict
from mllmrec.datasets.config import SyntheticConfig
from mllmrec.fsutil import atomic_write_text

GENERATOR = "mllmrec.datasets.synthetic"
GENERATOR_VERSION = 1
STAGE = "synthetic"
MARKER = ".mllmrec-synthetic"  # folder marker of earlier releases (now the manifest); still recognised
IMAGES_DIR = "images"
FILES = {
    "items": "items.jsonl",
    "attributes": "attributes.jsonl",
    "users": "users.jsonl",
    "interactions": "interactions.csv",
    "meta": "meta.json",
}

# Image-only attributes: drawn, never written.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (250, 140, 0),
    "yellow": (235, 205, 0),
    "green": (30, 160, 50),
    "cyan": (0, 185, 210),
    "blue": (30, 60, 215),
    "purple": (135, 45, 175),
}
SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross", "hexagon")

# Text-only attributes: written, never drawn. Value -> the words that may stand for it in a title.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "bag": ("bag", "tote", "satchel"),
    "shoe": ("shoe", "sneaker", "loafer"),
    "lamp": ("lamp", "desk lamp", "table lamp"),
    "mug": ("mug", "cup", "coffee mug"),
    "chair": ("chair", "stool", "armchair"),
    "watch": ("watch", "wristwatch", "timepiece"),
    "jacket": ("jacket", "coat", "blazer"),
    "notebook": ("notebook", "journal", "sketchbook"),
}
MATERIALS: dict[str, tuple[str, ...]] = {
    "leather": ("leather",),
    "wood": ("wood", "wooden"),
    "ceramic": ("ceramic",),
    "cotton": ("cotton",),
    "steel": ("steel", "stainless steel"),
    "glass": ("glass",),
    "wool": ("wool", "woollen"),
    "bamboo": ("bamboo",),
}

IMAGE_ONLY: dict[str, tuple[str, ...]] = {"color": tuple(COLORS), "shape": SHAPES}
TEXT_ONLY: dict[str, tuple[str, ...]] = {"category": tuple(CATEGORIES), "material": tuple(MATERIALS)}
ATTRIBUTES = {**IMAGE_ONLY, **TEXT_ONLY}
BOOST = {"color": 8.0, "category": 8.0}  # the user-preferred attributes and their weight factors
POPULARITY_EXPONENT = 0.7
MIN_INTERACTIONS = 5
FIRST_TIMESTAMP = 1_600_000_000  # 2020-09-13, seconds since the epoch

# Filler text: styles start with a consonant so "A {style} ..." reads right; nothing here may
# name a colour or a shape (checked on every generated text by _check_no_image_words).
STYLES = ("classic", "modern", "minimalist", "vintage", "sleek", "rustic", "compact", "casual", "timeless")
SUFFIXES = ("cut", "design", "edition", "line", "series", "make")
TITLES = (
    "{Mat} {noun}, {style} {suffix}",
    "{Style} {mat} {noun}",
    "{Style} {noun} in {material}",
    "{Mat} {noun} ({style} {suffix})",
)
OPENERS = (
    "A {style} {noun} made from {material}, {benefit}.",
    "This {mat} {noun} is {benefit}.",
    "Crafted in {material}, this {style} {noun} is {benefit}.",
    "Our {style} take on the {noun}, in {material} and {benefit}.",
)
BENEFITS = (
    "built for everyday use",
    "easy to care for",
    "designed to last for years",
    "finished by hand",
    "made in small batches",
    "simple to pair with what you already own",
    "a dependable pick for daily routines",
)
CLOSINGS = (
    "",
    "Ships within two days.",
    "Backed by a one-year warranty.",
    "A thoughtful gift.",
    "Limited stock.",
    "Care instructions included.",
)
_IMAGE_WORDS = re.compile(
    r"\b(" + "|".join([*COLORS, *SHAPES, "colou?r", "shape", "round", "circular", "triangular"]) + r")\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class SyntheticSummary:
    """Where a synthetic catalogue was written and how big it is."""

    out: Path
    items: Path
    images: Path
    interactions: Path
    attributes: Path
    users: Path
    meta: Path
    n_items: int
    n_users: int
    n_interactions: int


def make_synthetic(cfg: SyntheticConfig) -> SyntheticSummary:
    """Write a synthetic catalogue into `cfg.out` (empty, new, or a previous synthetic output)."""
    _validate(cfg)
    with WriterLock(cfg.out, stage=STAGE):
        return _generate(cfg, Path(cfg.out))


def _generate(cfg: SyntheticConfig, out: Path) -> SyntheticSummary:
    _prepare_out(out)
    item_seq, image_seq, user_seq = np.random.SeedSequence(cfg.seed).spawn(3)
    item_rng, image_rng, user_rng = (np.random.default_rng(s) for s in (item_seq, image_seq, user_seq))

    ids = [f"i{k:0{max(4, len(str(cfg.n_items - 1)))}d}" for k in range(cfg.n_items)]
    attrs = {name: _balanced(values, cfg.n_items, item_rng) for name, values in ATTRIBUTES.items()}
    popularity = (item_rng.permutation(cfg.n_items) + 1.0) ** -POPULARITY_EXPONENT
    texts = [_describe(attrs["category"][k], attrs["material"][k], item_rng) for k in range(cfg.n_items)]

    for k, item_id in enumerate(ids):
        image = render_image(attrs["color"][k], attrs["shape"][k], cfg.image_size, image_rng)
        image.save(out / IMAGES_DIR / f"{item_id}.png", format="PNG")
    _write_jsonl(
        out / FILES["items"],
        [
            {"id": i, "title": t, "description": d, "image": f"{IMAGES_DIR}/{i}.png"}
            for i, (t, d) in zip(ids, texts, strict=True)
        ],
    )
    _write_jsonl(
        out / FILES["attributes"],
        [
            {
                "id": i,
                **{a: v[k] for a, v in attrs.items()},
                "image_only": list(IMAGE_ONLY),
                "text_only": list(TEXT_ONLY),
            }
            for k, i in enumerate(ids)
        ],
    )
    prefs, rows = _simulate_users(cfg, ids, attrs, popularity, user_rng)
    _write_jsonl(out / FILES["users"], prefs)
    _write_interactions(out / FILES["interactions"], rows)
    atomic_write_text(out / FILES["meta"], json.dumps(_meta(cfg, len(rows)), indent=2) + "\n")
    write_manifest(out, {"status": "complete", "generator": GENERATOR, "meta": FILES["meta"]}, stage=STAGE)
    return SyntheticSummary(
        out=out,
        items=out / FILES["items"],
        images=out / IMAGES_DIR,
        interactions=out / FILES["interactions"],
        attributes=out / FILES["attributes"],
        users=out / FILES["users"],
        meta=out / FILES["meta"],
        n_items=cfg.n_items,
        n_users=cfg.n_users,
        n_interactions=len(rows),
    )


def run(cfg: SyntheticConfig, command: list[str] | None = None) -> SyntheticSummary:
    """`mllmrec make-synthetic`: write the catalogue and print what was written where."""
    s = make_synthetic(cfg)
    print(f"wrote a synthetic catalogue to {s.out}")
    print(
        f"  {s.n_items} items ({s.items.name}, {cfg.image_size}x{cfg.image_size} images in {s.images.name}/)"
    )
    print(f"  {s.n_users} users, {s.n_interactions} interactions ({s.interactions.name})")
    print(f"  image-only attributes: {', '.join(IMAGE_ONLY)}; text-only: {', '.join(TEXT_ONLY)}")
    print(f"  users prefer: {', '.join(BOOST)} (ground truth in {s.attributes.name}, {s.users.name})")
    return s


def render_image(color: str, shape: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One item image: a `color` `shape` with a small random offset, scale and tilt on a light grey,
    lightly noisy background. Drawn at 4x and box-downsampled so edges are smooth."""
    scale = 4
    big = size * scale
    grey = int(rng.integers(225, 246))
    canvas = Image.new("RGB", (big, big), (grey, grey, grey))
    radius = float(rng.uniform(0.28, 0.38)) * big
    max_offset = max(0.0, min(0.1 * big, big / 2 - radius - 2 * scale))
    cx, cy = big / 2 + rng.uniform(-max_offset, max_offset, size=2)
    tilt = math.radians(float(rng.uniform(-10.0, 10.0)))
    draw = ImageDraw.Draw(canvas)
    if shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=COLORS[color])
    else:
        cos, sin = math.cos(tilt), math.sin(tilt)
        points = [
            (cx + radius * (x * cos - y * sin), cy + radius * (x * sin + y * cos)) for x, y in _outline(shape)
        ]
        draw.polygon(points, fill=COLORS[color])
    small = np.asarray(canvas.resize((size, size), Image.Resampling.BOX), dtype=np.float64)
    noisy = small + rng.normal(0.0, 4.0, size=small.shape)  # [size, size, 3]
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8), mode="RGB")


def _outline(shape: str) -> list[tuple[float, float]]:
    """Polygon of `shape` in unit coordinates (y points down, top vertex first)."""

    def ring(radii: tuple[float, ...], n: int) -> list[tuple[float, float]]:
        angles = [-math.pi / 2 + 2 * math.pi * k / n for k in range(n)]
        return [
            (radii[k % len(radii)] * math.cos(a), radii[k % len(radii)] * math.sin(a))
            for k, a in enumerate(angles)
        ]

    w = 0.34  # half-width of the cross's arms
    outlines = {
        "square": [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)],
        "triangle": ring((1.0,), 3),
        "star": ring((1.0, 0.45), 10),
        "diamond": [(0.0, -1.0), (0.62, 0.0), (0.0, 1.0), (-0.62, 0.0)],
        "hexagon": ring((1.0,), 6),
        "cross": [
            (-w, -1),
            (w, -1),
            (w, -w),
            (1, -w),
            (1, w),
            (w, w),
            (w, 1),
            (-w, 1),
            (-w, w),
            (-1, w),
            (-1, -w),
            (-w, -w),
        ],
    }
    return outlines[shape]


def _describe(category: str, material: str, rng: np.random.Generator) -> tuple[str, str]:
    """Product-like title and description naming the category and material, never a colour or shape."""

    def pick(options: tuple[str, ...]) -> str:
        return options[int(rng.integers(len(options)))]

    style, mat = pick(STYLES), pick(MATERIALS[material])
    words = {
        "noun": pick(CATEGORIES[category]),
        "style": style,
        "Style": style.capitalize(),
        "mat": mat,
        "Mat": mat.capitalize(),
        "material": material,
        "suffix": pick(SUFFIXES),
        "benefit": pick(BENEFITS),
    }
    title = pick(TITLES).format(**words)
    description = " ".join(p for p in (pick(OPENERS).format(**words), pick(CLOSINGS)) if p)
    _check_no_image_words(title + " " + description)
    return title, description


def _check_no_image_words(text: str) -> None:
    """Guard the split: an image-only attribute leaking into the text would void the benchmark."""
    found = _IMAGE_WORDS.search(text)
    if found:
        raise RuntimeError(
            f"synthetic generator bug: text names an image attribute ({found.group()!r}): {text!r}"
        )


def _balanced(values: tuple[str, ...], n: int, rng: np.random.Generator) -> list[str]:
    """n values, each used n/len(values) times (±1), in random order: no value is starved."""
    return [values[k] for k in rng.permutation(np.resize(np.arange(len(values)), n))]


def _simulate_users(
    cfg: SyntheticConfig,
    ids: list[str],
    attrs: dict[str, list[str]],
    popularity: np.ndarray,
    rng: np.random.Generator,
) -> tuple[list[dict[str, Any]], list[tuple[str, str, int, int]]]:
    """Preferences and interaction rows (user, item, timestamp, rating) for every user.

    Weighted sampling without replacement by Gumbel top-k: the k largest log w_i + Gumbel_i are a
    draw of k items one after another with p ∝ w, in draw order (Efraimidis-Spirakis).
    """
    width = max(3, len(str(cfg.n_users - 1)))
    values = {a: np.array(attrs[a]) for a in BOOST}
    log_pop = np.log(popularity)  # [n_items]
    prefs: list[dict[str, Any]] = []
    rows: list[tuple[str, str, int, int]] = []
    for u in range(cfg.n_users):
        user_id = f"u{u:0{width}d}"
        liked = {a: ATTRIBUTES[a][int(rng.integers(len(ATTRIBUTES[a])))] for a in BOOST}
        match = {a: values[a] == liked[a] for a in BOOST}  # [n_items] bool each
        log_w = log_pop + sum(np.log(BOOST[a]) * match[a] for a in BOOST)
        k = min(cfg.n_items, max(MIN_INTERACTIONS, int(rng.poisson(cfg.interactions_per_user))))
        keys = log_w + rng.gumbel(size=cfg.n_items)
        chosen = np.argsort(-keys, kind="stable")[:k]
        times = (
            FIRST_TIMESTAMP
            + int(rng.integers(0, 365 * 86400))
            + np.cumsum(rng.integers(60, 3 * 86400, size=k))
        )
        n_match = sum(match[a][chosen].astype(float) for a in BOOST)  # [k]
        ratings = np.clip(np.rint(2.6 + 0.9 * n_match + rng.normal(0.0, 0.9, size=k)), 1, 5).astype(int)
        prefs.append({"id": user_id, "prefers": liked})
        rows.extend((user_id, ids[i], int(t), int(r)) for i, t, r in zip(chosen, times, ratings, strict=True))
    return prefs, rows


def _meta(cfg: SyntheticConfig, n_interactions: int) -> dict[str, Any]:
    """meta.json: enough to tell what was generated and how (the output folder is not part of it)."""
    config = {k: v for k, v in to_dict(cfg).items() if k != "out"}
    return {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "mllmrec_version": __version__,
        "config": config,
        "counts": {"items": cfg.n_items, "users": cfg.n_users, "interactions": n_interactions},
        "files": {**{k: v for k, v in FILES.items() if k != "meta"}, "images": f"{IMAGES_DIR}/<id>.png"},
        "attributes": {
            "image_only": list(IMAGE_ONLY),
            "text_only": list(TEXT_ONLY),
            "values": {a: list(v) for a, v in ATTRIBUTES.items()},
        },
        "user_preferences": {"attributes": list(BOOST), "boost": BOOST},
        "popularity": {"kind": "zipf", "exponent": POPULARITY_EXPONENT},
    }


def _validate(cfg: SyntheticConfig) -> None:
    for name in ("n_items", "n_users", "interactions_per_user"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.image_size < 16:
        raise ConfigError(f"image_size must be >= 16 so the shapes stay recognisable, got {cfg.image_size}")


def _prepare_out(out: Path) -> None:
    """Make `out` ready: refuse foreign content, clear a previous synthetic output, mark it ours.

    The folder is marked first (a `preparing` manifest, mllmrec.artifacts), and meta.json removed
    before the data files, so a crash while regenerating leaves a folder that is still ours and
    never an old meta.json beside half-written new files. Files this generator did not write (a
    store someone embedded into a subfolder, notes) are left alone: the generator replaces its own
    files, not the folder.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out: {out} exists and is not a folder")
    if contents(out):
        if not _is_synthetic_output(out):
            raise ConfigError(
                f"out: {out} is not empty and is not a synthetic catalogue written by mllmrec "
                f"(no manifest or {FILES['meta']} from {GENERATOR}); choose an empty or new folder"
            )
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, {"status": "preparing", "generator": GENERATOR}, stage=STAGE)
    if contents(out):
        for name in [FILES["meta"], *(v for k, v in FILES.items() if k != "meta")]:
            # Also temporaries of a killed run (fsutil.temp_name: `.NAME.tmp-PID`, any PID).
            for path in (out / name, *out.glob(f".{name}.tmp-*")):
                path.unlink(missing_ok=True)
        if (out / IMAGES_DIR).is_dir():
            for path in (out / IMAGES_DIR).iterdir():
                if re.fullmatch(r"i\d+\.png", path.name):
                    path.unlink()
        (out / MARKER).unlink(missing_ok=True)  # the marker of releases before the manifest
    (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)


def _is_synthetic_output(out: Path) -> bool:
    if stage_of(out) == STAGE or (out / MARKER).is_file():
        return True
    try:
        meta = json.loads((out / FILES["meta"]).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("generator") == GENERATOR


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def _write_interactions(path: Path, rows: list[tuple[str, str, int, int]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("user_id", "item_id", "timestamp", "rating"))
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())
