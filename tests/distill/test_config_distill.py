"""DistillConfig / RecommendConfig: every flag documented, bad values refused with a clear message."""

from __future__ import annotations

import dataclasses

import pytest

from mllmrec.cli import COMMANDS, main
from mllmrec.config import ConfigError, from_dict
from mllmrec.distill.config import DistillConfig, DistillSettings, RecommendConfig


@pytest.mark.parametrize("command", ["distill", "recommend"])
def test_every_flag_has_help(command, capsys):
    cls = COMMANDS[command][0]
    assert all(f.metadata.get("help") for f in dataclasses.fields(cls))
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "--no-kd" in out if command == "distill" else "--unknown-users" in out


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"dim": 0}, "dim must be >= 1"),
        ({"negatives": 0}, "negatives"),
        ({"tau": 0.0}, "tau"),
        ({"student_layers": -1}, "student_layers"),
        ({"mapping_l2": -1.0}, "mapping_l2"),
        ({"teacher_lr": 0.0}, "teacher_lr"),
        ({"teacher_cf_weights": (0.0, 1.5)}, "teacher_cf_weights must be in"),
        ({"teacher_cf_weights": ()}, "teacher_cf_weights must be in"),
        ({"teacher_cf_l2": (0.0,)}, "teacher_cf_l2 must be > 0"),
        ({"student": "transformer"}, "unknown student .transformer.; known: mf, lightgcn"),
    ],
)
def test_bad_settings_are_refused(kw, match):
    with pytest.raises(ConfigError, match=match):
        DistillSettings(**kw)


def test_yaml_keys_and_required_options():
    cfg = from_dict(
        DistillConfig,
        {
            "store": "s",
            "interactions": "l.csv",
            "out": "o",
            "losses": ["bpr", "listwise_kd:2"],
            "student": "mf",
            "dim": "32",
        },
    )
    assert cfg.losses == ("bpr", "listwise_kd:2") and cfg.dim == 32 and cfg.patience == 20
    with pytest.raises(ConfigError, match="--interactions"):
        from_dict(DistillConfig, {"store": "s", "out": "o"})
    with pytest.raises(ConfigError, match="did you mean"):
        from_dict(RecommendConfig, {"run": "r", "user": "u", "exclude_sen": False})
