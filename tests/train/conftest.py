"""Shared fixture for the train stage: a synthetic catalogue with mined pairs."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def synthetic_pairs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from mllmrec.testing.pairs import synthetic_pairs as make

    return make(tmp_path_factory.mktemp("pairs"))
