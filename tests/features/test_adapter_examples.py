"""Every adapters/*/example.py runs offline on the synthetic data (so the examples cannot rot)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXPECT = {  # example -> lines its output must contain
    "torch": ["item features: mm: ", "test Recall@20 before training", "test Recall@20 after"],
    "cornac": ["VBPR  test Recall@20", "BPR   test Recall@20"],
    "mmrec": ["row i = MMRec item i: checked", "image_feat.npy (", "<- visual"],
    "recbole": [
        "row of each item token = its vector: checked",
        "PretrainedBPR with vectors",
        "alias_of_item_id: [iid]",
    ],
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """One synthetic catalogue + store embedded by the real pipeline with the tiny random model."""
    from mllmrec.testing.demo_store import demo_inputs

    work = tmp_path_factory.mktemp("adapters")
    data, store = demo_inputs(work=work, n_items=60)
    return work, data, store


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.recbole) if n == "recbole" else n for n in sorted(EXPECT)]
)
@pytest.mark.slow
def test_example_runs(inputs, name, request):
    work, data, store = inputs
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        str(ROOT / "adapters" / name / "example.py"),
        "--store",
        str(store),
        "--data",
        str(data),
        "--work",
        str(work / name),
    ]
    if name in ("torch", "cornac"):
        cmd += ["--epochs", "3"]
    if name == "recbole":  # real RecBole, in its own venv (adapters/recbole/venv.sh)
        cmd += ["--recbole-python", str(request.getfixturevalue("recbole_python")), "--epochs", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    for line in EXPECT[name]:
        assert line in r.stdout, f"{line!r} not in output:\n{r.stdout}"


def test_every_adapter_folder_has_a_readme_and_a_tested_example():
    folders = sorted(
        p.name for p in (ROOT / "adapters").iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
    )
    assert folders == sorted(EXPECT)
    for name in folders:
        assert (ROOT / "adapters" / name / "README.md").is_file() and (
            ROOT / "adapters" / name / "example.py"
        ).is_file()


def test_no_example_loads_with_pickle_enabled():
    """allow_pickle=True lets a crafted .npy run code; our examples show the safe way (issue 12)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "adapters"
    assert [str(p) for p in root.rglob("*.py") if "allow_pickle=True" in p.read_text()] == []
