"""Evaluation splits: which (user, item) pairs a model trains on, is selected on, and is tested on.

The default is MMRec's protocol (`random_split`): per user, that user's distinct items are shuffled
with the seed and cut 8:1:1; users with fewer than `min_interactions` give exactly one valid and one
test item, users with fewer than 3 keep everything in train. Every held-out item must have a
training interaction somewhere, else a warm model could never score it: such pairs are dropped and
counted in `meta`. `temporal_split` cuts by time, `cold_start_split` holds whole items out (only
content reaches them), `split_from_labels` follows a file's MMRec `x_label`.

`PROTOCOLS` names them (one table for distill, the eval grid and the exporters); `make_split(name,
inter, seed, **options)` builds one. All splits are deterministic in the seed (`np.random.default_rng(seed)`) and carry a fingerprint.
Duplicate (user, item) rows are folded first, so no pair is in two parts; `Split` checks this.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from mllmrec.catalog.interactions import LABEL_FIELD, Interactions, index_ids
from mllmrec.errors import MllmrecError

PARTS = ("train", "valid", "test")
TRAIN, VALID, TEST, DROPPED = 0, 1, 2, -1


class SplitError(MllmrecError, ValueError):
    """A split cannot be made, checked or loaded as asked; the message says why."""


# What the less obvious `Split.stats()` counts mean, for reports that print them side by side.
STATS_MEANING: dict[str, str] = {
    "cold_items": "items the cold-start protocol held out on purpose, every interaction in valid/test "
    "(0 for other protocols)",
    "users_without_train": "users with no training interaction, for any reason",
    "items_without_train": "items with no training interaction, for any reason: the cold items plus items "
    "whose interactions all fell into valid/test (only content can reach them)",
}


@dataclass(frozen=True, eq=False)
class Split:
    """A train/valid/test partition of (user index, item index) pairs with the ids behind them.

    train/valid/test: [m, 2] int64; cold_items: sorted item indices held out with all their
    interactions (empty unless cold-start); meta: JSON-ready protocol name, seed, params, counts.
    """

    user_ids: list[str]
    item_ids: list[str]
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    cold_items: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("user_ids", "item_ids"):
            ids = [str(x) for x in getattr(self, name)]
            if len(set(ids)) != len(ids):
                raise SplitError(f"{name} holds the same id twice")
            set_(self, name, ids)
        n_users, n_items = len(self.user_ids), len(self.item_ids)
        keys = []
        for part in PARTS:
            arr = np.asarray(getattr(self, part), dtype=np.int64)
            arr = arr.reshape(0, 2) if arr.size == 0 else arr
            if arr.ndim != 2 or arr.shape[1] != 2:
                raise SplitError(
                    f"{part} must be [m, 2] (user index, item index) pairs, got shape {arr.shape}"
                )
            if len(arr) and (arr.min() < 0 or arr[:, 0].max() >= n_users or arr[:, 1].max() >= n_items):
                raise SplitError(f"{part} has indices outside {n_users} users x {n_items} items")
            set_(self, part, arr)
            keys.append(arr[:, 0] * n_items + arr[:, 1])
        all_keys = np.concatenate(keys)
        if len(np.unique(all_keys)) != len(all_keys):
            raise SplitError("a (user, item) pair occurs twice (within a part or in two parts)")
        cold = np.unique(np.asarray(self.cold_items, dtype=np.int64).reshape(-1))
        if len(cold) and (cold[0] < 0 or cold[-1] >= n_items):
            raise SplitError(f"cold_items has indices outside {n_items} items")
        if np.isin(self.train[:, 1], cold).any():
            raise SplitError("a cold item has training interactions")
        set_(self, "cold_items", cold)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def pairs(self, part: str) -> np.ndarray:
        """[m, 2] pairs of 'train', 'valid' or 'test'."""
        if part not in PARTS:
            raise SplitError(f"unknown part {part!r}; choose one of {', '.join(PARTS)}")
        return getattr(self, part)

    def matrix(self, part: str) -> sp.csr_matrix:
        """Binary float32 [n_users, n_items] CSR matrix of one part (sorted indices)."""
        p = self.pairs(part)
        m = sp.csr_matrix(
            (np.ones(len(p), np.float32), (p[:, 0], p[:, 1])), shape=(self.n_users, self.n_items)
        )
        m.sort_indices()
        return m

    def positives(self, part: str) -> list[np.ndarray]:
        """Per user index, the sorted int64 item indices of one part (empty arrays for none)."""
        m = self.matrix(part)
        return np.split(m.indices.astype(np.int64), m.indptr[1:-1]) if self.n_users else []

    def stats(self) -> dict[str, Any]:
        """Sizes for reports: users, items, pairs per part, density, cold items, users/items without
        train. The last three count different things (`STATS_MEANING`): a random split has no cold
        items by design, yet may leave an item or user without a training interaction by chance."""
        counts = {p: len(self.pairs(p)) for p in PARTS}
        total, cells = sum(counts.values()), self.n_users * self.n_items
        return {
            "protocol": self.meta.get("protocol"),
            "users": self.n_users,
            "items": self.n_items,
            **counts,
            "interactions": total,
            "density": total / cells if cells else 0.0,
            "cold_items": len(self.cold_items),
            "users_without_train": self.n_users - len(np.unique(self.train[:, 0])),
            "items_without_train": self.n_items - len(np.unique(self.train[:, 1])),
        }

    def fingerprint(self) -> str:
        """sha256 over ids and pair arrays (not meta): equal fingerprints mean the same split."""
        h = hashlib.sha256(b"mllmrec-split/1\n")
        h.update(json.dumps([self.user_ids, self.item_ids], ensure_ascii=False).encode("utf-8"))
        for name in (*PARTS, "cold_items"):
            arr = np.ascontiguousarray(getattr(self, name), dtype="<i8")
            h.update(f"\n{name}{arr.shape}\n".encode())
            h.update(arr.tobytes())
        return h.hexdigest()


def kcore(inter: Interactions, k: int) -> Interactions:
    """Rows whose user and item survive iterative k-core filtering: repeatedly drop users with fewer
    than k distinct items and items with fewer than k distinct users until none is left to drop
    (duplicate rows count once but are kept)."""
    if not isinstance(k, (int, np.integer)) or k < 0:
        raise SplitError(f"k must be a non-negative integer, got {k!r}")
    if k <= 1 or len(inter) == 0:
        return inter
    users, items, key, u, i = _codes(inter)
    rows = _first(key)
    pu, pi = u[rows], i[rows]
    alive = np.ones(len(rows), bool)
    while True:
        du = np.bincount(pu[alive], minlength=len(users))
        di = np.bincount(pi[alive], minlength=len(items))
        ok = alive & (du[pu] >= k) & (di[pi] >= k)
        if ok.sum() == alive.sum():
            break
        alive = ok
    return inter.take((du[u] >= k) & (di[i] >= k))


def random_split(
    inter: Interactions, seed: int, ratios: Sequence[float] = (0.8, 0.1, 0.1), min_interactions: int = 10
) -> Split:
    """MMRec's per-user random split (module docstring); sizes per user with n distinct items:
    valid = max(1, floor(n * r_valid)), test = max(1, floor(n * r_test)), train = the rest."""
    r, seed = _ratios(ratios), _seed(seed)
    users, items, key, u, i = _codes(inter)
    rows = _first(key)
    rng = np.random.default_rng(seed)
    part = _cut(u[rows], rng.permutation(len(rows)), len(users), r, min_interactions)
    return _finish(
        users,
        items,
        u[rows],
        i[rows],
        part,
        None,
        _meta("random", inter, len(rows), seed=seed, ratios=list(r), min_interactions=min_interactions),
    )


def temporal_split(
    inter: Interactions, ratios: Sequence[float] = (0.8, 0.1, 0.1), min_interactions: int = 10
) -> Split:
    """Per user by time: earliest pairs train, then valid, latest test (sizes as `random_split`;
    ties keep row order). A repeated pair counts at its first (earliest) time."""
    r = _ratios(ratios)
    ts = inter.timestamps
    if ts is None:
        raise SplitError(
            f"{inter.source}: temporal_split needs timestamps and the log has none "
            "(read_interactions(..., time_field=...) names the column)"
        )
    if np.isnan(ts).any():
        raise SplitError(f"{inter.source}: {int(np.isnan(ts).sum())} interactions have no timestamp")
    users, items, key, u, i = _codes(inter)
    rows = _first(key, np.argsort(ts, kind="stable"))
    part = _cut(u[rows], ts[rows], len(users), r, min_interactions)
    return _finish(
        users,
        items,
        u[rows],
        i[rows],
        part,
        None,
        _meta("temporal", inter, len(rows), ratios=list(r), min_interactions=min_interactions),
    )


def cold_start_split(
    inter: Interactions,
    seed: int,
    cold_share: float = 0.2,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    min_interactions: int = 10,
) -> Split:
    """Hold out `cold_share` of the items with all their interactions, never in train.

    The cold items themselves are split in two disjoint halves: all interactions of the first half
    go to valid, all of the second half to test, so no cold test item was seen (even as a
    validation positive) before testing. The remaining pairs get `random_split`'s per-user cut."""
    r, seed = _ratios(ratios), _seed(seed)
    users, items, key, u, i = _codes(inter)
    rows = _first(key)
    u, i = u[rows], i[rows]
    n_cold = round(float(cold_share) * len(items))
    if not 0 < cold_share < 1 or not 0 < n_cold < len(items):
        raise SplitError(
            f"cold_share={cold_share} of {len(items)} items gives {n_cold} cold items; "
            "need a share in (0, 1) that leaves at least one cold and one warm item"
        )
    rng = np.random.default_rng(seed)
    cold_items = rng.choice(len(items), n_cold, replace=False)
    cold = np.zeros(len(items), bool)
    cold[cold_items] = True
    test_cold = np.zeros(len(items), bool)
    test_cold[cold_items[len(cold_items) // 2 :]] = True
    part = np.empty(len(u), np.int64)
    held = np.flatnonzero(cold[i])
    part[held] = np.where(test_cold[i[held]], TEST, VALID)
    warm = np.flatnonzero(~cold[i])
    part[warm] = _cut(u[warm], rng.permutation(len(warm)), len(users), r, min_interactions)
    meta = _meta(
        "cold",
        inter,
        len(rows),
        seed=seed,
        cold_share=float(cold_share),
        ratios=list(r),
        min_interactions=min_interactions,
        cold_interactions=len(held),
    )
    return _finish(users, items, u, i, part, cold, meta)


def split_from_labels(inter: Interactions) -> Split:
    """The split a file's MMRec `x_label` column states (0 train, 1 valid, 2 test), kept as is.

    A pair listed in several parts stays in the lowest (train before valid before test) and is
    counted in meta; held-out items without training interactions are counted, not dropped.
    """
    if inter.labels is None:
        raise SplitError(f"{inter.source}: no {LABEL_FIELD} column to split by; use random_split")
    users, items, key, u, i = _codes(inter)
    lab = inter.labels.astype(np.int64)
    rows = _first(key, np.argsort(lab, kind="stable"))
    conflicts = len(np.unique(key * 3 + lab)) - len(rows)
    return _finish(
        users,
        items,
        u[rows],
        i[rows],
        lab[rows],
        None,
        _meta("labels", inter, len(rows), conflicting_pairs=conflicts),
        strict=False,
    )


def _codes(inter: Interactions) -> tuple[list[str], list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(user ids, item ids in first-seen order, pair key, user codes, item codes) for every row."""
    uidx, u = index_ids(inter.users)
    iidx, i = index_ids(inter.items)
    return list(uidx), list(iidx), u * max(len(iidx), 1) + i, u, i


def _first(key: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """Rows of each key's first occurrence in `order` (default: row order), returned in row order."""
    order = np.arange(len(key)) if order is None else order
    return np.sort(order[np.unique(key[order], return_index=True)[1]])


def _ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    r = tuple(float(x) for x in ratios)
    if len(r) != 3 or min(r) <= 0 or abs(sum(r) - 1) > 1e-6:
        raise SplitError(
            f"ratios must be three positive shares (train, valid, test) summing to 1, got {tuple(ratios)}"
        )
    return r  # type: ignore[return-value]


def _seed(seed: int) -> int:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise SplitError(f"seed must be an integer (a split must be reproducible), got {seed!r}")
    return int(seed)


def _cut(
    u: np.ndarray, key: np.ndarray, n_users: int, r: tuple[float, float, float], min_interactions: int
) -> np.ndarray:
    """Part code per pair: each user's pairs ordered by `key` (ties by position), the first
    n_train go to train, the next n_valid to valid, the rest to test."""
    m = len(u)
    order = np.lexsort((np.arange(m), key, u))
    counts = np.bincount(u, minlength=n_users)
    pos = np.empty(m, np.int64)
    pos[order] = np.arange(m) - (np.cumsum(counts) - counts)[u[order]]
    n_valid = np.maximum(1, np.floor(counts * r[1] + 1e-9)).astype(np.int64)
    n_test = np.maximum(1, np.floor(counts * r[2] + 1e-9)).astype(np.int64)
    small = counts < min_interactions
    n_valid[small], n_test[small] = 1, 1
    n_valid[counts < 3], n_test[counts < 3] = 0, 0
    n_train = counts - n_valid - n_test
    return np.where(pos < n_train[u], TRAIN, np.where(pos < (n_train + n_valid)[u], VALID, TEST))


def _meta(protocol: str, inter: Interactions, n_pairs: int, **params: Any) -> dict[str, Any]:
    return {
        "protocol": protocol,
        **params,
        "source": inter.source,
        "input_rows": len(inter),
        "duplicates_folded": len(inter) - n_pairs,
    }


def _finish(
    users: list[str],
    items: list[str],
    u: np.ndarray,
    i: np.ndarray,
    part: np.ndarray,
    cold: np.ndarray | None,
    meta: dict[str, Any],
    strict: bool = True,
) -> Split:
    """Build the Split. strict: drop held-out pairs whose (warm) item has no training pair and
    remove items left without train from the index (cold items stay); counts go into meta."""
    cold = np.zeros(len(items), bool) if cold is None else cold
    in_train = np.bincount(i[part == TRAIN], minlength=len(items)) > 0
    orphan = (part != TRAIN) & ~in_train[i] & ~cold[i]
    held = {name: int((orphan & (part == code)).sum()) for code, name in enumerate(PARTS) if code}
    if strict:
        part = np.where(orphan, DROPPED, part)
        keep = in_train | cold
        meta |= {"dropped_without_train": held, "items_dropped": int((~keep).sum())}
    else:
        keep = np.ones(len(items), bool)
        meta |= {"held_out_without_train": held}
    new = np.full(len(items), -1, np.int64)
    new[keep] = np.arange(int(keep.sum()))
    pairs = {
        name: np.stack([u[part == code], new[i[part == code]]], axis=1) for code, name in enumerate(PARTS)
    }
    meta["counts"] = {name: len(p) for name, p in pairs.items()}
    return Split(
        users, [items[x] for x in np.flatnonzero(keep)], **pairs, cold_items=new[cold & keep], meta=meta
    )


# ---------------------------------------------------------------------------------------------
# The protocol table: one name per split, shared by distill, the eval grid and the exporters
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SplitProtocol:
    """A split by name: `make(inter, seed, **options)`; `options` names the keyword options it takes
    (anything else is refused, so a typo in a config is an error, not a silent default)."""

    name: str
    help: str
    make: Callable[..., Split]
    options: tuple[str, ...] = ()
    needs: str | None = None  # what the log must carry ("timestamps", "labels")


PROTOCOLS: dict[str, SplitProtocol] = {
    p.name: p
    for p in (
        SplitProtocol(
            "random",
            "MMRec per-user random 8:1:1 (seeded)",
            lambda inter, seed, **o: random_split(inter, seed, **o),
            ("ratios", "min_interactions"),
        ),
        SplitProtocol(
            "temporal",
            "per user by time: earliest train, latest test",
            lambda inter, seed, **o: temporal_split(inter, **o),
            ("ratios", "min_interactions"),
            "timestamps",
        ),
        SplitProtocol(
            "cold",
            "hold out a share of items with all their interactions (content only reaches them)",
            lambda inter, seed, **o: cold_start_split(inter, seed, **o),
            ("cold_share", "ratios", "min_interactions"),
        ),
        SplitProtocol(
            "labels",
            "the log's MMRec x_label column (0 train, 1 valid, 2 test), as given",
            lambda inter, seed, **o: split_from_labels(inter),
            (),
            "labels",
        ),
    )
}
SPLIT_NAMES = tuple(PROTOCOLS)


def make_split(name: str, inter: Interactions, seed: int = 0, **options: Any) -> Split:
    """The split protocol `name` (a PROTOCOLS key) over `inter`."""
    if name not in PROTOCOLS:
        import difflib

        near = difflib.get_close_matches(name, SPLIT_NAMES, n=1)
        raise SplitError(
            f"unknown split {name!r}{f' (did you mean {near[0]}?)' if near else ''}; "
            f"known: {', '.join(SPLIT_NAMES)}"
        )
    proto = PROTOCOLS[name]
    unknown = sorted(set(options) - set(proto.options))
    if unknown:
        raise SplitError(
            f"split {name!r} takes no option(s) {', '.join(unknown)} "
            f"(it takes: {', '.join(proto.options) or 'none'})"
        )
    return proto.make(inter, seed, **options)
