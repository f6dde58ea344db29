"""Scoring shared by the multi-channel teachers (PromptMM's `distill.teacher.Teacher` and
`recsys.freedom.Freedom`): one user/item representation per feature channel c, and

    t_c(u, i) = e_c[u] · e_c[i]                 the modality-specific score (list-wise KD reads it)
    t(u, i)   = (1/C) Σ_c t_c(u, i)              the fused score
              = [e_1[u]; ...; e_C[u]] / √C · [e_1[i]; ...; e_C[i]] / √C     (full ranking)

With a collaborative channel attached (`model.cf`, a `recsys.cf_blend.CFBlend`, set by
`cf_blend.choose_blend`), every t_c is first mixed with the EASE score as that module describes;
`final_embeddings` then no longer reproduce the scores (EASE has no embeddings).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mllmrec.recsys.models import RecModel


class ChannelModel(RecModel):
    """A RecModel whose subclass defines `channels` and `channel_embeddings() -> {c: (users [U, d],
    items [I, d])}`; this class derives the fused score, full ranking and per-channel scores."""

    channels: tuple[str, ...]
    _cache: tuple[tuple, dict[str, tuple[Tensor, Tensor]]] | None = None

    def propagate(self) -> dict[str, tuple[Tensor, Tensor]]:
        """{channel: (users [U, d], items [I, d])} from the current weights."""
        raise NotImplementedError

    def channel_embeddings(self) -> dict[str, tuple[Tensor, Tensor]]:
        """`propagate()`, cached in eval mode under torch.no_grad() until a weight or dense buffer
        changes, so full-ranking evaluation propagates once, not once per user batch. Training mode
        never caches (a model may propagate differently per call there: Freedom prunes edges)."""
        if torch.is_grad_enabled() or self.training:
            self._cache = None
            return self.propagate()
        tensors = (*self.parameters(), *self.buffers())
        key = tuple((t.data_ptr(), t._version) for t in tensors if not t.is_sparse)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self.propagate())
        return self._cache[1]

    def final_embeddings(self) -> tuple[Tensor, Tensor]:
        """Users [U, C·d] and items [I, C·d] with user · item = t(u, i) (the fused score)."""
        emb = self.channel_embeddings()
        scale = len(self.channels) ** -0.5
        users = torch.cat([emb[c][0] for c in self.channels], dim=1) * scale  # [U, C·d]
        items = torch.cat([emb[c][1] for c in self.channels], dim=1) * scale  # [I, C·d]
        return users, items

    def channel_scores(
        self, users: Tensor, items: Tensor, emb: dict[str, tuple[Tensor, Tensor]] | None = None
    ) -> dict[str, Tensor]:
        """t_c(u, i) for users [b] and items [b] or [b, L] -> {channel: [b] or [b, L]}; `emb` is a
        `channel_embeddings()` result to reuse (one propagation per training batch)."""
        emb = self.channel_embeddings() if emb is None else emb
        out = {}
        for c in self.channels:
            eu, ei = emb[c]
            u = eu[users]  # [b, d]
            out[c] = (u.unsqueeze(1) * ei[items]).sum(-1) if items.ndim == 2 else (u * ei[items]).sum(-1)
        cf = getattr(self, "cf", None)  # nn.Module keeps submodules out of __dict__: no class default
        return out if cf is None else cf.mix(users, items, out, emb)

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        return torch.stack(list(self.channel_scores(users, items).values())).mean(0)  # [b]

    def full_sort(self, users: Tensor) -> Tensor:
        cf = getattr(self, "cf", None)
        if cf is None:
            eu, ei = self.final_embeddings()
            return eu[users] @ ei.T  # [b, I]
        emb = self.channel_embeddings()
        raw = {c: emb[c][0][users] @ emb[c][1].T for c in self.channels}  # {c: [b, I]}
        return torch.stack(list(cf.mix(users, None, raw, emb).values())).mean(0)  # [b, I]
