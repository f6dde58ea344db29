"""The wrapper that distils a teacher into an ID-tower student, and the served student.

The students are `mllmrec.recsys` registry models unchanged (rows with `student=True`: MF,
LightGCN; built with `mllmrec.recsys.registry.build_model`); `Distillation` wraps one so that it still
follows the recsys contract (`loss(batch)`, `score`, `full_sort`) and `recsys.train_bpr` trains it
with its validation-only early stopping. Its `loss` builds the tensors the configured losses read
(see `losses/__init__`) from the student and the teacher, and returns their weighted parts:

    L = Σ_l w_l · L_l  +  reg · ‖batch rows‖² / 2b  [+ w_T · BPR(teacher)]

The teacher is frozen except, with tune_prompt=True, its prompt module: KD gradients reach it, and
the teacher's own fused BPR (weight w_T) keeps the tuned prompts useful for ranking (PromptMM).
List-wise KD scores each positive against n negatives drawn like the trainer's (uniform over items
with training interactions, never one of the user's training items) from their own seeded stream.

`TableModel` is what a trained student becomes for serving: two tables, s(u, i) = user[u] · item[i].
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from mllmrec.distill.errors import DistillError
from mllmrec.distill.teacher import Teacher
from mllmrec.recsys.freedom import Freedom
from mllmrec.recsys.graph import check_interactions
from mllmrec.recsys.models import MF, RecModel, bpr_loss, l2_reg
from mllmrec.recsys.trainer import NegativeSampler


class Distillation(RecModel):
    """A student trained by BPR and distillation losses against a (mostly frozen) teacher."""

    def __init__(
        self,
        student: MF,
        teacher: Teacher | Freedom | None,
        losses: dict[str, tuple[nn.Module, float]],
        train: sp.spmatrix | sp.sparray,
        *,
        n_negatives: int = 10,
        seed: int = 0,
        tune_prompt: bool = True,
        teacher_bpr: float = 1.0,
    ) -> None:
        super().__init__(student.n_users, student.n_items)
        self.student = student
        self.losses = nn.ModuleDict({name: module for name, (module, _) in losses.items()})
        self.weights = {name: float(w) for name, (_, w) in losses.items()}
        self.needs = set().union(*(getattr(m, "inputs", ()) for m, _ in losses.values()))
        if any(k.startswith("teacher") for k in self.needs) and teacher is None:
            raise DistillError(f"losses {sorted(self.losses)} need a teacher, none given")
        if teacher is not None and (teacher.n_users, teacher.n_items) != (self.n_users, self.n_items):
            raise DistillError(
                f"teacher is {teacher.n_users}x{teacher.n_items}, student {self.n_users}x{self.n_items}"
            )
        self.teacher = teacher
        has_prompt = teacher is not None and any(
            n.startswith("prompt.") for n, _ in teacher.named_parameters()
        )
        self.tune_prompt = bool(tune_prompt and has_prompt)
        self.teacher_bpr = float(teacher_bpr) if self.tune_prompt else 0.0
        if teacher is not None:
            for name, p in teacher.named_parameters():
                p.requires_grad_(self.tune_prompt and name.startswith("prompt."))
        # Teacher item representations [I, C·d_t] -> student space [I, d] (for embedding KD).
        self.proj = (
            nn.Linear(teacher.item_dim, student.dim, bias=False) if "teacher_items" in self.needs else None
        )
        if n_negatives < 1:
            raise DistillError(f"n_negatives must be >= 1, got {n_negatives}")
        self.n_negatives = int(n_negatives)
        self.sampler = (
            NegativeSampler(check_interactions(train), np.random.default_rng([seed, 1]))
            if "student_list" in self.needs
            else None
        )

    def train(self, mode: bool = True) -> Distillation:
        """Train the student; the teacher always runs in eval mode (e.g. Freedom then propagates over
        its full user-item graph, not a pruned sample)."""
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def _teacher_embeddings(self) -> dict[str, tuple[Tensor, Tensor]] | None:
        if self.teacher is None:
            return None
        if self.tune_prompt:
            return self.teacher.channel_embeddings()  # with grad: the prompt is being tuned
        with torch.no_grad():
            return self.teacher.channel_embeddings()  # cached while the teacher stays fixed

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        users, pos, neg = batch["users"], batch["pos"], batch["neg"]  # [b] each
        eu, ei = self.student.final_embeddings()  # [U, d], [I, d]
        u = eu[users]  # [b, d]
        t_emb = (
            self._teacher_embeddings()
            if (
                self.teacher is not None
                and (self.tune_prompt or any(k.startswith("teacher") for k in self.needs))
            )
            else None
        )
        cache: dict[str, object] = {}

        def teacher_pair() -> tuple[Tensor, Tensor]:
            if "pair" not in cache:
                sp_, sn = (self.teacher.channel_scores(users, x, t_emb) for x in (pos, neg))
                cache["pair"] = (
                    torch.stack(list(sp_.values())).mean(0),
                    torch.stack(list(sn.values())).mean(0),
                )
            return cache["pair"]  # type: ignore[return-value]

        def item_list() -> Tensor:
            if "list" not in cache:
                n = self.n_negatives
                drawn = self.sampler(np.repeat(users.cpu().numpy(), n))  # [b·n]
                negs = torch.as_tensor(drawn, device=users.device).view(-1, n)  # [b, n]
                cache["list"] = torch.cat([pos.unsqueeze(1), negs], dim=1)  # [b, 1+n]
            return cache["list"]  # type: ignore[return-value]

        def teacher_items() -> Tensor:
            scale = len(self.teacher.channels) ** -0.5
            rows = torch.cat([pos, neg])  # [2b]
            t = torch.cat([t_emb[c][1][rows] for c in self.teacher.channels], dim=1) * scale  # [2b, C·d_t]
            return self.proj(t)  # [2b, d]

        makers: dict[str, Callable[[], object]] = {
            "student_pos": lambda: (u * ei[pos]).sum(-1),  # [b]
            "student_neg": lambda: (u * ei[neg]).sum(-1),  # [b]
            "teacher_pos": lambda: teacher_pair()[0],
            "teacher_neg": lambda: teacher_pair()[1],
            "student_list": lambda: (u.unsqueeze(1) * ei[item_list()]).sum(-1),  # [b, 1+n]
            "teacher_list": lambda: self.teacher.channel_scores(users, item_list(), t_emb),  # {c: [b, 1+n]}
            "student_items": lambda: ei[torch.cat([pos, neg])],  # [2b, d]
            "teacher_items": teacher_items,
        }
        tensors = {k: makers[k]() for k in sorted(self.needs)}
        parts: dict[str, Tensor] = {}
        for name, module in self.losses.items():
            out = module(**{k: tensors[k] for k in module.inputs})
            w = self.weights[name]
            if isinstance(out, dict):
                parts.update({f"{name}.{k}": w * v for k, v in out.items()})
            else:
                parts[name] = w * out
        s = self.student
        parts["reg"] = s.reg * l2_reg(s.user(users), s.item(pos), s.item(neg))  # layer-0 rows, as recsys
        if self.teacher_bpr > 0:
            parts["teacher_bpr"] = self.teacher_bpr * bpr_loss(*teacher_pair())
        return parts

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        return self.student.score(users, items)

    def full_sort(self, users: Tensor) -> Tensor:
        return self.student.full_sort(users)


class TableModel(RecModel):
    """A served student: s(u, i) = user[u] · item[i] over fixed tables [U, d] and [I, d]."""

    def __init__(self, users: Tensor, items: Tensor) -> None:
        super().__init__(users.shape[0], items.shape[0])
        if users.ndim != 2 or items.ndim != 2 or users.shape[1] != items.shape[1]:
            raise DistillError(
                f"tables must be [U, d] and [I, d], got {tuple(users.shape)} and {tuple(items.shape)}"
            )
        self.register_buffer("user", users.detach().to(torch.float32).clone())
        self.register_buffer("item", items.detach().to(torch.float32).clone())

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        return (self.user[users] * self.item[items]).sum(-1)  # [b]

    def full_sort(self, users: Tensor) -> Tensor:
        return self.user[users] @ self.item.T  # [b, I]
