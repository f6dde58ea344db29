"""`mllmrec` command line: a thin dispatcher from subcommand to (config class, CLI entry).

Each entry is `f(cfg, command) -> exit code`: for a stage it is the stage's thin printing wrapper
around its library entry `run_<stage>(cfg) -> manifest`.

Flags and their help text come from the config dataclasses in `mllmrec.config`, so the CLI, YAML
configs (`--config FILE`) and the Python API take the same keys. Run functions are imported only
when their subcommand runs, which keeps `mllmrec --help` fast (no torch import).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import sys
import types
import typing
from typing import Any, Literal

from mllmrec import __version__
from mllmrec import config as C
from mllmrec.backbone.config import ComposeConfig
from mllmrec.catalog.config import PairsConfig
from mllmrec.datasets.config import DemoConfig, SyntheticConfig
from mllmrec.distill.config import DistillConfig, RecommendConfig, ServeConfig
from mllmrec.embed.config import EmbedConfig, ImportConfig
from mllmrec.errors import MllmrecError
from mllmrec.features.config import ExportConfig
from mllmrec.index.config import IndexConfig, NeighborsConfig
from mllmrec.prompts.config import PromptShowConfig
from mllmrec.train.config import MergeConfig, TrainConfig

# subcommand -> (config class, "module:function", one-line help)
COMMANDS: dict[str, tuple[type, str, str]] = {
    "demo": (
        DemoConfig,
        "mllmrec.demo:run_demo",
        "Run the main job offline on a synthetic catalogue with a tiny random model (embed, search, pairs, tuning).",
    ),
    "embed": (EmbedConfig, "mllmrec.embed.run:main", "Embed a catalogue into an embedding store."),
    "import": (
        ImportConfig,
        "mllmrec.embed.external:main",
        "Turn vectors made elsewhere (npy/parquet/safetensors + ids, or a sentence-transformers model "
        "folder run over a catalogue) into an embedding store.",
    ),
    "index": (IndexConfig, "mllmrec.index.search_cli:run_index", "Build a faiss index next to a store."),
    "neighbors": (
        NeighborsConfig,
        "mllmrec.index.search_cli:run_neighbors",
        "Print an item's nearest neighbours (with titles) from a store.",
    ),
    "make-synthetic": (
        SyntheticConfig,
        "mllmrec.datasets.synthetic:run",
        "Write a deterministic synthetic multimodal catalogue with interactions.",
    ),
    "compose": (
        ComposeConfig,
        "mllmrec.backbone.composed:run_compose",
        "Build a composed MLLM (causal LM + vision encoder + connector) directory.",
    ),
    "pairs": (
        PairsConfig,
        "mllmrec.catalog.pairs:main",
        "Mine co-interaction item pairs from an interaction log.",
    ),
    "distill": (
        DistillConfig,
        "mllmrec.distill.run:main",
        "Distil a multimodal teacher into an MF/LightGCN ID tower (PromptMM) for cheap serving.",
    ),
    "recommend": (
        RecommendConfig,
        "mllmrec.distill.recommend:run_recommend",
        "Top-k items for users from a distill run (faiss search; new items via the mapping).",
    ),
    "serve": (
        ServeConfig,
        "mllmrec.distill.serve:run_serve",
        "Serve a distill run's recommendations over HTTP (GET/POST /recommend, /health).",
    ),
    "train": (
        TrainConfig,
        "mllmrec.train.trainer:main",
        "LoRA-tune a backbone contrastively on co-interaction pairs.",
    ),
    "merge": (
        MergeConfig,
        "mllmrec.train.merge:run_merge",
        "Merge a train run's adapter into its base model (loadable without peft).",
    ),
    "export": (
        ExportConfig,
        "mllmrec.features.export:main",
        "Write item vectors for MMRec, RecBole, Cornac or as npy/parquet, rows aligned to their item ids.",
    ),
}
PROMPT_COMMANDS: dict[str, tuple[type | None, str, str]] = {
    "list": (None, "mllmrec.prompts.show:run_list", "List the built-in prompt templates."),
    "show": (PromptShowConfig, "mllmrec.prompts.show:run_show", "Print an item rendered through a template."),
}


def _add_fields(p: argparse.ArgumentParser, cls: type) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, meta = hints[f.name], f.metadata
        help_text = meta.get("help", "")
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if not required:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            help_text += (
                f" (default: {' '.join(map(str, default)) if isinstance(default, tuple) else default})"
            )
        elif not meta.get("positional"):
            help_text += " (required)"
        kw: dict[str, Any] = {"help": _literal(help_text), "default": argparse.SUPPRESS}
        base = _base_type(tp)
        if typing.get_origin(base) is Literal:
            kw["choices"] = typing.get_args(base)
        elif typing.get_origin(base) is tuple:
            kw["nargs"] = "+"
            kw["metavar"] = f.name.upper().rstrip("S")
        elif base is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif base in (int, float):
            kw["type"] = base
        if meta.get("positional"):
            p.add_argument(f.name, metavar=f.name.upper(), **{k: v for k, v in kw.items() if k != "default"})
        else:
            if "metavar" not in kw and "choices" not in kw and base is not bool:
                kw["metavar"] = f.name.upper()
            flags = ["--" + f.name.replace("_", "-")] + ([meta["short"]] if meta.get("short") else [])
            p.add_argument(*flags, dest=f.name, **kw)


def _literal(text: str) -> str:
    """Help text as argparse must receive it: argparse %-formats every help string (for
    `%(default)s`), so a plain `%` ("~30% slower" reads as the conversion `% s`) would print the
    whole argument dict; our texts are plain prose, so every `%` is doubled."""
    return text.replace("%", "%%")


def _base_type(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return tp


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mllmrec",
        description="Multimodal-LLM item representations for recommender systems. "
        "Start with `mllmrec demo`; every subcommand has its own --help.",
    )
    parser.add_argument("--version", action="version", version=f"mllmrec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="Log progress details.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (cls, _, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=_literal(help_text), description=(cls.__doc__ or help_text).strip())
        p.add_argument(
            "--config", metavar="YAML", help="Read options from a YAML file; flags given here win."
        )
        _add_fields(p, cls)
    prompts = sub.add_parser("prompts", help="Inspect prompt templates.")
    psub = prompts.add_subparsers(dest="prompts_command", metavar="ACTION", required=True)
    for name, (cls, _, help_text) in PROMPT_COMMANDS.items():
        p = psub.add_parser(name, help=_literal(help_text), description=help_text)
        if cls is not None:
            _add_fields(p, cls)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = vars(build_parser().parse_args(argv))
    logging.basicConfig(
        level=logging.INFO if args.pop("verbose") else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    command = args.pop("command")
    if command == "prompts":
        cls, target, _ = PROMPT_COMMANDS[args.pop("prompts_command")]
    else:
        cls, target, _ = COMMANDS[command]
    data = C.load_yaml(args.pop("config")) if args.get("config") else {}
    args.pop("config", None)
    module, func = target.split(":")
    try:
        cfg = C.from_dict(cls, {**data, **args}) if cls is not None else None
        # Every entry takes (config, command line); stages record the command in their manifest.
        result = getattr(importlib.import_module(module), func)(cfg, ["mllmrec", *argv])
    except KeyboardInterrupt:
        if command == "embed":
            again = " ".join(["mllmrec", *argv, *([] if "--resume" in argv else ["--resume"])])
            print(f"\ninterrupted; finished shards are kept. Continue with:\n  {again}", file=sys.stderr)
        else:
            print("\ninterrupted", file=sys.stderr)
        return 130
    except (MllmrecError, FileNotFoundError) as e:
        # Expected failures (bad input, mismatched artefacts) get one clear line; anything else is
        # a bug and keeps its traceback.
        if logging.getLogger().isEnabledFor(logging.INFO):
            raise
        print(f"mllmrec {command}: error: {e}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
