"""mmrec: MMRec's dataset layout: which raw item id each feature row must hold, and its stale graph caches.

MMRec (enoche/MMRec, `utils/dataset.py`, `common/abstract_recommender.py`) reads a dataset folder
`data/<dataset>/` holding `<dataset>.inter`, a tab-separated file whose columns include `userID`,
`itemID` and `x_label` (0 train, 1 valid, 2 test). It takes `item_num = max(itemID) + 1` and loads
`image_feat.npy` / `text_feat.npy` with `np.load`, using row i as the features of item i. Either
file may be absent, not both. So the rows must be exactly 0..max(itemID), in item-id order.

Models such as LATTICE, FREEDOM, BM3 and MGCN build item-item kNN graphs from these features and
cache them in the same folder (`image_adj_10.pt`, `mm_adj_freedomdsp_10_1.pt` ...); if a cache
exists they load it instead of recomputing, so after new features are written an old cache would
silently keep the old features' graph. Export therefore deletes (or warns about) `*_adj_*.pt`.

Files in --out: image_feat.npy, text_feat.npy, and for a raw log also <dataset>.inter +
i_id_mapping.tsv + u_id_mapping.tsv. Options: --image-channel, --text-channel, --single-channel,
--stale-caches, --seed (`MmrecOptions`). A store with one of the two channels fills only the file
its content says (a text-only store: text_feat.npy) unless --single-channel both.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllmrec.errors import MllmrecError
from mllmrec.features.exporters.base import Exporter, ExportError, RowPlan, Writer, read_npy, write_npy
from mllmrec.fsutil import atomic_write_text

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    import numpy as np

    from mllmrec.features.config import ExportConfig
    from mllmrec.features.provider import FeatureProvider

MMREC_COLUMNS = ("userID", "itemID", "x_label")
FEATURE_FILES = {"image": "image_feat.npy", "text": "text_feat.npy"}
CACHE_GLOB = "*_adj_*.pt"
ITEM_MAP, USER_MAP = "i_id_mapping.tsv", "u_id_mapping.tsv"


class MmrecError(MllmrecError, ValueError):
    """The interactions or id map do not give MMRec's dense item ids."""


@dataclass(frozen=True)
class MmrecOptions:
    """mmrec's own options (defaults and help: the ExportConfig fields of the same names)."""

    image_channel: str  # channel written to image_feat.npy ('none': no file)
    text_channel: str  # channel written to text_feat.npy ('none': no file)
    single_channel: str  # auto | both | image | text: where a single-channel source goes
    stale_caches: str  # delete | warn
    seed: int  # seed of the 8:1:1 split when a raw log is remapped


class MmrecExporter(Exporter):
    name = "mmrec"
    help = "mmrec (image_feat.npy + text_feat.npy, row i = MMRec item id i)"
    Options = MmrecOptions
    flags = {f: f for f in ("image_channel", "text_channel", "single_channel", "stale_caches", "seed")}

    def validate(self, cfg: ExportConfig) -> None:
        if cfg.channel is not None:
            raise ExportError(
                "--channel does not apply to --format mmrec; use --image-channel and --text-channel"
            )

    def plan(self, cfg: ExportConfig, provider: FeatureProvider, dataset: str) -> RowPlan:
        o: MmrecOptions = self.options(cfg)
        rows = plan_rows(cfg, o, dataset, known=lambda: provider.ids())
        files, single = channel_files(o, provider.channels, lambda ch: channel_modality(provider, ch))
        stats = rows.stats | ({"single_channel": single} if single else {})
        return RowPlan(rows.row_ids, f"MMRec item ids of {cfg.interactions}", files, rows.extra_files, stats)

    def files(
        self, cfg: ExportConfig, dataset: str, plan: RowPlan, channels: dict[str, str]
    ) -> dict[str, Writer]:
        files: dict[str, Writer] = {n: (lambda p, ids, m, n=n: write_npy(p, m[n])) for n in plan.arrays}
        files |= {n: (lambda p, ids, m, t=t: atomic_write_text(p, t)) for n, t in plan.extra_files.items()}
        return files

    def finish(self, cfg: ExportConfig, out: Path, plan: RowPlan) -> dict[str, Any]:
        action = self.options(cfg).stale_caches
        return {"mmrec": plan.stats, "stale_caches": {"action": action, "files": stale_caches(out, action)}}

    def summary(self, cfg: ExportConfig, manifest: dict[str, Any], out: Path) -> list[str]:
        s, caches, lines = manifest["mmrec"], manifest["stale_caches"]["files"], []
        if s.get("single_channel"):
            lines.append(_single_channel_line(s["single_channel"]))
        if s.get("items_dropped_by_split"):
            lines.append(
                f"  {s['items_dropped_by_split']} items had no training interaction after the split and "
                f"are not in {cfg.dataset or out.resolve().name}.inter"
            )
        if caches:
            verb = (
                "deleted"
                if self.options(cfg).stale_caches == "delete"
                else "WARNING: left in place (they hold the OLD features' graphs)"
            )
            lines.append(f"  MMRec graph caches {verb}: {', '.join(caches)}")
        return lines

    def read(self, out: Path, manifest: dict[str, Any]) -> tuple[list[str], dict[str, np.ndarray]]:
        """Raw ids from i_id_mapping.tsv (a remapped log), else the --ids map, else the itemIDs as text."""
        arrays = {n: read_npy(out / n) for n in FEATURE_FILES.values() if n in manifest["files"]}
        n = len(next(iter(arrays.values())))
        if ITEM_MAP in manifest["files"]:
            with open(out / ITEM_MAP, encoding="utf-8", newline="") as f:
                rows = list(csv.reader(f, delimiter="\t"))[1:]
            return [raw for raw, _ in sorted(rows, key=lambda r: int(r[1]))], arrays
        if manifest["config"].get("ids"):
            from mllmrec.features.idmap import read_id_map
            from mllmrec.features.provider import FeatureProvider

            # the same id column as the export (chosen by the source's ids when it was not named)
            ids = read_id_map(
                manifest["config"]["ids"],
                id_column=manifest["config"].get("id_column"),
                known=lambda: FeatureProvider.open(manifest["inputs"]["source"]["path"]).ids(),
            )
            return ids[:n], arrays
        return [str(k) for k in range(n)], arrays


@dataclass
class MmrecPlan:
    """Raw id of each MMRec item id (row i = item i) and the files to write beside the features."""

    row_ids: list[str]
    extra_files: dict[str, str] = field(default_factory=dict)  # file name -> text content
    stats: dict[str, Any] = field(default_factory=dict)


def is_mmrec_inter(path: Path) -> bool:
    """True for a tab-separated file whose header has MMRec's userID, itemID and x_label columns."""
    with open(path, encoding="utf-8-sig") as f:
        header = f.readline().rstrip("\r\n")
    return "\t" in header and set(MMREC_COLUMNS) <= {c.strip() for c in header.split("\t")}


def plan_rows(
    cfg: ExportConfig, o: MmrecOptions, dataset: str, known: Callable[[], Collection[str]] | None = None
) -> MmrecPlan:
    """Rows for an MMRec dataset's .inter file, or a fresh MMRec remapping of any other log;
    `known()`: the source's ids, to tell which column of a many-column --ids map holds them."""
    if cfg.interactions is None:
        raise MmrecError(
            "--format mmrec needs --interactions: the dataset's MMRec .inter file (item ids "
            "0..n-1), or an interaction log with raw ids to remap into MMRec's layout"
        )
    path = Path(cfg.interactions)
    if not path.is_file():
        raise MmrecError(f"interactions file not found (or not a file): {path}")
    if is_mmrec_inter(path):
        return _from_mmrec_inter(cfg, path, known)
    if cfg.ids is not None:
        raise MmrecError(
            f"--ids maps MMRec item ids to raw ids, but {path} is not an MMRec .inter (tab-separated "
            "userID, itemID, x_label): a raw log is remapped to MMRec ids by the export itself"
        )
    return _remap(cfg, path, dataset, o.seed)


def _from_mmrec_inter(
    cfg: ExportConfig, path: Path, known: Callable[[], Collection[str]] | None
) -> MmrecPlan:
    import numpy as np

    from mllmrec.catalog.interactions import read_interactions

    inter = read_interactions(path, user_field="userID", item_field="itemID")
    try:
        items = np.array([int(v) for v in inter.items], dtype=np.int64)
    except ValueError:
        bad = next(v for v in inter.items if not v.lstrip("-").isdigit())
        raise MmrecError(f"{path}: MMRec itemID values must be integers, found {bad!r}") from None
    if len(items) == 0:
        raise MmrecError(f"{path}: no interactions")
    if items.min() < 0:
        raise MmrecError(f"{path}: MMRec itemID values must be >= 0, found {int(items.min())}")
    n = int(items.max()) + 1  # MMRec: item_num = max(itemID) + 1
    never = n - len(np.unique(items))
    stats: dict[str, Any] = {"mode": "mmrec-inter", "items": n, "item_ids_without_interactions": never}
    if cfg.ids is None:
        return MmrecPlan([str(k) for k in range(n)], stats=stats | {"raw_ids": "itemID as text"})
    from mllmrec.features.idmap import read_id_map

    mapped = read_id_map(cfg.ids, id_column=cfg.id_column, known=known)
    if len(mapped) < n:
        raise MmrecError(
            f"{cfg.ids} maps {len(mapped)} item ids, but {path} uses item ids up to {n - 1}: "
            f"itemIDs {len(mapped)}..{n - 1} have no raw id"
        )
    stats |= {"raw_ids": str(cfg.ids), "mapped_items_beyond_inter": len(mapped) - n}
    return MmrecPlan(mapped[:n], stats=stats)


def _remap(cfg: ExportConfig, path: Path, dataset: str, seed: int) -> MmrecPlan:
    """MMRec ids for a raw log: the MMRec 8:1:1 split (or the log's x_label) with dense ids."""
    from mllmrec.catalog.interactions import read_interactions
    from mllmrec.catalog.splits import random_split, split_from_labels

    inter = read_interactions(path, user_field=cfg.user_field, item_field=cfg.item_field)
    split = split_from_labels(inter) if inter.labels is not None else random_split(inter, seed)
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(MMREC_COLUMNS)
    for label, part in enumerate(("train", "valid", "test")):
        for u, i in split.pairs(part).tolist():
            w.writerow((u, i, label))
    extra = {
        f"{dataset}.inter": buf.getvalue(),
        ITEM_MAP: _mapping("item_id", "itemID", split.item_ids),
        USER_MAP: _mapping("user_id", "userID", split.user_ids),
    }
    meta = split.meta
    stats = {
        "mode": "remapped",
        "items": split.n_items,
        "users": split.n_users,
        "split": meta.get("protocol"),
        "seed": meta.get("seed"),
        "pairs": meta.get("counts"),
        "dropped_without_train": meta.get("dropped_without_train", {}),
        "items_dropped_by_split": meta.get("items_dropped", 0),
    }
    return MmrecPlan(list(split.item_ids), extra, stats)


def _mapping(raw_name: str, id_name: str, ids: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow((raw_name, id_name))
    w.writerows((raw, k) for k, raw in enumerate(ids))
    return buf.getvalue()


def channel_files(
    o: MmrecOptions,
    channels: list[str],
    modality: Callable[[str], tuple[str | None, str]] = lambda ch: (None, ""),
) -> tuple[dict[str, str], dict[str, Any]]:
    """({file name: channel} to write, the single-channel decision or {}), from --image-channel,
    --text-channel and --single-channel.

    A source with only one of the two channels fills one file by default: the file its content
    says (`modality(channel)` -> ("text" | "image" | None, why)), else the file whose flag named
    the channel. Filling both would let MMRec treat a text vector as an image feature too, so a
    comparison with text-only baselines would silently stop being fair; `both` is opt-in."""
    wanted = {
        kind: ch
        for kind, ch in (("image", o.image_channel), ("text", o.text_channel))
        if ch.lower() != "none"
    }
    if not wanted:
        raise MmrecError("--image-channel and --text-channel are both 'none': nothing to export")
    have = {kind: ch for kind, ch in wanted.items() if ch in channels}
    if not have:
        raise MmrecError(
            f"the source has none of the channels {sorted(set(wanted.values()))} "
            f"(it has {', '.join(channels)}); pick them with --image-channel/--text-channel"
        )
    if len(have) == len(wanted):
        return {FEATURE_FILES[kind]: ch for kind, ch in have.items()}, {}
    # a single-channel source: --single-channel says where it goes
    ((named, ch),) = have.items()
    kind, why = o.single_channel, f"--single-channel {o.single_channel}"
    if kind == "auto":
        detected, reason = modality(ch)
        kind, why = (detected, reason) if detected else (named, f"--{named}-channel {ch}")
    kinds = ("image", "text") if kind == "both" else (kind,)
    files = {FEATURE_FILES[k]: ch for k in kinds}
    return files, {
        "channel": ch,
        "choice": o.single_channel,
        "files": sorted(files),
        "why": why,
        "left_empty": sorted(set(FEATURE_FILES.values()) - set(files)),
    }


def channel_modality(provider: FeatureProvider, channel: str) -> tuple[str | None, str]:
    """("text" | "image" | None, why) for what a store channel encodes, read from the store's
    manifest: the mICL channel names, a backbone without vision, a catalogue without images, or
    the prompt's markers (only when the prompt still hashes as recorded). None: both or unknown
    (a distill run's student channel, a store made from arrays)."""
    if channel in ("visual", "text"):
        return ("image" if channel == "visual" else "text"), f"channel {channel!r}"
    m = provider.store.manifest if provider.store is not None and channel in provider.store.channels else None
    if m is None:
        return None, ""
    if any("images were not used" in n for n in m.get("notes", [])):
        return "text", "the store's backbone has no vision encoder"
    config = m.get("config", {})
    if "image_field" in config and config["image_field"] is None:
        return "text", "the store was embedded without an image field"
    recorded = m.get("prompt") or {}
    try:
        from mllmrec.prompts import load_template

        t = load_template(config.get("prompt") or recorded.get("name", ""))
    except (MllmrecError, OSError):
        return None, ""
    if t.sha256 != recorded.get("sha256"):
        return None, ""
    if not t.uses_images:
        return "text", f"prompt {t.name!r} reads text only"
    if not t.uses_text:
        return "image", f"prompt {t.name!r} reads the image only"
    return None, ""


def _single_channel_line(d: dict[str, Any]) -> str:
    """What a single-channel source filled and why, for the CLI."""
    line = f"  single-channel source: channel {d['channel']} -> {' and '.join(d['files'])} ({d['why']})"
    if d["left_empty"]:
        return line + (
            f"; no {', '.join(d['left_empty'])}: MMRec runs without that modality "
            "(--single-channel both fills it with the same vector)"
        )
    return line + "; MMRec treats the same vector as image and text features"


def stale_caches(out: Path, action: str) -> list[str]:
    """Names of MMRec's feature-derived graph caches in `out`, deleted when action == 'delete'."""
    found = sorted(out.glob(CACHE_GLOB))
    if action == "delete":
        for p in found:
            p.unlink()
    return [p.name for p in found]
