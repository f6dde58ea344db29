"""A model id that needs the hub while offline is one line naming the model and what to do (issue 12
item 7), never a transformers traceback."""

from __future__ import annotations

import pytest

from mllmrec.backbone.base import BackboneError
from mllmrec.backbone.config import ModelSpec
from mllmrec.backbone.load import open_encoder, open_renderer

MISSING = "nosuch-org/nosuch-model-for-mllmrec-tests"


def test_an_uncached_hub_id_offline_names_the_model_and_the_setting(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        BackboneError, match=rf"cannot open model '{MISSING}': HF_HUB_OFFLINE is set.*download it"
    ):
        open_encoder(ModelSpec(model=MISSING))
    with pytest.raises(BackboneError, match=rf"cannot open model '{MISSING}'"):
        open_renderer(MISSING)


def test_the_cli_prints_one_line_for_it(tmp_path, capsys, monkeypatch):
    from mllmrec.cli import main
    from mllmrec.testing.catalog import write_small_catalog

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    catalog = write_small_catalog(tmp_path / "cat", n=2)
    assert main(["embed", "--catalog", str(catalog), "--model", MISSING, "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mllmrec embed: error: cannot open model") and "Traceback" not in err
    assert len(err.splitlines()) == 1
