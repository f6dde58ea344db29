"""eval/run.py states what it could not use (issue 12 item 4): items without a vector in a content
method's store and interactions the split dropped go into results.json and report.md, and a
content method refuses to run when too many items lack vectors unless max_missing_share allows it.
It prints only metrics the grid computed (no `recall@20 nan` when ks has no 20)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mllmrec.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "eval"))

import coverage  # noqa: E402
import grid_config  # noqa: E402
import report  # noqa: E402


def test_headline_prints_the_metrics_that_exist():
    assert report.headline({"recall@10": 0.5, "ndcg@10": 0.25}, (5, 10)) == "recall@10 0.5000  ndcg@10 0.2500"
    assert "nan" not in report.headline({"recall@10": 0.5}, [5, 10])
    assert report.headline({"recall@20": 0.1, "ndcg@20": 0.2, "recall@50": 0.3}, (20, 50)).startswith(
        "recall@20"
    )
    assert report.table_metrics([{"test": {"recall@10": 1.0, "recall@5": 1.0}}]) == ("recall@10",)
    assert report.table_metrics([{"test": {"recall@5": 1.0, "ndcg@5": 1.0, "recall@2": 1.0}}]) == (
        "ndcg@5",
        "recall@2",
        "recall@5",
    )


def test_coverage_share_and_refusal():
    cov = coverage.Coverage(10, ("a", "b"))
    assert cov.share == 0.2 and cov.as_dict()["missing"] == 2
    coverage.refuse_if_sparse(cov, 0.2, "knn", "store s")
    with pytest.raises(coverage.CoverageError, match=r"2 of 10 items \(20.0%\).*max_missing_share 0.1"):
        coverage.refuse_if_sparse(cov, 0.1, "knn", "store s")


def test_max_missing_share_is_a_checked_grid_option():
    base = {"name": "g", "dataset": {"kind": "synthetic"}, "methods": [{"name": "popularity"}]}
    assert grid_config.from_dict(grid_config.GridConfig, base).max_missing_share == 0.05
    with pytest.raises(ConfigError, match="between 0 and 1"):
        grid_config.from_dict(grid_config.GridConfig, base | {"max_missing_share": 1.5})


@pytest.mark.slow
def test_a_store_missing_items_is_refused_then_counted_when_allowed(tmp_path):
    from mllmrec.datasets.config import SyntheticConfig
    from mllmrec.datasets.synthetic import make_synthetic
    from mllmrec.testing.synthetic_vectors import write_attribute_store

    data = make_synthetic(SyntheticConfig(out=str(tmp_path / "d"), n_items=60, n_users=40, image_size=16))
    ids = [json.loads(line)["id"] for line in data.items.read_text().splitlines()]
    store = write_attribute_store(data.out, tmp_path / "store", skip=set(ids[:12]))  # 20% without a vector

    def grid(extra: str) -> subprocess.CompletedProcess:
        cfg = tmp_path / "g.yaml"
        cfg.write_text(
            f"name: g\ndataset: {{kind: files, catalog: {data.items}, interactions: {data.interactions}}}\n"
            f"ks: [5, 10]\nmethods:\n  - name: popularity\n  - {{name: content-knn, store: {store}}}\n{extra}"
        )
        return subprocess.run(
            [
                sys.executable,
                str(ROOT / "eval" / "run.py"),
                "--config",
                str(cfg),
                "--out",
                str(tmp_path / "o"),
                "--work",
                str(tmp_path / "w"),
                "--no-progress",
            ],
            cwd=tmp_path,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            capture_output=True,
            text=True,
            timeout=600,
        )

    p = grid("")
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert "content-knn" in p.stderr and "max_missing_share 0.05" in p.stderr
    assert not (tmp_path / "o" / "results.json").exists()

    p = grid("max_missing_share: 0.5\n")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "nan" not in p.stdout and "recall@10" in p.stdout and "have no vector" in p.stdout
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    knn = next(r for r in res["runs"] if r["method"] == "content-knn")
    assert 0 < knn["missing_vectors"]["missing"] <= 12 and knn["missing_vectors"]["items"] > 40
    assert "missing_vectors" not in next(r for r in res["runs"] if r["method"] == "popularity")
    dropped = res["splits"]["0"]["dropped"]
    assert set(dropped) >= {"held_out_without_train", "duplicates_folded", "kcore_removed", "interactions"}
    text = (tmp_path / "o" / "report.md").read_text()
    assert "Items without a vector" in text and "Interactions not evaluated" in text and "recall@10" in text
