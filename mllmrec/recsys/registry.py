"""The one table of recommender models: name -> builder with declared hyper-parameters.

The eval grid (`eval/run.py`), distillation (its student ID towers) and the tests all build models
through this table, so a model is added in one place:

1. a module that defines the model (recsys contract: `loss`, `score`, `full_sort`), a frozen
   dataclass of its hyper-parameters (each an `opt(default, help)`) and a `ModelSpec`;
2. one line in `MODELS` below: `"name": "module.path:SPEC_ATTRIBUTE"`.

The table holds import paths, not objects, so reading the names (config validation, `--help`)
imports no torch; `spec(name)` imports the module on first use. Tests iterate `MODELS`, so a new
entry is built, trained one step and ranked without editing a test.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mllmrec.errors import MllmrecError

if TYPE_CHECKING:
    import scipy.sparse as sp
    from torch import Tensor

    from mllmrec.recsys.models import RecModel

MODELS: dict[str, str] = {
    "popularity": "mllmrec.recsys.builtin:POPULARITY",
    "mf": "mllmrec.recsys.builtin:MF",
    "lightgcn": "mllmrec.recsys.builtin:LIGHTGCN",
    "content-knn": "mllmrec.recsys.builtin:CONTENT_KNN",
    "vbpr": "mllmrec.recsys.builtin:VBPR",
    "freedom": "mllmrec.recsys.freedom:FREEDOM",
    "ease": "mllmrec.recsys.ease:EASE_SPEC",
}


class UnknownModel(MllmrecError, ValueError):
    """A model name that is not in `MODELS` (the message suggests the closest one)."""


@dataclass(frozen=True)
class ModelSpec:
    """One row of the table.

    params:   frozen dataclass of hyper-parameters, every field an `opt(default, help)`; config
              keys of a method entry are checked against it (unknown keys are an error).
    build:    (params, train [U, I] binary CSR, features [I, f] or None) -> RecModel.
    features: the model needs item content features (an `embed:` or `store:` entry).
    student:  an ID tower with user/item tables (`final_embeddings()`, `user`, `item`, `dim`,
              `reg`) that distillation can train.
    """

    params: type
    build: Callable[[Any, sp.csr_matrix, Tensor | None], RecModel]
    help: str
    features: bool = False
    student: bool = False


def _unknown(name: str, known: list[str], what: str = "model") -> UnknownModel:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return UnknownModel(f"unknown {what} {name!r}{hint}; known: {', '.join(known)}")


def spec(name: str) -> ModelSpec:
    """The row for `name` (imports its module)."""
    if name not in MODELS:
        raise _unknown(name, list(MODELS))
    module, attr = MODELS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def students() -> list[str]:
    """Names of the models distillation can train as students."""
    return [n for n in MODELS if spec(n).student]


def check_student(name: str) -> None:
    """Refuse a name that is not a student model, listing the ones that are."""
    if name not in MODELS or not spec(name).student:
        raise _unknown(name, students(), "student")


def params(name: str, values: dict[str, Any] | None = None) -> Any:
    """The model's hyper-parameter dataclass from `values` (unknown keys are an error)."""
    from mllmrec.config import ConfigError, from_dict

    try:
        return from_dict(spec(name).params, dict(values or {}))
    except ConfigError as e:
        raise ConfigError(f"model {name!r}: {e}") from e


def build_model(
    name: str,
    train: sp.spmatrix | sp.sparray,
    features: Tensor | None = None,
    *,
    run_seed: int | None = None,
    **hyper: Any,
) -> RecModel:
    """Build model `name` for the interaction matrix `train` [U, I]; `hyper` are its
    hyper-parameters (a params dataclass instance may be passed as `params=`). `run_seed`: the
    run's seed, given to a model with sampling of its own (a `seed` hyper-parameter) unless
    `hyper` sets one."""
    from mllmrec.recsys.graph import RecsysError, check_interactions

    row = spec(name)
    if run_seed is not None and "params" not in hyper and "seed" in describe(name):
        hyper.setdefault("seed", run_seed)
    p = hyper.pop("params") if "params" in hyper else params(name, hyper)
    if not isinstance(p, row.params):
        raise RecsysError(f"model {name!r} takes {row.params.__name__}, got {type(p).__name__}")
    if row.features and features is None:
        raise RecsysError(f"model {name!r} needs item features (an `embed:` or `store:` entry)")
    return row.build(p, check_interactions(train), features)


def describe(name: str) -> dict[str, Any]:
    """{hyper-parameter: (default, help)} of a model, for docs and error messages."""
    return {f.name: (f.default, f.metadata.get("help", "")) for f in dataclasses.fields(spec(name).params)}
