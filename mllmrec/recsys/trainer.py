"""BPR training for the recsys models, selected on validation (the trainer never sees test data).

Each epoch visits every observed training pair (u, i) once in a shuffled order and pairs it with a
negative j drawn uniformly from the items u has no training interaction with:

    j ~ Uniform({0 … I−1} \\ N_u)        drawn vectorised; colliding draws are redrawn until clear

and minimises the model's `loss(batch)` (the sum of its parts) with Adam. Every `eval_every`
epochs the model ranks all items for the users that have validation positives (their training
items masked) and `metric` is read from `mllmrec.metrics.ranking.full_ranking_metrics`. Training
stops once `patience` evaluations in a row failed to beat the best value, and the state_dict of
the best evaluation is loaded back before returning.

A model with a `start_epoch(epoch)` method has it called before each epoch (Freedom resamples
its degree-pruned user–item graph there).

Determinism: all sampling comes from `numpy.random.default_rng(seed)` and training itself draws
no torch randomness, so the same seed, the same initial weights and the same device give the same
result. Initialising the model is the caller's business (seed it with `torch.manual_seed`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from mllmrec.recsys.graph import RecsysError, check_interactions
from mllmrec.recsys.models import RecModel

DEFAULT_KS = (5, 10, 20, 50)


@dataclass(frozen=True)
class TrainResult:
    """What `train_bpr` did. `history` has one dict per epoch: epoch, loss (and its parts as
    loss_<name>), plus the validation metrics on the epochs that were evaluated."""

    best_epoch: int
    best_valid: dict[str, float]
    history: list[dict[str, float]]
    seconds: float


class NegativeSampler:
    """Uniform negatives j ∉ N_u among the items that have training interactions.

    Items with no training interaction (cold items of a cold-start split) are never drawn: using
    them as negatives would push exactly the held-out items down, i.e. train on knowledge of the
    split. Training pairs are kept as sorted keys u·I + i, so "is (u, j) observed?" is one
    `searchsorted` over the batch; the draws that hit an observed pair are redrawn.
    """

    def __init__(self, train: sp.csr_matrix, rng: np.random.Generator) -> None:
        self.n_items, self.rng = train.shape[1], rng
        self.pool = np.flatnonzero(np.bincount(train.indices, minlength=self.n_items) > 0)  # [P] warm items
        degree = np.diff(train.indptr)  # [U]
        full = np.flatnonzero(degree >= self.pool.size)
        if full.size:
            raise RecsysError(
                f"users {full[:5].tolist()} interacted with every item: no negative to sample for them"
            )
        rows = np.repeat(np.arange(train.shape[0], dtype=np.int64), degree)  # [nnz]
        self.keys = np.sort(rows * self.n_items + train.indices.astype(np.int64))  # [nnz]

    def observed(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """[n] bool: whether each (users[k], items[k]) is a training interaction."""
        if self.keys.size == 0:
            return np.zeros(users.shape, dtype=bool)
        query = users.astype(np.int64) * self.n_items + items  # [n]
        at = np.minimum(np.searchsorted(self.keys, query), self.keys.size - 1)  # [n]
        return self.keys[at] == query

    def __call__(self, users: np.ndarray) -> np.ndarray:
        neg = self.pool[self.rng.integers(0, self.pool.size, size=users.shape[0])]  # [n]
        todo = np.flatnonzero(self.observed(users, neg))
        while todo.size:
            neg[todo] = self.pool[self.rng.integers(0, self.pool.size, size=todo.size)]
            todo = todo[self.observed(users[todo], neg[todo])]
        return neg


def _metric_ks(metric: str) -> tuple[int, ...]:
    """The cut-offs to compute: the defaults plus the k named in `metric` ("recall@20" -> 20)."""
    name, _, k = metric.partition("@")
    if not name or not k.isdigit() or int(k) <= 0:
        raise RecsysError(f"metric must look like 'recall@20' or 'ndcg@10', got {metric!r}")
    return tuple(sorted(set(DEFAULT_KS) | {int(k)}))


def _validation_split(
    valid_positives: Sequence[np.ndarray], n_users: int, n_items: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """(users with at least one validation positive, their positives in the same order)."""
    if len(valid_positives) != n_users:
        raise RecsysError(f"valid_positives needs one array per user ({n_users}), got {len(valid_positives)}")
    users, positives = [], []
    for u, pos in enumerate(valid_positives):
        items = np.asarray(pos, dtype=np.int64).ravel()  # [n_u]
        if items.size == 0:
            continue
        if items.min() < 0 or items.max() >= n_items:
            raise RecsysError(f"user {u} has validation items outside [0, {n_items})")
        users.append(u)
        positives.append(items)
    if not users:
        raise RecsysError("no user has a validation positive: nothing to select the model on")
    return np.asarray(users, dtype=np.int64), positives


def _validate(
    model: RecModel,
    train: sp.csr_matrix,
    users: np.ndarray,
    positives: list[np.ndarray],
    ks: tuple[int, ...],
    device: torch.device,
) -> dict[str, float]:
    """Full-ranking validation metrics with training items masked (see mllmrec.metrics.ranking)."""
    from mllmrec.metrics.ranking import full_ranking_metrics

    model.eval()

    def score_fn(batch_users: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            ids = torch.as_tensor(batch_users, dtype=torch.long, device=device)  # [b]
            return model.full_sort(ids).float().cpu().numpy()  # [b, I]

    ks = tuple(k for k in ks if k <= train.shape[1]) or (train.shape[1],)  # a catalogue smaller than 50 items
    metrics = full_ranking_metrics(score_fn, users, positives, train, ks=ks)
    return {name: float(value) for name, value in metrics.items()}


def validate(
    model: RecModel,
    train: sp.spmatrix | sp.sparray,
    valid_positives: Sequence[np.ndarray],
    *,
    metric: str = "recall@20",
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """`model`'s full-ranking validation metrics, as `train_bpr` computes them for early stopping."""
    r = check_interactions(train)
    users, positives = _validation_split(valid_positives, *r.shape)
    return _validate(model, r, users, positives, _metric_ks(metric), torch.device(device))


def _train_epoch(
    model: RecModel,
    optimizer: torch.optim.Optimizer,
    pairs: tuple[np.ndarray, np.ndarray],
    sampler: NegativeSampler,
    batch_size: int,
    device: torch.device,
) -> dict[str, float]:
    """One pass over the shuffled training pairs; returns the pair-weighted mean of each loss part."""
    order = sampler.rng.permutation(pairs[0].shape[0])  # [nnz]
    users, pos = pairs[0][order], pairs[1][order]  # [nnz] each
    neg = sampler(users)  # [nnz]
    model.train()
    sums: dict[str, torch.Tensor] = {}
    for start in range(0, users.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        batch = {
            k: torch.from_numpy(v[sl]).to(device) for k, v in (("users", users), ("pos", pos), ("neg", neg))
        }
        out = model.loss(batch)
        parts = out if isinstance(out, dict) else {"": out}
        total = torch.stack(list(parts.values())).sum()  # []
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        n = batch["users"].shape[0]
        for name, value in {"loss": total, **{f"loss_{k}": v for k, v in parts.items() if k}}.items():
            sums[name] = sums.get(name, 0) + value.detach() * n
    return {name: float(s) / users.shape[0] for name, s in sums.items()}


def train_bpr(
    model: RecModel,
    train: sp.spmatrix | sp.sparray,
    valid_positives: Sequence[np.ndarray],
    *,
    epochs: int = 200,
    batch_size: int = 2048,
    lr: float = 1e-3,
    seed: int = 0,
    patience: int = 10,
    eval_every: int = 1,
    metric: str = "recall@20",
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> TrainResult:
    """Train `model` in place with BPR + Adam and early stopping on the validation `metric`.

    `train` is the binary interaction matrix [U, I]; `valid_positives[u]` holds user u's
    validation items (empty for users without any). Models without trainable parameters
    (Popularity, ContentKNN) are only evaluated: best_epoch = 0.
    """
    start = time.perf_counter()
    r = check_interactions(train)  # [U, I]
    if r.shape != (model.n_users, model.n_items):
        raise RecsysError(
            f"train is {r.shape} but the model was built for ({model.n_users}, {model.n_items})"
        )
    for name, value in (
        ("epochs", epochs),
        ("batch_size", batch_size),
        ("patience", patience),
        ("eval_every", eval_every),
    ):
        if value < 1:
            raise RecsysError(f"{name} must be >= 1, got {value}")
    users, positives = _validation_split(valid_positives, *r.shape)
    ks, dev = _metric_ks(metric), torch.device(device)
    model.to(dev)

    def evaluate() -> tuple[dict[str, float], float]:
        valid = _validate(model, r, users, positives, ks, dev)
        if metric not in valid:
            raise RecsysError(f"metric {metric!r} is not among the validation metrics {sorted(valid)}")
        return valid, valid[metric]

    if not model.trainable:
        valid, _ = evaluate()
        return TrainResult(0, valid, [{"epoch": 0, **valid}], time.perf_counter() - start)

    coo = r.tocoo()
    pairs = (coo.row.astype(np.int64), coo.col.astype(np.int64))  # [nnz] each
    if pairs[0].size == 0:
        raise RecsysError("the training matrix has no interactions")
    sampler = NegativeSampler(r, np.random.default_rng(seed))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    history: list[dict[str, float]] = []
    best_epoch, best_valid, best_state, since_best = 0, {}, None, 0
    bar = tqdm(range(1, epochs + 1), desc=type(model).__name__, unit="epoch", disable=not progress)
    for epoch in bar:
        if hasattr(model, "start_epoch"):  # per-epoch resampling, e.g. Freedom's pruned user–item graph
            model.start_epoch(epoch)
        entry: dict[str, float] = {
            "epoch": epoch,
            **_train_epoch(model, optimizer, pairs, sampler, batch_size, dev),
        }
        if not math.isfinite(entry["loss"]):
            raise RecsysError(f"the loss became {entry['loss']} at epoch {epoch}; lower lr or raise reg")
        if epoch % eval_every == 0 or epoch == epochs:
            valid, value = evaluate()
            entry.update(valid)
            if best_state is None or value > best_valid[metric]:
                best_epoch, best_valid, since_best = epoch, valid, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                since_best += 1
            bar.set_postfix(
                {"loss": f"{entry['loss']:.4f}", metric: f"{value:.4f}", "best": f"{best_valid[metric]:.4f}"}
            )
        history.append(entry)
        if since_best >= patience:
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    if hasattr(model, "forget_items"):  # items never trained keep only what their features say
        model.forget_items(torch.as_tensor(np.setdiff1d(np.arange(r.shape[1]), sampler.pool), device=dev))
    model.eval()
    return TrainResult(best_epoch, best_valid, history, time.perf_counter() - start)
