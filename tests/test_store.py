"""The store's files: shards, consolidation, memory-mapped reads, refusal of unfinished stores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mllmrec import artifacts
from mllmrec import store as st


def _manifest(out, fmt="safetensors", status="complete"):
    artifacts.write_manifest(
        out,
        {
            "stage": "embed",
            "status": status,
            "channels": ["mm", "visual"],
            "dims": {"mm": 5, "visual": 5},
            "config": {"format": fmt},
            "counts": {},
        },
    )


def test_shards_round_trip_and_concatenate_in_order(tmp_path):
    rng = np.random.default_rng(0)
    parts = []
    for k, n in enumerate([3, 0, 2]):  # an all-rejected shard has zero rows
        ids = [f"s{k}-{i}" for i in range(n)]
        vec = {"mm": rng.normal(size=(n, 4)).astype(np.float32)}
        rej = [{"id": f"bad{k}", "reason": "r", "action": "rejected"}] if n == 0 else []
        st.write_shard(tmp_path, k, ids, vec, rej)
        parts.append((ids, vec, rej))
    assert st.done_shards(tmp_path) == {0, 1, 2}
    ids, vectors, rejected = st.concat_shards(tmp_path, 3)
    assert ids == parts[0][0] + parts[2][0]
    np.testing.assert_array_equal(vectors["mm"], np.concatenate([parts[0][1]["mm"], parts[2][1]["mm"]]))
    assert rejected == [{"id": "bad1", "reason": "r", "action": "rejected"}]


def test_write_shard_refuses_row_count_mismatch(tmp_path):
    with pytest.raises(ValueError, match="2 rows for 3 ids"):
        st.write_shard(tmp_path, 0, ["a", "b", "c"], {"mm": np.zeros((2, 4), np.float32)}, [])
    assert st.done_shards(tmp_path) == set()


def test_partial_files_are_cleaned_and_do_not_count_as_done(tmp_path):
    (tmp_path / st.SHARDS).mkdir()
    (tmp_path / st.SHARDS / ".shard-000004.safetensors.tmp-123").write_bytes(b"half")
    (tmp_path / ".manifest.json.tmp-9").write_bytes(b"{")
    assert st.done_shards(tmp_path) == set()
    assert st.clean_partial_files(tmp_path) == 2
    assert not list(tmp_path.rglob("*.tmp-*"))


@pytest.mark.parametrize("fmt", ["safetensors", "parquet"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_vectors_read_back_exactly(tmp_path, fmt, dtype):
    rng = np.random.default_rng(1)
    vecs = {"mm": rng.normal(size=(7, 5)).astype(dtype), "visual": rng.normal(size=(7, 5)).astype(dtype)}
    ids = [str(i) for i in range(7)]
    st.write_vectors(tmp_path, fmt, ids, [f"label {i}" for i in ids], vecs)
    _manifest(tmp_path, fmt)
    s = st.EmbeddingStore.open(tmp_path)
    assert s.ids == ids and s.labels[3] == "label 3" and s.index_of(4) == 4
    for ch in ("mm", "visual"):
        got = s.vectors(ch)
        assert got.dtype == dtype
        np.testing.assert_array_equal(np.asarray(got), vecs[ch])
    if fmt == "safetensors":
        assert isinstance(s.vectors("mm"), np.memmap)
    with pytest.raises(st.StoreError, match="channel 'fused' not in store"):
        s.vectors("fused")
    with pytest.raises(KeyError, match="'nope' is not in the store"):
        s.index_of("nope")


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def test_memmap_reads_a_large_store_without_loading_it(tmp_path):
    """A 1M x 256 float32 store (1 GB, written sparse): reading 1k random rows must not load it."""
    n, d = 1_000_000, 256
    path = tmp_path / "vectors.safetensors"
    header = json.dumps({"mm": {"dtype": "F32", "shape": [n, d], "data_offsets": [0, n * d * 4]}}).encode()
    with open(path, "wb") as f:  # header, then seek to the end: no 1 GB of writes in a unit test
        f.write(len(header).to_bytes(8, "little") + header)
        f.seek(8 + len(header) + n * d * 4 - 1)
        f.write(b"\0")
    before = _rss_mb()
    v = st.read_safetensors_tensor(path, "mm")
    rows = np.asarray(v[np.random.default_rng(0).integers(0, n, 1000)])
    grown = _rss_mb() - before
    assert rows.shape == (1000, d) and grown < 300, f"RSS grew {grown:.0f} MB"


@pytest.mark.parametrize("fmt", ["safetensors", "parquet"])
def test_an_empty_store_reads_as_zero_rows(tmp_path, fmt):
    st.write_vectors(
        tmp_path, fmt, [], [], {"mm": np.zeros((0, 5), np.float16), "visual": np.zeros((0, 5), np.float16)}
    )
    _manifest(tmp_path, fmt)
    assert np.asarray(st.EmbeddingStore.open(tmp_path).vectors("mm")).shape == (0, 5)


def test_unknown_id_says_why_when_the_item_was_rejected(tmp_path):
    st.write_vectors(
        tmp_path,
        "safetensors",
        ["a"],
        ["A"],
        {"mm": np.ones((1, 5), np.float32), "visual": np.ones((1, 5), np.float32)},
    )
    _manifest(tmp_path)
    m = st.read_manifest(tmp_path)
    artifacts.write_manifest(
        tmp_path, {**m, "rejected": [{"id": "b", "reason": "no text and no image", "action": "rejected"}]}
    )
    s = st.EmbeddingStore.open(tmp_path)
    with pytest.raises(st.UnknownItemError, match="rejected at embed time \\(no text and no image\\)"):
        s.index_of("b")
    with pytest.raises(KeyError):  # still a KeyError for callers that catch that
        s.index_of("zzz")


def test_unfinished_or_foreign_stores_are_refused(tmp_path):
    with pytest.raises(st.StoreError, match="no manifest.json"):
        st.EmbeddingStore.open(tmp_path)
    _manifest(tmp_path, status="running")
    with pytest.raises(st.StoreError, match="--resume"):
        st.EmbeddingStore.open(tmp_path)
    artifacts.write_manifest(tmp_path, {"stage": "train", "status": "complete"})
    with pytest.raises(st.StoreError, match="not an mllmrec embed folder"):
        st.EmbeddingStore.open(tmp_path)


# ---------------------------------------------------------------------------------------------
# Damaged stores: one line naming the file, what disagrees and what to do (issue 12)
# ---------------------------------------------------------------------------------------------
def _good_store(tmp_path, fmt="safetensors"):
    from mllmrec.testing.stores import write_array_store

    rng = np.random.default_rng(0)
    vecs = {"mm": rng.normal(size=(6, 4)).astype(np.float32)}
    return write_array_store(tmp_path / "s", [f"i{k}" for k in range(6)], vecs, fmt=fmt)


def _truncate(path, keep):
    path.write_bytes(path.read_bytes()[:keep])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda s: _truncate(s / "vectors.safetensors", -10),
            r"vectors.safetensors: truncated .*--overwrite",
        ),
        (
            lambda s: _truncate(s / "vectors.safetensors", 5),
            r"vectors.safetensors: not a readable safetensors",
        ),
        (lambda s: (s / "vectors.safetensors").unlink(), r"vectors.safetensors: missing"),
        (lambda s: _truncate(s / "items.parquet", 40), r"items.parquet: not a readable parquet"),
        (lambda s: _rewrite_items(s, 4), r"items.parquet: rows: found 4, the manifest says 6"),
        (
            lambda s: _edit_manifest(s, dims={"mm": 8}),
            r"shape of channel 'mm': found \[6, 4\], the manifest says \[6, 8\]",
        ),
        (
            lambda s: _edit_manifest(s, counts={"embedded": 9}),
            r"items.parquet: rows: found 6, the manifest says 9",
        ),
        (
            lambda s: _edit_manifest(s, channels=["mm", "visual"], dims={"mm": 4, "visual": 4}),
            r"channel 'visual': found None",
        ),
    ],
)
def test_a_damaged_store_is_refused_at_open_naming_the_file(tmp_path, damage, message):
    s = _good_store(tmp_path)
    damage(s)
    with pytest.raises(st.DamagedStoreError, match=message):
        st.EmbeddingStore.open(s)


def test_a_damaged_parquet_store_is_refused(tmp_path):
    s = _good_store(tmp_path, fmt="parquet")
    _truncate(s / "vectors.parquet", 30)
    with pytest.raises(st.DamagedStoreError, match="vectors.parquet: not a readable parquet"):
        st.EmbeddingStore.open(s)


def _rewrite_items(s, n):
    import pyarrow.parquet as pq

    pq.write_table(pq.read_table(s / "items.parquet").slice(0, n), s / "items.parquet")


def _edit_manifest(s, **changes):
    m = json.loads((s / "manifest.json").read_text())
    for k, v in changes.items():
        m[k] = {**m[k], **v} if isinstance(v, dict) else v
    (s / "manifest.json").write_text(json.dumps(m))


def test_a_damaged_shard_is_named_and_dropped_so_resume_redoes_it(tmp_path):
    out = tmp_path / "store"
    for k in range(3):
        st.write_shard(out, k, [f"a{k}", f"b{k}"], {"mm": np.ones((2, 4), np.float32)}, [])
    _truncate(st.shard_path(out, 1), 40)
    with pytest.raises(st.DamagedStoreError, match=r"shard-000001.safetensors: .*--resume"):
        st.read_shard(st.shard_path(out, 1))
    assert st.drop_damaged_shards(out) == [st.shard_path(out, 1)]
    assert st.done_shards(out) == {0, 2}


# ---------------------------------------------------------------------------------------------
# Id lookup without a dict (issue 14.4): a sorted index cached beside items.parquet
# ---------------------------------------------------------------------------------------------
def test_ids_are_found_through_a_cached_sorted_index_rebuilt_when_the_ids_change(tmp_path):
    from mllmrec.testing.stores import write_array_store

    vecs = {"mm": np.zeros((4, 2), np.float32)}
    s = write_array_store(tmp_path / "s", ["b", "a", "017", "17"], vecs)
    store = st.EmbeddingStore.open(s)
    assert store.positions(["17", "a", "zz"]).tolist() == [3, 1, -1] and store.index_of("017") == 2
    assert (s / "items.idindex.json").is_file()  # saved for the next process, which memory-maps it
    again = st.EmbeddingStore.open(s)
    assert isinstance(again.id_index().keys, np.memmap) and again.index_of("b") == 0
    # the store is rewritten with other ids: the cache no longer matches items.parquet and is rebuilt
    write_array_store(tmp_path / "s", ["c", "b"], {"mm": np.zeros((2, 2), np.float32)})
    fresh = st.EmbeddingStore.open(s)
    assert fresh.positions(["c", "b", "a"]).tolist() == [0, 1, -1]


def test_a_read_only_store_keeps_its_id_index_in_memory(tmp_path, monkeypatch):
    from mllmrec.ids import IdIndex

    def refuse(*a, **k):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(IdIndex, "save", refuse)  # (chmod does not stop root, who runs CI)
    s = _good_store(tmp_path)
    store = st.EmbeddingStore.open(s)
    assert store.index_of("i4") == 4 and store.label_of([4]) == store.labels[4:5]
    assert not (s / "items.idindex.json").exists()
