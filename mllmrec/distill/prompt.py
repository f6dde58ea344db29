"""PromptMM's prompt module: soft prompts built from PCA "hard tokens" of the item features.

Hard tokens are fixed: for each feature channel c, the item features are centred and L2-normalised
(`prepare_features`), projected onto their top-k principal directions and scaled to unit variance,

    h_i = [ PCA_k(f̂_visual,i) ; PCA_k(f̂_text,i) ; … ]            [I, k·C]

and a small learned network turns them into one soft prompt per item,

    p_i = W₂ LeakyReLU(W₁ h_i + b₁)                                [I, d]

which the teacher adds to every channel's projected features. Because h_i mixes all channels, the
prompt carries cross-modal context into each modality-specific teacher; it is tuned with the
teacher and again during distillation, so the teacher's knowledge can adapt to what the student
can absorb.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from mllmrec.distill.errors import DistillError


def prepare_features(x: np.ndarray | Tensor, mean: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(f̂ [n, d], mean [d]): features centred by `mean` (their own column mean when None) and
    L2-normalised per row; an all-zero row stays zero. LLM hidden states share a large common
    direction (anisotropy); centring removes it so the differences between items dominate."""
    t = torch.as_tensor(
        np.asarray(x, dtype=np.float32) if not isinstance(x, Tensor) else x, dtype=torch.float32
    )
    if t.ndim != 2:
        raise DistillError(f"item features must be 2-D [n_items, d], got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise DistillError("item features contain NaN or inf; re-embed the store")
    mean = t.mean(0) if mean is None else mean.to(torch.float32)  # [d]
    centred = t - mean  # [n, d]
    norm = centred.norm(dim=1, keepdim=True)  # [n, 1]
    return torch.where(norm > 0, centred / norm.clamp_min(1e-12), centred), mean


def pca_hard_tokens(features: Tensor, k: int) -> Tensor:
    """[n, k'] projections of `features` [n, d] (already centred) onto their top k' = min(k, d, n)
    principal directions, each scaled to unit variance. Deterministic: eigenvectors of the d x d
    covariance in float64, each signed so its largest-magnitude loading is positive."""
    x = features.to(torch.float64)  # [n, d]
    k = min(int(k), x.shape[1], x.shape[0])
    if k < 1:
        raise DistillError(f"need at least one principal component, got k={k} for features {tuple(x.shape)}")
    x = x - x.mean(0)
    _, vecs = torch.linalg.eigh(x.T @ x)  # ascending eigenvalues; vecs [d, d]
    top = vecs[:, -k:].flip(1)  # [d, k] largest first
    sign = torch.sign(top.gather(0, top.abs().argmax(0, keepdim=True)))  # [1, k]
    h = x @ (top * torch.where(sign == 0, 1.0, sign))  # [n, k]
    std = h.std(0, keepdim=True)  # [1, k]
    return (h / torch.where(std > 0, std, 1.0)).to(torch.float32)


class PromptModule(nn.Module):
    """p_i = W₂ LeakyReLU(W₁ h_i + b₁) over fixed hard tokens h [I, k·C] (a buffer)."""

    def __init__(self, hard_tokens: Tensor, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        self.register_buffer("hard", hard_tokens.detach().to(torch.float32).clone(), persistent=False)
        hidden = hidden or dim
        self.net = nn.Sequential(
            nn.Linear(hard_tokens.shape[1], hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, dim, bias=False)
        )
        nn.init.normal_(self.net[2].weight, std=0.01)  # prompts start near zero: features lead at first

    def forward(self, hard: Tensor | None = None) -> Tensor:
        """Soft prompts [n, dim] for the given hard tokens (default: every item's)."""
        return self.net(self.hard if hard is None else hard)  # [n, dim]
