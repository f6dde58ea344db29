"""The config mechanism: typed frozen dataclasses with help text; YAML in, unknown keys are an error.

Each stage's config classes live beside the stage (`embed/config.py`, `train/config.py` ...); this
module holds only what they share.

Every field carries its help text in `metadata["help"]`; `cli.py` turns the fields into flags, so
`--help` documents every option and a YAML file (`--config`) can set the same keys. Flags given on
the command line win over the YAML file.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

from mllmrec.errors import MllmrecError


def opt(default: Any, help: str, *, positional: bool = False, short: str | None = None, **kw: Any):
    """A dataclass field with CLI metadata (`short`: an extra flag such as "-k"). Choices come from
    the field's Literal type."""
    meta = {"help": help, "positional": positional, "short": short}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda d=tuple(default): d, metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


REQUIRED = dataclasses.MISSING


class ConfigError(MllmrecError, ValueError):
    """A config value or key is wrong; the message says which and why."""


class Checked:
    """Checks choice (Literal) fields however the config was built (CLI, YAML or Python)."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            tp = hints[f.name]
            if typing.get_origin(tp) is Literal and getattr(self, f.name) not in typing.get_args(tp):
                raise ConfigError(
                    f"{f.name}: {getattr(self, f.name)!r} is not one of "
                    f"{', '.join(map(str, typing.get_args(tp)))}"
                )


# ---------------------------------------------------------------------------------------------
# Loading from dicts / YAML
# ---------------------------------------------------------------------------------------------
def _coerce(name: str, tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if value is None:
        if type(None) in args or tp is type(None):
            return None
        raise ConfigError(f"{name}: a value is required")
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _coerce(name, inner[0], value)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{name}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        nested = dataclasses.is_dataclass(args[0])
        return tuple(_coerce(f"{name}[{n}]" if nested else name, args[0], v) for n, v in enumerate(value))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _nested(name, tp, value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{name}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError as e:
            raise ConfigError(f"{name}: expected an integer, got {value!r}") from e
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{name}: expected a number, got {value!r}") from e
    if tp is str:
        if isinstance(value, (list, dict, tuple)):
            raise ConfigError(f"{name}: expected a single value, got {value!r}")
        return str(value)
    return value


def _nested(name: str, cls: type, value: Any) -> Any:
    """A nested block (a dataclass field) from a mapping: through the class's own `from_mapping`
    classmethod when it has one (a block whose keys depend on another key), else `from_dict`.
    Errors name the block: "train: unknown option(s): epoch (did you mean epochs?)"."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: expected a mapping of keys to values, got {value!r}")
    build = getattr(cls, "from_mapping", None)
    try:
        return build(value) if build is not None else from_dict(cls, value)
    except ConfigError as e:
        raise ConfigError(f"{name}: {e}") from e


def from_dict(cls: type, data: dict[str, Any]):
    """Build a config, refusing unknown keys and values of the wrong type; a field whose type is a
    dataclass (or a tuple of them) is built from a nested mapping (list of mappings) the same way."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        import difflib

        hints = [
            f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(k, fields, n=1)) else k
            for k in unknown
        ]
        raise ConfigError(f"unknown option(s): {', '.join(hints)}; known: {', '.join(sorted(fields))}")
    missing = [
        n
        for n, f in fields.items()
        if n not in data and f.default is REQUIRED and f.default_factory is REQUIRED
    ]
    if missing:
        flags = ", ".join(
            n.upper() if f.metadata.get("positional") else "--" + n.replace("_", "-")
            for n, f in fields.items()
            if n in missing
        )
        raise ConfigError(f"missing required option(s): {flags} (YAML keys: {', '.join(missing)})")
    return cls(**{k: _coerce(k, hints[k], v) for k, v in data.items()})


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:  # a Python tag (!!python/object), a syntax error: one line, no traceback
        where = getattr(e, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(
            f"{path}: not a plain YAML config{at}: {problem}; only plain values are read (no Python tags)"
        ) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of keys to values")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{path}: keys must be names, got {bad!r}")
    return {k.replace("-", "_"): v for k, v in data.items()}


def to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-ready dict of a config (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def diff_values(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """[(dotted key, a's value, b's value)] where two nested dicts (e.g. run identities) differ;
    tuples and lists compare alike."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in diff_values(a.get(k), b.get(k), f"{prefix}{k}.")]
    a, b = (list(a) if isinstance(a, tuple) else a), (list(b) if isinstance(b, tuple) else b)
    return [] if a == b else [(prefix.rstrip("."), a, b)]
