"""Shared fixtures for the train stage: a synthetic catalogue with mined pairs."""

from __future__ import annotations

from pathlib import Path

import pytest

from mllmrec.config import PairsConfig, SyntheticConfig


def mine(tmp: Path, n_items: int = 60, n_users: int = 80, **pairs_kw) -> tuple[Path, Path]:
    """(items.jsonl, pairs dir) for a small synthetic catalogue."""
    from mllmrec.datasets.synthetic import make_synthetic
    from mllmrec.train.pairs import run_pairs

    data = make_synthetic(SyntheticConfig(out=str(tmp / "data"), n_items=n_items, n_users=n_users))
    kw = {"valid_share": 0.2, "test_share": 0.1, "top_t": 5, **pairs_kw}
    run_pairs(PairsConfig(interactions=str(data.interactions), out=str(tmp / "pairs"), catalog=str(data.items), **kw))
    return Path(data.items), tmp / "pairs"


@pytest.fixture(scope="module")
def synthetic_pairs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return mine(tmp_path_factory.mktemp("pairs"))
