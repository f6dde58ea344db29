"""Every row of the recsys model registry, iterated (a new row is tested without editing this file):
it builds on a tiny interaction matrix, takes one training step, and ranks every item."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mllmrec.config import ConfigError
from mllmrec.recsys import registry
from mllmrec.recsys.registry import MODELS, UnknownModel, build_model, spec

R = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 1]], dtype=np.float32))  # 3 users x 4 items
FEATURES = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))  # [I, f]
BATCH = {"users": torch.tensor([0, 1, 2]), "pos": torch.tensor([0, 2, 3]), "neg": torch.tensor([3, 0, 1])}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_builds_trains_a_step_and_ranks_all_items(name: str) -> None:
    row = spec(name)
    assert dataclasses.is_dataclass(row.params) and row.help
    for f in dataclasses.fields(row.params):  # every hyper-parameter is declared with help text
        assert f.metadata.get("help"), f"{name}.{f.name} has no help"
    torch.manual_seed(0)
    small = {"dim": 4} if "dim" in {f.name for f in dataclasses.fields(row.params)} else {}
    model = build_model(name, R, FEATURES if row.features else None, **small)
    assert (model.n_users, model.n_items) == R.shape
    if model.trainable:
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
        before = [p.detach().clone() for p in model.parameters()]
        out = model.loss(BATCH)
        loss = sum(out.values()) if isinstance(out, dict) else out
        assert torch.isfinite(loss)
        loss.backward()
        opt.step()
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    with torch.no_grad():
        scores = model.full_sort(torch.tensor([0, 2]))
        pair = model.score(torch.tensor([2, 2]), torch.tensor([1, 3]))
    assert scores.shape == (2, R.shape[1]) and torch.isfinite(scores).all()
    torch.testing.assert_close(pair, scores[1, [1, 3]])
    if row.student:  # distillation reads the ID tables
        eu, ei = model.final_embeddings()
        assert eu.shape[0] == R.shape[0] and ei.shape[0] == R.shape[1] and eu.shape[1] == model.dim


def test_registry_refuses_unknown_names_keys_and_missing_features() -> None:
    with pytest.raises(UnknownModel, match="did you mean lightgcn"):
        spec("lightgnc")
    with pytest.raises(ConfigError, match="did you mean layers"):
        build_model("lightgcn", R, layer=3)
    with pytest.raises(Exception, match="needs item features"):
        build_model("vbpr", R)
    assert set(registry.students()) >= {"mf", "lightgcn"} and "popularity" not in registry.students()


def test_reading_the_names_imports_no_model_code() -> None:
    import subprocess
    import sys

    code = "import sys, mllmrec.recsys.registry as r; print(len(r.MODELS), 'torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [str(len(MODELS)), "False"]


def test_the_run_seed_reaches_models_that_sample_unless_their_own_seed_is_given() -> None:
    assert build_model("freedom", R, FEATURES, run_seed=5, knn_k=2).seed == 5
    assert build_model("freedom", R, FEATURES, run_seed=5, knn_k=2, seed=2).seed == 2
    build_model("mf", R, run_seed=5)  # no seed hyper-parameter: the run seed is not forced on it
