"""In-batch InfoNCE over item pairs (NoteLLM / NoteLLM-2).

For a batch of B pairs the 2B items are the rows; z_i = e_i / ‖e_i‖, s = exp(log_scale) (clamped
at 100 as in CLIP). Row i's positive is its pair partner p(i):

    L = −(1/2B) Σ_i log( exp(s·z_i·z_p(i)) / Σ_{j ∈ N(i) ∪ {p(i)}} exp(s·z_i·z_j) )

negatives="all": N(i) = every other row (NoteLLM-2: symmetric, self-similarity masked);
negatives="cross": N(i) = rows on the other side of the pairs only (CLIP-style, also symmetric).
Rows holding the same item as i or as p(i) (an item in two pairs of one batch), and rows whose
own partner is i's item (with pairs (X, Y) and (Y, W) in a batch, W is a known positive of Y), are
never negatives: they are masked like the diagonal.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

MAX_LOG_SCALE = 4.6052  # log(100)


class InfoNCE:
    def __init__(self, negatives: Literal["all", "cross"] = "all") -> None:
        if negatives not in ("all", "cross"):
            raise ValueError(f"negatives must be 'all' or 'cross', got {negatives!r}")
        self.negatives = negatives

    def __call__(
        self, reps: torch.Tensor, partner: torch.Tensor, keys: torch.Tensor, log_scale: torch.Tensor
    ) -> torch.Tensor:
        n = reps.shape[0]
        partner, keys = partner.to(reps.device), keys.to(reps.device)
        z = F.normalize(reps.float(), dim=-1)  # [n, d]
        logits = log_scale.clamp(max=MAX_LOG_SCALE).exp() * (z @ z.T)  # [n, n]
        kp = keys[partner]  # [n] the partner's item
        # not a negative of row i: the same item as i or as i's partner, or a row whose partner is i's item
        mask = (
            (keys[:, None] == keys[None, :]) | (kp[:, None] == keys[None, :]) | (keys[:, None] == kp[None, :])
        )
        if self.negatives == "cross":
            side = partner > torch.arange(n, device=reps.device)  # [n] True for the first member of a pair
            mask = mask | (side[:, None] == side[None, :])
        rows = torch.arange(n, device=reps.device)
        mask[rows, partner] = False
        return F.cross_entropy(logits.masked_fill(mask, float("-inf")), partner)
