"""eval/bench_serve.py runs at a tiny scale and reports both sides and their ratios."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
