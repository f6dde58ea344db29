"""Saving and loading splits: exact round trip, fingerprint check, incomplete folders refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mllmrec.catalog.interactions import Interactions
from mllmrec.catalog.saved_splits import META_FILE, load_split, save_split
from mllmrec.catalog.splits import PARTS, Split, SplitError, cold_start_split, random_split


def make_log(seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    users = [f"user {u}" for u in range(25) for _ in range(12)]  # ids with spaces and unicode survive
    items = [f"ité{i}" for _ in range(25) for i in rng.choice(30, 12, replace=False)]
    return Interactions(users, items)


def assert_same(a: Split, b: Split) -> None:
    assert a.user_ids == b.user_ids and a.item_ids == b.item_ids
    for p in PARTS:
        np.testing.assert_array_equal(a.pairs(p), b.pairs(p))
        assert b.pairs(p).dtype == np.int64
    np.testing.assert_array_equal(a.cold_items, b.cold_items)
    assert a.meta == b.meta and a.fingerprint() == b.fingerprint()


@pytest.mark.parametrize("kind", ["random", "cold"])
def test_round_trip(tmp_path: Path, kind: str) -> None:
    inter = make_log()
    split = random_split(inter, 7) if kind == "random" else cold_start_split(inter, 7, cold_share=0.3)
    out = save_split(split, tmp_path / "s")
    doc = json.loads((out / META_FILE).read_text())
    assert doc["fingerprint"] == split.fingerprint() and doc["stats"]["train"] == len(split.train)
    loaded = load_split(out)
    assert_same(split, loaded)
    assert (len(loaded.cold_items) > 0) == (kind == "cold")


def test_empty_part_and_overwrite(tmp_path: Path) -> None:
    hand = Split(
        ["u"],
        ["a", "b"],
        train=[[0, 0]],
        valid=np.zeros((0, 2)),
        test=[[0, 1]],
        meta={"protocol": "hand", "n": np.int64(3)},
    )
    save_split(random_split(make_log(), 1), tmp_path)
    save_split(hand, tmp_path)  # the second save replaces the first
    loaded = load_split(tmp_path)
    assert loaded.valid.shape == (0, 2) and loaded.meta == {"protocol": "hand", "n": 3}
    assert loaded.fingerprint() == hand.fingerprint()


def test_tampered_files_are_refused(tmp_path: Path) -> None:
    split = random_split(make_log(), 0)
    save_split(split, tmp_path)
    test = pq.read_table(tmp_path / "test.parquet").to_pydict()
    train = pq.read_table(tmp_path / "train.parquet").to_pydict()
    # move one test pair into train: still a valid split, but not the saved one
    moved = {k: train[k] + test[k][:1] for k in ("user", "item")}
    pq.write_table(
        pa.table({k: pa.array(v, pa.int64()) for k, v in moved.items()}), tmp_path / "train.parquet"
    )
    pq.write_table(
        pa.table({k: pa.array(v[1:], pa.int64()) for k, v in test.items()}), tmp_path / "test.parquet"
    )
    with pytest.raises(SplitError, match="changed or partly overwritten"):
        load_split(tmp_path)


def test_incomplete_or_foreign_folders(tmp_path: Path) -> None:
    with pytest.raises(SplitError, match="no saved split"):
        load_split(tmp_path / "nothing")
    save_split(random_split(make_log(), 0), tmp_path / "a")
    (tmp_path / "a" / "valid.parquet").unlink()
    with pytest.raises(SplitError, match="valid.parquet is missing"):
        load_split(tmp_path / "a")
    save_split(random_split(make_log(), 0), tmp_path / "b")
    (tmp_path / "b" / META_FILE).write_text(json.dumps({"format": "other"}))
    with pytest.raises(SplitError, match="not a mllmrec-split"):
        load_split(tmp_path / "b")
    (tmp_path / "b" / META_FILE).write_text("{")
    with pytest.raises(SplitError, match="not valid JSON"):
        load_split(tmp_path / "b")
    bad_meta = Split(["u"], ["a"], train=[[0, 0]], valid=[], test=[], meta={"x": object()})
    with pytest.raises(SplitError, match="JSON"):
        save_split(bad_meta, tmp_path / "c")
