"""What an exporter is: the part of `mllmrec export` that differs between output formats.

`index.export` does what every format shares (open the source, look the vectors up by raw id with
the missing-id policy, refuse to overwrite, write atomically, record the manifest); an `Exporter`
decides the rest for its format: the row order (`plan`), the files and their writers (`files`),
what to do after writing (`finish`), extra lines for the CLI (`summary`) and how to read its output
back (`read`, used by checks and by the registry's tests). Its per-format options are fields of
`ExportConfig` (the CLI builds flags from them) that the exporter claims in `flags`, mapped onto
its own typed `Options`; setting a claimed field for another format is a ConfigError.

Heavy dependencies (numpy, pyarrow) are imported inside functions: the registry is imported by
the export config, which the CLI reads before it knows whether it will export anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from mllmrec.errors import MllmrecError
from mllmrec.fsutil import atomic_path, atomic_write_text

if TYPE_CHECKING:
    import numpy as np

    from mllmrec.features.config import ExportConfig
    from mllmrec.features.provider import FeatureProvider

Writer = Callable[[Path, list[str], "dict[str, np.ndarray]"], None]  # (path, row ids, {array: [rows, d]})


class ExportError(MllmrecError, ValueError):
    """An export that cannot be written as asked, or an export folder that no longer matches its manifest."""


@dataclass
class RowPlan:
    """Raw id of each output row, where that order came from, which channel each array holds, and
    text files to write beside the arrays."""

    row_ids: list[str]
    origin: str
    arrays: dict[str, str]  # array name -> source channel
    extra_files: dict[str, str] = field(default_factory=dict)  # file name -> text content
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NoOptions:
    """Options of a format that has none."""


class Exporter:
    """One output format. Subclasses set `name` and `help`, and override what differs."""

    name: ClassVar[str]
    help: ClassVar[str]  # "name (what it writes)", joined into the --format help
    Options: ClassVar[type] = NoOptions
    flags: ClassVar[dict[str, str]] = {}  # ExportConfig field -> Options field, read by this format only

    def options(self, cfg: ExportConfig) -> Any:
        """This format's typed options, taken from the flat config fields it claims."""
        return self.Options(**{opt: getattr(cfg, name) for name, opt in self.flags.items()})

    def validate(self, cfg: ExportConfig) -> None:
        """Refuse a config this format cannot write, before any work (default: everything goes)."""

    def plan(self, cfg: ExportConfig, provider: FeatureProvider, dataset: str) -> RowPlan:
        """Default: one array `features` of --channel (else the source's default) in `target_ids` order."""
        row_ids, origin = target_ids(cfg, provider)
        return RowPlan(
            row_ids, origin, {"features": provider.channel if cfg.channel is None else cfg.channel}
        )

    def files(
        self, cfg: ExportConfig, dataset: str, plan: RowPlan, channels: dict[str, str]
    ) -> dict[str, Writer]:
        """{file name: writer} for the output folder; `channels`: array name -> channel it holds."""
        raise NotImplementedError

    def finish(self, cfg: ExportConfig, out: Path, plan: RowPlan) -> dict[str, Any]:
        """Work after the files are written; returns entries added to the manifest (default none)."""
        return {}

    def summary(self, cfg: ExportConfig, manifest: dict[str, Any], out: Path) -> list[str]:
        """Extra lines `mllmrec export` prints for this format (default none)."""
        return []

    def read(self, out: Path, manifest: dict[str, Any]) -> tuple[list[str], dict[str, np.ndarray]]:
        """(raw id of each row, {array name: [rows, d]}) read back from an export folder."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Pieces several formats share
# ---------------------------------------------------------------------------------------------
def target_ids(cfg: ExportConfig, provider: FeatureProvider) -> tuple[list[str], str]:
    """(raw id of each output row, where that order came from): the --ids file, else the items of
    --interactions in first-seen order, else every id of the source in its own order."""
    logged: list[str] | None = None
    if cfg.interactions is not None:
        from mllmrec.catalog.interactions import index_ids, read_interactions

        inter = read_interactions(cfg.interactions, user_field=cfg.user_field, item_field=cfg.item_field)
        logged = list(index_ids(inter.items)[0])
    if cfg.ids is None:
        return (
            (logged, f"items of {cfg.interactions}")
            if logged is not None
            else (provider.ids(), f"all ids of {cfg.source}")
        )
    from mllmrec.features.idmap import read_id_map

    ids = read_id_map(cfg.ids, id_column=cfg.id_column, known=lambda: provider.ids())
    if logged is not None:  # both given: the id list must cover every logged item, or that item has no row
        known = set(ids)
        lost = [i for i in logged if i not in known]
        if lost:
            raise ExportError(
                f"{len(lost)} item(s) of {cfg.interactions} are not in {cfg.ids}, e.g. "
                f"{', '.join(lost[:5])}: they would have no feature row"
            )
    return ids, f"ids file {cfg.ids}"


def write_npy(path: Path, matrix: np.ndarray) -> None:
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(matrix, dtype=np.float32), allow_pickle=False)


def read_npy(path: Path) -> np.ndarray:
    import numpy as np

    return np.load(path, allow_pickle=False)


def write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, ensure_ascii=False) + "\n")
