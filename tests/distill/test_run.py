"""`mllmrec distill` and `mllmrec recommend` end to end: the run directory contract (DistillRun),
serving with seen items left out, new items through the mapping, unknown users, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mllmrec.artifacts import ArtifactError
from mllmrec.cli import main
from mllmrec.config import ConfigError
from mllmrec.distill.artifact import FILES, DistillRun
from mllmrec.distill.config import RecommendConfig
from mllmrec.distill.errors import DistillError, UnknownUserError
from mllmrec.distill.recommend import VIA_MAPPING, VIA_POPULARITY, VIA_TABLE, Recommender
from mllmrec.store import EmbeddingStore, UnknownItemError


def test_run_directory_contract(setup):
    run = DistillRun.open(setup["run"])
    m = run.manifest
    assert m["stage"] == "distill" and m["mllmrec_version"] and m["config"]["dim"] == 16
    assert (
        m["store"]["path"] == str(Path(setup["store"]).resolve()) and len(m["store"]["manifest_sha256"]) == 64
    )
    assert m["teacher"]["kind"] == "promptmm" and m["student"]["kind"] == "lightgcn" and run.dim == 16
    cf = m["teacher"]["cf_blend"]  # the EASE channel: chosen on validation, every point recorded
    assert cf["weight"] in m["config"]["teacher_cf_weights"] and len(cf["tried"]) == 5 + 6
    assert (cf["l2"] is None) == (cf["weight"] == 0) and "recall@20" in cf["valid"]
    assert m["missing_items"] == setup["missing"] and m["counts"]["missing_items"] == 3
    assert m["counts"]["new_items"] == 5 and m["new_items"]["channels"] == ["mm", "visual", "text"]
    assert "valid" in m["student"] and "recall@20" in m["test"]["metrics"]
    users, items = run.user_table(), run.item_table()
    assert users.shape == (len(run.user_ids), 16) and items.shape == (len(run.item_ids), 16)
    assert users.dtype == np.float32 and not set(setup["new"]) & set(run.item_ids)
    assert run.store_path == Path(setup["store"]).resolve()
    assert run.item_index_of(run.item_ids[7]) == 7
    with pytest.raises(UnknownItemError, match="no row"):
        run.item_index_of(setup["new"][0])
    vecs = run.new_item_vectors(setup["new"])
    assert vecs.shape == (5, 16) and np.isfinite(vecs).all() and np.abs(vecs).sum() > 0
    # An id with a table row but no store vector gets its row; an id in neither is refused.
    with pytest.raises(UnknownItemError, match="neither"):
        run.new_item_vectors(["no-such-item"])


def _brute_force(rec: Recommender, user: str, k: int, exclude_seen: bool) -> list[str]:
    row = rec.run.user_index_of(user)
    scores = rec.items @ rec.users[row]
    if exclude_seen:
        scores[rec.seen[row].indices] = -np.inf
    return [rec.item_ids[i] for i in np.argsort(-scores, kind="stable")[:k]]


def test_recommender_matches_brute_force_and_leaves_seen_items_out(setup):
    rec = Recommender.load(setup["run"])
    assert not rec.on_gpu  # no GPU here; GPU faiss is used when faiss sees one
    assert list(rec.via).count(VIA_MAPPING) == 5 and set(rec.item_ids[-5:]) == set(setup["new"])
    user = rec.run.user_ids[0]
    seen = {i for u, i, *_ in setup["rows"] if u == user}
    top = rec.recommend([user], 20)[0]
    assert len(top) == 20 and not {r.item_id for r in top} & seen
    assert [r.item_id for r in top] == _brute_force(rec, user, 20, True)
    assert all(a.score >= b.score for a, b in zip(top, top[1:], strict=False))
    with_seen = rec.recommend([user], 20, exclude_seen=False)[0]
    assert [r.item_id for r in with_seen] == _brute_force(rec, user, 20, False)
    # New items are servable at once: one of them at the top of a user's list says where it came from.
    items = np.asarray(rec.items)
    new_row = len(rec.item_ids) - 1
    best_user = int(np.argmax(rec.users @ items[new_row] - (rec.users @ items[:new_row].T).max(1)))
    hits = rec.recommend([rec.run.user_ids[best_user]], 50)[0]
    assert any(r.via == VIA_MAPPING for r in hits) and all(r.via in (VIA_TABLE, VIA_MAPPING) for r in hits)
    assert not any(
        r.via == VIA_MAPPING
        for r in Recommender.load(setup["run"], new_items=False).recommend([rec.run.user_ids[best_user]], 50)[
            0
        ]
    )


def test_unknown_users_fall_back_to_popularity_or_fail(setup):
    rec = Recommender.load(setup["run"])
    known = rec.run.user_ids[1]
    out = rec.recommend(["ghost", known], 5)
    assert [r.via for r in out[0]] == [VIA_POPULARITY] * 5 and out[1][0].via in (VIA_TABLE, VIA_MAPPING)
    counts = rec.run.popularity()
    assert [r.item_id for r in out[0]] == [
        rec.run.item_ids[i] for i in np.argsort(-counts, kind="stable")[:5]
    ]
    with pytest.raises(UnknownUserError, match="ghost"):
        rec.recommend(["ghost", known], 5, unknown_users="error")


def test_cli_recommend_one_user_and_a_file(setup, capsys, tmp_path):
    run, user = str(setup["run"]), DistillRun.open(setup["run"]).user_ids[2]
    assert main(["recommend", run, "--user", user, "-k", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(f"top 4 for user {user}") and len(lines) == 5
    users_file = tmp_path / "users.csv"
    users_file.write_text(f"user_id\n{user}\nghost\n")
    out = tmp_path / "top.parquet"
    assert main(["recommend", run, "--users-file", str(users_file), "--out", str(out), "-k", "3"]) == 0
    import pyarrow.parquet as pq

    t = pq.read_table(out).to_pylist()
    assert [r["user_id"] for r in t] == [user] * 3 + ["ghost"] * 3 and [r["rank"] for r in t[:3]] == [1, 2, 3]
    assert {r["via"] for r in t[3:]} == {VIA_POPULARITY}
    assert main(["recommend", run, "--user", "ghost", "--unknown-users", "error"]) == 2
    err = capsys.readouterr().err
    assert "ghost" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("uid\nx\n")
    assert main(["recommend", run, "--users-file", str(bad), "--out", str(tmp_path / "o.csv")]) == 2
    assert "no column 'user_id'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"user": "u", "users_file": "f.csv", "out": "o.csv"}, "exactly one"),
        ({}, "exactly one"),
        ({"users_file": "f.csv"}, "needs --out"),
        ({"users_file": "f.csv", "out": "o.txt"}, ".parquet or .csv"),
        ({"user": "u", "k": 0}, "k must be"),
    ],
)
def test_recommend_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        RecommendConfig(run="r", **kw)


def test_distill_bad_input(setup, tmp_path):
    from mllmrec.distill.config import DistillConfig
    from mllmrec.distill.run import run_distill

    base = dict(
        store=str(setup["store"]),
        interactions=str(setup["log"]),
        epochs=1,
        teacher_epochs=1,
        dim=8,
        teacher_dim=8,
        progress=False,
    )
    with pytest.raises(DistillError, match="3 log item"):
        run_distill(DistillConfig(**base, out=str(tmp_path / "a"), missing_items="error"))
    with pytest.raises(DistillError, match="not in the store"):
        run_distill(DistillConfig(**base, out=str(tmp_path / "b"), channels=("mm", "audio")))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="already holds notes.txt; choose a new or empty folder"):
        run_distill(DistillConfig(**base, out=str(tmp_path / "c")))
    with pytest.raises(ArtifactError, match="already holds an earlier distill run; pass --overwrite"):
        run_distill(DistillConfig(**base, out=str(setup["run"])))
    with pytest.raises(DistillError, match="unknown loss 'magic'"):
        run_distill(DistillConfig(**base, out=str(tmp_path / "e"), losses=("bpr", "magic")))
    assert not (tmp_path / "e").exists()  # refused before anything was written
    with pytest.raises(DistillError, match="split"):
        run_distill(DistillConfig(**base, out=str(tmp_path / "d"), split="nonsense"))


def test_broken_or_foreign_run_directories_are_refused(setup, tmp_path):
    with pytest.raises(DistillError, match="no manifest.json"):
        DistillRun.open(tmp_path)
    with pytest.raises(DistillError, match="'embed' artefact"):
        DistillRun.open(setup["store"])
    broken = tmp_path / "run"
    shutil.copytree(setup["run"], broken)
    (broken / FILES["new_items"]).unlink()
    with pytest.raises(DistillError, match="missing new_items.safetensors"):
        DistillRun.open(broken)
    shutil.rmtree(broken)
    shutil.copytree(setup["run"], broken)
    from safetensors.numpy import save_file

    t = DistillRun.open(broken)
    save_file({"user": t.user_table()[:-1], "item": t.item_table()}, str(broken / FILES["tables"]))
    with pytest.raises(DistillError, match="disagree"):
        DistillRun.open(broken)


def test_new_item_vectors_refuse_a_store_from_another_model(setup, tmp_path):
    from mllmrec.testing.synthetic_vectors import write_attribute_store

    other = write_attribute_store(setup["root"] / "syn", tmp_path / "other", dim=24)  # another "model"
    run = DistillRun.open(setup["run"])
    with pytest.raises(DistillError, match="not embedded like"):
        run.new_item_vectors(setup["new"], store=EmbeddingStore.open(other))
    with pytest.raises(DistillError, match="not embedded like"):
        Recommender.load(setup["run"], store=other)


def test_a_run_whose_store_was_re_embedded_says_what_differs_and_keeps_labels(setup, tmp_path, caplog):
    """Issue 12 item 7: the store was "unavailable" with blank labels; now the warning names what
    differs and the labels still come from the store (they come from the catalogue)."""
    from mllmrec.testing.synthetic_vectors import write_attribute_store

    other = write_attribute_store(setup["root"] / "syn", tmp_path / "re-embedded", noise=2.0)
    run = tmp_path / "run"
    shutil.copytree(setup["run"], run)
    m = json.loads((run / "manifest.json").read_text())
    m["store"]["path"] = str(other)
    (run / "manifest.json").write_text(json.dumps(m))
    with caplog.at_level("WARNING"):
        rec = Recommender.load(run)
    said = caplog.text
    assert "unavailable" not in said and "backbone.synthetic_attributes.noise" in said and "2.0" in said
    assert all(r.via == VIA_TABLE for r in rec.recommend([setup["rows"][1][0]], k=5)[0])
    assert rec.labels and all(rec.labels.get(i) for i in rec.item_ids[:5])


def test_new_items_are_mapped_in_batches_without_a_list_or_dict_of_every_store_id(setup, monkeypatch):
    """Issue 14.4: at 10M items a Python list/dict of every id costs GBs; Recommender.load finds the
    new items through the store's sorted id index and maps them a batch at a time."""
    run = DistillRun.open(setup["run"])
    store = run.open_store()
    rows = store.positions(setup["new"])
    whole = run.new_item_vectors_at(rows, store, batch=len(rows))
    np.testing.assert_allclose(run.new_item_vectors_at(rows[::-1], store, batch=2), whole[::-1], rtol=1e-6)
    np.testing.assert_allclose(run.new_item_vectors(setup["new"]), whole, rtol=1e-6)
    with pytest.raises(
        DistillError, match="look it up first"
    ):  # a -1 from positions() would read the last row
        run.new_item_vectors_at(np.array([0, -1]), store)

    def no_full_list(self):
        raise AssertionError("EmbeddingStore.ids (a Python list of every id) was read")

    monkeypatch.setattr(EmbeddingStore, "ids", property(no_full_list))
    monkeypatch.setattr(EmbeddingStore, "labels", property(no_full_list))
    rec = Recommender.load(setup["run"])
    assert rec.item_ids[-5:] == [setup["new"][i] for i in np.argsort(rows, kind="stable")]
    np.testing.assert_allclose(rec.items[-5:], whole[np.argsort(rows, kind="stable")], rtol=1e-6)
    user = rec.run.user_ids[0]
    assert [r.item_id for r in rec.recommend([user], k=10)[0]] == _brute_force(rec, user, 10, True)
    assert rec.labels.get(rec.item_ids[0])  # labels are looked up through the index too


def test_seen_items_served_as_new_items_are_still_left_out(setup, tmp_path):
    """With a cold split, items seen only in valid/test have no table row and come back through the
    new-item mapping; the user's log must still exclude them (the seen matrix spans those columns)."""
    from tests.distill.conftest import QUICK

    run = tmp_path / "cold"
    args = ["distill", str(setup["store"]), "--interactions", str(setup["log"]), "--out", str(run)]
    assert main([*args, "--split", "cold", *QUICK]) == 0
    dr = DistillRun.open(run)
    s_users, s_items = dr.seen()
    table = set(dr.item_ids)
    outside = [(int(u), i) for u, i in zip(s_users, s_items.to_pylist(), strict=True) if i not in table]
    assert outside  # the cold split leaves logged items without a table row
    rec = Recommender.load(run)
    col = {i: n for n, i in enumerate(rec.item_ids)}
    for u, i in outside:
        if i in col:  # in the store: served via the mapping, so it must be marked seen
            assert col[i] in rec.seen[u].indices
    users = sorted({u for u, _ in outside})
    for u, recs in zip(users, rec.recommend([dr.user_ids[u] for u in users], k=20), strict=True):
        assert not {r.item_id for r in recs} & {i for uu, i in outside if uu == u}
