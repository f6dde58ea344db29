"""Interaction-log readers (CSV, Parquet, JSONL, MMRec/RecBole .inter) and the id/matrix helpers."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mllmrec.catalog.interactions import (
    Interactions,
    InteractionsError,
    dedupe,
    index_ids,
    read_interactions,
    to_matrix,
)
from mllmrec.errors import MllmrecError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_keeps_ids_as_text_and_reads_optional_columns(tmp_path: Path) -> None:
    p = write(
        tmp_path / "log.csv", "user_id,item_id,rating,timestamp\n01,007,4.5,100\n2,8,,200\n01,007,3,300\n"
    )
    inter = read_interactions(p)
    assert inter.users.tolist() == ["01", "2", "01"]
    assert inter.items.tolist() == ["007", "8", "007"]  # leading zeros kept
    assert all(type(x) is str for x in inter.items)
    np.testing.assert_array_equal(inter.timestamps, [100.0, 200.0, 300.0])
    assert inter.ratings[0] == 4.5 and np.isnan(inter.ratings[1])  # empty cell -> NaN
    assert inter.labels is None and inter.source == str(p)
    assert len(inter) == 3  # duplicate (01, 007) kept: it is a log


def test_missing_optional_columns_are_none_and_custom_names_work(tmp_path: Path) -> None:
    p = write(tmp_path / "log.csv", 'uid,iid,when\na,"x,1",2020-01-02T00:00:00\nb,y,1970-01-01 00:01:00\n')
    inter = read_interactions(p, user_field="uid", item_field="iid", time_field="when")
    assert inter.items.tolist() == ["x,1", "y"]  # quoted CSV cell
    assert inter.ratings is None
    expected = datetime(2020, 1, 2, tzinfo=timezone.utc).timestamp()
    np.testing.assert_allclose(inter.timestamps, [expected, 60.0])  # ISO dates -> Unix seconds
    assert read_interactions(write(tmp_path / "b.csv", "user_id,item_id\na,b\n")).timestamps is None


def test_parquet_numeric_ids_become_strings_and_datetimes_seconds(tmp_path: Path) -> None:
    when = [datetime(1970, 1, 1, 0, 0, 10), datetime(1970, 1, 1, 0, 1, 0)]
    table = pa.table(
        {
            "user_id": [1, 2],
            "item_id": pa.array([10.0, 11.0]),
            "timestamp": pa.array(when, pa.timestamp("ms")),
            "rating": [5, 4],
            "review": ["long text", "more"],
        }
    )
    pq.write_table(table, tmp_path / "log.parquet")
    inter = read_interactions(tmp_path / "log.parquet")
    assert inter.users.tolist() == ["1", "2"] and inter.items.tolist() == ["10", "11"]
    np.testing.assert_array_equal(inter.timestamps, [10.0, 60.0])
    np.testing.assert_array_equal(inter.ratings, [5.0, 4.0])


def test_jsonl_and_json_array(tmp_path: Path) -> None:
    rows = [{"user_id": 1, "item_id": "a", "rating": 2}, {"user_id": "u2", "item_id": 3}]
    p = write(tmp_path / "log.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    inter = read_interactions(p)
    assert inter.users.tolist() == ["1", "u2"] and inter.items.tolist() == ["a", "3"]
    assert inter.ratings[0] == 2 and np.isnan(inter.ratings[1]) and inter.timestamps is None
    arr = read_interactions(write(tmp_path / "log.json", json.dumps(rows)))
    assert arr.items.tolist() == ["a", "3"]


def test_mmrec_inter_with_x_label(tmp_path: Path) -> None:
    p = write(
        tmp_path / "baby.inter",
        "userID\titemID\trating\ttimestamp\tx_label\n0\t5\t5.0\t1\t0\n0\t6\t4.0\t2\t1\n1\t5\t3.0\t3\t2\n",
    )
    inter = read_interactions(p)
    assert inter.users.tolist() == ["0", "0", "1"] and inter.items.tolist() == ["5", "6", "5"]
    assert inter.labels.dtype == np.int8 and inter.labels.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(inter.timestamps, [1, 2, 3])


def test_recbole_typed_header_is_stripped(tmp_path: Path) -> None:
    p = write(
        tmp_path / "ml.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t242\t3\t881250949\n",
    )
    inter = read_interactions(p)
    assert inter.users.tolist() == ["196"] and inter.items.tolist() == ["242"]
    assert inter.ratings.tolist() == [3.0] and inter.timestamps.tolist() == [881250949.0]


def test_unknown_extension_sniffs_tabs_and_fmt_overrides(tmp_path: Path) -> None:
    tab = write(tmp_path / "log.txt", "user_id:token\titem_id:token\nu\ti\n")
    assert read_interactions(tab).items.tolist() == ["i"]
    comma = write(tmp_path / "log.dat", "user_id,item_id\nu,i\n")
    with pytest.raises(InteractionsError, match="cannot tell the format"):
        read_interactions(comma)
    assert read_interactions(comma, fmt="csv").users.tolist() == ["u"]
    with pytest.raises(InteractionsError, match="unknown interactions format"):
        read_interactions(comma, fmt="xml")


def test_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(InteractionsError, match="not found"):
        read_interactions(tmp_path / "nope.csv")
    with pytest.raises(InteractionsError, match="empty"):
        read_interactions(write(tmp_path / "empty.csv", ""))
    with pytest.raises(InteractionsError, match="no interactions"):
        read_interactions(write(tmp_path / "header.csv", "user_id,item_id\n"))
    with pytest.raises(InteractionsError, match="empty"):
        read_interactions(write(tmp_path / "empty.jsonl", "\n"))
    cols = write(tmp_path / "cols.csv", "uid,product\na,b\n")
    with pytest.raises(InteractionsError, match="columns are: uid, product") as e:
        read_interactions(cols)
    assert isinstance(e.value, MllmrecError) and isinstance(e.value, ValueError)
    ok = write(tmp_path / "ok.csv", "user_id,item_id,rating\na,b,x\n")
    with pytest.raises(
        InteractionsError, match=r"no time column .ts.*--time-field"
    ):  # an explicit name that is absent
        read_interactions(ok, time_field="ts")
    with pytest.raises(InteractionsError, match="'rating' must hold numbers"):
        read_interactions(ok)
    with pytest.raises(InteractionsError, match="data row 2"):
        read_interactions(write(tmp_path / "gap.csv", "user_id,item_id\na,b\n,c\n"))
    with pytest.raises(InteractionsError, match="x_label must be 0"):
        read_interactions(write(tmp_path / "bad.inter", "userID\titemID\tx_label\n1\t2\t3\n"))
    with pytest.raises(InteractionsError, match="cannot read as tab-separated"):
        read_interactions(write(tmp_path / "ragged.inter", "user_id\titem_id\n1\t2\t3\n"))


def test_constructor_coerces_and_checks() -> None:
    inter = Interactions(users=[1, 2], items=["a", "b"], timestamps=[1, 2], labels=[0, 2])
    assert inter.users.tolist() == ["1", "2"] and inter.timestamps.dtype == np.float64
    assert inter.labels.dtype == np.int8
    with pytest.raises(InteractionsError, match="differ in length"):
        Interactions(users=["a"], items=["b"], ratings=[1.0, 2.0])
    with pytest.raises(InteractionsError, match="missing"):
        Interactions(users=["a", None], items=["b", "c"])
    sub = inter.take(np.array([1]))
    assert sub.users.tolist() == ["2"] and sub.labels.tolist() == [2] and sub.ratings is None


def test_dedupe_first_and_last() -> None:
    inter = Interactions(["u", "v", "u", "u"], ["a", "a", "a", "b"], ratings=[1, 2, 3, 4])
    assert dedupe(inter, keep="last").ratings.tolist() == [2, 3, 4]
    assert dedupe(inter, keep="first").ratings.tolist() == [1, 2, 4]
    with pytest.raises(InteractionsError):
        dedupe(inter, keep="any")


def test_index_ids_first_seen_order() -> None:
    index, codes = index_ids(["c", "a", "c", "b"])
    assert list(index) == ["c", "a", "b"] and index == {"c": 0, "a": 1, "b": 2}
    assert codes.tolist() == [0, 1, 0, 2] and codes.dtype == np.int64
    assert index_ids([])[1].shape == (0,)


def test_to_matrix_binary_and_missing_ids() -> None:
    inter = Interactions(["u", "u", "v"], ["a", "a", "b"])
    users, items = {"u": 0, "v": 1, "w": 2}, {"a": 0, "b": 1, "c": 2}
    m = to_matrix(inter, users, items)
    assert m.shape == (3, 3) and m.nnz == 2
    assert m.toarray().tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]  # the duplicate counts once
    with pytest.raises(InteractionsError, match="outside the index"):
        to_matrix(inter, {"u": 0}, items)
    assert to_matrix(inter, {"u": 0}, items, missing="skip").nnz == 1
