"""EASE (Steck 2019, "Embarrassingly shallow autoencoders"): a closed-form item–item model; our code.

With X the binary training matrix [U, I]:

    B = argmin_B ‖X − XB‖² + λ‖B‖²  subject to diag(B) = 0
      = −P · diag(1 / diag(P)) with its diagonal set to 0,   P = (XᵀX + λI)⁻¹     [I, I]
    s(u, i) = X[u] · B[:, i]

An item without training interactions has an all-zero column in X, so its column of B is zero:
EASE cannot score it (content has to). B is dense in the number of items (the inverse of an I×I
matrix), so the model refuses catalogues above `MAX_ITEMS`. It is a registry baseline and the
collaborative channel blended into the distillation teacher (`recsys.cf_blend`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from mllmrec.config import Checked, ConfigError, opt
from mllmrec.recsys.graph import RecsysError, check_interactions
from mllmrec.recsys.models import RecModel
from mllmrec.recsys.registry import ModelSpec

# 20,000 items: the float64 Gram matrix and its inverse take 3.2 GB each.
MAX_ITEMS = 20_000
# Up to this many users x items the score matrix X·B is computed once and kept (float32: 200 MB):
# distillation asks for the same users' scores every batch, and a sparse product per batch costs
# seconds per epoch on a dense log such as MovieLens.
DENSE_SCORES_MAX = 50_000_000


def ease_weights(train: sp.spmatrix | sp.sparray, l2: float) -> np.ndarray:
    """B [I, I] (float32) for the binary interactions `train` [U, I] and the ridge weight `l2`."""
    r = check_interactions(train)
    n = r.shape[1]
    if n > MAX_ITEMS:
        raise RecsysError(
            f"EASE needs a dense {n}x{n} item matrix; {n} items is more than its limit of {MAX_ITEMS}"
        )
    if not l2 > 0:
        raise RecsysError(f"EASE's l2 must be > 0, got {l2}")
    x = r.astype(np.float64)
    gram = (x.T @ x).toarray()  # [I, I]
    gram[np.diag_indices(n)] += l2
    p = np.linalg.inv(gram)  # [I, I]
    b = p / (-np.diag(p))  # column j divided by −P_jj
    b[np.diag_indices(n)] = 0.0
    return b.astype(np.float32)


class EASE(RecModel):
    """s(u, i) = X[u] · B[:, i] with B from `ease_weights`; nothing to train (best_epoch 0)."""

    def __init__(self, train: sp.spmatrix | sp.sparray, l2: float = 300.0) -> None:
        r = check_interactions(train)  # [U, I]
        super().__init__(*r.shape)
        self.l2 = float(l2)
        self._rows = r.astype(np.float32).tocsr()  # user rows, read per batch
        # Derived from (train, l2) alone: not part of a state dict.
        self.register_buffer("weights", torch.from_numpy(ease_weights(r, self.l2)), persistent=False)
        self._scores: Tensor | None = None  # X·B [U, I], made on first use (DENSE_SCORES_MAX)

    def user_scores(self, users: Tensor) -> Tensor:
        """Scores of users [b] against every item -> [b, I]."""
        if self.n_users * self.n_items <= DENSE_SCORES_MAX:
            if self._scores is None or self._scores.device != self.weights.device:
                self._scores = self._sparse_scores(torch.arange(self.n_users))  # [U, I]
            return self._scores[users.to(self._scores.device)]
        return self._sparse_scores(users)

    def _sparse_scores(self, users: Tensor) -> Tensor:
        rows = self._rows[users.cpu().numpy()].tocoo()
        x = torch.sparse_coo_tensor(
            torch.from_numpy(np.vstack([rows.row, rows.col]).astype(np.int64)),
            torch.from_numpy(rows.data),
            size=(users.shape[0], self.n_items),
            device=self.weights.device,
            check_invariants=False,  # built from a valid CSR: coordinates in range by construction
        )
        return torch.sparse.mm(x, self.weights)  # [b, I]

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        return self.user_scores(users).gather(1, items.view(-1, 1)).view(-1)  # [b]

    def full_sort(self, users: Tensor) -> Tensor:
        return self.user_scores(users)


@dataclass(frozen=True, kw_only=True)
class EASEParams(Checked):
    l2: float = opt(300.0, "Ridge weight λ of the item–item regression (larger: smoother, more popular).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.l2 > 0:
            raise ConfigError(f"l2 must be > 0, got {self.l2}")


def _ease(p: EASEParams, train: sp.csr_matrix, features: Tensor | None) -> RecModel:
    return EASE(train, l2=p.l2)


EASE_SPEC = ModelSpec(
    EASEParams,
    _ease,
    f"EASE: closed-form item-item regression on the training interactions (up to {MAX_ITEMS:,} items).",
)
