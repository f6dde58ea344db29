"""Qwen-VL encoder details not covered by the end-to-end embed tests."""

from __future__ import annotations

import pytest
from PIL import Image

from mllmrec.backbone.base import Encoder
from mllmrec.backbone.families import family_for
from mllmrec.backbone.hf import QwenVLEncoder
from mllmrec.prompts import load_template, render
from mllmrec.types import Item


@pytest.fixture(scope="module")
def encoders(tiny_qwen_dirs):
    return {fam: QwenVLEncoder.load(str(d)) for fam, d in tiny_qwen_dirs.items()}


def test_encoders_follow_the_protocol(encoders):
    assert all(isinstance(e, Encoder) for e in encoders.values())
    fps = {e.fingerprint()["weights_fingerprint"] for e in encoders.values()}
    assert len(fps) == 3


@pytest.mark.parametrize("size", [(64, 64), (224, 224), (500, 90)])
def test_image_token_estimate_matches_the_processor(encoders, size):
    for enc in encoders.values():
        px = enc.image_processor(images=[Image.new("RGB", size)], return_tensors="pt")
        actual = int(px["image_grid_thw"].prod() // enc.merge**2)
        assert enc.image_tokens(size[1], size[0]) == actual


def test_pixel_bounds_change_the_number_of_image_tokens(tiny_qwen_dirs):
    small = QwenVLEncoder.load(str(tiny_qwen_dirs["qwen2-vl"]), max_pixels=56 * 56)
    big = QwenVLEncoder.load(str(tiny_qwen_dirs["qwen2-vl"]), min_pixels=112 * 112)
    assert small.image_tokens(224, 224) == 4 and big.image_tokens(28, 28) == 16
    with pytest.raises(ValueError, match="exceeds max_pixels"):
        QwenVLEncoder.load(str(tiny_qwen_dirs["qwen2-vl"]), min_pixels=10_000, max_pixels=5_000)


def test_default_precision_is_fp32_on_cpu(encoders):
    import torch

    assert all(e.model.dtype == torch.float32 for e in encoders.values())


def test_more_images_per_item_are_all_used(encoders):
    enc = encoders["qwen2-vl"]
    t = load_template("notellm2")
    item = Item("a", {"title": "two pictures"}, ("x", "y"))
    red, blue = Image.new("RGB", (64, 64), (255, 0, 0)), Image.new("RGB", (64, 64), (0, 0, 255))
    one = render(t, item, [red], image_placeholder=enc.image_placeholder, chat=enc.render_chat)
    two = render(t, item, [red, blue], image_placeholder=enc.image_placeholder, chat=enc.render_chat)
    assert two.text.count(enc.image_placeholder) == 2
    assert (enc.encode([one])["mm"] - enc.encode([two])["mm"]).abs().max() > 1e-4


def test_unknown_model_type_names_the_supported_ones():
    with pytest.raises(ValueError, match="qwen2-vl.*qwen2.5-vl.*qwen3-vl.*compose"):
        family_for("llama")
