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


def test_grid_runs_teacher_and_students(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(CONFIG)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "eval" / "run.py"),
            "--config",
            str(cfg),
            "--out",
            str(tmp_path / "out"),
            "--work",
            str(tmp_path / "work"),
            "--no-progress",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    runs = {r["method"]: r for r in res["runs"]}
    assert set(runs) == {"lightgcn", "teacher", "student-mf-kd", "student-mf-bpr"}
    for r in runs.values():
        assert 0 <= r["test"]["recall@20"] <= 1 and "test" not in json.dumps(r["valid"])
    assert "student-mf-kd" in (tmp_path / "out" / "report.md").read_text()
    # A second seed run separately (e.g. in parallel) and merged into one report.
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "eval" / "run.py"),
            "--config",
            str(cfg),
            "--out",
            str(tmp_path / "out1"),
            "--work",
            str(tmp_path / "work"),
            "--no-progress",
            "--seeds",
            "1",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "eval" / "run.py"),
            "--config",
            str(cfg),
            "--out",
            str(tmp_path / "merged"),
            "--merge",
            str(tmp_path / "out"),
            str(tmp_path / "out1"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    merged = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert sorted(merged["splits"]) == ["0", "1"] and len(merged["runs"]) == 8
    assert "± " in (tmp_path / "merged" / "report.md").read_text()
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "eval" / "run.py"),
            "--config",
            str(cfg),
            "--out",
            str(tmp_path / "bad"),
            "--merge",
            str(tmp_path / "out"),
            str(tmp_path / "out"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode != 0 and "occurs in two runs" in p.stderr
