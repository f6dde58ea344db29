"""Teacher, then student, then the new-item mapping: the whole distillation on in-memory arrays.

Model selection reads validation data only, and structurally so: nothing here takes test data.
`recsys.train_bpr` (which has no test argument either) trains both models with early stopping on
validation Recall@20 and restores the best epoch. The caller evaluates test once, afterwards.

Item rows: every item of the index gets a teacher row (from its features); items without training
interactions ("new": cold items of a split, store items absent from the log) get their student
row from the new-item mapping fitted on the items that have one (`mapping.NewItemMapping`).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from mllmrec.distill.config import DistillSettings
from mllmrec.distill.errors import DistillError
from mllmrec.distill.losses import LossSpec, parse_losses
from mllmrec.distill.mapping import NewItemMapping
from mllmrec.distill.prompt import PromptModule, pca_hard_tokens, prepare_features
from mllmrec.distill.students import Distillation, TableModel
from mllmrec.distill.teacher import Teacher
from mllmrec.recsys.cf_blend import choose_blend
from mllmrec.recsys.freedom import Freedom
from mllmrec.recsys.graph import check_interactions
from mllmrec.recsys.registry import build_model
from mllmrec.recsys.trainer import TrainResult, train_bpr, validate


@dataclass
class DistillResult:
    """Trained pieces. `tables` is the served student (new items' rows from `mapping`)."""

    teacher: Teacher | None
    teacher_result: TrainResult | None
    student_result: TrainResult
    tables: TableModel
    mapping: NewItemMapping
    new_items: np.ndarray  # [m] item indices whose row came from the mapping
    seconds: float


def student_params(s: DistillSettings) -> dict[str, object]:
    """The student's registry hyper-parameters from the distill settings (those it declares)."""
    from dataclasses import fields

    from mllmrec.recsys.registry import spec

    # Students keep init 0.1 (what their KD and new-item tests were measured with), not MF-BPR's
    # baseline default.
    given = {"dim": s.dim, "layers": s.student_layers, "reg": s.reg, "init_std": 0.1}
    return {f.name: given[f.name] for f in fields(spec(s.student).params) if f.name in given}


def _fit(model, train, valid_positives, s: DistillSettings, epochs: int, lr: float) -> TrainResult:
    return train_bpr(
        model,
        train,
        valid_positives,
        epochs=epochs,
        batch_size=s.batch_size,
        lr=lr,
        seed=s.seed,
        patience=s.patience,
        metric="recall@20",
        progress=s.progress,
        device=s.device,
    )


def loss_specs(s: DistillSettings, losses: Sequence[LossSpec] | None = None) -> Sequence[LossSpec]:
    """The losses a run trains with: those passed from Python, else `s.losses` (bpr alone with --no-kd)."""
    if losses is not None:
        return losses
    return s.losses if s.kd else ("bpr",)


def build_teacher(
    features: dict[str, np.ndarray], train: sp.spmatrix, s: DistillSettings
) -> Teacher | Freedom:
    """The untrained teacher `s.teacher_kind` names (seed torch first for a reproducible init)."""
    if s.teacher_kind == "freedom":
        prompt = None
        if s.teacher_prompt:
            hard = torch.cat(
                [pca_hard_tokens(prepare_features(f)[0], s.prompt_tokens) for f in features.values()], dim=1
            )  # [I, k·C]
            prompt = PromptModule(hard, s.teacher_dim)
        return Freedom(
            features,
            train,
            dim=s.teacher_dim,
            ui_layers=s.teacher_layers,
            item_layers=s.teacher_item_layers,
            knn_k=s.teacher_knn,
            edge_keep=s.teacher_edge_keep,
            content_in_score=s.teacher_content_in_score,
            content_loss=s.teacher_content_loss,
            prompt=prompt,
            reg=0.0 if s.teacher_reg is None else s.teacher_reg,
            seed=s.seed,
        )
    return Teacher(
        features,
        train,
        dim=s.teacher_dim,
        n_layers=s.teacher_layers,
        prompt_tokens=s.prompt_tokens,
        item_ids=s.teacher_item_ids,
        reg=s.reg if s.teacher_reg is None else s.teacher_reg,
    )


def train_teacher(
    features: dict[str, np.ndarray],
    train: sp.spmatrix,
    valid_positives: Sequence[np.ndarray],
    s: DistillSettings,
) -> tuple[Teacher, TrainResult]:
    """The teacher, trained with BPR and selected on validation Recall@20, then its collaborative
    channel chosen (`attach_cf`)."""
    torch.manual_seed(s.seed)
    teacher = build_teacher(features, train, s)
    result = _fit(teacher, train, valid_positives, s, s.teacher_epochs, s.teacher_lr or s.lr)
    return teacher, attach_cf(teacher, train, valid_positives, s, result)


def attach_cf(
    teacher: Teacher | Freedom,
    train: sp.spmatrix | sp.sparray,
    valid_positives: Sequence[np.ndarray],
    s: DistillSettings,
    result: TrainResult,
) -> TrainResult:
    """Choose on validation and attach the trained teacher's EASE channel (`recsys.cf_blend`; off
    when --teacher-cf-weights is 0 or w = 0 wins). Returns `result` with the mixed teacher's
    validation metrics; the choice and what was tried are kept in `teacher.cf_choice`. Deterministic
    given the trained weights, so a teacher reloaded from its state dict is re-attached by this."""
    record = choose_blend(
        teacher,
        train,
        lambda m: validate(m, train, valid_positives, device=s.device),
        s.teacher_cf_l2,
        s.teacher_cf_weights,
    )
    teacher.cf_choice = record
    return dataclasses.replace(result, best_valid=record["valid"])


def distill(
    features: dict[str, np.ndarray],
    train: sp.spmatrix | sp.sparray,
    valid_positives: Sequence[np.ndarray],
    s: DistillSettings,
    *,
    teacher: Teacher | None = None,
    teacher_result: TrainResult | None = None,
    losses: Sequence[LossSpec] | None = None,
) -> DistillResult:
    """Train (or reuse) the teacher, distil the student, fit the new-item mapping.

    features: {channel: [n_items, d_c]} aligned with train's columns; valid_positives[u]: user u's
    validation items. With s.kd False the student is trained with its BPR loss only (no teacher).
    A `teacher` passed in (already trained, e.g. shared by several students) is copied before its
    prompts are tuned, so it is not changed. `losses` (names, loss objects or (object, weight)
    pairs, see distill.losses) replaces `s.losses`.
    """
    t0 = time.perf_counter()
    r = check_interactions(train)  # [U, I]
    for c, f in features.items():
        if f.shape[0] != r.shape[1]:
            raise DistillError(f"channel {c!r} has {f.shape[0]} rows for {r.shape[1]} items")
    losses = parse_losses(loss_specs(s, losses), tau=s.tau, alpha=s.alpha)
    if not s.kd and "bpr" not in losses:
        raise DistillError("--no-kd trains with bpr only")
    if s.kd and teacher is None:
        teacher, teacher_result = train_teacher(features, r, valid_positives, s)
    elif s.kd and s.tune_prompt:
        teacher = copy.deepcopy(teacher)  # its prompts get tuned here; the caller's teacher stays as it was
    torch.manual_seed(s.seed)
    student = build_model(s.student, r, **student_params(s))
    model = Distillation(
        student,
        teacher if s.kd else None,
        losses,
        r,
        n_negatives=s.negatives,
        seed=s.seed,
        tune_prompt=s.tune_prompt,
        teacher_bpr=s.teacher_bpr,
    )
    student_result = _fit(model, r, valid_positives, s, s.epochs, s.lr)
    if teacher is not None:
        for p in teacher.parameters():
            p.requires_grad_(False)
    with torch.no_grad():
        users, items = (t.detach().clone() for t in student.final_embeddings())  # [U, d], [I, d]
    warm = np.flatnonzero(np.bincount(r.indices, minlength=r.shape[1]) > 0)
    new = np.setdiff1d(np.arange(r.shape[1]), warm)
    mapping = NewItemMapping.fit(
        {c: np.asarray(f)[warm] for c, f in features.items()}, items[warm], l2=s.mapping_l2, seed=s.seed
    )
    if new.size:
        items[torch.from_numpy(new)] = mapping({c: np.asarray(f)[new] for c, f in features.items()})
    return DistillResult(
        teacher,
        teacher_result,
        student_result,
        TableModel(users, items),
        mapping,
        new,
        time.perf_counter() - t0,
    )
