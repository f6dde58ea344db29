"""The exporters of `mllmrec export`: output format name -> `Exporter` (see `base`).

Adding a format means one module here with an `Exporter` subclass and one line in `EXPORTERS`;
the `--format` choices and their help come from this table, and the tests iterate it. Importing
this package stays light (no numpy/pyarrow), because the export config reads it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from mllmrec.features.exporters.base import Exporter, ExportError, RowPlan
from mllmrec.features.exporters.cornac import CornacExporter
from mllmrec.features.exporters.mmrec import MmrecExporter
from mllmrec.features.exporters.npy import NpyExporter
from mllmrec.features.exporters.parquet import ParquetExporter
from mllmrec.features.exporters.recbole import RecboleExporter

if TYPE_CHECKING:
    from mllmrec.features.config import ExportConfig

EXPORTERS: dict[str, Exporter] = {
    e.name: e
    for e in (
        MmrecExporter(),
        RecboleExporter(),
        CornacExporter(),
        NpyExporter(),
        ParquetExporter(),
    )
}
FORMATS: tuple[str, ...] = tuple(EXPORTERS)


def formats_help() -> str:
    """The --format help: every exporter's `help`, in registry order."""
    helps = [e.help for e in EXPORTERS.values()]
    return "Target layout: " + (", ".join(helps[:-1]) + " or " if len(helps) > 1 else "") + helps[-1] + "."


def get_exporter(name: str) -> Exporter:
    try:
        return EXPORTERS[name]
    except KeyError:
        from mllmrec.config import ConfigError

        raise ConfigError(f"unknown export format {name!r}; known: {', '.join(EXPORTERS)}") from None


def check_options(cfg: ExportConfig) -> None:
    """ConfigError when a field that only other formats read is set away from its default (it would
    be ignored silently otherwise), naming the formats that read it."""
    from mllmrec.config import ConfigError

    chosen = get_exporter(cfg.format)
    defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
    owners: dict[str, list[str]] = {}
    for e in EXPORTERS.values():
        for name in e.flags:
            owners.setdefault(name, []).append(e.name)
    for name, fmts in owners.items():
        if name not in chosen.flags and getattr(cfg, name) != defaults[name]:
            raise ConfigError(
                f"--{name.replace('_', '-')} applies to --format {' / '.join(fmts)} only, not {cfg.format}"
            )


__all__ = [
    "EXPORTERS",
    "FORMATS",
    "ExportError",
    "Exporter",
    "RowPlan",
    "check_options",
    "formats_help",
    "get_exporter",
]
