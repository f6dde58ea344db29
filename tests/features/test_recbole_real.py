"""Real RecBole 1.2.1 (its own venv) reads `mllmrec export --format recbole` through its own config,
and a model trains on the vectors. Marked `recbole`: deselected by default, selected by .ci/run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mllmrec.cli import main
from mllmrec.features import export as E
from mllmrec.testing.stores import write_array_store

pytestmark = [pytest.mark.recbole, pytest.mark.slow]
RUN = Path(__file__).resolve().parents[2] / "adapters" / "recbole" / "recbole_run.py"
# Ids RecBole must keep apart and in no particular order: "17" vs "017", a space, non-ASCII.
IDS = ["17", "017", "b 3", "é4"] + [f"i{k}" for k in range(26)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A store in one order, an .inter naming its items in another, exported by the CLI."""
    tmp = tmp_path_factory.mktemp("recbole")
    rng = np.random.default_rng(0)
    scale = 1e-3 ** rng.integers(0, 3, (len(IDS), 1))  # small and large magnitudes: '%.9g' must round-trip
    vecs = (rng.normal(size=(len(IDS), 12)) * scale).astype(np.float32)
    store = write_array_store(tmp / "store", IDS, {"mm": vecs})
    folder = tmp / "data" / "toy"
    folder.mkdir(parents=True)
    rows = [(u, IDS[k]) for u in range(24) for k in rng.permutation(len(IDS))[:12]]
    (folder / "toy.inter").write_text(
        "user_id:token\titem_id:token\ttimestamp:float\n"
        + "".join(f"u{u}\t{i}\t{t}\n" for t, (u, i) in enumerate(rows))
    )
    assert (
        main(
            [
                "export",
                str(store),
                "--format",
                "recbole",
                "--out",
                str(folder),
                "--interactions",
                str(folder / "toy.inter"),
            ]
        )
        == 0
    )
    return tmp / "data", dict(zip(IDS, vecs, strict=True)), rows


def _run(python: Path, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([str(python), str(RUN), *args], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    return r


def test_recbole_loads_every_items_row_as_its_vector(recbole_python, exported, tmp_path):
    data, vec, rows = exported
    _run(recbole_python, "load", str(data), "toy", "--out", str(tmp_path / "loaded.npz"))
    got = np.load(tmp_path / "loaded.npz", allow_pickle=False)
    tokens, preload = list(got["item_tokens"]), got["preload"]
    assert list(got["alias_tokens"]) == tokens  # iid is an alias of item_id: one token space
    assert tokens[0] == "[PAD]" and not preload[0].any()
    assert sorted(tokens[1:]) == sorted({i for _, i in rows}) and preload.shape == (len(tokens), 12)
    assert tokens[1:] != IDS[: len(tokens) - 1]  # RecBole's token order is not the store's
    for k, tok in enumerate(tokens[1:], start=1):  # float64 parsed from '%.9g' -> float32 exactly
        np.testing.assert_array_equal(preload[k].astype(np.float32), vec[tok], err_msg=tok)


def test_pretrained_bpr_trains_on_the_vectors_in_recbole(recbole_python, exported, tmp_path):
    data, _, _ = exported
    runs = [
        {"name": n, "seed": 0, "config": {"epochs": 2, "pretrained_field": f, "embedding_size": 8}}
        for n, f in (("with", "iid"), ("without", None))
    ]
    (tmp_path / "runs.json").write_text(json.dumps(runs))
    _run(
        recbole_python,
        "train",
        str(data),
        "toy",
        "--runs",
        str(tmp_path / "runs.json"),
        "--out",
        str(tmp_path / "res.json"),
    )
    res = json.loads((tmp_path / "res.json").read_text())
    assert [r["name"] for r in res] == ["with", "without"]
    for r in res:
        assert len(r["valid_curve"]) == 2 and 0.0 <= r["test"]["recall@20"] <= 1.0
    assert (
        res[0]["valid"] != res[1]["valid"] or res[0]["test"] != res[1]["test"]
    )  # the vectors changed the model


def test_export_yaml_is_recboles_config(exported):
    """What RecBole does not check: the yaml the export writes names the same columns as the file."""
    import yaml

    data, _, _ = exported
    conf = yaml.safe_load((data / "toy" / E.RECBOLE_YAML).read_text())
    header = (data / "toy" / "toy.itememb").read_text(encoding="utf-8").split("\n", 1)[0]
    assert header == "iid:token\titem_emb:float_seq" and conf["load_col"]["itememb"] == ["iid", "item_emb"]
