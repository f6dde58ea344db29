"""`mllmrec demo` runs the whole job offline and leaves a complete store behind."""

from __future__ import annotations

import pytest

from mllmrec.cli import main
from mllmrec.store import EmbeddingStore


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen2-vl", "composed"])
def test_demo_runs_end_to_end(tmp_path, capsys, family):
    assert (
        main(
            [
                "demo",
                "--out",
                str(tmp_path / "demo"),
                "--n-items",
                "40",
                "--family",
                family,
                "--train-steps",
                "3",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    store = EmbeddingStore.open(tmp_path / "demo" / "store")
    assert store.manifest["counts"]["embedded"] == 40 and store.channels == ["mm", "visual"]
    assert "RANDOM model" in out and "Qwen/Qwen2-VL-2B-Instruct" in out
    assert (tmp_path / "demo" / "store" / "index" / "mm.faiss").is_file()
    import json

    run = json.loads((tmp_path / "demo" / "run" / "manifest.json").read_text())
    assert run["status"] == "complete" and run["steps"] == 3
    assert "recall@10: zero-shot" in out and "-> tuned" in out
    # A second run in the same folder starts again instead of failing on the existing store.
    assert main(["demo", "--out", str(tmp_path / "demo"), "--n-items", "40", "--family", family]) == 0
