"""A small on-disk catalogue (jsonl + PNG images) built in code, for tests and examples."""

from __future__ import annotations

from pathlib import Path


def write_small_catalog(
    root: Path, n: int = 12, *, seed: int = 0, name: str = "items.jsonl", title_prefix: str = "item"
) -> Path:
    """A small catalogue with PNG images of varied colours/sizes and texts of varied length."""
    import json
    import random

    from PIL import Image

    rng = random.Random(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        size = (32 + 16 * (i % 4), 32 + 8 * (i % 3))
        Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256))).save(
            root / "images" / f"{i}.png"
        )
        words = " ".join(
            rng.choice(["red", "mug", "lamp", "wool", "modern", "chair"]) for _ in range(1 + 3 * (i % 5))
        )
        rows.append(
            {
                "id": f"x{i}",
                "title": f"{title_prefix} {i} {words}",
                "description": words * (1 + i % 3),
                "image": f"images/{i}.png",
            }
        )
    path = root / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
