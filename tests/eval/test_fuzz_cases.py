"""The fuzz script's inputs (eval/fuzz_cases.py) without running any command: the catalogue holds
every kind of bad item, and each damage really changes its artefact copy."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "eval"))

import fuzz_cases as F  # noqa: E402


def test_fuzz_catalogue_holds_every_kind_of_bad_item(tmp_path):
    from mllmrec.catalog import load_catalog
    from mllmrec.catalog.config import CatalogSpec
    from mllmrec.testing.catalog import write_small_catalog

    write_small_catalog(tmp_path / "d", n=3)  # items.jsonl + images/
    cat = F.write_fuzz_catalogue(tmp_path / "d")
    ids = [json.loads(line)["id"] for line in cat.read_text().splitlines()]
    for kind in (
        "img-mode-CMYK",
        "img-mode-I16",
        "img-wide-8000x20",
        "img-truncated",
        "img-huge-header",
        "path-url",
        "path-outside",
        "path-directory",
        "text-1mb",
        "text-lone-surrogate",
    ):
        assert kind in ids
    loaded = load_catalog(CatalogSpec(catalog=str(cat)))
    assert len(loaded.items) + len(loaded.rejected) == F.catalogue_rows(cat)  # every row accounted for


def test_each_damage_changes_its_copy(tmp_path):
    import numpy as np

    from mllmrec.testing.stores import write_array_store

    good = write_array_store(tmp_path / "s", [f"i{n}" for n in range(8)], {"mm": np.ones((8, 4), np.float32)})
    copies = F.damaged_copies("store", Path(good), tmp_path / "bad")
    assert set(copies) == set(F.DAMAGE["store"])
    for d in copies.values():
        changed = [
            p.name
            for p in Path(good).iterdir()
            if p.is_file() and (not (d / p.name).exists() or (d / p.name).read_bytes() != p.read_bytes())
        ]
        assert changed, d
