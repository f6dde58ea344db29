"""Tiny offline models for every row of the backbone family table, for contract tests.

`TINY_BUILDS[family name]` maps a variant id to a function `cache_dir -> model directory`. A
family whose Encoder has structural variants (the composed model's connectors) lists each; the
contract test iterates the family table and fails for a row that has no builder here, so a new
family cannot go untested.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from mllmrec.testing import qwen
from mllmrec.testing.composed import cached_tiny_composed

Builder = Callable[[Path], Path]


def _qwen(family: str, cache_dir: Path) -> Path:
    return qwen.cached_tiny_qwen(family, cache_dir=cache_dir)


TINY_BUILDS: dict[str, dict[str, Builder]] = {
    **{fam: {fam: partial(_qwen, fam)} for fam in qwen.FAMILIES},
    "composed": {
        "composed-mlp": partial(cached_tiny_composed, connector="mlp", vision="clip"),
        "composed-qformer": partial(cached_tiny_composed, connector="qformer", vision="siglip"),
    },
}


def tiny_variants(family_names: list[str]) -> list[tuple[str, str]]:
    """[(family name, variant id)] for the given families; a family without a builder appears once
    with variant "" so a test over it can fail and say what is missing."""
    return [(name, variant) for name in family_names for variant in (TINY_BUILDS.get(name) or {"": None})]
