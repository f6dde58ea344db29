"""Synthetic data and demo configs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mllmrec.config import REQUIRED, Checked, opt


@dataclass(frozen=True, kw_only=True)
class SyntheticConfig(Checked):
    """Write a deterministic synthetic multimodal catalogue: some attributes only in the image, some
    only in the text; users prefer attributes of both kinds."""

    out: str = opt(REQUIRED, "Directory to write the synthetic catalogue into.", positional=True)
    n_items: int = opt(400, "Number of items.")
    n_users: int = opt(300, "Number of users.")
    interactions_per_user: int = opt(20, "Mean interactions per user.")
    image_size: int = opt(64, "Side of the rendered square images, in pixels.")
    seed: int = opt(0, "Random seed (same seed, same files).")


@dataclass(frozen=True, kw_only=True)
class DemoConfig(Checked):
    """Run the main job end to end offline: synthetic catalogue, tiny random backbone, embed, index,
    neighbours, pair mining and a few steps of LoRA tuning. Real use needs a real model, e.g. `mllmrec embed --model Qwen/Qwen2-VL-2B-Instruct`."""

    out: str = opt("mllmrec-demo", "Working directory for the demo's catalogue, model and store.")
    family: Literal["qwen2-vl", "qwen2.5-vl", "qwen3-vl", "composed"] = opt(
        "qwen2-vl", "Tiny random backbone family to build."
    )
    n_items: int = opt(200, "Synthetic catalogue size.")
    seed: int = opt(0, "Seed for data and the random model.")
    train_steps: int = opt(30, "Contrastive LoRA steps the demo trains (0 skips training).")
