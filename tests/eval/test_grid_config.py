"""eval/run.py's YAML is typed: every shipped config loads, and a misspelled key anywhere is an
error naming the block and the closest known key (it used to fall back to a default silently)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mllmrec.config import ConfigError

EVAL = Path(__file__).resolve().parents[2] / "eval"
sys.path.insert(0, str(EVAL))

import grid_config  # noqa: E402

GOOD = """
name: g
dataset: {kind: synthetic, n_items: 40}
protocol: {split: cold, cold_share: 0.3}
methods:
  - name: popularity
  - {name: lightgcn, dim: 8, layers: 1}
  - {name: vbpr, dim: 8, embed: {model: "tiny:qwen2-vl", prompt: notellm2, image_field: image, batch_size: 4}}
  - {name: content-knn, store: some/store}
  - {name: student, student: mf, kd: false, embed: {model: synthetic-attributes, channels: [mm]}}
train: {epochs: 3, lr: 0.01}
"""


@pytest.mark.parametrize("path", sorted((EVAL / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path) -> None:
    cfg = grid_config.load(path)
    assert cfg.name and cfg.methods


def test_blocks_and_method_parameters_are_typed(tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text(GOOD)
    cfg = grid_config.load(tmp_path / "g.yaml")
    assert cfg.protocol.cold_share == 0.3 and cfg.train.given() == {"epochs": 3, "lr": 0.01}
    by = {m.title: m for m in cfg.methods}
    assert (
        by["lightgcn"].params == {"dim": 8, "layers": 1} and by["content-knn"].features == "store some/store"
    )
    assert by["vbpr"].embed.options == {"image_field": "image", "batch_size": 4}


@pytest.mark.parametrize(
    ("typo", "message"),
    [
        ("train: {epochs: 3, lr: 0.01}", "train: unknown option(s): epoch (did you mean epochs?)"),
        (
            "protocol: {split: cold, cold_share: 0.3}",
            "protocol: unknown option(s): cold_shar (did you mean cold_share?)",
        ),
        ("{name: lightgcn, dim: 8, layers: 1}", "unknown option(s): layer (did you mean layers?)"),
        ("{name: lightgcn, dim: 8, layers: 1}", "unknown model 'lightgnc' (did you mean lightgcn?)"),
        ("image_field: image", "unknown option(s): image_feld (did you mean image_field?)"),
        ("kd: false", "unknown option(s): kdd"),
    ],
)
def test_a_misspelled_key_is_an_error_with_a_suggestion(tmp_path: Path, typo: str, message: str) -> None:
    wrong = {
        "train": typo.replace("epochs", "epoch"),
        "protocol": typo.replace("cold_share", "cold_shar"),
        "layer": typo.replace("layers", "layer"),
        "lightgnc": typo.replace("name: lightgcn", "name: lightgnc"),
        "image_feld": typo.replace("image_field", "image_feld"),
        "kdd": typo.replace("kd", "kdd"),
    }
    key = next(k for k in wrong if k in message)
    (tmp_path / "g.yaml").write_text(GOOD.replace(typo, wrong[key]))
    with pytest.raises(ConfigError) as e:
        grid_config.load(tmp_path / "g.yaml")
    assert message in str(e.value)


I2I = """
name: i
dataset: {kind: synthetic, n_items: 40}
protocol: {split: i2i}
embed: {model: "tiny:qwen2-vl", prompt: notellm2, image_field: image}
pairs: {top_t: 5, valid_share: 0.2}
train: {batch_pairs: 4, steps: 2}
methods: [{name: popularity}, {name: tuned}]
"""


def test_an_i2i_config_checks_its_pairs_and_train_blocks_against_the_stage_configs(tmp_path: Path) -> None:
    (tmp_path / "i.yaml").write_text(I2I)
    cfg = grid_config.load(tmp_path / "i.yaml")
    assert isinstance(cfg, grid_config.I2IConfig) and cfg.train.options == {"batch_pairs": 4, "steps": 2}
    assert cfg.pairs.options == {"top_t": 5, "valid_share": 0.2} and cfg.ks == (10, 50, 100)
    for wrong, message in [
        ("top_t: 5", "pairs: unknown option(s): top_tt (did you mean top_t?)"),
        ("steps: 2", "train: unknown option(s): stepz (did you mean steps?)"),
        ("steps: 2", "train: image_field: set in the embed: block"),
        ("valid_share: 0.2", "pairs: interactions: set by eval/run.py itself"),
        ("{name: tuned}", "methods[1]: name: 'tunned' is not one of"),
    ]:
        bad = {
            "top_tt": "top_tt: 5",
            "stepz": "stepz: 2",
            "image_field": "steps: 2, image_field: none",
            "interactions": "interactions: x.csv",
            "tunned": "{name: tunned}",
        }
        key = next(k for k in bad if k in message)
        (tmp_path / "bad.yaml").write_text(I2I.replace(wrong, bad[key]))
        with pytest.raises(ConfigError) as e:
            grid_config.load(tmp_path / "bad.yaml")
        assert message in str(e.value)


@pytest.mark.parametrize(
    "search, message",
    [
        ("{lr: 0.01}", "non-empty list"),
        ("{lr: []}", "non-empty list"),
        ("{dimm: [8, 16]}", "dimm"),
    ],
)
def test_a_search_space_is_checked_like_the_method_parameters(tmp_path: Path, search, message) -> None:
    (tmp_path / "g.yaml").write_text(
        "name: g\ndataset: {kind: synthetic}\nmethods:\n  - {name: mf, dim: 8, search: " + search + "}\n"
    )
    with pytest.raises(ConfigError, match=message):
        grid_config.load(tmp_path / "g.yaml")


def test_a_search_point_sets_model_keys_and_train_keys_apart(tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text(
        "name: g\ndataset: {kind: synthetic}\nsearch_budget: 2\n"
        "methods:\n  - {name: mf, dim: 8, search: {lr: [0.01, 0.1], reg: [0.0, 0.1]}}\n"
    )
    cfg = grid_config.load(tmp_path / "g.yaml")
    m = cfg.methods[0]
    assert cfg.search_budget == 2 and len(grid_config.search_points(m.search)) == 4
    assert m.with_point({"lr": 0.1, "reg": 0.1}).params == {"dim": 8, "reg": 0.1}  # lr goes to training


def test_a_search_budget_below_one_is_refused(tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text(
        "name: g\ndataset: {kind: synthetic}\nsearch_budget: 0\nmethods: [{name: mf}]\n"
    )
    with pytest.raises(ConfigError, match="search_budget must be at least 1"):
        grid_config.load(tmp_path / "g.yaml")
