"""A collaborative item–item channel (EASE) mixed into a channel model's scores, and its choice.

Each channel score t_c and the EASE score e are standardised per user over the whole catalogue,
then mixed with weight w:

    t'_c(u, i) = (1 − w) · (t_c(u, i) − μ_c(u)) / σ_c(u)  +  w · (e(u, i) − μ_e(u)) / σ_e(u)

so the fused score (the mean over channels) and every modality-specific score list-wise KD reads
carry the same collaborative part. For a dot-product channel t_c(u, i) = e_u · v_i the per-user
moments over the I items are exact and cheap: μ_c(u) = e_u · v̄ and σ_c(u)² = e_uᵀ Σ_v e_u with Σ_v
the items' covariance [d, d]; EASE's (fixed) moments are computed once, chunked over users.

Why: on Amazon Office (MiniLM vectors, validation Recall@20) the Freedom teacher reaches 0.1505 and
EASE 0.1288, but a mix of the two at w = 0.2 reaches 0.1608: the graph-and-content model and the
item–item regression make different mistakes. Standardising first makes w mean the same whatever
the raw score scales are. The mix, EASE's λ and w, are chosen on validation (`choose_blend`), with
w = 0 (the model alone) among the candidates, so the blend can only be kept when it helps there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import scipy.sparse as sp
import torch
from torch import Tensor, nn

from mllmrec.recsys.ease import EASE, MAX_ITEMS
from mllmrec.recsys.graph import RecsysError, check_interactions


def _standardise(scores: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """(scores − mean) / std with per-user [b] moments broadcast over scores [b], [b, L] or [b, I]."""
    shape = (-1,) + (1,) * (scores.ndim - 1)
    return (scores - mean.view(shape)) / std.view(shape)


class CFBlend(nn.Module):
    """The EASE channel and its weight, attached to a `ChannelModel` as `model.cf`."""

    def __init__(self, ease: EASE, weight: float, chunk: int = 1024) -> None:
        super().__init__()
        if not 0 <= weight <= 1:
            raise RecsysError(f"the blend weight must be in [0, 1], got {weight}")
        self.ease, self.weight = ease, float(weight)
        means, stds = [], []
        with torch.no_grad():
            for start in range(0, ease.n_users, chunk):
                s = ease.user_scores(torch.arange(start, min(start + chunk, ease.n_users)))  # [b, I]
                means.append(s.mean(1))
                stds.append(s.std(1, unbiased=False))
        # A user whose EASE row is constant (no training items) gets σ 1: its standardised row is 0.
        std = torch.cat(stds)
        self.register_buffer("e_mean", torch.cat(means), persistent=False)  # [U]
        self.register_buffer("e_std", torch.where(std > 0, std, torch.ones_like(std)), persistent=False)

    def mix(
        self,
        users: Tensor,
        items: Tensor | None,
        scores: dict[str, Tensor],
        emb: dict[str, tuple[Tensor, Tensor]],
    ) -> dict[str, Tensor]:
        """Mixed scores for users [b] and items [b], [b, L], or None = every item ([b, I]);
        `scores` {c: raw t_c} and `emb` {c: (users [U, d], items [I, d])} of the same model."""
        e = self.ease.user_scores(users)  # [b, I]
        if items is not None:
            e = e.gather(1, items.view(users.shape[0], -1)).view(items.shape)
        e = _standardise(e, self.e_mean[users], self.e_std[users])
        out = {}
        for c, t in scores.items():
            eu, ei = emb[c]
            u = eu[users]  # [b, d]
            centred = ei - ei.mean(0)  # [I, d]
            cov = centred.T @ centred / ei.shape[0]  # [d, d]
            var = ((u @ cov) * u).sum(-1)  # [b]
            std = var.clamp_min(1e-12).sqrt()
            out[c] = (1 - self.weight) * _standardise(t, u @ ei.mean(0), std) + self.weight * e
        return out


def choose_blend(
    model: Any,
    train: sp.spmatrix | sp.sparray,
    evaluate: Any,
    l2s: Sequence[float],
    weights: Sequence[float],
    metric: str = "recall@20",
) -> dict[str, Any]:
    """Pick EASE's λ (by EASE's own validation `metric`) and then w (by the mixed model's), attach
    the winner to `model.cf` (None when w = 0 wins) and return what was tried.

    `evaluate(model) -> {metric: value}` computes validation metrics (the caller's, so that nothing
    here can read test data). Candidates are tried in the order given; a λ or a w > 0 is kept only
    when it beats the ones before it (a w > 0 must beat the model alone). Catalogues above EASE's
    `MAX_ITEMS` are skipped (recorded), not refused: the blend is an improvement, not a requirement.
    """
    r = check_interactions(train)
    model.cf = None
    base = evaluate(model)
    record: dict[str, Any] = {"weight": 0.0, "l2": None, "valid": base, "tried": []}
    if not any(w > 0 for w in weights):
        return record
    if r.shape[1] > MAX_ITEMS:
        record["skipped"] = f"{r.shape[1]} items: more than EASE's {MAX_ITEMS}"
        return record
    best_ease = None
    for l2 in l2s:
        ease = EASE(r, l2=l2)
        value = evaluate(ease)[metric]
        record["tried"].append({"ease_l2": l2, metric: value})
        if best_ease is None or value > best_ease[1]:
            best_ease = (ease, value)
    assert best_ease is not None  # l2s is not empty (the caller's config checks it)
    ease = best_ease[0]
    best: tuple[CFBlend | None, dict[str, float]] = (None, base)  # (the winning blend, its metrics)
    for w in weights:
        blend = CFBlend(ease, w) if w > 0 else None
        model.cf = blend
        valid = evaluate(model) if blend is not None else base
        record["tried"].append({"weight": w, "l2": ease.l2, metric: valid[metric]})
        if valid[metric] > best[1][metric]:
            best = (blend, valid)
    model.cf = best[0]  # kept as built: its EASE moments are not computed again
    record.update(weight=best[0].weight if best[0] else 0.0, l2=ease.l2 if best[0] else None, valid=best[1])
    return record
