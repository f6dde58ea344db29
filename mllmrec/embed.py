"""Stage 1, `mllmrec embed`: catalogue -> prompt -> backbone -> embedding store.

The work is planned up front as fixed shards of consecutive catalogue items (shard k = items
[k*S, (k+1)*S)). Inside a shard, items are sorted by estimated token length and batched, so a
shard's vectors depend only on the shard's items: a resumed run recomputes exactly the missing
shards and its store equals an uninterrupted run's. Under `accelerate launch`, process r takes
shards k with k % world == r; process 0 writes the manifest and consolidates the store.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mllmrec import __version__
from mllmrec.config import EmbedConfig, to_dict
from mllmrec.index import store as st
from mllmrec.types import Item, Rejection

log = logging.getLogger(__name__)

# Config keys that do not change the vectors, so a resume may differ in them.
_RESUME_FREE = {"resume", "overwrite", "progress", "out", "device"}


class EmbedError(RuntimeError):
    """The run cannot start or continue; the message says why and what to do."""


@dataclass(frozen=True)
class EmbedResult:
    out: Path
    n_embedded: int
    n_rejected: int
    seconds: float
    manifest: dict[str, Any]


def run_embed(cfg: EmbedConfig, *, encoder: Any = None, command: list[str] | None = None) -> EmbedResult:
    """Embed a catalogue into the store at `cfg.out` (library entry point of `mllmrec embed`).

    `encoder` may be passed to reuse an already loaded backbone (its identity still goes into the
    manifest). Every catalogue row ends up embedded or in the manifest's rejected list.
    """
    from mllmrec.catalog import load_catalog
    from mllmrec.prompts import load_template

    t0 = time.perf_counter()
    rank, world = _dist_info()
    out = Path(cfg.out)
    catalog = load_catalog(cfg)
    template = load_template(cfg.prompt)
    if encoder is None:
        from mllmrec.backbone.load import open_encoder

        encoder = open_encoder(cfg, device=_device_for_rank(cfg.device, rank, world))
    identity = {
        "config": {k: v for k, v in to_dict(cfg).items() if k not in _RESUME_FREE},
        "catalog_sha256": catalog.sha256,
        "backbone": encoder.fingerprint(),
        "prompt": template.identity(),
        "fusion_gate": _gate_fingerprint(encoder),
    }
    n_shards = -(-len(catalog.items) // cfg.shard_size)
    if rank == 0:
        _prepare_out(out, cfg, identity)
        manifest = _start_manifest(cfg, catalog, encoder, template, identity, n_shards, world, command)
        if manifest.get("status") != "complete":
            st.write_manifest(out, manifest)
    _barrier(world)
    manifest = st.read_manifest(out)
    if manifest.get("status") == "complete":
        log.info("store %s is already complete", out)
        return EmbedResult(out, manifest["counts"]["embedded"], manifest["counts"]["rejected"], 0.0, manifest)
    if rank != 0:
        _check_identity(manifest["identity"], identity, out)

    done = st.done_shards(out)
    mine = [k for k in range(n_shards) if k % world == rank and k not in done]
    _embed_shards(cfg, catalog, template, encoder, out, mine)
    if rank != 0:
        return EmbedResult(out, 0, 0, time.perf_counter() - t0, manifest)
    _wait_for_shards(out, n_shards)
    manifest = _finalize(out, cfg, catalog, manifest, n_shards, time.perf_counter() - t0)
    c = manifest["counts"]
    return EmbedResult(out, c["embedded"], c["rejected"], time.perf_counter() - t0, manifest)


# ---------------------------------------------------------------------------------------------
# Work
# ---------------------------------------------------------------------------------------------
def _embed_shards(cfg: EmbedConfig, catalog: Any, template: Any, encoder: Any, out: Path, shards: list[int]) -> None:
    from tqdm.auto import tqdm

    total = sum(len(catalog.items[k * cfg.shard_size : (k + 1) * cfg.shard_size]) for k in shards)
    rank, _ = _dist_info()
    bar = tqdm(total=total, unit="item", desc=f"embed[{rank}]" if rank else "embed", position=rank,
               disable=not cfg.progress, dynamic_ncols=True, mininterval=1.0)
    use_images = template.uses_images and getattr(encoder, "accepts_images", True)
    with ThreadPoolExecutor(max_workers=4) as pool:
        for k in shards:
            items = catalog.items[k * cfg.shard_size : (k + 1) * cfg.shard_size]
            ids, vectors, rejected = embed_items(cfg, items, catalog.base_dir, template, encoder, pool, use_images)
            st.write_shard(out, k, ids, vectors, rejected)
            bar.update(len(items))
    bar.close()


def embed_items(cfg: EmbedConfig, items: list[Item], base_dir: Path, template: Any, encoder: Any,
                pool: ThreadPoolExecutor, use_images: bool) -> tuple[list[str], dict[str, np.ndarray], list[dict]]:
    """Embed one shard's items: (ids embedded, {channel: [n, d]}, rejections as dicts)."""
    from mllmrec.catalog import load_item_images
    from mllmrec.prompts import PromptError, render

    if use_images:
        loaded = list(pool.map(lambda it: load_item_images(it, base_dir, cfg), items))
    else:
        loaded = [([], None)] * len(items)
    rendered, rejected = [], []
    for it, (images, rej) in zip(items, loaded, strict=True):
        if rej is not None:
            rejected.append(rej.to_dict())
        if images is None:
            continue
        try:
            rendered.append(render(template, it, images, image_placeholder=encoder.image_placeholder,
                                   chat=encoder.render_chat))
        except PromptError as e:
            # One record per item, holding its final outcome and every reason that led there.
            prior = [r["reason"] for r in rejected if r["id"] == it.id]
            rejected = [r for r in rejected if r["id"] != it.id]
            rejected.append(Rejection(it.id, "; ".join([*prior, str(e)])).to_dict())
    store_dtype = np.float16 if cfg.store_dtype == "float16" else np.float32
    channels = output_channels(template, encoder)
    vectors = {ch: np.zeros((len(rendered), encoder.hidden_size), store_dtype) for ch in channels}
    order = sorted(range(len(rendered)), key=lambda i: encoder.estimate_length(rendered[i]))
    for b in range(0, len(order), cfg.batch_size):
        rows = order[b : b + cfg.batch_size]
        out = encoder.encode([rendered[i] for i in rows])
        for ch in channels:
            vectors[ch][rows] = out[ch].numpy().astype(store_dtype)
    return [r.item_id for r in rendered], vectors, rejected


# ---------------------------------------------------------------------------------------------
# Store directory life cycle
# ---------------------------------------------------------------------------------------------
def _prepare_out(out: Path, cfg: EmbedConfig, identity: dict[str, Any]) -> None:
    has_manifest = (out / st.MANIFEST).is_file()
    if cfg.overwrite and out.exists():
        if not has_manifest and any(out.iterdir()):
            raise EmbedError(f"--overwrite refuses to delete {out}: it is not an mllmrec store")
        shutil.rmtree(out)
        has_manifest = False
    if cfg.resume:
        if not has_manifest:
            raise EmbedError(f"--resume: {out} holds no store to resume (no {st.MANIFEST})")
        _check_identity(st.read_manifest(out).get("identity", {}), identity, out)
        removed = st.clean_partial_files(out)
        if removed:
            log.info("removed %d partial file(s) left by the interrupted run", removed)
    elif out.exists() and any(out.iterdir()):
        what = "a store" if has_manifest else "files"
        raise EmbedError(f"{out} already holds {what}; use --resume to continue it or --overwrite to start again")
    out.mkdir(parents=True, exist_ok=True)


def _check_identity(stored: dict[str, Any], current: dict[str, Any], out: Path) -> None:
    diffs = _diff(stored, current)
    if diffs:
        lines = "\n".join(f"  {k}: store has {a!r}, this run has {b!r}" for k, a, b in diffs)
        raise EmbedError(f"cannot resume {out}: the run differs from the one that started it:\n{lines}\n"
                         "Use the original settings, or --overwrite to start a new store.")


def _diff(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{prefix}{k}.")]
    a, b = (list(a) if isinstance(a, tuple) else a), (list(b) if isinstance(b, tuple) else b)
    return [] if a == b else [(prefix.rstrip("."), a, b)]


def _start_manifest(cfg: EmbedConfig, catalog: Any, encoder: Any, template: Any, identity: dict[str, Any],
                    n_shards: int, world: int, command: list[str] | None) -> dict[str, Any]:
    out = Path(cfg.out)
    if cfg.resume:
        return st.read_manifest(out)
    return {
        "stage": "embed",
        "status": "running",
        "mllmrec_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command if command is not None else list(sys.argv),
        "config": to_dict(cfg),
        "identity": identity,
        "catalog": {"path": str(catalog.path), "sha256": catalog.sha256,
                    "rows": len(catalog.items) + len(catalog.rejected)},
        "backbone": encoder.fingerprint(),
        "adapter": None,
        "fusion_gate": identity["fusion_gate"],
        "prompt": template.identity(),
        "channels": list(output_channels(template, encoder)),
        "dims": {ch: encoder.hidden_size for ch in output_channels(template, encoder)},
        "dtype": cfg.store_dtype,
        "plan": {"items": len(catalog.items), "shard_size": cfg.shard_size, "shards": n_shards,
                 "batch_size": cfg.batch_size},
        "processes": world,
        "notes": _notes(template, encoder),
    }


def _gate_fingerprint(encoder: Any) -> str | None:
    gate = getattr(encoder, "fusion_gate", None)
    if gate is None:
        return None
    from mllmrec.backbone.base import weights_fingerprint

    return weights_fingerprint(gate)


def output_channels(template: Any, encoder: Any) -> tuple[str, ...]:
    """The template's channels, plus `fused` when the encoder carries a late-fusion gate."""
    return (*template.channels, *(("fused",) if getattr(encoder, "fusion_gate", None) is not None else ()))


def _notes(template: Any, encoder: Any) -> list[str]:
    notes = []
    if template.uses_images and not getattr(encoder, "accepts_images", True):
        notes.append("the backbone has no vision encoder: images were not used")
    return notes


def _wait_for_shards(out: Path, n_shards: int, poll_s: float = 1.0) -> None:
    """Process 0 waits for the other processes' shards (a crashed process stops the launcher)."""
    while len(st.done_shards(out)) < n_shards:
        time.sleep(poll_s)


def _finalize(out: Path, cfg: EmbedConfig, catalog: Any, manifest: dict[str, Any], n_shards: int,
              seconds: float) -> dict[str, Any]:
    ids, vectors, rejected = st.concat_shards(out, n_shards)
    for ch in manifest["channels"]:
        vectors.setdefault(ch, np.zeros((0, manifest["dims"][ch]), np.float32))
    labels_by_id = {it.id: _label(it) for it in catalog.items}
    st.write_vectors(out, cfg.format, ids, [labels_by_id[i] for i in ids], vectors)
    rejected = [r.to_dict() for r in catalog.rejected] + rejected
    rejected_out = [r for r in rejected if r["action"] == "rejected"]
    input_rows = len(catalog.items) + len(catalog.rejected)
    if len(ids) + len(rejected_out) != input_rows:  # the "nothing is lost" invariant
        raise EmbedError(f"accounting error: {len(ids)} embedded + {len(rejected_out)} rejected != {input_rows} rows")
    manifest = {
        **manifest,
        "status": "complete",
        "completed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "counts": {"input": input_rows, "embedded": len(ids), "rejected": len(rejected_out),
                   "text_only": sum(r["action"] == "text-only" for r in rejected)},
        "rejected": rejected,
        "seconds_last_run": round(seconds, 3),
    }
    st.write_manifest(out, manifest)
    shutil.rmtree(out / st.SHARDS, ignore_errors=True)
    return manifest


def _label(item: Item) -> str:
    return next((v for v in item.texts.values() if v), "")[:200]


# ---------------------------------------------------------------------------------------------
# Processes (accelerate launch / torchrun set these variables)
# ---------------------------------------------------------------------------------------------
def _dist_info() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _device_for_rank(device: str, rank: int, world: int) -> str:
    import torch

    if device == "auto" and torch.cuda.is_available() and world > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', rank)) % torch.cuda.device_count()}"
    return device


def _barrier(world: int) -> None:
    """Wait for every process. `accelerate launch` (and torchrun) set RANK/WORLD_SIZE and the
    rendezvous address; on CPU accelerate does not open a process group, so we open a gloo one."""
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
        dist.barrier()


def run(cfg: EmbedConfig) -> int:
    """CLI entry: embed, then print what was written and what was left out."""
    r = run_embed(cfg)
    rank, _ = _dist_info()
    if rank == 0:
        c = r.manifest["counts"]
        print(f"store: {r.out}  embedded {c['embedded']} of {c['input']} items "
              f"({c['rejected']} rejected, {c['text_only']} embedded text-only) in {r.seconds:.1f} s; "
              f"channels {', '.join(f'{ch}[{d}]' for ch, d in r.manifest['dims'].items())}")
        if r.manifest["rejected"]:
            print(f"every left-out or degraded item and its reason is in {r.out / st.MANIFEST} (\"rejected\")")
    return 0
