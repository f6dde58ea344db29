"""The demo's distillation step: a run directory and a user's recommendations, printed."""

from __future__ import annotations

from types import SimpleNamespace

from mllmrec.demo import demo_distill
from mllmrec.distill.artifact import DistillRun


def test_demo_distill_writes_a_run_and_prints_recommendations(tmp_path, capsys):
    from mllmrec.datasets.config import SyntheticConfig
    from mllmrec.datasets.synthetic import make_synthetic
    from mllmrec.testing.synthetic_vectors import write_attribute_store

    syn = make_synthetic(SyntheticConfig(out=str(tmp_path / "data"), n_items=40, n_users=20, image_size=16))
    store = write_attribute_store(syn.out, tmp_path / "store")
    data = SimpleNamespace(interactions=syn.interactions)
    for _ in range(2):  # a second demo run in the same folder replaces the first
        out = demo_distill(tmp_path, data, store, seed=0)
        run = DistillRun.open(out)
        printed = capsys.readouterr().out
        assert f"top 5 for user {run.user_ids[0]}" in printed
        lines = printed.split("seen items left out):")[1].strip().splitlines()
        assert len(lines) == 5 and all(line.split()[0] in set(run.item_ids) for line in lines)
