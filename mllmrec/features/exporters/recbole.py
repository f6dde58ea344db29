"""recbole: `<dataset>.itememb`, a RecBole atomic file `iid:token<TAB>item_emb:float_seq` (floats
separated by spaces), and `mllmrec-recbole.yaml` with the config lines that preload it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllmrec.features.exporters.base import Exporter, ExportError, RowPlan, Writer
from mllmrec.fsutil import atomic_path, atomic_write_text

if TYPE_CHECKING:
    import numpy as np

    from mllmrec.features.config import ExportConfig

RECBOLE_YAML = "mllmrec-recbole.yaml"


@dataclass(frozen=True)
class RecboleOptions:
    """Column names of the atomic file (defaults and help: ExportConfig.recbole_*)."""

    id_field: str  # must differ from the .inter's item id field; listed in alias_of_item_id
    emb_field: str


class RecboleExporter(Exporter):
    name = "recbole"
    help = "recbole (<dataset>.itememb atomic file)"
    Options = RecboleOptions
    flags = {"recbole_id_field": "id_field", "recbole_emb_field": "emb_field"}

    def files(
        self, cfg: ExportConfig, dataset: str, plan: RowPlan, channels: dict[str, str]
    ) -> dict[str, Writer]:
        o: RecboleOptions = self.options(cfg)
        return {
            f"{dataset}.itememb": lambda p, ids, m: _write(p, ids, m["features"], o),
            RECBOLE_YAML: lambda p, ids, m: atomic_write_text(p, _yaml(o, dataset)),
        }

    def read(self, out: Path, manifest: dict[str, Any]) -> tuple[list[str], dict[str, np.ndarray]]:
        import numpy as np

        name = next(n for n in manifest["files"] if n.endswith(".itememb"))
        lines = (out / name).read_text(encoding="utf-8").splitlines()[1:]
        cells = [line.split("\t") for line in lines]
        return [c[0] for c in cells], {
            "features": np.array([c[1].split(" ") for c in cells], dtype=np.float32)
        }


def _write(path: Path, ids: list[str], matrix: np.ndarray, o: RecboleOptions) -> None:
    """RecBole atomic file: header `field:type` cells joined by tabs, then one row per item; a
    float_seq cell holds the floats separated by spaces (RecBole's default seq_separator). '%.9g'
    round-trips float32 exactly."""
    bad = [i for i in ids[:1000] if "\t" in i or "\n" in i]
    if bad:
        raise ExportError(
            f"item id {bad[0]!r} contains a tab or newline, which a RecBole atomic file cannot hold"
        )
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(f"{o.id_field}:token\t{o.emb_field}:float_seq\n")
        from tqdm.auto import tqdm

        for start in tqdm(
            range(0, len(ids), 4096), desc=f"writing {path.name}", unit="block", disable=len(ids) < 200_000
        ):
            block = matrix[start : start + 4096]
            f.writelines(
                f"{i}\t{' '.join(format(x, '.9g') for x in row)}\n"
                for i, row in zip(ids[start : start + 4096], block.tolist(), strict=True)
            )


def _yaml(o: RecboleOptions, dataset: str) -> str:
    i, e = o.id_field, o.emb_field
    return (
        f"# Load {dataset}.itememb (written by mllmrec export) as a pretrained item embedding.\n"
        f"# In a model: torch.from_numpy(dataset.get_preload_weight('{i}'))\n"
        f"additional_feat_suffix: [itememb]\n"
        f"load_col:  # keep the inter columns your model needs\n  inter: [user_id, item_id]\n  itememb: [{i}, {e}]\n"
        f"alias_of_item_id: [{i}]\n"
        f"preload_weight:\n  {i}: {e}\n"
    )
