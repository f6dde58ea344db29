"""New items: a learned map from an item's MLLM vectors to a student item vector.

An item that had no training interactions has no learned row in the student's table. Its MLLM
vectors do exist (embedding an item needs only its image and text), so a ridge regression fitted on
the items that do have rows maps them into the student's space:

    x = [f̂_c₁ ; f̂_c₂ ; …]                      centred (by the fitting items' mean), L2-normalised
                                                 features of the input channels, concatenated [D]
    g(x) = (x − x̄)ᵀ W + ȳ,   W = (X̃ᵀX̃ + λI)⁻¹ X̃ᵀỸ      X̃, Ỹ: centred features and student rows

λ is picked from `L2_GRID` by the mean cosine between g(x) and the true row on a fixed 10% of the
fitting items held out (training items only: nothing from validation or test), then W is refitted
on all of them. Closed form, float64, deterministic. Saved as safetensors (`tensors()`), with
the channels and dims in the run's manifest.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mllmrec.distill.errors import DistillError
from mllmrec.distill.prompt import prepare_features

L2_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


class NewItemMapping:
    """g: {channel: features [n, d_c]} -> student item vectors [n, d] (module docstring)."""

    def __init__(
        self,
        channels: tuple[str, ...],
        means: dict[str, Tensor],
        x_mean: Tensor,
        weight: Tensor,
        bias: Tensor,
        l2: float,
    ) -> None:
        self.channels, self.means, self.x_mean = tuple(channels), means, x_mean
        self.weight, self.bias, self.l2 = weight, bias, float(l2)

    @property
    def in_dims(self) -> dict[str, int]:
        return {c: int(self.means[c].shape[0]) for c in self.channels}

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])

    def inputs(self, features: dict[str, np.ndarray | Tensor]) -> Tensor:
        """Concatenated prepared features [n, D] (the means are the fitting items')."""
        missing = [c for c in self.channels if c not in features]
        if missing:
            raise DistillError(
                f"the new-item mapping reads channels {list(self.channels)}; missing {missing}"
            )
        parts = []
        for c in self.channels:
            f = features[c]
            if f.shape[1] != self.in_dims[c]:
                raise DistillError(
                    f"channel {c!r} has dimension {f.shape[1]}; the mapping was fitted on {self.in_dims[c]}"
                )
            parts.append(prepare_features(f, self.means[c])[0])  # [n, d_c]
        return torch.cat(parts, dim=1).to(torch.float64)  # [n, D]

    def __call__(self, features: dict[str, np.ndarray | Tensor]) -> Tensor:
        x = self.inputs(features)  # [n, D]
        return ((x - self.x_mean) @ self.weight + self.bias).to(torch.float32)  # [n, d]

    @classmethod
    def fit(
        cls,
        features: dict[str, np.ndarray | Tensor],
        targets: Tensor,
        *,
        l2: float | None = None,
        seed: int = 0,
    ) -> NewItemMapping:
        """Fit on rows where features [n, d_c] per channel and targets [n, d] (student rows) align."""
        channels = tuple(features)
        n = int(targets.shape[0])
        if n < 2:
            raise DistillError(
                f"the new-item mapping needs at least 2 items with training interactions, got {n}"
            )
        means = {c: prepare_features(f)[1] for c, f in features.items()}
        probe = cls(
            channels,
            means,
            torch.zeros(1, dtype=torch.float64),
            torch.zeros(1, 1, dtype=torch.float64),
            torch.zeros(1, dtype=torch.float64),
            0.0,
        )
        x = probe.inputs(features)  # [n, D]
        y = targets.detach().to(torch.float64)  # [n, d]
        if l2 is None:
            rng = np.random.default_rng([seed, 2])
            held = np.zeros(n, bool)
            held[rng.permutation(n)[: max(1, n // 10)]] = True
            fit_rows, held_rows = torch.from_numpy(~held), torch.from_numpy(held)
            scores = {}
            for lam in L2_GRID:
                w, xm, ym = _ridge(x[fit_rows], y[fit_rows], lam)
                pred = (x[held_rows] - xm) @ w + ym  # [h, d]
                scores[lam] = float(torch.nn.functional.cosine_similarity(pred, y[held_rows], dim=1).mean())
            l2 = max(L2_GRID, key=lambda lam: (scores[lam], -lam))
        w, xm, ym = _ridge(x, y, float(l2))
        return cls(channels, means, xm, w, ym, float(l2))

    def tensors(self) -> dict[str, Tensor]:
        """Everything needed to apply the mapping, for safetensors (float32 except the solve)."""
        out = {"weight": self.weight, "bias": self.bias, "x_mean": self.x_mean}
        out.update({f"mean.{c}": m for c, m in self.means.items()})
        return {k: v.detach().contiguous() for k, v in out.items()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], channels: list[str], l2: float) -> NewItemMapping:
        try:
            return cls(
                tuple(channels),
                {c: tensors[f"mean.{c}"] for c in channels},
                tensors["x_mean"],
                tensors["weight"],
                tensors["bias"],
                l2,
            )
        except KeyError as e:
            raise DistillError(f"the new-item mapping file lacks tensor {e}") from None


def _ridge(x: Tensor, y: Tensor, lam: float) -> tuple[Tensor, Tensor, Tensor]:
    """(W [D, d], x̄ [D], ȳ [d]) of ridge regression on centred x [n, D], y [n, d]."""
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = x - xm, y - ym
    gram = xc.T @ xc + lam * torch.eye(x.shape[1], dtype=x.dtype)  # [D, D]
    return torch.linalg.solve(gram, xc.T @ yc), xm, ym
