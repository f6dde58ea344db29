"""Real processes: `accelerate launch` with 2 CPU processes, and `kill -9` in the middle of a run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mllmrec import store as st
from mllmrec.embed import run_embed
from mllmrec.embed.config import EmbedConfig
from mllmrec.store import EmbeddingStore
from mllmrec.testing.catalog import write_small_catalog as write_catalog
from mllmrec.testing.processes import accelerate_launch

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).parents[1]),
    }
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def _embed_args(cat: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return [
        "embed",
        "--catalog",
        str(cat),
        "--model",
        str(model),
        "--out",
        str(out),
        "--shard-size",
        "3",
        "--batch-size",
        "2",
        "--no-progress",
        "--device",
        "cpu",
        *extra,
    ]


def _vectors(out: Path) -> tuple[list[str], np.ndarray]:
    s = EmbeddingStore.open(out)
    return s.ids, np.asarray(s.vectors("mm"))


def test_accelerate_launch_two_processes_fill_one_store(tiny_qwen2_dir, tmp_path):
    cat = write_catalog(tmp_path / "cat", n=14)
    single = run_embed(
        EmbedConfig(
            catalog=str(cat),
            model=str(tiny_qwen2_dir),
            out=str(tmp_path / "one"),
            shard_size=3,
            batch_size=2,
            progress=False,
        )
    )
    cmd = accelerate_launch(*_embed_args(cat, tiny_qwen2_dir, tmp_path / "two"))
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = st.read_manifest(tmp_path / "two")
    assert m["processes"] == 2 and m["counts"]["embedded"] == 14 and m["status"] == "complete"
    assert m["seconds_total"] == m["runs"][0]["seconds"] > 0  # process 0 times the whole run
    ids1, v1 = _vectors(single["config"]["out"])
    ids2, v2 = _vectors(tmp_path / "two")
    assert ids1 == ids2
    np.testing.assert_allclose(v1, v2, atol=1e-5)


def test_kill_9_then_resume_finishes_every_item_once(tiny_qwen2_dir, tmp_path):
    cat = write_catalog(tmp_path / "cat", n=60)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "mllmrec.cli", *_embed_args(cat, tiny_qwen2_dir, out)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not st.done_shards(out) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = st.done_shards(out)
    assert 0 < len(done) < 20, f"the kill should land mid-run (shards done: {sorted(done)})"
    assert st.read_manifest(out)["status"] == "running"

    # Resume and the uninterrupted reference run as the killed run did (same process settings,
    # same thread count), so the vectors must be bit-identical.
    for args in (
        _embed_args(cat, tiny_qwen2_dir, out, "--resume"),
        _embed_args(cat, tiny_qwen2_dir, tmp_path / "ref"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "mllmrec.cli", *args],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
    ids_k, v_k = _vectors(out)
    ids_r, v_r = _vectors(tmp_path / "ref")
    assert ids_k == ids_r == [f"x{i}" for i in range(60)]  # every item exactly once, in catalogue order
    assert np.array_equal(v_k, v_r)  # the same shards, the same batches: identical vectors
