"""eval/run.py's item-to-item protocol end to end on a tiny synthetic case (real process, real files):
pairs mined, trained without the test part, every method scored on valid and test."""

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
name: tiny-i2i
dataset: {kind: synthetic, n_items: 60, n_users: 50, interactions_per_user: 12, image_size: 32, seed: 0}
protocol: {split: i2i}
ks: [5, 10]
embed: {model: "tiny:qwen2-vl", prompt: notellm2, batch_size: 8}
pairs: {top_t: 5, valid_share: 0.2, test_share: 0.2}
train: {batch_pairs: 4, steps: 2, lr: 0.001, valid_every: 0}
methods:
  - {name: random, dim: 16}
  - {name: popularity}
  - {name: zero-shot, label: zero}
  - {name: tuned, label: tuned}
"""


def _run(cfg: Path, out: Path, work: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "eval" / "run.py"),
            "--config",
            str(cfg),
            "--out",
            str(out),
            "--work",
            str(work),
            "--no-progress",
        ],
        cwd=cfg.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_i2i_protocol_trains_without_test_pairs_and_scores_every_method(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    cfg = tmp_path / "i2i.yaml"
    cfg.write_text(CONFIG)
    out, work = tmp_path / "out", tmp_path / "work"
    p = _run(cfg, out, work)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    for part in ("valid", "test"):
        assert set(res[part]) == {"random", "popularity", "zero", "tuned"}
        assert all(
            0.0 <= r["recall@10"] <= 1.0 and r["recall@5"] <= r["recall@10"] for r in res[part].values()
        )
        assert res["protocol"][part]["queries"] > 0
    # Training saw the pairs without their test part; the test part is what the test table scores.
    parts = set(pq.read_table(work / "pairs-notest" / "pairs.parquet")["part"].to_pylist())
    assert parts == {"train", "valid"}
    assert res["train"]["steps"] == 2 and not res["train"]["reused"]
    assert res["selection"][0]["run"] == res["train"]["run"]
    report = (out / "report.md").read_text()
    assert "## Test part" in report and "tuned" in report and "**(chosen)**" in report
    # Tuned vectors differ from zero-shot ones (the adapter was applied), on the same items.
    stores = sorted((work / "stores").iterdir())
    assert any(s.name.startswith("tuned-") for s in stores) and any(
        s.name.startswith("zero-shot-") for s in stores
    )

    # A second invocation reuses the finished run (and the stores) and gives the same numbers.
    p = _run(cfg, out, work)
    assert p.returncode == 0, p.stderr[-3000:]
    again = json.loads((out / "results.json").read_text())
    assert again["train"]["reused"] and again["test"] == res["test"] and again["valid"] == res["valid"]
