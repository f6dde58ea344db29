"""A synthetic catalogue with mined co-interaction pairs, for train-stage tests and benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def synthetic_pairs(
    out: str | Path, n_items: int = 60, n_users: int = 80, seed: int = 0, **pairs_kw: Any
) -> tuple[Path, Path]:
    """Write `make_synthetic` data to out/data and its pairs to out/pairs; returns (items.jsonl, pairs dir).
    Pair-mining options default to a larger validation share than the CLI (small catalogues)."""
    from mllmrec.catalog.config import PairsConfig
    from mllmrec.catalog.pairs import run_pairs
    from mllmrec.datasets.config import SyntheticConfig
    from mllmrec.datasets.synthetic import make_synthetic

    out = Path(out)
    data = make_synthetic(SyntheticConfig(out=str(out / "data"), n_items=n_items, n_users=n_users, seed=seed))
    kw = {"valid_share": 0.2, "test_share": 0.1, "top_t": 5, "seed": seed, "overwrite": True, **pairs_kw}
    run_pairs(
        PairsConfig(
            interactions=str(data.interactions), out=str(out / "pairs"), catalog=str(data.items), **kw
        )
    )
    return Path(data.items), out / "pairs"
