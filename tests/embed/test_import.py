"""`mllmrec import`: external vectors become a store every stage reads like our own."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mllmrec.artifacts import ArtifactError
from mllmrec.cli import main
from mllmrec.embed.config import ImportConfig
from mllmrec.embed.external import VectorImportError, run_import
from mllmrec.features.provider import FeatureProvider
from mllmrec.store import EmbeddingStore

RNG = np.random.default_rng(0)


def _catalog(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def vectors(tmp_path):
    ids = [f"i{k}" for k in range(6)]
    v = RNG.normal(size=(6, 5)).astype(np.float32)
    np.save(tmp_path / "v.npy", v)
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    return ids, v


def test_npy_with_ids_becomes_a_store_that_the_provider_reads(tmp_path, vectors):
    ids, v = vectors
    m = run_import(
        ImportConfig(source=str(tmp_path / "v.npy"), ids=str(tmp_path / "ids.txt"), out=str(tmp_path / "s"))
    )
    s = EmbeddingStore.open(tmp_path / "s")
    assert s.ids == ids and np.array_equal(np.asarray(s.vectors("mm")), v)
    assert m["source"]["kind"] == "npy" and len(m["source"]["sha256"]) == 64 and m["dims"] == {"mm": 5}
    assert m["counts"] == {"input": 6, "embedded": 6, "rejected": 0, "text_only": 0}
    np.testing.assert_array_equal(
        FeatureProvider.open(tmp_path / "s").lookup(["i3", "i0"]).vectors, v[[3, 0]]
    )
    again = run_import(
        ImportConfig(source=str(tmp_path / "v.npy"), ids=str(tmp_path / "ids.txt"), out=str(tmp_path / "s2"))
    )
    assert again["fingerprint"] == m["fingerprint"]  # same ids and vectors, same fingerprint


def test_parquet_and_safetensors_sources(tmp_path, vectors):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from safetensors.numpy import save_file

    ids, v = vectors
    pq.write_table(pa.table({"asin": ids, "emb": [list(map(float, r)) for r in v]}), tmp_path / "v.parquet")
    run_import(
        ImportConfig(
            source=str(tmp_path / "v.parquet"),
            id_field="asin",
            vector_field="emb",
            out=str(tmp_path / "p"),
            channel="text",
        )
    )
    np.testing.assert_allclose(np.asarray(EmbeddingStore.open(tmp_path / "p").vectors("text")), v, rtol=1e-6)
    save_file({"a": v, "b": v[:, :2].copy()}, str(tmp_path / "v.safetensors"))
    with pytest.raises(VectorImportError, match="--tensor"):
        run_import(
            ImportConfig(
                source=str(tmp_path / "v.safetensors"), ids=str(tmp_path / "ids.txt"), out=str(tmp_path / "t")
            )
        )
    run_import(
        ImportConfig(
            source=str(tmp_path / "v.safetensors"),
            ids=str(tmp_path / "ids.txt"),
            tensor="b",
            out=str(tmp_path / "t"),
        )
    )  # the refused attempt left no folder in the way
    assert EmbeddingStore.open(tmp_path / "t").manifest["dims"] == {"mm": 2}


def test_bad_vectors_are_refused_naming_the_ids(tmp_path, vectors):
    ids, v = vectors
    base = dict(source=str(tmp_path / "v.npy"), ids=str(tmp_path / "ids.txt"))
    (tmp_path / "dup.txt").write_text("\n".join([*ids[:5], "i1"]))
    with pytest.raises(VectorImportError, match="duplicate item ids i1"):
        run_import(ImportConfig(**{**base, "ids": str(tmp_path / "dup.txt")}, out=str(tmp_path / "a")))
    bad = v.copy()
    bad[4, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(VectorImportError, match="NaN or inf, e.g. items i4"):
        run_import(ImportConfig(**{**base, "source": str(tmp_path / "nan.npy")}, out=str(tmp_path / "b")))
    (tmp_path / "short.txt").write_text("\n".join(ids[:4]))
    with pytest.raises(VectorImportError, match="6 vectors but 4 ids"):
        run_import(ImportConfig(**{**base, "ids": str(tmp_path / "short.txt")}, out=str(tmp_path / "c")))
    with pytest.raises(VectorImportError, match="pass --ids"):
        run_import(ImportConfig(source=base["source"], out=str(tmp_path / "d")))
    for name in "abcd":
        assert not (tmp_path / name).exists()  # nothing left behind by a refused import
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "notes.md").write_text("mine")
    with pytest.raises(ArtifactError, match="notes.md"):
        run_import(ImportConfig(**base, out=str(tmp_path / "work"), overwrite=True))


def test_sentence_transformers_folder_over_a_catalogue(tmp_path):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from mllmrec.testing.st_folder import build_st_folder

    folder = build_st_folder(tmp_path / "st")
    cat = _catalog(
        tmp_path / "items.jsonl",
        [
            {"id": "a", "title": "red leather bag", "description": "roomy classic cut"},
            {"id": "b", "title": "blue cotton shirt", "description": ""},
            {"id": "c", "title": "", "description": ""},  # no text: rejected, with the reason
            {"id": "d", "title": "wool", "description": "plain item"},
        ],
    )
    m = run_import(
        ImportConfig(
            source=str(folder), catalog=str(cat), out=str(tmp_path / "s"), batch_size=2, progress=False
        )
    )
    s = EmbeddingStore.open(tmp_path / "s")
    assert s.ids == ["a", "b", "d"] and [r["id"] for r in m["rejected"]] == ["c"]
    assert m["counts"]["input"] == 4 and m["source"]["pooling"] == "mean" and m["source"]["normalize"]
    v = np.asarray(s.vectors("mm"))
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    enc = tok(["blue cotton shirt"], return_tensors="pt")
    with torch.no_grad():
        ref = model(**enc).last_hidden_state.mean(dim=1)  # one text: no padding, plain mean
    np.testing.assert_allclose(v[1], torch.nn.functional.normalize(ref, dim=-1)[0].numpy(), atol=1e-5)
    assert s.labels[0] == "red leather bag roomy classic cut"


def test_cli_import_prints_what_it_wrote(tmp_path, vectors, capsys):
    assert (
        main(
            [
                "import",
                str(tmp_path / "v.npy"),
                "--ids",
                str(tmp_path / "ids.txt"),
                "--out",
                str(tmp_path / "s"),
            ]
        )
        == 0
    )
    assert "imported 6 items from npy" in capsys.readouterr().out
    assert main(["import", str(tmp_path / "v.npy"), "--out", str(tmp_path / "x")]) == 2
    assert "pass --ids" in capsys.readouterr().err
