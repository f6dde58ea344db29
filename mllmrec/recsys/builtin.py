"""Registry rows (see `registry`) for the models in `models`: their hyper-parameters and builders.

Hyper-parameter names are shared across models (`dim`, `reg`, `layers`), so one grid entry reads
the same whichever model it names.
"""

from __future__ import annotations

from dataclasses import dataclass

import scipy.sparse as sp
from torch import Tensor

from mllmrec.config import Checked, ConfigError, opt
from mllmrec.recsys.graph import normalized_adjacency
from mllmrec.recsys.models import MF as MFModel
from mllmrec.recsys.models import VBPR as VBPRModel
from mllmrec.recsys.models import ContentKNN, LightGCN, Popularity, RecModel
from mllmrec.recsys.registry import ModelSpec


@dataclass(frozen=True, kw_only=True)
class NoParams(Checked):
    """A model without hyper-parameters."""


@dataclass(frozen=True, kw_only=True)
class MFParams(Checked):
    # MF's defaults were chosen on the Office split's validation (recsys.models.MF's docstring):
    # the former reg 1e-4 / init 0.1 under-fit (valid R@20 0.065 -> 0.117).
    dim: int = opt(64, "Embedding dimension of users and items.")
    reg: float = opt(0.03, "L2 weight on the batch's embedding rows.")
    init_std: float = opt(0.01, "Standard deviation of the normal initialisation.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dim < 1 or self.reg < 0 or self.init_std <= 0:
            raise ConfigError(
                f"need dim >= 1, reg >= 0, init_std > 0; got {self.dim}, {self.reg}, {self.init_std}"
            )


@dataclass(frozen=True, kw_only=True)
class LightGCNParams(MFParams):
    reg: float = opt(1e-4, "L2 weight on the batch's layer-0 embedding rows.")
    init_std: float = opt(0.1, "Standard deviation of the normal initialisation (propagation smooths it).")
    layers: int = opt(2, "Graph propagation layers K over the normalised user-item graph.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layers < 0:
            raise ConfigError(f"layers must be >= 0, got {self.layers}")


@dataclass(frozen=True, kw_only=True)
class VBPRParams(MFParams):
    reg: float = opt(1e-4, "L2 weight on the batch's embedding rows (not re-tuned with MF's).")
    init_std: float = opt(0.1, "Standard deviation of the normal initialisation (not re-tuned with MF's).")
    visual_dim: int | None = opt(None, "Dimension of the projected content features; default: dim.")


def _popularity(p: NoParams, train: sp.csr_matrix, features: Tensor | None) -> RecModel:
    return Popularity(train)


def _mf(p: MFParams, train: sp.csr_matrix, features: Tensor | None) -> RecModel:
    return MFModel(*train.shape, p.dim, reg=p.reg, init_std=p.init_std)


def _lightgcn(p: LightGCNParams, train: sp.csr_matrix, features: Tensor | None) -> RecModel:
    return LightGCN(
        *train.shape, p.dim, p.layers, normalized_adjacency(train), reg=p.reg, init_std=p.init_std
    )


def _content_knn(p: NoParams, train: sp.csr_matrix, features: Tensor | None) -> RecModel:
    assert features is not None  # the registry checks `features=True` rows
    return ContentKNN(features, train)


def _vbpr(p: VBPRParams, train: sp.csr_matrix, features: Tensor | None) -> RecModel:
    assert features is not None
    return VBPRModel(*train.shape, p.dim, features, visual_dim=p.visual_dim, reg=p.reg, init_std=p.init_std)


POPULARITY = ModelSpec(
    NoParams, _popularity, "Items ranked by training interactions, the same for every user."
)
MF = ModelSpec(MFParams, _mf, "Matrix factorisation trained with BPR.", student=True)
LIGHTGCN = ModelSpec(
    LightGCNParams, _lightgcn, "LightGCN: MF smoothed over the user-item graph, BPR.", student=True
)
CONTENT_KNN = ModelSpec(
    NoParams, _content_knn, "Cosine between item features and the user's mean profile.", features=True
)
VBPR = ModelSpec(
    VBPRParams, _vbpr, "VBPR: BPR-MF plus a learned projection of item content features.", features=True
)
