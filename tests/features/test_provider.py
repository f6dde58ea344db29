"""FeatureProvider: lookups by raw id in any order, alignment to id maps, channels, missing-id
policies, numpy/torch outputs, nn.Embedding / projection modules, memory-mapped reads."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest

from mllmrec.features import provider as P
from mllmrec.features.idmap import IdMapError, read_id_map
from mllmrec.store import UnknownItemError
from mllmrec.testing.stores import write_array_store

IDS = ["a", "b", "7", "c", "042", "d"]


def _vectors(n: int = len(IDS), d: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "mm": rng.normal(size=(n, d)).astype(np.float32),
        "visual": rng.normal(size=(n, d)).astype(np.float32),
    }


@pytest.fixture(params=["safetensors", "parquet"])
def store(tmp_path, request):
    vecs = _vectors()
    path = write_array_store(tmp_path / "store", IDS, vecs, fmt=request.param)
    return path, vecs


def test_lookup_by_str_and_int_ids_in_any_order(store):
    path, vecs = store
    fp = P.FeatureProvider.open(path)
    asked = ["c", 7, "a", "042", "c"]  # int 7 matches "7"; "042" is not 42; repeats allowed
    got = fp.matrix(asked)
    np.testing.assert_array_equal(got, vecs["mm"][[3, 2, 0, 4, 3]])
    assert got.dtype == np.float32 and fp.last_report.found == 5 and fp.last_report.missing == 0
    np.testing.assert_array_equal(fp.vector(7, channel="visual"), vecs["visual"][2])
    assert fp.ids() == IDS and len(fp) == 6 and fp.dim() == 5 and fp.channels == ["mm", "visual"]
    with pytest.raises(UnknownItemError, match="1 of 1 ids"):
        fp.matrix([42])  # "42" != "042": ids match by exact string form


def test_scrambled_order_gives_the_same_per_item_features(store):
    path, _ = store
    fp = P.FeatureProvider.open(path)
    base = {i: fp.vector(i) for i in IDS}
    perm = [IDS[k] for k in np.random.default_rng(3).permutation(len(IDS))]
    got = fp.matrix(perm)
    for k, item in enumerate(perm):
        np.testing.assert_array_equal(got[k], base[item])
    assert not np.array_equal(got, fp.matrix(IDS))  # the order did change


def test_aligned_to_id_lists_and_id_map_files(tmp_path, store):
    path, vecs = store
    fp = P.FeatureProvider.open(path)
    order = ["d", "a", "042", "b"]
    want = vecs["mm"][[5, 0, 4, 1]]
    (tmp_path / "ids.txt").write_text("\n".join(order) + "\n")
    (tmp_path / "ids.json").write_text(json.dumps(order))
    (tmp_path / "map.json").write_text(json.dumps({i: k for k, i in enumerate(order)}))
    scrambled = [3, 1, 0, 2]  # MMRec-style mapping file, rows listed out of order
    (tmp_path / "i_id_mapping.csv").write_text(
        "asin\titemID\n" + "".join(f"{order[r]}\t{r}\n" for r in scrambled)
    )
    (tmp_path / "map.csv").write_text("item,row\n" + "".join(f"{order[r]},{r}\n" for r in scrambled))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": order}), tmp_path / "ids.parquet")
    for name in ("ids.txt", "ids.json", "map.json", "i_id_mapping.csv", "map.csv", "ids.parquet"):
        np.testing.assert_array_equal(fp.aligned(tmp_path / name), want, err_msg=name)
    np.testing.assert_array_equal(fp.aligned(order, channel="visual"), vecs["visual"][[5, 0, 4, 1]])


def test_three_column_mmrec_id_map_is_read_by_the_column_the_source_knows(tmp_path):
    """MMRec's preprocessing (and its forks) write `orig_item_id,itemID,raw_item_id`; such a map was
    refused (issue 16.4). The raw-id column is the one whose values the source knows, or the one
    named; when neither tells, the error names the columns and the flag."""
    p = tmp_path / "i_id_mapping.csv"
    p.write_text("orig_item_id,itemID,raw_item_id\nB01,1,x1\nB00,0,x0\nB02,2,x2\n")
    assert read_id_map(p, known=lambda: {"x0", "x1", "x2", "other"}) == ["x0", "x1", "x2"]
    assert read_id_map(p, known=lambda: {"B00", "B01", "B02"}) == ["B00", "B01", "B02"]
    assert read_id_map(p, id_column="orig_item_id") == ["B00", "B01", "B02"]
    with pytest.raises(IdMapError, match="orig_item_id, raw_item_id.*--id-column"):
        read_id_map(p)
    with pytest.raises(IdMapError, match="orig_item_id: 1, raw_item_id: 1.*--id-column"):
        read_id_map(p, known=lambda: {"B00", "x1"})
    with pytest.raises(IdMapError, match="no column 'asin'"):
        read_id_map(p, id_column="asin")


@pytest.mark.parametrize(
    "content, message",
    [
        ("a\nb\na\n", "occur more than once"),
        ("a\n\nb\n", "line 2 is empty"),
        ("asin\titemID\na\t0\nb\t2\n", "missing rows \\[1\\]"),
        ("asin\titemID\na\t0\nb\t0\n", "rows given twice \\[0\\]"),
        ("asin\titemID\na\t0\nb\tx\n", "must be integers"),
        ("x\ty\tz\na\tb\tc\n", "expected one id column"),
        ("asin\titemID\na\t0\nb\n", "data row 2 has 1 cells"),
    ],
)
def test_bad_id_maps_are_refused(tmp_path, content, message):
    suffix = ".tsv" if "\t" in content else ".txt"
    p = tmp_path / f"map{suffix}"
    p.write_text(content)
    with pytest.raises(IdMapError, match=message):
        read_id_map(p)
    with pytest.raises(IdMapError, match="not found"):
        read_id_map(tmp_path / "nope.txt")


def test_channel_choice_and_unknown_channel(store):
    path, vecs = store
    fp = P.FeatureProvider.open(path, channel="visual")
    np.testing.assert_array_equal(fp.matrix(["b"]), vecs["visual"][[1]])
    np.testing.assert_array_equal(fp.matrix(["b"], channel="mm"), vecs["mm"][[1]])
    with pytest.raises(P.ProviderError, match="channel 'fused' is not available .* \\(has mm, visual\\)"):
        fp.matrix(["b"], channel="fused")
    with pytest.raises(P.ProviderError, match="not available"):
        P.FeatureProvider.open(path, channel="text")


def test_missing_id_policies_fill_and_report(store, caplog):
    path, vecs = store
    fp = P.FeatureProvider.open(path)
    asked = ["zz", "b", 99, "a"]
    with pytest.raises(UnknownItemError, match="2 of 4 ids are not in .*'zz', '99'"):
        fp.matrix(asked)
    with pytest.raises(KeyError):  # also a KeyError for callers that catch that
        fp.matrix(asked, missing="error")
    with caplog.at_level(logging.INFO, logger="mllmrec.features.provider"):
        z = fp.lookup(asked, missing="zero")
    assert z.report.missing == 2 and z.report.found == 2 and z.report.filled == {"zero": 2}
    assert z.report.missing_examples == ("zz", "99")
    assert "2 missing (2 by zero" in caplog.text
    np.testing.assert_array_equal(z.vectors[[0, 2]], 0)
    np.testing.assert_array_equal(z.vectors[[1, 3]], vecs["mm"][[1, 0]])
    m = fp.lookup(asked, missing="mean")
    np.testing.assert_allclose(m.vectors[0], vecs["mm"].astype(np.float64).mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(m.vectors[1], vecs["mm"][1])
    assert m.report.filled == {"mean": 2} and fp.last_report == m.report
    with pytest.raises(
        P.ProviderError, match="2 ids are missing from channel .mm., and missing=.new-item. only fills"
    ):
        fp.lookup(asked, missing="new-item")
    with pytest.raises(P.ProviderError, match="not one of"):
        fp.lookup(asked, missing="guess")  # type: ignore[arg-type]


def test_bad_id_values_are_refused(store):
    fp = P.FeatureProvider.open(store[0])
    with pytest.raises(P.ProviderError, match="must be str or int, got float"):
        fp.matrix(["a", 1.5])
    with pytest.raises(P.ProviderError, match="wrap it in a list"):
        fp.matrix("a")  # type: ignore[arg-type]
    assert fp.matrix([]).shape == (0, 5)


def test_numpy_and_torch_outputs_and_dtypes(tmp_path):
    import torch

    vecs = {"mm": np.arange(12, dtype=np.float16).reshape(6, 2)}
    fp = P.FeatureProvider.open(write_array_store(tmp_path / "s", IDS, vecs))
    t = fp.matrix(["c", "a"], framework="torch")
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.tolist() == [[6, 7], [0, 1]]
    assert fp.matrix(["c"], dtype=None).dtype == np.float16  # dtype=None keeps the store's precision
    with pytest.raises(P.ProviderError, match="framework"):
        fp.matrix(["c"], framework="jax")  # type: ignore[arg-type]


def test_as_embedding_and_as_module(store):
    import torch

    path, vecs = store
    fp = P.FeatureProvider.open(path)
    emb = fp.as_embedding(["d", "a"])
    assert isinstance(emb, torch.nn.Embedding) and not emb.weight.requires_grad
    np.testing.assert_array_equal(emb(torch.tensor([1, 0])).numpy(), vecs["mm"][[0, 5]])
    assert fp.as_embedding(freeze=False).weight.requires_grad and fp.as_embedding().num_embeddings == 6

    tower = fp.as_module(3, ["d", "a", 7], channel="visual")
    trainable = {n for n, p in tower.named_parameters() if p.requires_grad}
    assert trainable == {"proj.weight", "proj.bias"}  # the features stay frozen
    rows = tower.index_of(["a", 7])
    out = tower(rows)  # [2, 3]
    with torch.no_grad():
        want = tower.proj(torch.from_numpy(vecs["visual"][[0, 2]]))
    torch.testing.assert_close(out, want)
    out.sum().backward()
    assert tower.proj.weight.grad is not None and tower.all_items().shape == (3, 3)
    with pytest.raises(KeyError, match="'b' has no row"):
        tower.index_of(["b"])
    unit = fp.as_module(4, normalize=True, freeze_features=False)
    assert torch.allclose(unit.all_items().norm(dim=1), torch.ones(6)) and unit.features.weight.requires_grad


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def test_lookups_in_a_large_store_read_only_the_asked_rows(tmp_path):
    """A 1M x 256 fp16 store (512 MB of vectors, written sparse): 10k lookups by raw id use the
    memory map and do not load the vectors (the full-size 10M check is eval/bench_provider.py)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mllmrec import artifacts
    from mllmrec import store as st

    n, d = 1_000_000, 256
    out = tmp_path / "big"
    out.mkdir()
    header = json.dumps({"mm": {"dtype": "F16", "shape": [n, d], "data_offsets": [0, n * d * 2]}}).encode()
    with open(out / st.VECTOR_FILES["safetensors"], "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        f.seek(8 + len(header) + n * d * 2 - 1)
        f.write(b"\0")
    ids = pa.array([f"item{k}" for k in range(n)], pa.string())
    pq.write_table(pa.table({"id": ids, "label": ids}), out / st.ITEMS)
    artifacts.write_manifest(
        out,
        {
            "stage": "embed",
            "status": "complete",
            "channels": ["mm"],
            "dims": {"mm": d},
            "config": {"format": "safetensors"},
            "counts": {},
        },
    )
    fp = P.FeatureProvider.open(out)
    asked = [f"item{k}" for k in np.random.default_rng(0).integers(0, n, 10_000)]
    fp.rows(asked[:1])  # the id column (~16 MB) is read once, before measuring
    before = _rss_mb()
    got = fp.matrix(asked, dtype=None)
    grown = _rss_mb() - before
    assert got.shape == (10_000, d) and fp.last_report.found == 10_000
    assert isinstance(fp._table("mm")[1], np.memmap)
    assert grown < 150, f"RSS grew {grown:.0f} MB for 10k rows of a 512 MB store"


def test_foreign_artefacts_and_distill_runs_without_the_reader(tmp_path, monkeypatch):
    from mllmrec.artifacts import write_manifest
    from mllmrec.store import StoreError

    with pytest.raises(StoreError, match="no manifest.json"):
        P.FeatureProvider.open(tmp_path)
    write_manifest(tmp_path, {"stage": "pairs"})
    with pytest.raises(P.ProviderError, match="holds a 'pairs' artefact"):
        P.FeatureProvider.open(tmp_path)
    write_manifest(tmp_path, {"stage": "distill"})
    monkeypatch.setitem(sys.modules, "mllmrec.distill.artifact", None)  # the distill reader absent
    with pytest.raises(P.ProviderError, match="needs mllmrec.distill.artifact"):
        P.FeatureProvider.open(tmp_path)


def test_import_mllmrec_stays_light_and_resolves_feature_provider():
    code = (
        "import sys, mllmrec; heavy = [m for m in ('torch', 'pyarrow', 'numpy') if m in sys.modules]; "
        "fp = mllmrec.FeatureProvider; print(heavy, fp.__module__, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] mllmrec.features.provider False"


def test_read_rows_matches_indexing_and_notices_a_truncated_file(tmp_path):
    from mllmrec.features.rowio import read_rows
    from mllmrec.store import StoreError

    data = np.arange(40, dtype=np.float32).reshape(10, 4)
    (tmp_path / "m.bin").write_bytes(b"head" + data.tobytes())
    mm = np.memmap(tmp_path / "m.bin", dtype=np.float32, mode="r", offset=4, shape=(10, 4))
    rows = np.array([0, 1, 2, 2, 5, 8, 9])  # runs, a repeat, gaps
    np.testing.assert_array_equal(read_rows(mm, rows), data[rows])
    np.testing.assert_array_equal(read_rows(data, rows), data[rows])  # in-memory arrays index directly
    short = np.memmap(tmp_path / "m.bin", dtype=np.float32, mode="r", offset=4, shape=(10, 4))
    (tmp_path / "m.bin").write_bytes(b"head" + data[:6].tobytes())  # the file shrinks under the map
    with pytest.raises(StoreError, match="file ends before row 9"):
        read_rows(short, np.array([8, 9]))


def test_non_finite_rows_are_an_error_naming_the_items_or_a_recorded_fill(tmp_path):
    vecs = _vectors()
    vecs["mm"][1, 0], vecs["mm"][4, 2] = np.nan, -np.inf
    fp = P.FeatureProvider.open(write_array_store(tmp_path / "s", IDS, vecs))
    with pytest.raises(P.NonFiniteError, match=r"2 of 6 vectors.*NaN or inf: 'b', '042'"):
        fp.matrix()
    with pytest.raises(P.NonFiniteError, match="'b'"):
        fp.as_embedding(["a", "b"])
    np.testing.assert_array_equal(fp.matrix(["a", "c"]), vecs["mm"][[0, 3]])  # finite rows still served
    finite_mean = np.delete(vecs["mm"], [1, 4], axis=0).astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(fp.mean(), finite_mean)
    got = fp.matrix(["a", "b", "new"], missing="mean", nonfinite="zero")
    assert np.isfinite(got).all() and not got[1].any()
    np.testing.assert_allclose(got[2], finite_mean, rtol=1e-6)  # missing="mean" never spreads a NaN
    rep = fp.last_report
    assert rep.nonfinite == 1 and rep.nonfinite_filled == {"zero": 1} and rep.nonfinite_ids == ("b",)
    assert "non-finite" in str(rep)
