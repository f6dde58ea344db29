"""The runnable evaluation scripts end to end on a tiny synthetic grid (real processes, real files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

CONFIG = """
name: tiny-grid
dataset: {kind: synthetic, n_items: 80, n_users: 60, interactions_per_user: 12, image_size: 32, seed: 0}
protocol: {split: cold, cold_share: 0.2}
seeds: [0, 1]
ks: [5, 10, 20]
methods:
  - name: popularity
  - {name: mf, dim: 16, search: {lr: [0.01, 0.05], dim: [8, 16]}}
  - {name: lightgcn, dim: 16, layers: 2}
  - {name: content-knn, embed: {model: "tiny:qwen2-vl", prompt: notellm2}}
  - {name: vbpr, dim: 16, embed: {model: "tiny:qwen2-vl", prompt: notellm2}}
train: {epochs: 5, batch_size: 512, lr: 0.01, patience: 2}
search_budget: 3
"""


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_run_grid_writes_results_report_and_plots(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(CONFIG)
    out, work = tmp_path / "out", tmp_path / "work"
    p = _run(
        str(ROOT / "eval" / "run.py"),
        "--config",
        str(cfg),
        "--out",
        str(out),
        "--work",
        str(work),
        "--no-progress",
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert {(r["method"], r["seed"]) for r in res["runs"]} == {
        (m, s) for m in ("popularity", "mf", "lightgcn", "content-knn", "vbpr") for s in (0, 1)
    }
    for r in res["runs"]:
        assert 0.0 <= r["test"]["recall@20"] <= 1.0 and r["cold"], r["method"]
        assert "test" not in json.dumps(r["valid"])  # selection metrics come from validation only
    # The same split per seed for every method, saved and fingerprinted.
    assert res["splits"]["0"]["fingerprint"] != res["splits"]["1"]["fingerprint"]
    report = (out / "report.md").read_text()
    assert "## Cold items" in report and "± " in report and "vbpr" in report
    assert "What the counts mean: `cold_items` = " in report
    for png in ("recall_at_k.png", "popularity.png", "cold_warm.png"):
        assert (out / png).stat().st_size > 1000
    # mf's declared space (4 points) is sampled to the budget of 3 on seed 0 and chosen on validation;
    # seed 0's result is the chosen point's run, seed 1 trains the chosen point again.
    t = res["tuning"]["mf"]
    assert t["space_size"] == 4 and t["budget"] == 3 and len(t["tried"]) == 3 and t["seed"] == 0
    best = max(t["tried"], key=lambda x: x["valid_recall@20"])
    assert t["chosen"] == best["config"]
    mf0 = next(r for r in res["runs"] if r["method"] == "mf" and r["seed"] == 0)
    assert mf0["valid"]["recall@20"] == best["valid_recall@20"]
    assert "- lightgcn: **not tuned**" in report and "- mf: 3 point(s) (a random 3 of 4)" in report
    # Popularity cannot reach items it never saw in training: its cold recall is exactly zero.
    assert all(r["cold"]["recall@20"] == 0.0 for r in res["runs"] if r["method"] == "popularity")


def test_visual_neglect_check_runs_and_its_oracles_behave(tmp_path):
    p = _run(
        str(ROOT / "eval" / "visual_neglect.py"),
        "--n-items",
        "120",
        "--out",
        str(tmp_path / "out"),
        "--work",
        str(tmp_path / "work"),
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    rows = {r["features"]: r for r in res["rows"]}
    img, txt = rows["oracle image-only (colour, shape)"], rows["oracle text-only (category, material)"]
    # The calibration rows: image-only attributes are carried by the image oracle only, and the reverse.
    assert img["colour_agreement@10"] > 3 * res["chance"]["colour"] > txt["colour_agreement@10"]
    assert txt["category_agreement@10"] > 3 * res["chance"]["category"] > img["category_agreement@10"]


def test_user_files_with_mmrec_labels_and_a_clear_error_for_missing_ml100k(tmp_path):
    from mllmrec.datasets.config import SyntheticConfig
    from mllmrec.datasets.synthetic import make_synthetic

    data = make_synthetic(SyntheticConfig(out=str(tmp_path / "d"), n_items=60, n_users=40, image_size=32))
    rows = [line.split(",") for line in Path(data.interactions).read_text().splitlines()[1:]]
    inter = tmp_path / "d.inter"  # MMRec layout: every 5th interaction of a user valid, every 7th test
    lines = ["userID\titemID\trating\ttimestamp\tx_label"]
    for n, (u, i, t, r) in enumerate(rows):
        lines.append(f"{u}\t{i}\t{r}\t{t}\t{1 if n % 5 == 0 else 2 if n % 7 == 0 else 0}")
    inter.write_text("\n".join(lines) + "\n")
    cfg = tmp_path / "files.yaml"
    cfg.write_text(
        f"name: files\ndataset: {{kind: files, catalog: {data.items}, interactions: {inter}}}\n"
        "protocol: {split: labels}\nseeds: [0]\nks: [10, 20]\nmethods:\n  - name: popularity\n"
        "  - {name: mf, dim: 8}\ntrain: {epochs: 3, batch_size: 256, lr: 0.01, patience: 2}\n"
    )
    p = _run(
        str(ROOT / "eval" / "run.py"),
        "--config",
        str(cfg),
        "--out",
        str(tmp_path / "o"),
        "--work",
        str(tmp_path / "w"),
        "--no-progress",
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads((tmp_path / "o" / "results.json").read_text())["splits"]["0"]["protocol"] == "labels"

    ml = tmp_path / "ml.yaml"
    ml.write_text(
        f"name: ml\ndataset: {{kind: ml100k, search: [{tmp_path / 'nothing-here'}]}}\nmethods: [{{name: popularity}}]\n"
    )
    p = _run(
        str(ROOT / "eval" / "run.py"),
        "--config",
        str(ml),
        "--out",
        str(tmp_path / "o2"),
        "--work",
        str(tmp_path / "w2"),
        cwd=tmp_path,
    )
    assert (
        p.returncode == 2
        and "pip download --no-deps recbole==1.2.1" in p.stderr
        and "Traceback" not in p.stderr
    )


def _tiny_mmrec_split(path: Path, n_users: int = 40, n_items: int = 30) -> None:
    """An MMRec .inter (userID itemID rating timestamp x_label) with every user in all three parts."""
    import numpy as np

    rng = np.random.default_rng(0)
    lines = ["userID\titemID\trating\ttimestamp\tx_label"]
    for u in range(n_users):
        items = rng.choice(n_items, 8, replace=False)
        for n, i in enumerate(items):
            lines.append(f"{u}\t{i}\t5\t{1000 + n}\t{0 if n < 6 else n - 5}")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "method, extra",
    [
        ("mf", ["--grid", "lr=0.01,0.005"]),
        ("freedom", ["--vectors", "VEC"]),
        ("vbpr", ["--vectors", "VEC"]),
        ("popularity", []),
        ("ease", ["--grid", "l2=1,10"]),
        ("teacher", ["--vectors", "VEC", "--teacher", "teacher_kind=freedom", "teacher_epochs=2"]),
        ("student-lightgcn", ["--vectors", "VEC", "--teacher", "teacher_kind=freedom", "teacher_epochs=2"]),
        (
            "student-mf",
            [
                "--vectors",
                "VEC",
                "--teacher",
                "teacher_kind=freedom",
                "teacher_epochs=2",
                "--grid",
                "losses=bpr+listwise_kd:1,bpr+pairwise_kd:1+listwise_kd:2",
            ],
        ),  # fmt: skip
    ],
)
def test_office_quality_tunes_on_validation_and_writes_its_report(tmp_path, method, extra):
    import numpy as np

    inter, vec = tmp_path / "x.inter", tmp_path / "v.npy"
    _tiny_mmrec_split(inter)
    np.save(vec, np.random.default_rng(1).normal(size=(30, 8)).astype(np.float32))
    extra = [str(vec) if a == "VEC" else a for a in extra]
    p = _run(
        str(ROOT / "eval" / "office_quality.py"), "--method", method, "--inter", str(inter), *extra,
        "--fixed", "epochs=2", "--final-seeds", "0", "1", "--out", str(tmp_path / "out"), cwd=ROOT,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((tmp_path / "out" / f"{method}.json").read_text())
    assert [f["seed"] for f in res["final"]] == [0, 1] and "recall@20" in res["final"][0]["test"]
    assert len(res["grid"]) == (2 if "--grid" in extra else 1)
    if method == "student-mf":  # a loss list in the grid: its losses joined by +
        assert [g["config"]["losses"] for g in res["grid"]] == [
            "bpr+listwise_kd:1",
            "bpr+pairwise_kd:1+listwise_kd:2",
        ]
    if method == "teacher":  # its EASE channel, chosen on validation, is recorded per seed
        cf = res["final"][0]["cf_blend"]
        assert cf["weight"] in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5) and len(cf["tried"]) == 11
    assert method in (tmp_path / "out" / "README.md").read_text()


def test_office_quality_reuses_a_cached_teacher_with_identical_results(tmp_path):
    import numpy as np

    inter, vec = tmp_path / "x.inter", tmp_path / "v.npy"
    _tiny_mmrec_split(inter)
    np.save(vec, np.random.default_rng(1).normal(size=(30, 8)).astype(np.float32))
    runs = []
    for n in range(2):
        p = _run(
            str(ROOT / "eval" / "office_quality.py"), "--method", "student-mf", "--inter", str(inter),
            "--vectors", str(vec), "--teacher", "teacher_kind=freedom", "teacher_epochs=3", "--fixed",
            "epochs=2", "--final-seeds", "0", "--teacher-cache", str(tmp_path / "teachers"),
            "--out", str(tmp_path / f"out{n}"), cwd=ROOT,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr[-3000:]
        runs.append((p.stdout, json.loads((tmp_path / f"out{n}" / "student-mf.json").read_text())))
    assert "teacher from" not in runs[0][0] and "teacher from" in runs[1][0]
    assert len(list((tmp_path / "teachers").glob("teacher-*.pt"))) == 1
    assert runs[0][1]["final"][0]["test"] == runs[1][1]["final"][0]["test"]
