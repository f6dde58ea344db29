"""The user–item bipartite graph that LightGCN propagates over.

With R the binary interaction matrix [U, I], the graph over the U + I nodes (users first, then
items: item i is node U + i) has the adjacency

    A = [[0,  R],
         [Rᵀ, 0]]                        [(U+I), (U+I)], symmetric

and LightGCN uses its symmetric normalisation

    Â = D^{-1/2} A D^{-1/2},   D = diag(A·1),   Â[u, U+i] = R[u, i] / sqrt(|N_u| · |N_i|)

A node without edges (a user with no training items, an item nobody interacted with) has degree
0; its D^{-1/2} entry is taken as 0, so its row and column of Â stay zero instead of NaN.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from mllmrec.errors import MllmrecError


class RecsysError(MllmrecError, ValueError):
    """Bad interaction data, shapes that do not match, or a model asked for something it cannot do."""


def check_interactions(train: sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    """Return `train` as a binary float32 CSR matrix [U, I]; refuse anything that is not one.

    Any stored positive value counts as an interaction (1); explicit zeros are dropped; negative
    values are an error (they usually mean ratings were passed where interactions were expected).
    """
    if not sp.issparse(train) or train.ndim != 2:
        raise RecsysError(
            f"expected a 2-D scipy.sparse interaction matrix [n_users, n_items], got {type(train)!r}"
        )
    csr = sp.csr_matrix(train, dtype=np.float32, copy=True)  # copy: the caller's matrix is never changed
    if csr.nnz and float(csr.data.min()) < 0:
        raise RecsysError("the interaction matrix has negative entries; pass binary (0/1) interactions")
    csr.sum_duplicates()
    csr.eliminate_zeros()
    csr.data[:] = 1.0
    return csr


def bipartite_adjacency(train: sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    """A = [[0, R], [Rᵀ, 0]] as scipy CSR [(U+I), (U+I)], users first then items."""
    r = check_interactions(train)  # [U, I]
    return sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)  # [(U+I), (U+I)]


def normalized_adjacency(train: sp.spmatrix | sp.sparray) -> torch.Tensor:
    """Â = D^{-1/2} A D^{-1/2} as a coalesced float32 torch sparse COO tensor [(U+I), (U+I)].

    Zero-degree nodes get D^{-1/2} = 0 (rows and columns of zeros, never NaN or inf).
    """
    n_users, n_items = train.shape
    a = bipartite_adjacency(train).tocoo()  # [(U+I), (U+I)]
    degree = np.asarray(a.sum(axis=1), dtype=np.float64).ravel()  # [(U+I)]
    inv_sqrt = np.zeros_like(degree)  # [(U+I)]
    np.divide(1.0, np.sqrt(degree), out=inv_sqrt, where=degree > 0)
    values = (inv_sqrt[a.row] * a.data * inv_sqrt[a.col]).astype(np.float32)  # [nnz]
    indices = torch.from_numpy(np.vstack([a.row, a.col]).astype(np.int64))  # [2, nnz]
    n = n_users + n_items
    values_t = torch.from_numpy(values)  # [nnz]
    return torch.sparse_coo_tensor(indices, values_t, (n, n), check_invariants=True).coalesce()
