"""Evaluation protocols: MMRec random split, temporal, cold-start, x_label splits, k-core, and `Split`."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mllmrec.catalog.interactions import Interactions
from mllmrec.catalog.splits import (
    PARTS,
    PROTOCOLS,
    STATS_MEANING,
    Split,
    SplitError,
    cold_start_split,
    kcore,
    random_split,
    split_from_labels,
    temporal_split,
)
from mllmrec.errors import MllmrecError


def make_log(sizes: list[int], n_items: int = 25, seed: int = 0, base_users: int = 30) -> Interactions:
    """`base_users` users with 20 items each (so every item has training data), then one user per
    entry of `sizes` with that many distinct items; random timestamps."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u, n in enumerate([20] * base_users + sizes):
        for it in rng.choice(n_items, n, replace=False):
            users.append(f"u{u}")
            items.append(f"i{it}")
    return Interactions(users, items, timestamps=rng.integers(0, 10**6, len(users)).astype(float))


def part_sets(split: Split) -> dict[str, set[tuple[str, str]]]:
    """Raw (user id, item id) pairs per part."""
    return {p: {(split.user_ids[u], split.item_ids[i]) for u, i in split.pairs(p)} for p in PARTS}


def per_user(split: Split, user: str) -> tuple[int, int, int]:
    u = split.user_ids.index(user)
    return tuple(int((split.pairs(p)[:, 0] == u).sum()) for p in PARTS)  # type: ignore[return-value]


def check_invariants(split: Split, inter: Interactions) -> None:
    """Disjoint parts, held-out items known from train (or cold), nothing lost without a count."""
    sets = part_sets(split)
    assert (
        not (sets["train"] & sets["valid"])
        and not (sets["train"] & sets["test"])
        and not (sets["valid"] & sets["test"])
    )
    train_items = set(split.train[:, 1].tolist())
    cold = set(split.cold_items.tolist())
    for p in ("valid", "test"):
        assert set(split.pairs(p)[:, 1].tolist()) <= train_items | cold
    distinct = set(zip(inter.users.tolist(), inter.items.tolist(), strict=True))
    assert set().union(*sets.values()) <= distinct
    dropped = sum(split.meta["dropped_without_train"].values())
    assert sum(len(s) for s in sets.values()) + dropped == len(distinct)


def test_random_split_sizes_per_user_follow_mmrec() -> None:
    inter = make_log([20, 15, 10, 9, 5, 3, 2, 1])
    split = random_split(inter, seed=0)
    check_invariants(split, inter)
    assert split.meta["dropped_without_train"] == {"valid": 0, "test": 0}
    base = 30
    expected = {
        20: (16, 2, 2),
        15: (13, 1, 1),
        10: (8, 1, 1),
        9: (7, 1, 1),
        5: (3, 1, 1),
        3: (1, 1, 1),
        2: (2, 0, 0),
        1: (1, 0, 0),
    }
    for k, n in enumerate([20, 15, 10, 9, 5, 3, 2, 1]):
        assert per_user(split, f"u{base + k}") == expected[n], n
    assert split.meta["protocol"] == "random" and split.meta["seed"] == 0
    custom = random_split(inter, seed=0, ratios=(0.6, 0.2, 0.2), min_interactions=16)
    assert per_user(custom, "u30") == (12, 4, 4) and per_user(custom, "u31") == (13, 1, 1)


def test_random_split_is_deterministic_and_seeded() -> None:
    inter = make_log([12, 4])
    a, b, c = random_split(inter, 3), random_split(inter, 3), random_split(inter, 4)
    assert a.fingerprint() == b.fingerprint()
    for p in PARTS:
        np.testing.assert_array_equal(a.pairs(p), b.pairs(p))
    assert a.fingerprint() != c.fingerprint()
    # shuffled, not the user's last items in file order: the test items vary with the seed
    tests = {
        frozenset(i for u, i in part_sets(random_split(inter, s))["test"] if u == "u0") for s in range(6)
    }
    assert len(tests) > 1


def test_duplicates_are_folded_and_counted() -> None:
    inter = make_log([])
    doubled = Interactions(
        np.concatenate([inter.users, inter.users[:7]]), np.concatenate([inter.items, inter.items[:7]])
    )
    split = random_split(doubled, seed=1)
    assert split.meta["duplicates_folded"] == 7 and split.meta["input_rows"] == len(inter) + 7
    check_invariants(split, doubled)


def test_held_out_items_without_train_are_dropped_and_counted() -> None:
    base = make_log([])
    # u_rare has three items nobody else has: one goes to train, the other two cannot be scored.
    inter = Interactions(
        np.concatenate([base.users, ["rare"] * 3 + ["u0"]]),
        np.concatenate([base.items, ["r1", "r2", "r3", "i0"]]),
    )
    split = random_split(inter, seed=0)
    check_invariants(split, inter)
    assert sum(split.meta["dropped_without_train"].values()) == 2
    assert split.meta["items_dropped"] == 2
    assert len({"r1", "r2", "r3"} & set(split.item_ids)) == 1  # only the trained one stays in the index
    assert per_user(split, "rare") == (1, 0, 0)
    assert split.stats()["items_without_train"] == 0


def test_bad_arguments() -> None:
    inter = make_log([])
    for ratios in [(0.8, 0.2), (0.8, 0.1, 0.2), (0.9, 0.1, 0.0)]:
        with pytest.raises(SplitError, match="ratios"):
            random_split(inter, 0, ratios=ratios)
    with pytest.raises(SplitError, match="seed"):
        random_split(inter, None)  # type: ignore[arg-type]
    assert issubclass(SplitError, MllmrecError) and issubclass(SplitError, ValueError)


def test_kcore_property_and_cascade() -> None:
    rng = np.random.default_rng(5)
    users = [f"u{x}" for x in rng.zipf(1.6, 600) % 80]
    items = [f"i{x}" for x in rng.zipf(1.4, 600) % 120]
    inter = Interactions(users, items)
    for k in (2, 3, 5):
        core = kcore(inter, k)
        pairs = set(zip(core.users.tolist(), core.items.tolist(), strict=True))
        assert 0 < len(pairs) < len(set(zip(users, items, strict=True)))
        for who in (0, 1):
            counts: dict[str, int] = {}
            for pair in pairs:
                counts[pair[who]] = counts.get(pair[who], 0) + 1
            assert min(counts.values()) >= k
    # i3 has one user -> goes; then u3 has one item -> goes; u4's duplicate row counts once.
    chain = Interactions(
        ["u1", "u1", "u2", "u2", "u3", "u3", "u4", "u4"], ["i1", "i2", "i1", "i2", "i2", "i3", "i1", "i1"]
    )
    core = kcore(chain, 2)
    assert sorted(set(core.users.tolist())) == ["u1", "u2"] and sorted(set(core.items.tolist())) == [
        "i1",
        "i2",
    ]
    assert kcore(chain, 1) is chain
    with pytest.raises(SplitError):
        kcore(chain, -1)


def test_temporal_split_respects_time() -> None:
    inter = make_log([12, 5, 2])
    split = temporal_split(inter)
    check_invariants(split, inter)
    when = {(u, i): t for u, i, t in zip(inter.users, inter.items, inter.timestamps, strict=True)}
    sets = part_sets(split)
    for user in split.user_ids:
        ts = {p: [when[x] for x in sets[p] if x[0] == user] for p in PARTS}
        if ts["valid"]:
            assert max(ts["train"]) <= min(ts["valid"]) and max(ts["valid"]) <= min(ts["test"])
    assert per_user(split, "u30") == (10, 1, 1)


def test_temporal_split_repeated_pair_counts_at_first_time_and_ties_keep_order() -> None:
    inter = Interactions(
        ["u"] * 5, ["a", "b", "c", "a", "d"], timestamps=[9, 2, 2, 1, 3]
    )  # a: first row is late
    # v and w train on c and d (same times: row order decides), so nothing of u's is dropped
    more = Interactions(["v"] * 4 + ["w"] * 4, ["c", "d", "a", "b"] * 2, timestamps=[0.0] * 8)
    log = Interactions(
        np.concatenate([inter.users, more.users]),
        np.concatenate([inter.items, more.items]),
        timestamps=np.concatenate([inter.timestamps, more.timestamps]),
    )
    sets = part_sets(temporal_split(log))
    assert ("u", "a") in sets["train"] and ("u", "b") in sets["train"]
    assert ("u", "c") in sets["valid"] and ("u", "d") in sets["test"]


def test_temporal_split_needs_timestamps() -> None:
    with pytest.raises(SplitError, match="needs timestamps"):
        temporal_split(Interactions(["u"], ["i"]))
    with pytest.raises(SplitError, match="no timestamp"):
        temporal_split(Interactions(["u", "u"], ["i", "j"], timestamps=[1.0, np.nan]))


def test_cold_start_split_holds_items_out_entirely() -> None:
    inter = make_log([6, 3], n_items=40)
    split = cold_start_split(inter, seed=2, cold_share=0.2)
    check_invariants(split, inter)
    cold_ids = {split.item_ids[i] for i in split.cold_items}
    assert len(cold_ids) == 8  # 20% of 40
    assert not cold_ids & {split.item_ids[i] for i in split.train[:, 1]}
    cold_log = {(u, i) for u, i in zip(inter.users, inter.items, strict=True) if i in cold_ids}
    sets = part_sets(split)
    held = {x for x in sets["valid"] | sets["test"] if x[1] in cold_ids}
    assert held == cold_log  # every interaction of a cold item is held out
    valid_cold = {x[1] for x in sets["valid"] if x[1] in cold_ids}
    test_cold = {x[1] for x in sets["test"] if x[1] in cold_ids}
    assert not valid_cold & test_cold  # a cold item is a validation item or a test item, never both
    assert len(valid_cold) == len(test_cold) == 4  # the cold items are halved
    assert split.meta["cold_interactions"] == len(held)
    warm_train_items = set(split.train[:, 1].tolist())
    assert set(range(split.n_items)) == warm_train_items | set(split.cold_items.tolist())
    again, other = cold_start_split(inter, 2), cold_start_split(inter, 3)
    assert again.fingerprint() == split.fingerprint() and other.fingerprint() != split.fingerprint()
    with pytest.raises(SplitError, match="cold_share"):
        cold_start_split(inter, 0, cold_share=1.0)


def test_split_from_labels() -> None:
    inter = Interactions(
        ["u", "u", "u", "v", "v", "u"], ["a", "b", "c", "a", "z", "b"], labels=[0, 2, 2, 0, 2, 1]
    )
    split = split_from_labels(inter)
    sets = part_sets(split)
    assert sets == {
        "train": {("u", "a"), ("v", "a")},
        "valid": {("u", "b")},
        "test": {("u", "c"), ("v", "z")},
    }
    assert split.meta["conflicting_pairs"] == 1  # (u, b) labelled test, then valid: kept in valid
    assert split.meta["held_out_without_train"] == {"valid": 1, "test": 2}  # counted, not dropped
    assert "z" in split.item_ids
    with pytest.raises(SplitError, match="x_label"):
        split_from_labels(Interactions(["u"], ["a"]))


def test_split_views_and_checks() -> None:
    split = Split(
        ["u", "v"],
        ["a", "b", "c"],
        train=[[0, 0], [1, 1]],
        valid=[[0, 1]],
        test=np.zeros((0, 2)),
        cold_items=[2],
        meta={"protocol": "hand"},
    )
    assert split.matrix("train").toarray().tolist() == [[1, 0, 0], [0, 1, 0]]
    pos = split.positives("valid")
    assert [p.tolist() for p in pos] == [[1], []] and pos[0].dtype == np.int64
    st = split.stats()
    assert (st["users"], st["items"], st["train"], st["valid"], st["test"], st["cold_items"]) == (
        2,
        3,
        2,
        1,
        0,
        1,
    )
    assert st["density"] == pytest.approx(3 / 6) and st["items_without_train"] == 1
    # printed side by side, the look-alike counts come with what each one counts (issue 16.9)
    assert set(STATS_MEANING) <= set(st) and "cold" in STATS_MEANING["items_without_train"]
    moved = Split(
        ["u", "v"],
        ["a", "b", "c"],
        train=[[0, 0], [1, 1]],
        valid=np.zeros((0, 2)),
        test=[[0, 1]],
        cold_items=[2],
    )
    assert moved.fingerprint() != split.fingerprint()
    with pytest.raises(SplitError, match="twice"):
        Split(["u"], ["a"], train=[[0, 0]], valid=np.zeros((0, 2)), test=[[0, 0]])
    with pytest.raises(SplitError, match="outside"):
        Split(["u"], ["a"], train=[[0, 1]], valid=[], test=[])
    with pytest.raises(SplitError, match="cold item"):
        Split(["u"], ["a"], train=[[0, 0]], valid=[], test=[], cold_items=[0])
    with pytest.raises(SplitError, match="same id twice"):
        Split(["u", "u"], ["a"], train=[], valid=[], test=[])
    with pytest.raises(SplitError, match="unknown part"):
        split.matrix("all")


def _log_with_time_and_labels():
    rng = np.random.default_rng(3)
    users = np.array([f"u{k % 40}" for k in range(800)], dtype=object)
    items = np.array([f"i{rng.integers(60)}" for _ in range(800)], dtype=object)
    return Interactions(
        users=users,
        items=items,
        timestamps=np.arange(800, dtype=np.float64),
        labels=rng.choice([0, 0, 0, 1, 2], size=800).astype(np.int64),
        source="planted",
    )


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_every_split_protocol_of_the_table_gives_disjoint_parts_and_is_deterministic(name):
    from mllmrec.catalog.splits import make_split

    inter = _log_with_time_and_labels()
    a, b = make_split(name, inter, seed=5), make_split(name, inter, seed=5)
    assert a.fingerprint() == b.fingerprint()
    parts = [{tuple(p) for p in a.pairs(part).tolist()} for part in ("train", "valid", "test")]
    assert parts[0] and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])


def test_split_table_refuses_unknown_names_and_options_and_distill_help_names_them():
    from mllmrec.catalog.splits import SPLIT_NAMES, SplitError, make_split
    from mllmrec.distill.config import DistillConfig

    inter = _log_with_time_and_labels()
    with pytest.raises(SplitError, match="did you mean temporal"):
        make_split("temporall", inter)
    with pytest.raises(SplitError, match="takes no option"):
        make_split("random", inter, cold_share=0.3)
    help_text = next(f for f in dataclasses.fields(DistillConfig) if f.name == "split").metadata["help"]
    assert all(name in help_text for name in SPLIT_NAMES)
