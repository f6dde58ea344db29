"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL through transformers.

One forward of the *base* model (`model.model`, never the LM head: full-vocabulary logits cost
~10x the rest for a 151k vocabulary) over a left-padded batch; `mm` is the last position's hidden
state. The image processor's output grid says how many `<|image_pad|>` tokens each image needs;
we expand them ourselves so the tokenizer's character offsets locate prompt slots (mICL).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mllmrec.backbone.base import (
    BackboneError,
    EncoderBase,
    four_bit_config,
    resolve_device,
    resolve_dtype,
    special_strings,
)
from mllmrec.backbone.families import Family, family_for
from mllmrec.backbone.pooling import expand_placeholders, gather_channels, tokenize_with_slots
from mllmrec.fusion.projection import apply_heads
from mllmrec.types import RenderedItem

if TYPE_CHECKING:
    from mllmrec.backbone.config import ModelSpec


class QwenVLEncoder(EncoderBase):
    """Encoder over a transformers Qwen-VL `...ForConditionalGeneration` model. Its vision tower
    and connector (`visual.merger`) live inside `network`, so `vision` and `connector` are None."""

    accepts_images = True
    vision = None
    connector = None

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        image_processor: Any,
        *,
        name: str,
        family: Family,
        revision: str | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.special_tokens = special_strings(tokenizer)
        self.image_processor = image_processor
        self.name = name
        self.family = family
        self.revision = revision
        self.image_placeholder = family.image_placeholder
        cfg = model.config
        self.hidden_size = int(getattr(cfg, "text_config", cfg).hidden_size)
        self.merge = int(getattr(image_processor, "merge_size", 2))
        self.image_token_id = int(cfg.image_token_id)
        # Late-fusion gate (NoteLLM-2) supplied by a trained run; adds the `fused` channel.
        self.fusion_gate: Any = None
        # Projection head of a trained run (maps every channel to its smaller dimension).
        self.projection: Any = None

    @classmethod
    def open(cls, spec: ModelSpec, device: str | None, *, load_in_4bit: bool = False) -> QwenVLEncoder:
        """Load the model a ModelSpec names (the family table's entry point)."""
        return cls.load(
            spec.model,
            revision=spec.revision,
            device=device,
            dtype=spec.dtype,
            min_pixels=spec.min_pixels,
            max_pixels=spec.max_pixels,
            trust_remote_code=spec.trust_remote_code,
            load_in_4bit=load_in_4bit,
        )

    @classmethod
    def load(
        cls,
        model: str,
        *,
        revision: str | None = None,
        device: str | None = "auto",
        dtype: str | None = "auto",
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        trust_remote_code: bool = False,
        load_in_4bit: bool = False,
    ) -> QwenVLEncoder:
        from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

        kw = {"revision": revision, "trust_remote_code": trust_remote_code}
        config = AutoConfig.from_pretrained(model, **kw)
        family = family_for(config.model_type)
        tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left", **kw)
        image_processor = AutoImageProcessor.from_pretrained(model, **kw)
        set_pixel_bounds(image_processor, min_pixels, max_pixels)
        dev = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, dev)
        if load_in_4bit:  # QLoRA: LM weights in NF4; the family's skip list stays in full precision
            quant = four_bit_config(torch_dtype, list(family.quant_skip))
            net = AutoModelForImageTextToText.from_pretrained(
                model, dtype=torch_dtype, quantization_config=quant, device_map={"": dev}, **kw
            )
        else:
            net = AutoModelForImageTextToText.from_pretrained(model, dtype=torch_dtype, **kw).to(dev)
        return cls(
            net,
            tokenizer,
            image_processor,
            name=model,
            family=family,
            revision=getattr(config, "_commit_hash", None) or revision,
        )

    @property
    def network(self) -> Any:
        """The module the train stage wraps with LoRA (the whole ...ForConditionalGeneration)."""
        return self.model

    def networks(self) -> dict[str, Any]:
        return {"model": self.model}

    def _hashed_weights(self) -> Any:
        return self.model

    # -- Encoder protocol -------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        return {
            "backbone": self.name,
            "family": self.family.name,
            "revision": self.revision,
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "weights_fingerprint": self.weights_hash(),
        }

    def save(self, out: str | os.PathLike[str]) -> Path:
        """A plain transformers model directory (model, tokenizer, image processor)."""
        out = Path(out)
        out.mkdir(parents=True)
        self.model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        self.image_processor.save_pretrained(out)
        return out

    def estimate_tokens(self, text_chars: int, image_sizes: Sequence[tuple[int, int]]) -> int:
        # Text: ~3 characters per token is close enough for sorting; images: exact token count.
        return text_chars // 3 + sum(self.image_tokens(h, w) for w, h in image_sizes)

    def image_tokens(self, height: int, width: int) -> int:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        ip = self.image_processor
        factor = int(ip.patch_size) * self.merge
        h, w = smart_resize(
            height,
            width,
            factor=factor,
            min_pixels=ip.size["shortest_edge"],
            max_pixels=ip.size["longest_edge"],
        )
        return (h // factor) * (w // factor)

    def prepare(self, batch: Sequence[RenderedItem]) -> dict[str, Any]:
        """CPU-side work for a batch: image preprocessing, placeholder expansion, tokenization.

        Kept apart from `forward` so a pipeline can prepare the next batch while the model runs.
        """
        images = [im for it in batch for im in it.images]
        inputs: dict[str, Any] = {}
        counts: list[int] = []
        if images:
            px = self.image_processor(images=images, return_tensors="pt")
            grid = px["image_grid_thw"]  # [n_images, 3]
            counts = (grid.prod(-1) // self.merge**2).tolist()
            inputs = {"pixel_values": px["pixel_values"], "image_grid_thw": grid}
        texts, slots, k = [], [], 0
        for it in batch:
            n = len(it.images)
            text, sl = expand_placeholders(it.text, self.family.image_pad, counts[k : k + n], it.slots)
            texts.append(text)
            slots.append(sl)
            k += n
        enc, slot_idx = tokenize_with_slots(self.tokenizer, texts, slots)
        if images:
            # transformers 5.x computes M-RoPE positions from this mask (1 = image token).
            inputs["mm_token_type_ids"] = (enc["input_ids"] == self.image_token_id).int()
        return {"inputs": {**enc, **inputs}, "slots": slot_idx, "n_images": [len(it.images) for it in batch]}

    def features(self, prepared: dict[str, Any]) -> dict[str, torch.Tensor]:
        """{channel: [n, d]} on the model's device, with autograd (the train stage's forward)."""
        dev = self.model.device
        inputs = {
            k: (v.to(dev, self.model.dtype) if k == "pixel_values" else v.to(dev))
            for k, v in prepared["inputs"].items()
        }
        hidden = self.model.model(**inputs, use_cache=False).last_hidden_state  # [n, L, d]
        out = gather_channels(hidden, prepared["slots"])
        pooled = self._vision_pooled(inputs, prepared["n_images"]) if self.fusion_gate is not None else None
        return apply_heads(out, self.fusion_gate, self.projection, pooled)

    def _vision_pooled(self, inputs: dict[str, Any], n_images: list[int]) -> torch.Tensor:
        """Mean of each item's merged image tokens (LLM space), zeros for items without images."""
        dev = self.model.device
        pooled = torch.zeros(len(n_images), self.hidden_size, device=dev)
        if "pixel_values" not in inputs:
            return pooled
        feats = self.model.model.get_image_features(
            pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"]
        ).pooler_output  # tuple: one [tokens_i, d] per image
        k = 0
        for row, n in enumerate(n_images):
            if n:
                pooled[row] = torch.stack([f.float().mean(0) for f in feats[k : k + n]]).mean(0)
            k += n
        return pooled


def set_pixel_bounds(image_processor: Any, min_pixels: int | None, max_pixels: int | None) -> None:
    """Override the processor's resize bounds (Qwen: size = {shortest_edge: min, longest_edge: max})."""
    if min_pixels is None and max_pixels is None:
        return
    size = dict(image_processor.size)
    if min_pixels is not None:
        size["shortest_edge"] = int(min_pixels)
    if max_pixels is not None:
        size["longest_edge"] = int(max_pixels)
    if size["shortest_edge"] > size["longest_edge"]:
        raise BackboneError(f"min_pixels {size['shortest_edge']} exceeds max_pixels {size['longest_edge']}")
    image_processor.size = size
