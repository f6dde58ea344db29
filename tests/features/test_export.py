"""`mllmrec export` for npy / parquet / cornac / recbole: one alignment path, manifest, verification,
refusals. Real RecBole reading the recbole export: test_recbole_real.py (-m recbole)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mllmrec.cli import main
from mllmrec.features import export as E
from mllmrec.features.config import ExportConfig
from mllmrec.features.to_cornac import CornacAdapterError, cornac_modality
from mllmrec.store import UnknownItemError
from mllmrec.testing.stores import write_array_store

IDS = [f"i{k}" for k in range(8)]


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(0)
    vecs = {
        "mm": rng.normal(size=(8, 6)).astype(np.float32),
        "visual": rng.normal(size=(8, 6)).astype(np.float32),
    }
    return write_array_store(tmp_path / "store", IDS, vecs), vecs


def _log(path, rows):
    path.write_text("user_id,item_id\n" + "".join(f"{u},{i}\n" for u, i in rows))
    return path


def test_npy_export_in_source_order_with_manifest_and_verification(tmp_path, store):
    src, vecs = store
    m = E.run_export(ExportConfig(source=str(src), format="npy", out=str(tmp_path / "o"), channel="visual"))
    feats = np.load(tmp_path / "o" / "features.npy")
    ids = json.loads((tmp_path / "o" / "ids.json").read_text())
    assert ids == IDS and feats.dtype == np.float32
    np.testing.assert_array_equal(feats, vecs["visual"])
    assert m["rows"] == 8 and m["dims"] == {"features": 6} and m["channels"] == {"features": "visual"}
    assert m["files"]["features.npy"]["shape"] == [8, 6] and m["missing"]["features"]["missing"] == 0
    assert m["inputs"]["source"]["kind"] == "store" and "identity_sha256" in m["inputs"]["source"]["store"]
    assert E.verify_export(tmp_path / "o")["format"] == "npy"
    np.save(tmp_path / "o" / "features.npy", feats[::-1])  # someone rewrites the file
    with pytest.raises(E.ExportError, match="features.npy: content changed"):
        E.verify_export(tmp_path / "o")


def test_rows_follow_ids_file_or_interactions(tmp_path, store):
    src, vecs = store
    (tmp_path / "ids.txt").write_text("i5\ni0\ni3\n")
    E.run_export(
        ExportConfig(source=str(src), format="cornac", out=str(tmp_path / "a"), ids=str(tmp_path / "ids.txt"))
    )
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "features.npy"), vecs["mm"][[5, 0, 3]])
    log = _log(tmp_path / "log.csv", [("u1", "i6"), ("u1", "i2"), ("u2", "i6"), ("u2", "i1")])
    m = E.run_export(
        ExportConfig(source=str(src), format="npy", out=str(tmp_path / "b"), interactions=str(log))
    )
    assert json.loads((tmp_path / "b" / "ids.json").read_text()) == ["i6", "i2", "i1"]  # first-seen order
    np.testing.assert_array_equal(np.load(tmp_path / "b" / "features.npy"), vecs["mm"][[6, 2, 1]])
    assert m["inputs"]["interactions"]["sha256"] and m["row_order"] == f"items of {log}"
    _log(log, [("u1", "i1")])  # the log changes after the export: rows may no longer line up
    with pytest.raises(E.ExportError, match="changed since the export"):
        E.verify_export(tmp_path / "b")


def test_parquet_export_round_trips(tmp_path, store):
    import pyarrow.parquet as pq

    src, vecs = store
    E.run_export(ExportConfig(source=str(src), format="parquet", out=str(tmp_path / "p"), channel="visual"))
    t = pq.read_table(tmp_path / "p" / "features.parquet")
    assert t.column_names == ["id", "visual"] and t.column("id").to_pylist() == IDS
    np.testing.assert_array_equal(np.array(t.column("visual").to_pylist(), np.float32), vecs["visual"])


def test_missing_ids_follow_the_policy_and_are_recorded(tmp_path, store):
    src, vecs = store
    log = _log(tmp_path / "log.csv", [("u1", "i1"), ("u1", "new1"), ("u2", "new2"), ("u2", "i4")])
    cfg = dict(source=str(src), format="npy", interactions=str(log))
    with pytest.raises(UnknownItemError, match="2 of 4 ids"):
        E.run_export(ExportConfig(**cfg, out=str(tmp_path / "e")))
    assert not (tmp_path / "e").exists()  # nothing half-written
    m = E.run_export(ExportConfig(**cfg, out=str(tmp_path / "m"), missing="mean"))
    feats = np.load(tmp_path / "m" / "features.npy")
    np.testing.assert_allclose(feats[1], vecs["mm"].mean(axis=0), rtol=1e-5)
    assert m["missing"]["features"]["filled"] == {"mean": 2}
    assert m["missing"]["features"]["missing_examples"] == ["new1", "new2"]


def test_recbole_refuses_ids_with_tabs(tmp_path):
    src = write_array_store(tmp_path / "s", ["a\tb"], {"mm": np.ones((1, 2), np.float32)})
    with pytest.raises(E.ExportError, match="contains a tab"):
        E.run_export(ExportConfig(source=str(src), format="recbole", out=str(tmp_path / "o")))


def test_existing_files_and_foreign_folders_are_protected(tmp_path, store, capsys):
    src, _ = store
    args = ["export", str(src), "--format", "npy", "--out", str(tmp_path / "o")]
    assert main(args) == 0
    assert main(args) == 2
    assert "already holds features.npy, ids.json; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert main(["export", str(src), "--format", "npy", "--out", str(src)]) == 2  # into the store itself
    assert "holds a 'embed' artefact" in capsys.readouterr().err
    assert (
        main(["export", str(src), "--format", "npy", "--out", str(tmp_path / "x"), "--channel", "fused"]) == 2
    )
    assert "channel 'fused' is not available" in capsys.readouterr().err
    with pytest.raises(E.ExportError, match="not an mllmrec export"):
        E.verify_export(tmp_path)


def test_verify_notices_a_re_embedded_source(tmp_path, store):
    src, vecs = store
    E.run_export(ExportConfig(source=str(src), format="npy", out=str(tmp_path / "o")))
    write_array_store(src, IDS, {**vecs, "mm": vecs["mm"] * 2})  # re-embedded: same shape, new vectors
    with pytest.raises(E.ExportError, match="source .*manifest changed"):
        E.verify_export(tmp_path / "o")


def test_cornac_modality_keeps_the_callers_ids_and_rows(store):
    from cornac.data import FeatureModality, ImageModality

    src, vecs = store
    mod = cornac_modality(src, ["i2", "i0"], channel="visual")
    assert isinstance(mod, ImageModality) and mod.ids == ["i2", "i0"]
    np.testing.assert_array_equal(mod.features, vecs["visual"][[2, 0]])
    feat = cornac_modality(src, ["i1"], kind="feature")
    assert type(feat) is FeatureModality
    with pytest.raises(CornacAdapterError, match="kind must be"):
        cornac_modality(src, ["i1"], kind="text")


def test_export_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = capsys.readouterr().out
    for flag in (
        "--format",
        "--out",
        "--channel",
        "--ids",
        "--interactions",
        "--missing",
        "--image-channel",
        "--text-channel",
        "--single-channel",
        "--stale-caches",
        "--recbole-id-field",
        "--overwrite",
    ):
        assert flag in text


def test_ids_and_interactions_together_must_cover_every_logged_item(tmp_path, store):
    src, vecs = store
    log = _log(tmp_path / "log.csv", [("u1", "i1"), ("u1", "i2"), ("u2", "i4")])
    (tmp_path / "ids.txt").write_text("i4\ni2\ni1\ni0\n")
    base = dict(source=str(src), format="npy", interactions=str(log))
    E.run_export(ExportConfig(**base, out=str(tmp_path / "a"), ids=str(tmp_path / "ids.txt")))
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "features.npy"), vecs["mm"][[4, 2, 1, 0]])
    (tmp_path / "ids.txt").write_text("i4\ni0\n")
    with pytest.raises(E.ExportError, match="2 item\\(s\\) of .* are not in .*i1, i2"):
        E.run_export(ExportConfig(**base, out=str(tmp_path / "b"), ids=str(tmp_path / "ids.txt")))


def test_options_that_do_not_apply_are_refused(tmp_path, store):
    src, _ = store
    log = _log(tmp_path / "log.csv", [("u1", "i1")])
    with pytest.raises(E.ExportError, match="--channel does not apply to --format mmrec"):
        E.run_export(
            ExportConfig(
                source=str(src), format="mmrec", out=str(tmp_path / "o"), channel="mm", interactions=str(log)
            )
        )
    from mllmrec.features.exporters.mmrec import MmrecError

    (tmp_path / "ids.txt").write_text("i1\n")
    with pytest.raises(MmrecError, match="not an MMRec .inter"):
        E.run_export(
            ExportConfig(
                source=str(src),
                format="mmrec",
                out=str(tmp_path / "o"),
                interactions=str(log),
                ids=str(tmp_path / "ids.txt"),
            )
        )
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    with pytest.raises(E.ExportError, match="holds a 'unreadable' artefact"):
        E.run_export(ExportConfig(source=str(src), format="npy", out=str(tmp_path / "bad")))


@pytest.fixture
def nan_store(tmp_path):
    """A store whose items i2 (NaN) and i5 (inf) hold non-finite vectors in both channels."""
    rng = np.random.default_rng(1)
    vecs = {ch: rng.normal(size=(8, 6)).astype(np.float32) for ch in ("mm", "visual")}
    for v in vecs.values():
        v[2, 1], v[5, 0] = np.nan, np.inf
    return write_array_store(tmp_path / "nanstore", IDS, vecs), vecs


@pytest.mark.parametrize("fmt", ["npy", "parquet", "cornac", "recbole", "mmrec"])
def test_non_finite_vectors_are_never_exported(tmp_path, nan_store, capsys, fmt):
    """Every format refuses NaN/inf rows, naming the items, and writes nothing (issue 12)."""
    src, _ = nan_store
    log = _log(tmp_path / "log.csv", [(f"u{k % 3}", i) for k, i in enumerate(IDS)])
    args = ["export", str(src), "--format", fmt, "--out", str(tmp_path / "o"), "--interactions", str(log)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "NaN or inf" in err and "'i2'" in err and "'i5'" in err and "Traceback" not in err
    assert not any((tmp_path / "o").glob("*")) if (tmp_path / "o").exists() else True


def test_non_finite_fill_is_explicit_and_recorded(tmp_path, nan_store):
    src, vecs = nan_store
    m = E.run_export(ExportConfig(source=str(src), format="npy", out=str(tmp_path / "o"), nonfinite="mean"))
    feats = np.load(tmp_path / "o" / "features.npy")
    assert np.isfinite(feats).all()
    finite = np.delete(vecs["mm"], [2, 5], axis=0)
    np.testing.assert_allclose(feats[2], finite.mean(axis=0), rtol=1e-5)
    rep = m["missing"]["features"]
    assert (
        rep["nonfinite"] == 2
        and rep["nonfinite_filled"] == {"mean": 2}
        and rep["nonfinite_ids"] == ["i2", "i5"]
    )
