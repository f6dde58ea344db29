"""What an evaluation could not use, stated in its results instead of left in a work folder (issue
12 item 4): items of the split without a vector in a content method's store (they would be scored
from zero vectors) and interactions the split dropped (held-out pairs whose item has no training
interaction, items left without any, duplicates, the k-core filter).

A content method refuses to run when more than `max_missing_share` of the split's items lack a
vector: its numbers would mostly measure the zero-vector fill, not the content.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllmrec.errors import MllmrecError


class CoverageError(MllmrecError):
    """A content method whose store misses too many of the split's items."""


@dataclass(frozen=True)
class Coverage:
    """How many of a split's items a store has vectors for."""

    items: int
    missing: tuple[str, ...]

    @property
    def share(self) -> float:
        return len(self.missing) / self.items if self.items else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "missing": len(self.missing),
            "share": self.share,
            "examples": list(self.missing[:5]),
        }


def coverage(store_dir: str | Path, item_ids: list[str]) -> Coverage:
    """The items of `item_ids` that the store at `store_dir` has no row for (rejected at embed time,
    or absent from the catalogue the store was made from)."""
    from mllmrec.store import EmbeddingStore

    have = set(EmbeddingStore.open(store_dir).ids)
    return Coverage(len(item_ids), tuple(i for i in item_ids if i not in have))


def refuse_if_sparse(cov: Coverage, limit: float, method: str, features: str) -> None:
    """CoverageError when more than `limit` of the items lack vectors, saying how to go on anyway."""
    if cov.share > limit:
        raise CoverageError(
            f"method {method}: {len(cov.missing)} of {cov.items} items ({cov.share:.1%}) have no vector in "
            f"{features} (e.g. {', '.join(cov.missing[:3])}), over max_missing_share {limit:g}; embed them "
            "(see the store's manifest for why they are missing) or raise max_missing_share in the config "
            "to score them from zero vectors"
        )


def dropped(split: Any, log_rows: int) -> dict[str, int]:
    """Interactions of the log (`log_rows` rows) that no part of the split holds, by reason (and the
    items removed because they were left without a training interaction)."""
    meta = split.meta
    held = meta.get("dropped_without_train") or {}
    out = {
        "kcore_removed": log_rows - int(meta.get("input_rows", log_rows)),
        "duplicates_folded": int(meta.get("duplicates_folded", 0)),
        "held_out_without_train": int(sum(held.values())),
        "items_without_train_removed": int(meta.get("items_dropped", 0)),
    }
    return out | {
        "interactions": out["kcore_removed"] + out["duplicates_folded"] + out["held_out_without_train"]
    }
