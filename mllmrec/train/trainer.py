"""Stage 2, `mllmrec train`: contrastive LoRA tuning on co-interaction pairs (NoteLLM-2 recipe).

Per step: the global batch of B pairs is split over processes; each process renders its items
(2b of them: its queries, then their partners), encodes them (GradCache chunks or one pass), the
representations are gathered across processes, and the loss (`train.losses.objective`) treats
all 2B items as in-batch candidates. Trainable: LoRA weights, connector, gate, projection head
and the logit scale. Validation: NoteLLM i2i Recall@{10,50,100} on the valid pairs, before
training, every `valid_every` steps and at the end (process 0); `valid_every` 0 turns it off,
since each pass embeds every validation item (thousands of forward passes on a CPU).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mllmrec.artifacts import WriterLock, mode_of, prepare_dir, read_manifest, write_manifest
from mllmrec.backbone.checkpointing import enable_checkpointing
from mllmrec.backbone.trained_run import artefacts_sha256, save_heads
from mllmrec.config import to_dict
from mllmrec.dist import barrier, device_for_rank, dist_info, init_group
from mllmrec.errors import MllmrecError
from mllmrec.train import checkpoint as ckpt
from mllmrec.train.config import TrainConfig

if TYPE_CHECKING:
    from mllmrec.backbone.base import Encoder

log = logging.getLogger(__name__)

# Config keys a resume may change: paths are pinned by content hashes, and more steps extend a run.
RESUME_FREE = {
    "resume",
    "overwrite",
    "progress",
    "out",
    "device",
    "steps",
    "epochs",
    "checkpoint_every",
    "valid_every",
    "catalog",
    "model",
    "pairs",
}


STAGE = "train"


class TrainError(MllmrecError, RuntimeError):
    """The run cannot start or continue; the message says why."""


def load_train_encoder(cfg: TrainConfig, device: str) -> Encoder:
    """The backbone for training (4-bit base weights with --quantize 4bit)."""
    from mllmrec.backbone.load import open_encoder

    return open_encoder(cfg, device=device, load_in_4bit=cfg.quantize == "4bit")


class Trainer:
    """Holds the encoder, its trainable pieces, the optimizer and the data for one run."""

    def __init__(
        self, cfg: TrainConfig, encoder: Encoder, *, rank: int = 0, world: int = 1, loss: Any = None
    ) -> None:
        """`loss`: a loss object (see train.losses) used instead of the one `cfg.loss` names."""
        from mllmrec.prompts import load_template
        from mllmrec.train.data import BatchSource, load_pair_data
        from mllmrec.train.lora import LoraSpec, attach_lora
        from mllmrec.train.losses import get_loss, loss_name

        self.cfg, self.encoder, self.rank, self.world = cfg, encoder, rank, world
        if cfg.batch_pairs % world:
            raise TrainError(f"batch_pairs {cfg.batch_pairs} must divide evenly over {world} processes")
        self.template = load_template(cfg.prompt)
        self.base_fingerprint = dict(encoder.fingerprint())
        if cfg.quantize == "4bit":  # 4-bit weights hash differently from the full model embed/merge load
            self.base_fingerprint["weights_fingerprint_4bit"] = self.base_fingerprint.pop(
                "weights_fingerprint"
            )
            self.base_fingerprint["weights_fingerprint"] = None
        self.data = load_pair_data(cfg, self.template, encoder)
        self.batches = BatchSource(self.data, cfg, self.template, encoder)
        self.loss = get_loss(cfg.loss if loss is None else loss)
        self.loss_name = cfg.loss if loss is None else loss_name(loss)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.peft = attach_lora(
                encoder,
                LoraSpec(
                    cfg.lora_rank,
                    cfg.lora_alpha,
                    cfg.lora_dropout,
                    cfg.lora_targets,
                    cfg.vision_lora,
                    cfg.vision_lora_targets,
                    connector=cfg.train_connector,
                ),
            )
            self._attach_heads()
        dev = self._device()
        self.log_scale = torch.nn.Parameter(torch.tensor(float(cfg.logit_scale_init), device=dev))
        # Every network of the encoder (Qwen: model; composed: lm, vision, connector) and the heads;
        # the keys prefix the trainable weights' names in checkpoints.
        heads = {"fusion_gate": encoder.fusion_gate, "projection": encoder.projection}
        self.modules = {**encoder.networks(), **{k: m for k, m in heads.items() if m is not None}}
        self.params = {
            f"{k}.{n}": p for k, m in self.modules.items() for n, p in m.named_parameters() if p.requires_grad
        }
        self.params["log_scale"] = self.log_scale
        # No weight decay on the logit scale and biases (it would pull the temperature towards 1).
        decay = [p for n, p in self.params.items() if p.ndim >= 2]
        rest = [p for n, p in self.params.items() if p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}],
            lr=cfg.lr,
        )
        warm = max(cfg.warmup_steps, 0)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0
        )
        self.total_steps = cfg.steps or max(1, math.ceil(cfg.epochs * self.batches.per_epoch))
        self.channels = self._loss_channels()
        out_dim = cfg.proj_dim or encoder.hidden_size
        if any(m >= out_dim for m in cfg.matryoshka_dims):
            raise TrainError(
                f"matryoshka_dims {list(cfg.matryoshka_dims)} must be below the vector size {out_dim}"
            )
        for m in (sub for net in self.modules.values() for sub in net.modules()):
            # bitsandbytes (0.50) repacks 4-bit weights for fast CPU inference the first time a layer
            # runs in eval mode without grad (our validation) and never unpacks them for training,
            # whose backward then fails; keep the trainable layout.
            if hasattr(m, "support_avx512bf16_for_cpu"):
                m.support_avx512bf16_for_cpu = False
        if cfg.grad_checkpointing:
            enable_checkpointing(encoder.network)
        self.step, self.history = 0, {"loss": [], "valid": []}

    # -- setup ---------------------------------------------------------------------------------
    def _device(self) -> torch.device:
        return next(self.encoder.network.parameters()).device

    def _attach_heads(self) -> None:
        from mllmrec.fusion.gate import LateFusionGate
        from mllmrec.fusion.projection import ProjectionHead

        enc, cfg, dev = self.encoder, self.cfg, self._device()
        if cfg.fusion_gate:
            if not enc.supports_fusion_gate:
                raise TrainError(f"--fusion-gate needs pooled vision features; {type(enc).__name__} has none")
            enc.fusion_gate = LateFusionGate(enc.hidden_size, enc.hidden_size).to(dev)
        if cfg.proj_dim is not None:
            enc.projection = ProjectionHead(enc.hidden_size, cfg.proj_dim).to(dev)
        connector = enc.connector  # one outside `network`; one inside trains through LoRA's modules_to_save
        if connector is not None:
            if cfg.train_connector:
                connector.float()  # AdamW steps of ~1e-4 vanish in bf16 weights; LoRA (peft) is fp32 too
            for p in connector.parameters():
                p.requires_grad_(cfg.train_connector)

    def _loss_channels(self) -> dict[str, float]:
        main = "fused" if self.encoder.fusion_gate is not None else "mm"
        if "visual" in self.template.slot_channels and self.cfg.visual_weight > 0:
            return {main: 1.0 - self.cfg.visual_weight, "visual": self.cfg.visual_weight}
        return {main: 1.0}

    # -- one step ------------------------------------------------------------------------------
    def _train_mode(self, on: bool) -> None:
        for m in self.modules.values():
            m.train(on)

    def _batch_rows(self, step: int) -> tuple[list[str], torch.Tensor, torch.Tensor]:
        """Local item ids (queries then partners) and the global partner index and item keys."""
        pairs = self.batches.pairs(step)  # [B, 2]
        b = len(pairs) // self.world
        order = np.concatenate(
            [
                np.concatenate([pairs[r * b : (r + 1) * b, 0], pairs[r * b : (r + 1) * b, 1]])
                for r in range(self.world)
            ]
        )  # [2B] global row order
        _, keys = np.unique(order.astype(str), return_inverse=True)
        local = np.arange(2 * b)
        partner_local = np.where(local < b, local + b, local - b)
        partner = np.concatenate([partner_local + 2 * b * r for r in range(self.world)])
        mine = order[2 * b * self.rank : 2 * b * (self.rank + 1)].tolist()
        return mine, torch.as_tensor(partner), torch.as_tensor(keys)

    def gradients(self, step: int, chunk_size: int | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Zero the gradients, then accumulate batch `step`'s (GradCache chunks when `chunk_size`)."""
        from mllmrec.train.losses import objective
        from mllmrec.train.step import backward_step, reduce_gradients

        # Dropout masks depend on (seed, step, process) only, so a resumed run repeats them.
        torch.manual_seed((self.cfg.seed * 1_000_003 + step) * 64 + self.rank)
        ids, partner, keys = self._batch_rows(step)
        rendered = self.batches.render(ids, step, rows=(len(ids) * self.rank, len(ids) * self.world))
        size = chunk_size or len(rendered)
        chunks = [self.encoder.prepare(rendered[i : i + size]) for i in range(0, len(rendered), size)]

        def loss_fn(reps: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
            return objective(
                reps, partner, keys, self.log_scale, self.loss, self.channels, self.cfg.matryoshka_dims
            )

        self._train_mode(True)
        self.optimizer.zero_grad(set_to_none=True)
        loss, parts = backward_step(
            self.encoder.features,
            chunks,
            loss_fn,
            cache=chunk_size is not None,
            world=self.world,
            rank=self.rank,
        )
        reduce_gradients(
            [p for n, p in self.params.items() if n != "log_scale"], [self.log_scale], self.world
        )
        return loss, parts

    def train_step(self) -> dict[str, float]:
        loss, parts = self.gradients(self.step, self.cfg.chunk_size)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        out = {
            "loss": float(loss),
            **{k: float(v) for k, v in parts.items()},
            "logit_scale": float(self.log_scale.detach().exp()),
        }
        self.history["loss"].append({"step": self.step, **{k: round(v, 6) for k, v in out.items()}})
        return out

    # -- evaluation ----------------------------------------------------------------------------
    @torch.inference_mode()
    def vectors(self, ids: list[str], batch_size: int = 32) -> np.ndarray:
        """Current vectors ([n, d] float32) of the loss's main channel for catalogue items `ids`."""
        main = next(iter(self.channels))
        self._train_mode(False)
        out = []
        for i in range(0, len(ids), batch_size):
            out.append(self.encoder.encode(self.batches.render(ids[i : i + batch_size]))[main].numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def validate(self, part: str = "valid") -> dict[str, float]:
        from mllmrec.train.validate import evaluate_i2i

        res = evaluate_i2i(self.data.protocols[part], self.vectors)
        if part == "valid":
            self.history["valid"].append({"step": self.step, **{k: round(v, 6) for k, v in res.items()}})
        return res

    # -- persistence ---------------------------------------------------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu().contiguous() for n, p in self.params.items()}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.params) ^ set(state)
        if missing:
            raise TrainError(f"checkpoint does not fit this model: differing weights {sorted(missing)[:5]}")
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(state[n].to(p.device, p.dtype))

    def save_final(self, out: Path) -> None:
        from mllmrec.train.lora import save_adapters

        save_adapters(self.peft, out)
        save_heads(self.encoder, out)


def run_train(
    cfg: TrainConfig, *, encoder: Encoder | None = None, loss: Any = None, command: list[str] | None = None
) -> dict[str, Any]:
    """Train and write the run directory; returns the final manifest (library entry point; never
    prints: validation results go to the progress bar or the log, and into the manifest's history).
    `loss`: a loss object to train with instead of the registered one `cfg.loss` names.

    Process 0 holds the folder's writer lock for the whole run (mllmrec.artifacts)."""
    rank, _ = dist_info()
    if rank != 0:
        return _train(cfg, encoder, loss, command)
    with WriterLock(cfg.out, stage=STAGE):
        return _train(cfg, encoder, loss, command)


def _train(cfg: TrainConfig, encoder: Encoder | None, loss: Any, command: list[str] | None) -> dict[str, Any]:
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    rank, world = dist_info()
    init_group(world)
    out = Path(cfg.out)
    if rank == 0:
        prepare_dir(out, stage=STAGE, mode=mode_of(resume=cfg.resume, overwrite=cfg.overwrite))
    barrier(world)
    if encoder is None:
        encoder = load_train_encoder(cfg, device_for_rank(cfg.device, rank, world))
    tr = Trainer(cfg, encoder, rank=rank, world=world, loss=loss)
    identity = {
        "config": {k: v for k, v in to_dict(cfg).items() if k not in RESUME_FREE} | {"loss": tr.loss_name},
        "backbone": {k: v for k, v in tr.base_fingerprint.items() if k != "backbone"},
        "prompt": tr.template.identity(),
        **tr.data.fingerprint,
    }
    if cfg.resume:
        ckpt.resume(tr, out, identity)
        if rank == 0 and tr.step < tr.total_steps:  # continuing (also a finished run given more steps)
            write_manifest(out, _manifest(cfg, tr, identity, "running", command), stage=STAGE)
    elif rank == 0:
        write_manifest(out, _manifest(cfg, tr, identity, "running", command), stage=STAGE)
    if (
        tr.step >= tr.total_steps
        and cfg.resume
        and read_manifest(out, expect_stage=STAGE).get("status") == "complete"
    ):
        log.info("%s: already complete at step %d", out, tr.step)
        return read_manifest(out, expect_stage=STAGE)
    validating = cfg.valid_every > 0
    if rank == 0 and validating and not tr.history["valid"]:
        _report_valid(tr, "zero-shot")
    bar = tqdm(
        total=tr.total_steps,
        initial=tr.step,
        disable=not cfg.progress or rank != 0,
        desc="train",
        unit="step",
        dynamic_ncols=True,
    )
    seen, t_run = 0, time.perf_counter()
    while tr.step < tr.total_steps:
        res = tr.train_step()
        seen += cfg.batch_pairs
        rate = seen / max(time.perf_counter() - t_run, 1e-9)
        tr.history["loss"][-1]["pairs_per_s"] = round(rate, 3)
        bar.set_postfix(loss=f"{res['loss']:.4f}", pairs_s=f"{rate:.1f}", scale=f"{res['logit_scale']:.1f}")
        bar.update(1)
        last = tr.step == tr.total_steps
        if rank == 0 and validating and tr.step % cfg.valid_every == 0 and not last:
            _report_valid(tr, f"step {tr.step}", bar)
        if tr.step % cfg.checkpoint_every == 0 or last:
            if rank == 0:
                ckpt.save(tr, out)
            barrier(world)
    bar.close()
    if rank != 0:
        barrier(world)
        return {}
    if validating:
        _report_valid(tr, "tuned")
    tr.save_final(out)
    manifest = _manifest(cfg, tr, identity, "complete", command)
    manifest.update(
        adapter_sha256=artefacts_sha256(out),
        seconds=round(time.perf_counter() - t0, 2),
        test_i2i=tr.validate("test") if tr.data.protocols["test"].queries else {},
    )
    manifest = write_manifest(out, manifest, stage=STAGE)
    barrier(world)
    return manifest


def _report_valid(tr: Trainer, label: str, bar: Any = None) -> None:
    res = tr.validate()
    msg = f"valid i2i ({label}): " + ", ".join(f"{k} {v:.4f}" for k, v in res.items())
    if bar is not None and not bar.disable:
        bar.write(msg)
    else:
        log.info(msg)


def _manifest(
    cfg: TrainConfig, tr: Trainer, identity: dict[str, Any], status: str, command: list[str] | None
) -> dict[str, Any]:
    enc = tr.encoder
    return {
        "status": status,
        "config": to_dict(cfg),
        "command": command,
        "identity": identity,
        "backbone": tr.base_fingerprint,
        "quantized": cfg.quantize,
        "prompt": tr.template.identity(),
        "loss": tr.loss_name,
        "loss_channels": tr.channels,
        "dims": {
            "hidden": enc.hidden_size,
            "out": cfg.proj_dim or enc.hidden_size,
            "matryoshka": list(cfg.matryoshka_dims),
        },
        "trainable_parameters": int(sum(p.numel() for p in tr.params.values())),
        "processes": tr.world,
        "steps": tr.step,
        "total_steps": tr.total_steps,
        "batches_per_epoch": tr.batches.per_epoch,
        "data": tr.data.report,
        "logit_scale": float(tr.log_scale.detach().exp()),
        "history": tr.history,
    }


def main(cfg: TrainConfig, command: list[str]) -> int:
    """`mllmrec train`: train, then print the validation recall before and after."""
    man = run_train(cfg, command=command)
    if man:
        v = man["history"]["valid"]
        valid = (
            f"valid i2i recall@10 {v[0]['recall@10']:.4f} -> {v[-1]['recall@10']:.4f}"
            if v
            else "no validation (--valid-every 0)"
        )
        print(f"wrote {cfg.out}: {man['steps']} steps, adapter {man['adapter_sha256'][:12]}; {valid}")
    return 0
