"""`mllmrec export`: our item vectors in another recommender's layout, rows aligned to its item ids.

Every format goes through the same alignment path: decide the target row order (the format's `plan`; by default `target_ids`),
look the vectors up by raw id with the missing-id policy (`FeatureProvider.lookup`), write the
files atomically, and record in `manifest.json` what was written (sha256 and shape of every file),
from which source (its identity), for which interactions/id map (their sha256) and how many rows
were filled. `verify_export` re-checks an export folder against its manifest before use.

Each format is an `Exporter` in the registry `index.exporters.EXPORTERS` (one module per format:
mmrec, recbole, cornac, npy, parquet); its module says which files it writes and which options it
reads.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np

from mllmrec.artifacts import (
    MANIFEST,
    ArtifactError,
    WriterLock,
    has_manifest,
    read_manifest,
    stage_of,
    write_manifest,
)
from mllmrec.config import to_dict
from mllmrec.features.config import ExportConfig
from mllmrec.features.exporters import ExportError, get_exporter
from mllmrec.features.exporters.base import target_ids
from mllmrec.features.exporters.recbole import RECBOLE_YAML
from mllmrec.features.provider import FeatureProvider, LookupReport
from mllmrec.fsutil import file_sha256

STAGE = "export"
__all__ = [
    "MANIFEST",
    "RECBOLE_YAML",
    "ExportError",
    "main",
    "open_source",
    "run_export",
    "target_ids",
    "verify_export",
]


def open_source(cfg: ExportConfig) -> FeatureProvider:
    return FeatureProvider.open(cfg.source, channel=cfg.channel, store=cfg.store)


def run_export(cfg: ExportConfig, command: list[str] | None = None) -> dict[str, Any]:
    """Write the export described by `cfg`; returns its manifest (also written to out/manifest.json).
    Library entry point of `mllmrec export`; never prints.

    The output is usually a folder the user owns (MMRec's data/<dataset>/ with its .inter), so
    --overwrite works per file: only the files this export writes are replaced, nothing else is
    touched; the folder's writer lock keeps two exports from interleaving.
    """
    with WriterLock(cfg.out, stage=STAGE):
        return _export(cfg, command)


def _export(cfg: ExportConfig, command: list[str] | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = Path(cfg.out)
    _check_out(out)
    exporter = get_exporter(cfg.format)
    exporter.validate(cfg)
    provider = open_source(cfg)
    dataset = cfg.dataset or out.resolve().name
    plan = exporter.plan(cfg, provider, dataset)
    row_ids = plan.row_ids
    reports: dict[str, LookupReport] = {}
    matrices: dict[str, np.ndarray] = {}
    for name, channel in plan.arrays.items():
        lk = provider.lookup(
            row_ids, channel=channel, missing=cfg.missing, nonfinite=cfg.nonfinite
        )  # [rows, d]
        matrices[name], reports[name] = lk.vectors, lk.report
    files = exporter.files(cfg, dataset, plan, {name: rep.channel for name, rep in reports.items()})
    existing = [n for n in files if (out / n).exists()]
    if existing and not cfg.overwrite:
        raise ExportError(f"{out} already holds {', '.join(existing)}; pass --overwrite to replace them")
    out.mkdir(parents=True, exist_ok=True)
    for name, write in files.items():
        write(out / name, row_ids, matrices)
    extra = exporter.finish(cfg, out, plan)
    manifest = {
        "format": cfg.format,
        "command": command or [],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": to_dict(cfg),
        "inputs": _inputs(cfg, provider),
        "rows": len(row_ids),
        "row_order": plan.origin,
        "channels": {name: rep.channel for name, rep in reports.items()},
        "dims": {name: int(m.shape[1]) for name, m in matrices.items()},
        "missing": {name: rep.to_dict() for name, rep in reports.items()},
        "files": {n: _describe(out / n) for n in files},
        **extra,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return write_manifest(out, manifest, stage=STAGE)


def main(cfg: ExportConfig, command: list[str]) -> int:
    """`mllmrec export`: write the files, print what went where and every fill or cache."""
    m = run_export(cfg, command)
    out = Path(cfg.out)
    for name, info in m["files"].items():
        shape = f" {info['shape'][0]} x {info['shape'][1]}" if "shape" in info else ""
        print(f"wrote {out / name}{shape}")
    for name, r in m["missing"].items():
        filled = ", ".join(f"{n} by {p}" for p, n in r["filled"].items())
        print(
            f"  {name} <- channel {r['channel']}: {r['found']}/{r['requested']} ids found"
            + (
                f", {r['missing']} missing ({filled}), e.g. {', '.join(r['missing_examples'])}"
                if r["missing"]
                else ""
            )
        )
        if r.get("nonfinite"):
            print(
                f"  {name}: {r['nonfinite']} NaN/inf vector(s) filled by {cfg.nonfinite}, e.g. "
                f"{', '.join(r['nonfinite_ids'][:10])}"
            )
    for line in get_exporter(cfg.format).summary(cfg, m, out):
        print(line)
    print(f"row order: {m['row_order']}; manifest: {out / MANIFEST}")
    return 0


def verify_export(out: str | Path) -> dict[str, Any]:
    """The export manifest of `out`, after checking that every file it lists is unchanged and that the
    interactions / id-map files it was aligned to still hash the same (a regenerated .inter would no
    longer match the rows). ExportError lists every difference."""
    out = Path(out)
    try:
        m = read_manifest(out, expect_stage=STAGE)
    except ArtifactError as e:
        raise ExportError(str(e)) from None
    diffs = []
    for name, info in m["files"].items():
        f = out / name
        if not f.is_file():
            diffs.append(f"{name}: missing")
        elif file_sha256(f) != info["sha256"]:
            diffs.append(f"{name}: content changed since the export")
    src = m["inputs"]["source"]
    if (Path(src["path"]) / MANIFEST).is_file() and file_sha256(Path(src["path"]) / MANIFEST) != src[
        "manifest_sha256"
    ]:
        diffs.append(
            f"source {src['path']}: its manifest changed since the export (re-embedded?); export again"
        )
    for key, info in m["inputs"].items():
        if "sha256" in info:
            f = Path(info["path"])
            if not f.is_file():
                diffs.append(f"{key} {f}: missing")
            elif file_sha256(f) != info["sha256"]:
                diffs.append(
                    f"{key} {f}: changed since the export; the feature rows may no longer line up, export again"
                )
    if diffs:
        raise ExportError(f"export {out} does not match its manifest: " + "; ".join(diffs))
    return m


# ---------------------------------------------------------------------------------------------
def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} exists and is not a folder")
    if has_manifest(out) and (stage := stage_of(out) or "unreadable") != STAGE:
        raise ExportError(
            f"--out {out} holds a {stage!r} artefact (its manifest.json); export into another folder"
        )


def _describe(path: Path) -> dict[str, Any]:
    info: dict[str, Any] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}
    if path.suffix == ".npy":
        info["shape"] = list(np.load(path, mmap_mode="r").shape)
    return info


def _inputs(cfg: ExportConfig, provider: FeatureProvider) -> dict[str, Any]:
    src_manifest = Path(cfg.source) / MANIFEST
    inputs: dict[str, Any] = {
        "source": {
            "path": str(cfg.source),
            "kind": provider.kind,
            "manifest_sha256": hashlib.sha256(src_manifest.read_bytes()).hexdigest(),
        }
    }
    if provider.store is not None:
        from mllmrec.index.search import store_identity

        inputs["source"]["store"] = {"path": str(provider.store.path), **store_identity(provider.store)}
    for key in ("interactions", "ids"):
        if getattr(cfg, key) is not None:
            inputs[key] = {"path": str(getattr(cfg, key)), "sha256": file_sha256(getattr(cfg, key))}
    return inputs
