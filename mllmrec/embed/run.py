"""Stage 1, `mllmrec embed`: catalogue -> prompt -> backbone -> embedding store.

The work is planned up front as fixed shards of consecutive catalogue items (shard k = items
[k*S, (k+1)*S)). Inside a shard, items are sorted by estimated token length and batched, so a
shard's vectors depend only on the shard's items: a resumed run recomputes exactly the missing
shards and its store equals an uninterrupted run's. Under `accelerate launch`, process r takes
shards k with k % world == r; process 0 writes the manifest and consolidates the store.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mllmrec import store as st
from mllmrec.artifacts import (
    MANIFEST,
    WriterLock,
    check_identity,
    has_manifest,
    mode_of,
    prepare_dir,
    read_manifest,
    write_manifest,
)
from mllmrec.config import to_dict
from mllmrec.dist import barrier as _barrier
from mllmrec.dist import device_for_rank as _device_for_rank
from mllmrec.dist import dist_info as _dist_info
from mllmrec.dist import end_processes as _end_processes
from mllmrec.embed.clock import RunClock, with_run_seconds
from mllmrec.embed.config import EmbedConfig
from mllmrec.errors import MllmrecError
from mllmrec.types import Item, Rejection

if TYPE_CHECKING:
    from mllmrec.backbone.base import Encoder

log = logging.getLogger(__name__)

# Config keys a resume may change. batch_size only changes padding (vectors agree to ~1e-6), and a
# smaller batch is the natural way to continue a run that ran out of memory; each (re)start's
# batch size is recorded in the manifest's "runs".
# Paths are free too: the catalogue's content hash and the weights fingerprint pin what matters,
# so a store can be resumed from another working directory or after moving the model.
_RESUME_FREE = {
    "resume",
    "overwrite",
    "progress",
    "out",
    "device",
    "batch_size",
    "catalog",
    "model",
    "adapter",
}


STAGE = "embed"


class EmbedError(MllmrecError, RuntimeError):
    """The run cannot start or continue; the message says why and what to do."""


def run_embed(
    cfg: EmbedConfig, *, encoder: Encoder | None = None, command: list[str] | None = None
) -> dict[str, Any]:
    """Embed a catalogue into the store at `cfg.out`; returns the store's manifest (library entry
    point of `mllmrec embed`; never prints).

    `encoder` may be passed to reuse an already loaded backbone (its identity still goes into the
    manifest). Every catalogue row ends up embedded or in the manifest's rejected list. Process 0
    holds the store's writer lock for the whole run, so a second `embed` on the same folder fails
    at once instead of mixing shards.
    """
    if _dist_info()[0] != 0:
        return _embed(cfg, encoder, command)
    with WriterLock(cfg.out, stage=STAGE):
        return _embed(cfg, encoder, command)


def _embed(cfg: EmbedConfig, encoder: Any, command: list[str] | None) -> dict[str, Any]:
    from mllmrec.catalog import load_catalog
    from mllmrec.prompts import load_template

    t0 = time.perf_counter()
    rank, world = _dist_info()
    out = Path(cfg.out)
    catalog = load_catalog(cfg)
    template = load_template(cfg.prompt)
    _check_usable(cfg, template)
    # Everything that can be checked without the model is checked before loading it (minutes for
    # a large model): an existing store, a foreign folder, a resume with other settings.
    identity = {
        "config": {k: v for k, v in to_dict(cfg).items() if k not in _RESUME_FREE},
        "catalog_sha256": catalog.sha256,
        "prompt": template.identity(),
        "adapter_sha256": _adapter_sha256(cfg),
    }
    if rank == 0:
        done_already = _precheck_out(out, cfg, identity)
        if done_already is not None:
            return done_already
    if encoder is None:
        encoder = _load_encoder(cfg, _device_for_rank(cfg.device, rank, world))
    adapter = None
    if cfg.adapter is not None:
        from mllmrec.backbone.trained_run import apply_run

        adapter = apply_run(encoder, cfg.adapter)  # refuses a run trained on other base weights
        trained_with = adapter.get("prompt")
        if trained_with and trained_with != template.identity().get("name"):
            log.warning(
                "the run was tuned with prompt %r, this embed uses %r: vectors may be off",
                trained_with,
                template.identity().get("name"),
            )
    channels = output_channels(template, encoder)  # refuses a gate the encoder cannot apply, before any work
    backbone = {k: v for k, v in encoder.fingerprint().items() if k != "backbone"}  # not the path/id
    identity.update(backbone=backbone, fusion_gate=_gate_fingerprint(encoder))
    n_shards = -(-len(catalog.items) // cfg.shard_size)
    clock = None
    if rank == 0:
        _prepare_out(out, cfg, identity)
        write_manifest(
            out,
            stage=STAGE,
            manifest=_start_manifest(
                cfg, catalog, encoder, template, channels, identity, n_shards, world, command, adapter
            ),
        )
        clock = RunClock(out, STAGE, t0)
    try:
        return _run_shards(cfg, catalog, template, channels, encoder, identity, n_shards, clock)
    except BaseException:
        if clock is not None:  # a crash or Ctrl-C: the time spent still counts (see embed.clock)
            with contextlib.suppress(Exception):  # never hide the error that stopped the run
                clock.record()
        raise


def _run_shards(
    cfg: EmbedConfig,
    catalog: Any,
    template: Any,
    channels: tuple[str, ...],
    encoder: Any,
    identity: dict[str, Any],
    n_shards: int,
    clock: RunClock | None,
) -> dict[str, Any]:
    """Every process embeds its missing shards; process 0 (the one holding `clock`) waits for the
    others and consolidates the store."""
    rank, world = _dist_info()
    out = Path(cfg.out)
    _barrier(world)
    manifest = read_manifest(out, expect_stage=STAGE)
    if manifest.get("status") == "complete":  # another process's view; rank 0 returned above
        return manifest
    if rank != 0:
        check_identity(manifest["identity"], identity, out=out, what="store")

    done = st.done_shards(out)
    mine = [k for k in range(n_shards) if k % world == rank and k not in done]
    _embed_shards(
        cfg,
        catalog,
        template,
        channels,
        encoder,
        out,
        mine,
        on_shard=clock.record if clock is not None else lambda: None,
    )
    if clock is None:
        _end_processes(world)
        return manifest
    _wait_for_shards(out, n_shards, on_poll=clock.tick)
    _end_processes(world)
    return _finalize(out, cfg, catalog, manifest, n_shards, clock.seconds())


def _load_encoder(cfg: EmbedConfig, device: str) -> Encoder:
    """Load the backbone; with progress off, transformers' weight-loading bars are off too."""
    from transformers.utils import logging as hf_logging

    from mllmrec.backbone.load import open_encoder

    was_on = hf_logging.is_progress_bar_enabled()
    if not cfg.progress:
        hf_logging.disable_progress_bar()
    try:
        return open_encoder(cfg, device=device)
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


# ---------------------------------------------------------------------------------------------
# Work
# ---------------------------------------------------------------------------------------------
def _embed_shards(
    cfg: EmbedConfig,
    catalog: Any,
    template: Any,
    channels: tuple[str, ...],
    encoder: Encoder,
    out: Path,
    shards: list[int],
    on_shard: Callable[[], None] = lambda: None,
) -> None:
    """Embed and write `shards`. The bar advances per batch (a shard of 1,024 items can take many
    minutes on a CPU, and a bar that moves per shard shows no rate or ETA until then)."""
    from tqdm.auto import tqdm

    total = sum(len(catalog.items[k * cfg.shard_size : (k + 1) * cfg.shard_size]) for k in shards)
    rank, _ = _dist_info()
    use_images = template.uses_images and encoder.accepts_images
    log.info("process %d: %d shard(s) to embed (%d items)", rank, len(shards), total)
    with (
        tqdm(
            total=total,
            unit="item",
            desc=f"embed[{rank}]" if rank else "embed",
            position=rank,
            disable=not cfg.progress,
            dynamic_ncols=True,
            mininterval=1.0,
        ) as bar,
        ThreadPoolExecutor(max_workers=4) as pool,
    ):
        for k in shards:
            items = catalog.items[k * cfg.shard_size : (k + 1) * cfg.shard_size]
            ids, vectors, rejected = embed_items(
                cfg,
                items,
                catalog.base_dir,
                template,
                channels,
                encoder,
                pool,
                use_images,
                on_batch=bar.update,
            )
            st.write_shard(out, k, ids, vectors, rejected)
            on_shard()


def embed_items(
    cfg: EmbedConfig,
    items: list[Item],
    base_dir: Path,
    template: Any,
    channels: tuple[str, ...],
    encoder: Encoder,
    pool: ThreadPoolExecutor,
    use_images: bool,
    on_batch: Callable[[int], object] | None = None,
) -> tuple[list[str], dict[str, np.ndarray], list[dict]]:
    """Embed one shard's items: (ids embedded, in catalogue order; {channel: [n, d]}; rejections).

    Items are sorted by estimated token count (image sizes come from file headers) and batched;
    images are decoded a batch at a time (one batch ahead), never a whole shard's at once.
    `on_batch(n)` is called after each batch with its number of items (embedded or rejected), so
    a progress bar can move per batch.
    """
    from mllmrec.catalog import probe_image_sizes

    texts_len = [sum(len(v) for v in it.texts.values()) for it in items]
    sizes = (
        list(pool.map(lambda it: probe_image_sizes(it, base_dir, cfg), items))
        if use_images
        else [[]] * len(items)
    )
    order = sorted(range(len(items)), key=lambda i: encoder.estimate_tokens(texts_len[i], sizes[i]))
    store_dtype = np.float16 if cfg.store_dtype == "float16" else np.float32
    rows: dict[int, dict[str, np.ndarray]] = {}
    rejected: list[dict] = []
    starts = range(0, len(order), cfg.batch_size)

    # CPU preprocessing (`prepare`) runs in the look-ahead thread, apart from the model (`forward`).
    def prepare(b: int) -> tuple[list[tuple[int, Any]], list[dict], Any]:
        batch = [items[i] for i in order[b : b + cfg.batch_size]]
        rendered, rej = _load_and_render(cfg, batch, base_dir, template, encoder, pool, use_images)
        ready = encoder.prepare([r for _, r in rendered]) if rendered else None
        return rendered, rej, ready

    # The next batch is decoded and preprocessed while this one runs through the model, so at most
    # two batches of pixels are in memory and the CPU work overlaps the forward pass.
    with ThreadPoolExecutor(max_workers=1) as ahead:
        pending = ahead.submit(prepare, starts[0]) if starts else None
        for n, b in enumerate(starts):
            rendered, rej, ready = pending.result()
            pending = ahead.submit(prepare, starts[n + 1]) if n + 1 < len(starts) else None
            rejected += rej
            if rendered:
                out = encoder.forward(ready)
                for k, (pos, _) in enumerate(rendered):
                    rows[order[b + pos]] = {ch: out[ch][k].numpy().astype(store_dtype) for ch in channels}
            if on_batch is not None:
                on_batch(len(order[b : b + cfg.batch_size]))
    done = sorted(rows)  # back to catalogue order
    vectors = {
        ch: (
            np.stack([rows[i][ch] for i in done]) if done else np.zeros((0, encoder.hidden_size), store_dtype)
        )
        for ch in channels
    }
    return [items[i].id for i in done], vectors, _in_catalog_order(rejected, items)


def _load_and_render(
    cfg: EmbedConfig,
    batch: list[Item],
    base_dir: Path,
    template: Any,
    encoder: Encoder,
    pool: ThreadPoolExecutor,
    use_images: bool,
) -> tuple[list[tuple[int, Any]], list[dict]]:
    """Decode a batch's images and render its prompts: ([(position in batch, RenderedItem)], rejections).

    Each prompt is fitted to the token limit (`budget.fit`): over-long text is cut from the end and
    recorded (action "truncated"); an item too long even without text is rejected.
    """
    from mllmrec.catalog import load_item_images
    from mllmrec.embed.budget import TooLong, fit, token_limit, truncation_record
    from mllmrec.prompts import PromptError, TemplateError, render

    limit = token_limit(cfg.max_tokens, encoder)
    loaded = (
        list(pool.map(lambda it: load_item_images(it, base_dir, cfg), batch))
        if use_images
        else [([], None)] * len(batch)
    )
    rendered, rejected = [], []
    for pos, (it, (images, rej)) in enumerate(zip(batch, loaded, strict=True)):
        if images is None:
            rejected.append(rej.to_dict())
            continue
        try:
            one, cut = fit(
                it,
                partial(
                    render,
                    template,
                    images=images,
                    image_placeholder=encoder.image_placeholder,
                    chat=encoder.render_chat,
                    special_tokens=encoder.special_tokens,
                ),
                encoder,
                limit,
            )
            rendered.append((pos, one))
            if rej is not None:
                rejected.append(rej.to_dict())
            if cut is not None:
                rejected.append(truncation_record(it.id, cut, limit))
        except TemplateError:
            raise  # wrong for every item: stop instead of rejecting the whole catalogue
        except (PromptError, TooLong) as e:
            # One record per item, holding its final outcome and every reason that led there.
            reasons = [rej.reason] if rej is not None else []
            rejected.append(Rejection(it.id, "; ".join([*reasons, str(e)])).to_dict())
    return rendered, rejected


def _in_catalog_order(records: list[dict], items: list[Item]) -> list[dict]:
    pos = {it.id: n for n, it in enumerate(items)}
    return sorted(records, key=lambda r: pos[r["id"]])


# ---------------------------------------------------------------------------------------------
# Store directory life cycle
# ---------------------------------------------------------------------------------------------
def _check_usable(cfg: EmbedConfig, template: Any) -> None:
    if "image" in template.requires and cfg.image_field is None:
        raise EmbedError(
            f"prompt {template.name!r} needs images but the catalogue has no image field "
            "(--image-field none); every item would be rejected"
        )


def _precheck_out(out: Path, cfg: EmbedConfig, identity: dict[str, Any]) -> dict[str, Any] | None:
    """Everything that can be refused before loading the model (minutes for a large one): a foreign
    folder, an existing store without --resume/--overwrite, a resume with other settings. A fresh or
    overwritten folder is made ready here. Returns the manifest of a complete store that --resume
    finds (nothing left to do) and whose model is the one given; with another --model (a path or id
    is free on resume, the weights are not) the model is loaded so `_prepare_out` compares its
    weights fingerprint: the same weights moved elsewhere pass, other weights are refused."""
    manifest = prepare_dir(out, stage=STAGE, mode=mode_of(resume=cfg.resume, overwrite=cfg.overwrite))
    if manifest is None:
        return None
    check_identity(manifest.get("identity", {}), identity, out=out, what="store")
    same_model = manifest.get("config", {}).get("model") == cfg.model
    return manifest if manifest.get("status") == "complete" and same_model else None


def _prepare_out(out: Path, cfg: EmbedConfig, identity: dict[str, Any]) -> None:
    """On resume, the checks that need the model (its identity); then drop partial shard files."""
    if cfg.resume:
        check_identity(
            read_manifest(out, expect_stage=STAGE).get("identity", {}), identity, out=out, what="store"
        )
        removed = st.clean_partial_files(out)
        if removed:
            log.info("removed %d partial file(s) left by the interrupted run", removed)
        for bad in st.drop_damaged_shards(out):
            log.warning("%s is damaged (truncated or unreadable): embedding its items again", bad)


def _start_manifest(
    cfg: EmbedConfig,
    catalog: Any,
    encoder: Encoder,
    template: Any,
    channels: tuple[str, ...],
    identity: dict[str, Any],
    n_shards: int,
    world: int,
    command: list[str] | None,
    adapter: dict[str, Any] | None = None,
) -> dict[str, Any]:
    run = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "batch_size": cfg.batch_size,
        "processes": world,
        "command": command or [],
        "seconds": 0.0,
    }
    if cfg.resume:
        manifest = read_manifest(cfg.out, expect_stage=STAGE)
        return {**manifest, "runs": [*manifest.get("runs", []), run]}
    return {
        "status": "running",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": to_dict(cfg),
        "identity": identity,
        "catalog": {
            "path": str(catalog.path),
            "sha256": catalog.sha256,
            "rows": len(catalog.items) + len(catalog.rejected),
        },
        "backbone": encoder.fingerprint(),
        "adapter": adapter,
        "fusion_gate": identity["fusion_gate"],
        "prompt": template.identity(),
        "channels": list(channels),
        "dims": {ch: encoder.out_dim for ch in channels},
        "dtype": cfg.store_dtype,
        "plan": {
            "items": len(catalog.items),
            "shard_size": cfg.shard_size,
            "shards": n_shards,
            "batch_size": cfg.batch_size,
        },
        "processes": world,
        "runs": [run],
        "notes": _notes(template, encoder),
    }


def _adapter_sha256(cfg: EmbedConfig) -> str | None:
    """The tuned run's content hash (from its manifest, without loading anything)."""
    if cfg.adapter is None:
        return None
    from mllmrec.backbone.trained_run import read_run_manifest

    return read_run_manifest(cfg.adapter)["adapter_sha256"]


def _gate_fingerprint(encoder: Encoder) -> str | None:
    gate = encoder.fusion_gate
    if gate is None:
        return None
    from mllmrec.backbone.base import weights_fingerprint

    return weights_fingerprint(gate)


def output_channels(template: Any, encoder: Encoder) -> tuple[str, ...]:
    """The template's channels, plus `fused` when the encoder carries a late-fusion gate."""
    if encoder.fusion_gate is None:
        return tuple(template.channels)
    if not encoder.supports_fusion_gate:
        raise EmbedError(
            f"{type(encoder).__name__} cannot apply a late-fusion gate (no pooled vision features)"
        )
    return (*template.channels, "fused")


def _notes(template: Any, encoder: Encoder) -> list[str]:
    notes = []
    if template.uses_images and not encoder.accepts_images:
        notes.append("the backbone has no vision encoder: images were not used")
    return notes


def _wait_for_shards(
    out: Path, n_shards: int, poll_s: float = 1.0, on_poll: Callable[[], None] = lambda: None
) -> None:
    """Process 0 waits for the other processes' shards (a crashed process stops the launcher)."""
    while len(st.done_shards(out)) < n_shards:
        on_poll()
        time.sleep(poll_s)


def _finalize(
    out: Path, cfg: EmbedConfig, catalog: Any, manifest: dict[str, Any], n_shards: int, seconds: float
) -> dict[str, Any]:
    ids, vectors, rejected = st.concat_shards(out, n_shards)
    for ch in manifest["channels"]:
        vectors.setdefault(ch, np.zeros((0, manifest["dims"][ch]), np.dtype(cfg.store_dtype)))
    labels_by_id = {it.id: _label(it) for it in catalog.items}
    st.write_vectors(out, cfg.format, ids, [labels_by_id[i] for i in ids], vectors)
    records = [r.to_dict() for r in catalog.rejected] + rejected
    rejected_out = [r for r in records if r["action"] == "rejected"]
    degraded = [r for r in records if r["action"] == "text-only"]
    truncated = [r for r in records if r["action"] == "truncated"]
    input_rows = len(catalog.items) + len(catalog.rejected)
    if len(ids) + len(rejected_out) != input_rows:  # the "nothing is lost" invariant
        raise EmbedError(
            f"accounting error: {len(ids)} embedded + {len(rejected_out)} rejected != {input_rows} rows"
        )
    manifest = {
        **with_run_seconds(manifest, seconds),
        "status": "complete",
        "completed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "counts": {
            "input": input_rows,
            "embedded": len(ids),
            "rejected": len(rejected_out),
            "text_only": len(degraded),
            "truncated": len(truncated),
        },
        "rejected": rejected_out,  # left out of the store, with the reason
        "degraded": degraded,  # in the store, embedded without their image, with the reason
        "truncated": truncated,  # in the store, text cut from the end to fit the token limit
        "seconds_last_run": round(seconds, 3),  # this run only; "seconds_total" covers every run
    }
    manifest = write_manifest(out, manifest, stage=STAGE)
    shutil.rmtree(out / st.SHARDS, ignore_errors=True)
    return manifest


def _label(item: Item) -> str:
    return next((v for v in item.texts.values() if v), "")[:200]


# ---------------------------------------------------------------------------------------------
# Processes (accelerate launch / torchrun set these variables)
# ---------------------------------------------------------------------------------------------
def main(cfg: EmbedConfig, command: list[str]) -> int:
    """`mllmrec embed`: embed, then print what was written and what was left out."""
    out = Path(cfg.out)
    was_complete = cfg.resume and has_manifest(out) and read_manifest(out).get("status") == "complete"
    m = run_embed(cfg, command=command)
    if _dist_info()[0] != 0:
        return 0
    c = m["counts"]
    if was_complete:
        print(f"store {out} is already complete ({c['embedded']} items); nothing to do")
        return 0
    print(
        f"store: {out}  embedded {c['embedded']} of {c['input']} items "
        f"({c['rejected']} rejected, {c['text_only']} embedded text-only) in {_time_spent(m)}; "
        f"channels {', '.join(f'{ch}[{d}]' for ch, d in m['dims'].items())}"
    )
    if c.get("truncated"):
        print(
            f"{c['truncated']} item(s) had their text cut from the end to fit the token limit "
            "(--max-tokens / model context)"
        )
    if c["rejected"] or c["text_only"] or c.get("truncated"):
        print(f'each item\'s reason is in {out / MANIFEST} under "rejected", "degraded" and "truncated"')
    if c["embedded"] == 0:
        print("error: no item was embedded; see the reasons above", file=sys.stderr)
        return 1
    return 0


def _time_spent(m: dict[str, Any]) -> str:
    """ "12.3 s", or with a resume "20.5 s over 2 runs (this one 8.2 s)"."""
    runs = m.get("runs", [])
    if len(runs) < 2:
        return f"{m['seconds_last_run']:.1f} s"
    return f"{m['seconds_total']:.1f} s over {len(runs)} runs (this one {m['seconds_last_run']:.1f} s)"
