"""eval/cornac_features.py's fixed-split mode end to end on a tiny MMRec-format split (a real process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _tiny_mmrec(tmp: Path, n_users: int = 30, n_items: int = 40) -> tuple[Path, Path, list[str], np.ndarray]:
    """office.inter-like log (two item groups, each user keeps to one: 6 train, 1 valid, 1 test) and
    its i_id_mapping.csv (40 items: Cornac ranks a top 20 among the items a user has not
    seen, so it needs more than 20 + 7); returns (inter, mapping, original ids by itemID, group of each itemID)."""
    rng = np.random.default_rng(0)
    group = np.arange(n_items) % 2
    lines = ["userID\titemID\trating\ttimestamp\tx_label"]
    for u in range(n_users):
        items = rng.choice(np.flatnonzero(group == u % 2), 8, replace=False)
        for n, i in enumerate(items):
            lines.append(f"{u}\t{i}\t1\t{1000 + n}\t{0 if n < 6 else n - 5}")
    inter = tmp / "tiny.inter"
    inter.write_text("\n".join(lines) + "\n")
    orig = [f"B{900 - i:05d}" for i in range(n_items)]  # original ids sort opposite to itemID
    mapping = tmp / "i_id_mapping.csv"
    mapping.write_text("orig_item_id,itemID\n" + "".join(f"{o},{i}\n" for i, o in enumerate(orig)))
    return inter, mapping, orig, group


def test_fixed_split_mode_rows_per_store_label_chosen_on_validation(tmp_path):
    from mllmrec.testing.stores import write_array_store

    inter, mapping, orig, group = _tiny_mmrec(tmp_path)
    ids = orig[::-1]  # stores list items in yet another order: alignment is the adapter's job
    by_id = dict(zip(orig, group, strict=True))
    onehot = np.array([[by_id[i] == 0, by_id[i] == 1] for i in ids], np.float32)
    noise = np.random.default_rng(1).standard_normal((len(ids), 8)).astype(np.float32)
    informative = write_array_store(tmp_path / "s-group", ids, {"mm": onehot})
    random = write_array_store(tmp_path / "s-noise", ids, {"mm": noise})
    out = tmp_path / "out"
    vbpr_grid, bpr_grid = [[4, 2, 2], [4, 2, 6]], [[4, 5], [4, 20]]
    p = subprocess.run(
        [
            sys.executable, str(ROOT / "eval" / "cornac_features.py"),
            "--mmrec-inter", str(inter), "--mmrec-items", str(mapping),
            "--store", f"group one-hot={informative}", "--store", f"noise={random}",
            "--vbpr-grid", *(",".join(map(str, g)) for g in vbpr_grid),
            "--bpr-grid", *(",".join(map(str, g)) for g in bpr_grid),
            "--seeds", "0", "--out", str(out),
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["dataset"]["kind"] == "mmrec" and res["dataset"]["users"] == 30
    assert res["split_counts"] == {"train": 180, "valid": 30, "test": 30}  # as the file says
    assert res["grids"] == {"bpr (k, max_iter)": bpr_grid, "vbpr (k, k2, epochs)": vbpr_grid}
    assert set(res["stores"]) == {"group one-hot", "noise"}
    rows = {(r["model"], r["features"]) for r in res["runs"]}
    assert rows == {
        ("Cornac BPR (no features)", "-"),
        ("Cornac VBPR", "group one-hot"),
        ("Cornac VBPR", "noise"),
    }
    for r in res["runs"]:
        grid = bpr_grid if r["features"] == "-" else vbpr_grid
        assert [t["setting"] for t in r["tried"]] == grid and r["seed"] == 0
        best = max(r["tried"], key=lambda t: t["valid_recall@20"])  # first of ties, as fit_select keeps
        assert r["setting"] == best["setting"] and r["valid"]["recall@20"] == best["valid_recall@20"]
        for part in ("valid", "test"):
            assert all(0.0 <= v <= 1.0 for v in r[part].values()), r
    rep = (out / "report.md").read_text()
    assert "fixed, as given by the file's x_label" in rep and "180 train, 30 valid, 30 test" in rep
    assert "| Cornac VBPR | group one-hot |" in rep and "| Cornac VBPR | noise |" in rep
    assert (
        "VBPR (k, k2, epochs) [(4, 2, 2), (4, 2, 6)]" in rep and "BPR (k, max_iter) [(4, 5), (4, 20)]" in rep
    )
    assert "oracle" not in rep and "control:" not in rep and "Data: synthetic" not in rep
