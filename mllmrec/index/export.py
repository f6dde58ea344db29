"""`mllmrec export`: our item vectors in another recommender's layout, rows aligned to its item ids.

Every format goes through the same alignment path: decide the target row order (`target_ids`),
look the vectors up by raw id with the missing-id policy (`FeatureProvider.lookup`), write the
files atomically, and record in `manifest.json` what was written (sha256 and shape of every file),
from which source (its identity), for which interactions/id map (their sha256) and how many rows
were filled. `verify_export` re-checks an export folder against its manifest before use.

Formats and their files in --out:
    mmrec     image_feat.npy, text_feat.npy (row i = MMRec item id i; see export_mmrec), and for a
              raw log also <dataset>.inter + i_id_mapping.tsv + u_id_mapping.tsv
    recbole   <dataset>.itememb: RecBole atomic file `iid:token<TAB>item_emb:float_seq`, floats
              separated by spaces; mllmrec-recbole.yaml holds the config lines that load it
    cornac    features.npy + ids.json (row i = ids[i]); `to_cornac.cornac_modality()` builds the Cornac
              ImageModality / FeatureModality straight from Python
    npy       features.npy + ids.json
    parquet   features.parquet: columns id (string) and <channel> (fixed-size list of float32)
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from mllmrec import __version__
from mllmrec.config import to_dict
from mllmrec.errors import MllmrecError
from mllmrec.fsutil import atomic_path, atomic_write_text, file_sha256
from mllmrec.index.config import ExportConfig
from mllmrec.index.provider import FeatureProvider, LookupReport

MANIFEST = "manifest.json"
RECBOLE_YAML = "mllmrec-recbole.yaml"


class ExportError(MllmrecError, ValueError):
    """An export that cannot be written as asked, or an export folder that no longer matches its manifest."""


def open_source(cfg: ExportConfig) -> FeatureProvider:
    return FeatureProvider.open(cfg.source, channel=cfg.channel, store=cfg.store)


def target_ids(cfg: ExportConfig, provider: FeatureProvider) -> tuple[list[str], str]:
    """(raw id of each output row, where that order came from): the --ids file, else the items of
    --interactions in first-seen order, else every id of the source in its own order."""
    logged: list[str] | None = None
    if cfg.interactions is not None:
        from mllmrec.catalog.interactions import index_ids, read_interactions

        inter = read_interactions(cfg.interactions, user_field=cfg.user_field, item_field=cfg.item_field)
        logged = list(index_ids(inter.items)[0])
    if cfg.ids is None:
        return (logged, f"items of {cfg.interactions}") if logged is not None else (provider.ids(), f"all ids of {cfg.source}")
    from mllmrec.index.idmap import read_id_map

    ids = read_id_map(cfg.ids)
    if logged is not None:  # both given: the id list must cover every logged item, or that item has no row
        known = set(ids)
        lost = [i for i in logged if i not in known]
        if lost:
            raise ExportError(f"{len(lost)} item(s) of {cfg.interactions} are not in {cfg.ids}, e.g. "
                              f"{', '.join(lost[:5])}: they would have no feature row")
    return ids, f"ids file {cfg.ids}"


def export(cfg: ExportConfig) -> dict[str, Any]:
    """Write the export described by `cfg`; returns its manifest (also written to out/manifest.json)."""
    t0 = time.perf_counter()
    out = Path(cfg.out)
    _check_out(out)
    provider = open_source(cfg)
    dataset = cfg.dataset or out.resolve().name
    extra_files: dict[str, str] = {}
    stats: dict[str, Any] = {}
    if cfg.format == "mmrec":
        from mllmrec.index import export_mmrec as mm

        plan = mm.plan_rows(cfg, dataset)
        row_ids, origin, extra_files, stats = plan.row_ids, f"MMRec item ids of {cfg.interactions}", plan.extra_files, plan.stats
        if cfg.channel is not None:
            raise ExportError("--channel does not apply to --format mmrec; use --image-channel and --text-channel")
        arrays = mm.channel_files(cfg, provider.channels)
    else:
        row_ids, origin = target_ids(cfg, provider)
        arrays = {"features": provider.channel if cfg.channel is None else cfg.channel}
    reports: dict[str, LookupReport] = {}
    matrices: dict[str, np.ndarray] = {}
    for name, channel in arrays.items():
        lk = provider.lookup(row_ids, channel=channel, missing=cfg.missing)  # [rows, d] float32
        matrices[name], reports[name] = lk.vectors, lk.report
    files = _files(cfg, dataset, matrices, extra_files, reports)
    existing = [n for n in files if (out / n).exists()]
    if existing and not cfg.overwrite:
        raise ExportError(f"{out} already holds {', '.join(existing)}; pass --overwrite to replace them")
    out.mkdir(parents=True, exist_ok=True)
    for name, write in files.items():
        write(out / name, row_ids, matrices)
    caches: list[str] = []
    if cfg.format == "mmrec":
        caches = mm.stale_caches(out, cfg.stale_caches)
    manifest = {
        "stage": "export", "mllmrec_version": __version__, "format": cfg.format,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": to_dict(cfg),
        "inputs": _inputs(cfg, provider),
        "rows": len(row_ids), "row_order": origin,
        "channels": {name: rep.channel for name, rep in reports.items()},
        "dims": {name: int(m.shape[1]) for name, m in matrices.items()},
        "missing": {name: rep.to_dict() for name, rep in reports.items()},
        "files": {n: _describe(out / n) for n in files},
        **({"mmrec": stats, "stale_caches": {"action": cfg.stale_caches, "files": caches}} if cfg.format == "mmrec" else {}),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def run_export(cfg: ExportConfig, command: list[str] | None = None) -> int:
    """`mllmrec export`: write the files, print what went where and every fill or cache."""
    m = export(cfg)
    out = Path(cfg.out)
    for name, info in m["files"].items():
        shape = f" {info['shape'][0]} x {info['shape'][1]}" if "shape" in info else ""
        print(f"wrote {out / name}{shape}")
    for name, r in m["missing"].items():
        filled = ", ".join(f"{n} by {p}" for p, n in r["filled"].items())
        print(f"  {name} <- channel {r['channel']}: {r['found']}/{r['requested']} ids found"
              + (f", {r['missing']} missing ({filled}), e.g. {', '.join(r['missing_examples'])}" if r["missing"] else ""))
    if cfg.format == "mmrec":
        s, caches = m["mmrec"], m["stale_caches"]["files"]
        if s.get("items_dropped_by_split"):
            print(f"  {s['items_dropped_by_split']} items had no training interaction after the split and are not "
                  f"in {cfg.dataset or out.resolve().name}.inter")
        if caches:
            verb = "deleted" if cfg.stale_caches == "delete" else "WARNING: left in place (they hold the OLD features' graphs)"
            print(f"  MMRec graph caches {verb}: {', '.join(caches)}")
    print(f"row order: {m['row_order']}; manifest: {out / MANIFEST}")
    return 0


def verify_export(out: str | Path) -> dict[str, Any]:
    """The export manifest of `out`, after checking that every file it lists is unchanged and that the
    interactions / id-map files it was aligned to still hash the same (a regenerated .inter would no
    longer match the rows). ExportError lists every difference."""
    out = Path(out)
    p = out / MANIFEST
    if not p.is_file():
        raise ExportError(f"{out} has no {MANIFEST}: not an mllmrec export")
    m = json.loads(p.read_text(encoding="utf-8"))
    if m.get("stage") != "export":
        raise ExportError(f"{out} holds a {m.get('stage')!r} artefact, not an export")
    diffs = []
    for name, info in m["files"].items():
        f = out / name
        if not f.is_file():
            diffs.append(f"{name}: missing")
        elif file_sha256(f) != info["sha256"]:
            diffs.append(f"{name}: content changed since the export")
    src = m["inputs"]["source"]
    if (Path(src["path"]) / MANIFEST).is_file() and file_sha256(Path(src["path"]) / MANIFEST) != src["manifest_sha256"]:
        diffs.append(f"source {src['path']}: its manifest changed since the export (re-embedded?); export again")
    for key, info in m["inputs"].items():
        if "sha256" in info:
            f = Path(info["path"])
            if not f.is_file():
                diffs.append(f"{key} {f}: missing")
            elif file_sha256(f) != info["sha256"]:
                diffs.append(f"{key} {f}: changed since the export; the feature rows may no longer line up, export again")
    if diffs:
        raise ExportError(f"export {out} does not match its manifest: " + "; ".join(diffs))
    return m


# ---------------------------------------------------------------------------------------------
def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} exists and is not a folder")
    m = out / MANIFEST
    if m.is_file():
        try:
            stage = json.loads(m.read_text(encoding="utf-8")).get("stage")
        except (ValueError, AttributeError):
            stage = "unreadable"
        if stage != "export":
            raise ExportError(f"--out {out} holds a {stage!r} artefact (its manifest.json); export into another folder")


def _files(cfg: ExportConfig, dataset: str, matrices: dict[str, np.ndarray], extra: dict[str, str],
           reports: dict[str, LookupReport]) -> dict[str, Any]:
    """{file name: writer(path, row_ids, matrices)} for the format."""
    if cfg.format == "mmrec":
        files: dict[str, Any] = {n: (lambda p, ids, m, n=n: _write_npy(p, m[n])) for n in matrices}
        files |= {n: (lambda p, ids, m, t=t: atomic_write_text(p, t)) for n, t in extra.items()}
        return files
    if cfg.format in ("npy", "cornac"):
        return {"features.npy": lambda p, ids, m: _write_npy(p, m["features"]),
                "ids.json": lambda p, ids, m: atomic_write_text(p, json.dumps(ids, ensure_ascii=False) + "\n")}
    if cfg.format == "parquet":
        return {"features.parquet": lambda p, ids, m: _write_parquet(p, ids, m["features"], reports["features"].channel)}
    return {f"{dataset}.itememb": lambda p, ids, m: _write_recbole(p, ids, m["features"], cfg),
            RECBOLE_YAML: lambda p, ids, m: atomic_write_text(p, _recbole_yaml(cfg, dataset))}


def _write_npy(path: Path, matrix: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(matrix, dtype=np.float32), allow_pickle=False)


def _write_parquet(path: Path, ids: list[str], matrix: np.ndarray, column: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    vec = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])
    with atomic_path(path) as tmp:
        pq.write_table(pa.table({"id": pa.array(ids, pa.string()), column: vec}), str(tmp))


def _write_recbole(path: Path, ids: list[str], matrix: np.ndarray, cfg: ExportConfig) -> None:
    """RecBole atomic file: header `field:type` cells joined by tabs, then one row per item; a
    float_seq cell holds the floats separated by spaces (RecBole's default seq_separator). '%.9g'
    round-trips float32 exactly."""
    bad = [i for i in ids[:1000] if "\t" in i or "\n" in i]
    if bad:
        raise ExportError(f"item id {bad[0]!r} contains a tab or newline, which a RecBole atomic file cannot hold")
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(f"{cfg.recbole_id_field}:token\t{cfg.recbole_emb_field}:float_seq\n")
        from tqdm.auto import tqdm

        for start in tqdm(range(0, len(ids), 4096), desc=f"writing {path.name}", unit="block",
                          disable=len(ids) < 200_000):
            block = matrix[start:start + 4096]
            f.writelines(f"{i}\t{' '.join(format(x, '.9g') for x in row)}\n"
                         for i, row in zip(ids[start:start + 4096], block.tolist(), strict=True))


def _recbole_yaml(cfg: ExportConfig, dataset: str) -> str:
    i, e = cfg.recbole_id_field, cfg.recbole_emb_field
    return (f"# Load {dataset}.itememb (written by mllmrec export) as a pretrained item embedding.\n"
            f"# In a model: torch.from_numpy(dataset.get_preload_weight('{i}'))\n"
            f"additional_feat_suffix: [itememb]\n"
            f"load_col:  # keep the inter columns your model needs\n  inter: [user_id, item_id]\n  itememb: [{i}, {e}]\n"
            f"alias_of_item_id: [{i}]\n"
            f"preload_weight:\n  {i}: {e}\n")


def _describe(path: Path) -> dict[str, Any]:
    info: dict[str, Any] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}
    if path.suffix == ".npy":
        info["shape"] = list(np.load(path, mmap_mode="r").shape)
    return info


def _inputs(cfg: ExportConfig, provider: FeatureProvider) -> dict[str, Any]:
    src_manifest = Path(cfg.source) / MANIFEST
    inputs: dict[str, Any] = {"source": {
        "path": str(cfg.source), "kind": provider.kind,
        "manifest_sha256": hashlib.sha256(src_manifest.read_bytes()).hexdigest()}}
    if provider.store is not None:
        from mllmrec.index.search import store_identity

        inputs["source"]["store"] = {"path": str(provider.store.path), **store_identity(provider.store)}
    for key in ("interactions", "ids"):
        if getattr(cfg, key) is not None:
            inputs[key] = {"path": str(getattr(cfg, key)), "sha256": file_sha256(getattr(cfg, key))}
    return inputs
