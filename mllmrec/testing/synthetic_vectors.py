"""Informative item vectors for the synthetic catalogue, built from its ground-truth attributes.

A stand-in for what a good multimodal LLM would give (the tiny random test models give noise), so
tests, the evaluation grid and the serving benchmark can check that a teacher and the distillation
actually use content. Each attribute value gets a fixed random code vector c ~ N(0, I/d) (norm ≈ 1)
and each item's channels are sums of its codes plus Gaussian noise of norm ≈ `noise`:

    visual = c_colour + c_shape + ε_v                (the image-only attributes)
    text   = c_category + c_material + ε_t           (the text-only attributes)
    mm     = visual + text − ε_v − ε_t + ε_m          (everything, own noise)

`write_attribute_store` writes them as a complete embedding store (channels mm, visual, text).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mllmrec import __version__


def attribute_vectors(
    attributes: list[dict], dim: int = 32, noise: float = 1.0, seed: int = 0
) -> dict[str, np.ndarray]:
    """{mm, visual, text: [n, dim] float32} for attribute rows {"color", "shape", "category", "material"}."""
    rng = np.random.default_rng([seed, 11])
    codes: dict[tuple[str, str], np.ndarray] = {}

    def code(attr: str, value: str) -> np.ndarray:
        if (attr, value) not in codes:
            codes[(attr, value)] = rng.normal(0.0, dim**-0.5, dim)
        return codes[(attr, value)]

    for attr in ("color", "shape", "category", "material"):  # fixed creation order: same codes every call
        for value in sorted({row[attr] for row in attributes}):
            code(attr, value)
    visual = np.stack([code("color", a["color"]) + code("shape", a["shape"]) for a in attributes])  # [n, d]
    text = np.stack([code("category", a["category"]) + code("material", a["material"]) for a in attributes])
    scale = noise * dim**-0.5
    eps = {c: rng.normal(0.0, scale, visual.shape) for c in ("visual", "text", "mm")}
    return {
        "mm": (visual + text + eps["mm"]).astype(np.float32),
        "visual": (visual + eps["visual"]).astype(np.float32),
        "text": (text + eps["text"]).astype(np.float32),
    }


def write_attribute_store(
    synthetic_dir: str | Path,
    out: str | Path,
    *,
    dim: int = 32,
    noise: float = 1.0,
    seed: int = 0,
    skip: set[str] | None = None,
) -> Path:
    """Write a complete store (as `mllmrec embed` would) from `synthetic_dir`/attributes.jsonl.

    `skip`: item ids to leave out of the store (to test items the log has but the store lacks).
    """
    from mllmrec.artifacts import write_manifest
    from mllmrec.store import write_vectors

    src, out = Path(synthetic_dir), Path(out)
    rows = [json.loads(line) for line in (src / "attributes.jsonl").read_text().splitlines() if line.strip()]
    titles = {
        json.loads(line)["id"]: json.loads(line)["title"]
        for line in (src / "items.jsonl").read_text().splitlines()
        if line.strip()
    }
    rows = [r for r in rows if r["id"] not in (skip or set())]
    vectors = attribute_vectors(rows, dim, noise, seed)
    out.mkdir(parents=True, exist_ok=True)
    ids = [r["id"] for r in rows]
    write_vectors(out, "safetensors", ids, [titles.get(i, "") for i in ids], vectors)
    identity = {
        "backbone": {"synthetic_attributes": {"dim": dim, "noise": noise, "seed": seed}},
        "prompt": None,
    }
    write_manifest(
        out,
        {
            "stage": "embed",
            "status": "complete",
            "mllmrec_version": __version__,
            "completed": "synthetic",
            "identity": identity,
            "config": {"format": "safetensors"},
            "counts": {"input": len(ids), "embedded": len(ids), "rejected": 0, "text_only": 0},
            "channels": list(vectors),
            "dims": {c: dim for c in vectors},
            "rejected": [],
            "notes": [
                "vectors built from the synthetic catalogue's true attributes plus noise, not by a model"
            ],
        },
    )
    return out
