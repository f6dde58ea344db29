"""The command line: help for every flag, YAML configs, clean errors, and the whole journey."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from mllmrec.cli import COMMANDS, PROMPT_COMMANDS, build_parser, main


def test_help_is_fast_and_does_not_import_torch():
    code = "import sys, mllmrec.cli as c; c.build_parser().format_help(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_flag_has_help_text(command):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    for action in sub._actions:
        if action.dest not in ("help",):
            assert action.help and len(action.help) > 10, f"{command} {action.dest} has no help"


def test_yaml_config_is_read_and_flags_win(tmp_path, capsys):
    cfg = tmp_path / "syn.yaml"
    cfg.write_text("n_items: 30\nn_users: 12\nimage_size: 24\n")
    assert main(["make-synthetic", str(tmp_path / "d"), "--config", str(cfg), "--n-items", "25"]) == 0
    assert len((tmp_path / "d" / "items.jsonl").read_text().splitlines()) == 25


def test_yaml_unknown_key_is_a_clean_error(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("n_items: 30\nn_itemz: 3\n")
    assert main(["make-synthetic", str(tmp_path / "d"), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "unknown option(s): n_itemz (did you mean n_items?)" in err and "Traceback" not in err


def test_missing_required_flag_is_reported(capsys, tmp_path):
    assert main(["embed", "--catalog", str(tmp_path / "x.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "missing required option(s): --model (YAML keys: model)" in capsys.readouterr().err


def test_journey_prompts_show_embed_index_neighbors(tiny_qwen2_dir, tmp_path, capsys):
    data = tmp_path / "data"
    assert (
        main(["make-synthetic", str(data), "--n-items", "24", "--n-users", "10", "--image-size", "32"]) == 0
    )
    items = data / "items.jsonl"
    assert (
        main(
            [
                "prompts",
                "show",
                "notellm2-micl",
                "--catalog",
                str(items),
                "--item",
                "i0003",
                "--model",
                str(tiny_qwen2_dir),
            ]
        )
        == 0
    )
    shown = capsys.readouterr().out
    assert "<|im_start|>user" in shown and "<<slot:visual>>" in shown and "<|image_pad|>" in shown
    store = tmp_path / "store"
    assert (
        main(
            [
                "embed",
                "--catalog",
                str(items),
                "--model",
                str(tiny_qwen2_dir),
                "--out",
                str(store),
                "--no-progress",
            ]
        )
        == 0
    )
    assert main(["index", str(store)]) == 0
    capsys.readouterr()
    assert main(["neighbors", str(store), "i0003", "-k", "4"]) == 0
    out = capsys.readouterr().out
    rows = [ln.split() for ln in out.splitlines()[1:] if ln.startswith(" ") and ln.split()[0].isdigit()]
    assert "i0003" in out.splitlines()[0] and [r[0] for r in rows] == ["1", "2", "3", "4"]
    assert all(r[1].startswith("i0") and r[1] != "i0003" for r in rows)
    assert main(["neighbors", str(store), "nope"]) == 2
    assert "item 'nope' is not in the store" in capsys.readouterr().err
    assert Path(store / "index" / "mm.faiss").is_file()


def _help_parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    """Every subcommand's parser, `prompts` actions included."""
    choices = next(a for a in build_parser()._actions if a.dest == "command").choices
    prompts = next(a for a in choices["prompts"]._actions if a.dest == "prompts_command").choices
    return [(c, choices[c]) for c in COMMANDS] + [(f"prompts {c}", prompts[c]) for c in PROMPT_COMMANDS]


@pytest.mark.parametrize("command, parser", _help_parsers(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_help_renders_without_format_leaks(command, parser):
    """argparse %-formats help strings: a stray `%` in a config's help text once printed the raw
    argument dict into `mllmrec train --help` (issue 16)."""
    text = parser.format_help()
    flat = " ".join(text.split())
    for leak in ("%(", "{'", "dict"):
        assert leak not in text, f"`mllmrec {command} --help` leaks {leak!r}"
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{command} {action.dest} has no help"
        start = " ".join(action.help.replace("%%", "%").split())[:30]
        assert start in flat, f"{command} {action.dest}: help {start!r} not rendered"
