"""ID and content recommenders: evaluation baselines and the student models that distillation trains.

    models.py     the recsys contract `loss(batch)`, `score(users, items)`, `full_sort(users)` and the
                  models: Popularity, MF, LightGCN, VBPR, ContentKNN
    registry.py   the one table of models (name -> builder with declared hyper-parameters), used by
                  the eval grid, distillation and the tests; builtin.py holds the rows of models.py
    graph.py      the normalised user-item graph LightGCN propagates over
    trainer.py    `train_bpr`: BPR with early stopping on validation

Importing this package imports none of them (names resolve on first use), so reading the registry's
names needs no torch.
"""

from __future__ import annotations

from mllmrec.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        ["RecsysError", "bipartite_adjacency", "check_interactions", "normalized_adjacency"], "graph"
    ),
    **dict.fromkeys(
        ["MF", "VBPR", "ContentKNN", "LightGCN", "Popularity", "RecModel", "bpr_loss", "l2_reg"], "models"
    ),
    **dict.fromkeys(["NegativeSampler", "TrainResult", "train_bpr"], "trainer"),
    **dict.fromkeys(["MODELS", "ModelSpec", "build_model"], "registry"),
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
