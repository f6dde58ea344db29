"""PretrainedBPR: RecBole's BPR whose item representation adds a trainable projection of our frozen
item vectors, read with RecBole's own `dataset.get_preload_weight` (runs in RecBole's venv).

    item_k = e_k + W f_k        (e_k: ID embedding, f_k: row k of get_preload_weight(field), frozen)

Why a projection and not the vectors as the initial ID table: a text vector (384-d MiniLM, 2048-d
from an LLM) is wider than a recommender's embedding, and a frozen W f_k still scores items the
ID table barely saw (VBPR's idea, without the per-user visual factor). `pretrained_field: ~` gives
plain BPR with the same code, the "without vectors" control.
"""

from __future__ import annotations

import torch
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.model.loss import BPRLoss, EmbLoss
from recbole.utils import InputType


class PretrainedBPR(GeneralRecommender):
    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)
        dim = config["embedding_size"]
        self.user_embedding = torch.nn.Embedding(self.n_users, dim)
        self.item_embedding = torch.nn.Embedding(self.n_items, dim)
        torch.nn.init.normal_(self.user_embedding.weight, std=0.01)
        torch.nn.init.normal_(self.item_embedding.weight, std=0.01)
        self.features = self.project = None
        if config["pretrained_field"]:  # the alias field named in `preload_weight`, e.g. iid
            weight = torch.from_numpy(dataset.get_preload_weight(config["pretrained_field"])).float()
            self.features = torch.nn.Embedding.from_pretrained(weight, freeze=True)  # row k = item token id k
            self.project = torch.nn.Linear(weight.shape[1], dim, bias=False)
        self.reg_weight = config["reg_weight"] or 0.0
        self.loss_fct, self.reg_loss = BPRLoss(), EmbLoss()

    def items(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Item representations (all items when `ids` is None)."""
        ids = torch.arange(self.n_items, device=self.item_embedding.weight.device) if ids is None else ids
        e = self.item_embedding(ids)
        return e if self.project is None else e + self.project(self.features(ids))

    def calculate_loss(self, interaction) -> torch.Tensor:
        user = self.user_embedding(interaction[self.USER_ID])
        pos, neg = self.items(interaction[self.ITEM_ID]), self.items(interaction[self.NEG_ITEM_ID])
        loss = self.loss_fct((user * pos).sum(-1), (user * neg).sum(-1))
        return loss + self.reg_weight * self.reg_loss(user, pos, neg)

    def predict(self, interaction) -> torch.Tensor:
        return (self.user_embedding(interaction[self.USER_ID]) * self.items(interaction[self.ITEM_ID])).sum(
            -1
        )

    def full_sort_predict(self, interaction) -> torch.Tensor:
        return (self.user_embedding(interaction[self.USER_ID]) @ self.items().T).view(-1)
