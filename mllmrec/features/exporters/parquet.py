"""parquet: `features.parquet` with columns id (string) and <channel> (fixed-size list of float32)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllmrec.features.exporters.base import Exporter, RowPlan, Writer
from mllmrec.fsutil import atomic_path

if TYPE_CHECKING:
    import numpy as np

    from mllmrec.features.config import ExportConfig

FILE = "features.parquet"


class ParquetExporter(Exporter):
    name = "parquet"
    help = "parquet (features.parquet: id + vector)"

    def files(
        self, cfg: ExportConfig, dataset: str, plan: RowPlan, channels: dict[str, str]
    ) -> dict[str, Writer]:
        return {FILE: lambda p, ids, m: _write(p, ids, m["features"], channels["features"])}

    def read(self, out: Path, manifest: dict[str, Any]) -> tuple[list[str], dict[str, np.ndarray]]:
        import numpy as np
        import pyarrow.parquet as pq

        table = pq.read_table(out / FILE)
        column = next(c for c in table.column_names if c != "id")
        return table.column("id").to_pylist(), {
            "features": np.asarray(table.column(column).to_pylist(), np.float32)
        }


def _write(path: Path, ids: list[str], matrix: np.ndarray, column: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    vec = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])
    with atomic_path(path) as tmp:
        pq.write_table(pa.table({"id": pa.array(ids, pa.string()), column: vec}), str(tmp))
