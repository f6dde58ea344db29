"""npy: `features.npy` (float32 [rows, d]) + `ids.json` (row i = ids[i])."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllmrec.features.exporters.base import Exporter, RowPlan, Writer, read_npy, write_json, write_npy

if TYPE_CHECKING:
    import numpy as np

    from mllmrec.features.config import ExportConfig


class NpyExporter(Exporter):
    name = "npy"
    help = "npy (features.npy + ids.json)"

    def files(
        self, cfg: ExportConfig, dataset: str, plan: RowPlan, channels: dict[str, str]
    ) -> dict[str, Writer]:
        return {
            "features.npy": lambda p, ids, m: write_npy(p, m["features"]),
            "ids.json": lambda p, ids, m: write_json(p, ids),
        }

    def read(self, out: Path, manifest: dict[str, Any]) -> tuple[list[str], dict[str, np.ndarray]]:
        return json.loads((out / "ids.json").read_text(encoding="utf-8")), {
            "features": read_npy(out / "features.npy")
        }
