"""mllmrec.ids: id lookup by binary search over sorted fixed-width bytes (no dict of all ids)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mllmrec.ids import IdIndex, IdList, to_fixed_bytes

AWKWARD = ["17", "017", "a b", "ü-ß", "x" * 40, "", "tab\there", "B00000JBLU"]


@pytest.mark.parametrize("source", ["list", "arrow", "arrow-slice", "chunked"])
def test_positions_find_every_id_and_only_those(source):
    ids = AWKWARD
    if source == "list":
        built = ids
    elif source == "arrow":
        built = pa.array(ids)
    elif source == "arrow-slice":  # a sliced array has a non-zero offset into its buffers
        built = pa.array(["pad", "pad2", *ids]).slice(2)
    else:
        built = pa.chunked_array([pa.array(ids[:3]), pa.array(ids[3:])])
    ix = IdIndex.build(built)
    assert ix.positions(ids).tolist() == list(range(len(ids)))
    assert ix.positions(pa.array(list(reversed(ids)))).tolist() == list(reversed(range(len(ids))))
    # absent ids, including ones longer than every key and prefixes of keys, are -1
    absent = ["18", "0017", "a", "x" * 41, "x" * 39, "ü", "B00000JBL"]
    assert ix.positions(absent).tolist() == [-1] * len(absent)
    assert ix.position("017") == 1 and ix.position("nope") == -1


def test_duplicates_resolve_to_one_of_their_positions():
    ix = IdIndex.build(["a", "b", "a"])
    assert ix.positions(["a", "b"]).tolist() in ([0, 1], [2, 1])


@pytest.mark.parametrize("wrap", [list, pa.array])
def test_ids_that_differ_only_by_nul_bytes_stay_apart(wrap):
    ids = ["a", "a\x00", "a\x00\x00", "\x00", "b\x00c"]
    ix = IdIndex.build(wrap(ids))  # numpy's fixed-width bytes alone would make the first three equal
    assert ix.positions(wrap(list(reversed(ids)))).tolist() == [4, 3, 2, 1, 0]
    assert ix.positions(["a\x00\x00\x00", "b"]).tolist() == [-1, -1]


def test_arrow_and_python_conversions_agree_on_many_ids():
    rng = np.random.default_rng(0)
    ids = [f"{rng.integers(0, 10**9)}-{'é' * int(rng.integers(0, 4))}" for _ in range(5000)]
    assert (to_fixed_bytes(pa.array(ids)) == to_fixed_bytes(ids)).all()
    ix = IdIndex.build(pa.array(ids))
    want = {i: n for n, i in enumerate(ids)}  # the dict this replaces, as the reference
    assert ix.positions(ids).tolist() == [want[i] for i in ids]


def test_saved_index_is_memory_mapped_and_refused_when_its_source_changed(tmp_path):
    ix = IdIndex.build(AWKWARD)
    ix.save(tmp_path, "ids", {"source": "a"})
    back = IdIndex.load(tmp_path, "ids", {"source": "a"})
    assert isinstance(back.keys, np.memmap) and back.positions(AWKWARD).tolist() == list(range(len(AWKWARD)))
    assert IdIndex.load(tmp_path, "ids", {"source": "b"}) is None  # stale: the caller rebuilds
    (tmp_path / "ids.order.npy").write_bytes(b"damaged")
    assert IdIndex.load(tmp_path, "ids", {"source": "a"}) is None
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary left behind


def test_id_list_reads_like_a_list():
    ids = IdList(pa.array(AWKWARD))
    assert len(ids) == len(AWKWARD) and ids[1] == "017" and ids[-2:] == AWKWARD[-2:]
    assert list(ids) == AWKWARD and ids.take([3, 0]) == ["ü-ß", "17"]


def test_numpy_bytes_are_refused_since_keys_carry_an_end_byte():
    with pytest.raises(TypeError, match="pyarrow"):
        IdIndex.build(["a"]).positions(np.array([b"a"]))
