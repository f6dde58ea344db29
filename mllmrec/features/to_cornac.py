"""Cornac glue: our vectors as a Cornac modality, and our evaluation split as a Cornac eval method.

Cornac matches a modality's `ids` against the raw ids of its own data when it builds the eval
method (`FeatureModality._swap_feature`), so alignment holds as long as every item of the data is
among the ids: a data item missing from them silently keeps whatever row sits at its index. That
is why `cornac_modality` takes the data's item ids (all of them) and applies our missing-id policy
instead of passing the store's ids. cornac is imported only inside these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mllmrec.errors import MllmrecError
from mllmrec.features.provider import FeatureProvider, Policy

KINDS = ("image", "feature")


class CornacAdapterError(MllmrecError, ValueError):
    """A Cornac object cannot be built as asked."""


def cornac_modality(
    source: str | Path | FeatureProvider,
    ids: Sequence[Any],
    *,
    channel: str | None = None,
    missing: Policy = "error",
    kind: str = "image",
    store: str | Path | None = None,
) -> Any:
    """A Cornac `ImageModality` (kind='image', what VBPR reads) or `FeatureModality` (kind='feature')
    whose row k is the vector of ids[k]. The ids go to Cornac exactly as given (type included),
    because Cornac compares them with the raw ids in its own data."""
    from cornac.data import FeatureModality, ImageModality

    if kind not in KINDS:
        raise CornacAdapterError(f"kind must be image or feature, got {kind!r}")
    fp = source if isinstance(source, FeatureProvider) else FeatureProvider.open(source, store=store)
    ids = list(ids)
    features = fp.lookup(ids, channel=channel, missing=missing).vectors  # [len(ids), d]
    cls = ImageModality if kind == "image" else FeatureModality
    return cls(features=features, ids=ids)


def split_triples(split: Any, part: str) -> list[tuple[str, str, float]]:
    """(raw user id, raw item id, 1.0) for each pair of one part of an mllmrec `Split`."""
    return [(split.user_ids[u], split.item_ids[i], 1.0) for u, i in split.pairs(part).tolist()]


def cornac_eval_method(split: Any, *, seed: int = 0, **modalities: Any) -> Any:
    """Cornac `BaseMethod` over exactly the train/valid/test pairs of our `split` (so Cornac models
    are scored on the same split as mllmrec's evaluation); modalities: item_image=..., item_feature=..."""
    from cornac.eval_methods import BaseMethod

    return BaseMethod.from_splits(
        train_data=split_triples(split, "train"),
        test_data=split_triples(split, "test"),
        val_data=split_triples(split, "valid"),
        exclude_unknowns=True,
        seed=seed,
        verbose=False,
        **modalities,
    )
