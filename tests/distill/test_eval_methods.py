"""eval/run.py runs the distillation methods (teacher, students with and without KD) on a tiny grid."""

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
name: tiny-distill
dataset: {kind: synthetic, n_items: 80, n_users: 60, interactions_per_user: 12, image_size: 16, seed: 0}
protocol: {split: random}
seeds: [0]
ks: [5, 10, 20]
methods:
  - name: lightgcn
    dim: 16
  - {name: teacher, teacher_dim: 16, embed: &a {model: synthetic-attributes, noise: 1.0, dim: 16}}
  - {name: student, label: student-mf-kd, student: mf, dim: 16, teacher_dim: 16, embed: *a}
  - {name: student, label: student-mf-bpr, student: mf, dim: 16, teacher_dim: 16, kd: false, embed: *a}
train: {epochs: 3, batch_size: 256, lr: 0.01, patience: 2}
"""


def _run(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "eval" / "run.py"), "--config", str(cfg), *args],
        cwd=cfg.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_grid_runs_teacher_and_students(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(CONFIG)
    work = ["--work", str(tmp_path / "work"), "--no-progress"]
    p = _run(cfg, "--out", str(tmp_path / "out"), *work)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    runs = {r["method"]: r for r in res["runs"]}
    assert set(runs) == {"lightgcn", "teacher", "student-mf-kd", "student-mf-bpr"}
    for r in runs.values():
        assert 0 <= r["test"]["recall@20"] <= 1 and "test" not in json.dumps(r["valid"])
    assert "student-mf-kd" in (tmp_path / "out" / "report.md").read_text()
    # A second seed run separately (e.g. in parallel) and merged into one report.
    p = _run(cfg, "--out", str(tmp_path / "out1"), *work, "--seeds", "1")
    assert p.returncode == 0, p.stderr[-3000:]
    p = _run(cfg, "--out", str(tmp_path / "merged"), "--merge", str(tmp_path / "out"), str(tmp_path / "out1"))
    assert p.returncode == 0, p.stderr[-3000:]
    merged = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert sorted(merged["splits"]) == ["0", "1"] and len(merged["runs"]) == 8
    assert "± " in (tmp_path / "merged" / "report.md").read_text()
    # One method re-run on seed 0 (e.g. after a change): its run replaces the older part's.
    p = _run(cfg, "--out", str(tmp_path / "again"), *work, "--seeds", "0", "--methods", "lightgcn")
    assert p.returncode == 0, p.stderr[-3000:]
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    parts = [str(tmp_path / d) for d in ("out", "out1", "again")]
    p = _run(cfg, "--out", str(tmp_path / "merged2"), "--merge", *parts)
    assert p.returncode == 0, p.stderr[-3000:]
    merged = json.loads((tmp_path / "merged2" / "results.json").read_text())
    assert len(merged["runs"]) == 8
    kept = [r for r in merged["runs"] if (r["method"], r["seed"]) == ("lightgcn", 0)]
    assert kept == again["runs"]
    # A part whose entry for a kept method is not the config's (run from an edited config): refused.
    edited = json.loads((tmp_path / "again" / "results.json").read_text())
    edited["config"]["methods"][0]["dim"] = 8
    (tmp_path / "again" / "results.json").write_text(json.dumps(edited))
    p = _run(cfg, "--out", str(tmp_path / "bad"), "--merge", *parts)
    assert p.returncode != 0 and "lightgcn differ from --config's entries" in p.stderr
