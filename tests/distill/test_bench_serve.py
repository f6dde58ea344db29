"""eval/bench_serve.py runs at a tiny scale and reports both sides and their ratios."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_bench_serve_small(tmp_path):
    out = tmp_path / "bench.json"
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "eval" / "bench_serve.py"),
            "--items",
            "3000",
            "--users",
            "130",
            "--feature-dim",
            "16",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["student"]["batches"] == res["teacher"]["batches"] == 3  # the same 130 users in batches of 64
    assert res["student"]["parameters"] == (3000 + 130) * 64 and res["teacher"]["item_vector_dim"] == 192
    r = res["ratios"]
    assert r["qps_student_over_teacher"] == round(
        res["student"]["users_per_s"] / res["teacher"]["users_per_s"], 2
    )
    import faiss

    assert "student top-100" in p.stdout and res["student"]["gpu_faiss"] == (faiss.get_num_gpus() > 0)


def _bench_scale(tmp_path, *args):
    out = tmp_path / "scale.json"
    p = subprocess.run(
        [sys.executable, str(ROOT / "eval" / "bench_scale.py"), *args, "--work", str(tmp_path / "w"),
         "--out", str(out)],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_bench_scale_batch_scores_every_user_through_the_cli(tmp_path):
    res = _bench_scale(tmp_path, "batch", "--users", "2500", "--items", "3000", "--chunk-users", "1000")
    b = res["batch"]
    assert b["rc"] == 0 and b["parts"] == 3 and b["rows"] == 2500 * 20 and b["index"]["kind"] == "ivf"
    assert b["users_per_s"] == round(2500 / b["seconds"], 1) and b["peak_rss_mb"] > 0


@pytest.mark.slow
def test_bench_scale_new_items_loads_through_the_id_index(tmp_path):
    res = _bench_scale(tmp_path, "new-items", "--new-items", "3000", "--table-items", "500", "--users", "120")
    first, second = res["first_load"], res["second_load"]
    assert first["items_served"] == second["items_served"] == 3500
    assert not first["id_index_memory_mapped"] and second["id_index_memory_mapped"]  # saved, then mapped
    assert res["dict_of_all_ids_peak_rss_mb"] > 0
