"""ID and content recommenders: evaluation baselines and the student models that distillation trains.

Every model follows the recsys contract `loss(batch)`, `score(users, items)`, `full_sort(users)`
(see `models`); `train_bpr` fits the trainable ones with BPR and early stopping on validation.
"""

from __future__ import annotations

from mllmrec.recsys.graph import RecsysError, bipartite_adjacency, check_interactions, normalized_adjacency
from mllmrec.recsys.models import MF, VBPR, ContentKNN, LightGCN, Popularity, RecModel, bpr_loss, l2_reg
from mllmrec.recsys.trainer import NegativeSampler, TrainResult, train_bpr

__all__ = [
    "MF",
    "VBPR",
    "ContentKNN",
    "LightGCN",
    "NegativeSampler",
    "Popularity",
    "RecModel",
    "RecsysError",
    "TrainResult",
    "bipartite_adjacency",
    "bpr_loss",
    "check_interactions",
    "l2_reg",
    "normalized_adjacency",
    "train_bpr",
]
