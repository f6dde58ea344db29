"""Tiny offline Qwen-VL models: they reload with the Auto classes, run a multimodal forward, and
are built deterministically and only once per cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from mllmrec.backbone import families
from mllmrec.errors import MllmrecError
from mllmrec.testing import qwen
from mllmrec.testing.cache import cached_build
from mllmrec.testing.qwen import (
    BUILDER_VERSION,
    FAMILIES,
    build_tiny_qwen,
    cached_tiny_qwen,
    family_of_model_type,
)


def _load(model_dir: Path):
    """Model, tokenizer and image processor the way a user would load them, offline."""
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    return model, AutoTokenizer.from_pretrained(model_dir), AutoImageProcessor.from_pretrained(model_dir)


def _image(width: int, height: int, seed: int) -> Image.Image:
    """A noise image, so the vision tower sees varied pixels."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _prompt(tokenizer, n_image_tokens: int, text: str) -> str:
    """A chat prompt with one image slot, expanded by hand (Qwen2VLProcessor needs torchvision)."""
    image = "<|vision_start|>" + "<|image_pad|>" * n_image_tokens + "<|vision_end|>"
    messages = [{"role": "user", "content": image + text}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@pytest.mark.parametrize("family", FAMILIES)
def test_reload_and_forward_left_padded_batch(tiny_qwen_dirs: dict[str, Path], family: str) -> None:
    model, tokenizer, image_processor = _load(tiny_qwen_dirs[family])
    assert type(image_processor).__name__.endswith("Pil")
    assert tokenizer.padding_side == "left" and tokenizer.chat_template
    assert family_of_model_type(model.config.model_type) == family

    vision = image_processor(images=[_image(64, 64, 0), _image(96, 64, 1)], return_tensors="pt")
    grid = vision["image_grid_thw"]  # [2, 3] = (t, h, w) patches per image
    merge = image_processor.merge_size
    counts = [int(g.prod()) // merge**2 for g in grid]
    # Different image and text lengths, so the first row is left-padded.
    texts = [
        _prompt(tokenizer, counts[0], "red shirt"),
        _prompt(tokenizer, counts[1], "a blue lamp with stripes"),
    ]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    ids, mask = batch["input_ids"], batch["attention_mask"]  # [2, L]
    assert mask[0, 0] == 0 and bool(mask[:, -1].all())
    assert (ids == model.config.image_token_id).sum(dim=1).tolist() == counts

    # transformers 5.x needs the modality of each token (0 text, 1 image) to build M-RoPE positions.
    mm_types = (ids == model.config.image_token_id).int()  # [2, L]
    with torch.no_grad():
        out = model.model(
            input_ids=ids,
            attention_mask=mask,
            pixel_values=vision["pixel_values"],
            image_grid_thw=grid,
            mm_token_type_ids=mm_types,
        )
    hidden = out.last_hidden_state  # [2, L, hidden]
    assert hidden.shape == (2, ids.shape[1], model.config.text_config.hidden_size)
    assert torch.isfinite(hidden).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_config_ids_match_tokenizer(tiny_qwen_dirs: dict[str, Path], family: str) -> None:
    from transformers import AutoConfig, AutoTokenizer

    model_dir = tiny_qwen_dirs[family]
    config, tokenizer = AutoConfig.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
    ids = tokenizer.convert_tokens_to_ids
    assert config.image_token_id == ids("<|image_pad|>")
    assert config.video_token_id == ids("<|video_pad|>")
    assert config.vision_start_token_id == ids("<|vision_start|>")
    assert config.vision_end_token_id == ids("<|vision_end|>")
    text = config.text_config
    assert text.vocab_size == len(tokenizer)
    assert text.eos_token_id == tokenizer.eos_token_id and text.pad_token_id == tokenizer.pad_token_id
    head_dim = text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2


@pytest.mark.parametrize(("family", "tokens_224"), [("qwen2-vl", 64), ("qwen2.5-vl", 64), ("qwen3-vl", 49)])
def test_image_token_budget(tiny_qwen_dirs: dict[str, Path], family: str, tokens_224: int) -> None:
    from transformers import AutoImageProcessor

    image_processor = AutoImageProcessor.from_pretrained(tiny_qwen_dirs[family])
    merge = image_processor.merge_size
    for side, expected in ((64, 4), (224, tokens_224), (640, tokens_224)):
        grid = image_processor(images=[_image(side, side, 0)], return_tensors="pt")["image_grid_thw"]
        assert int(grid.prod()) // merge**2 == expected, side


@pytest.mark.parametrize("family", FAMILIES)
def test_small_size_dims(tmp_path: Path, family: str) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(build_tiny_qwen(family, tmp_path, size="small"))
    assert (config.text_config.hidden_size, config.text_config.num_hidden_layers) == (256, 4)
    assert config.vision_config.depth == 4
    width = config.vision_config.embed_dim if family == "qwen2-vl" else config.vision_config.hidden_size
    assert width == 128


def test_build_is_deterministic_and_keeps_global_rng(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    rng_before = torch.random.get_rng_state()
    again = load_file(build_tiny_qwen("qwen2-vl", tmp_path / "again", seed=0) / "model.safetensors")
    other = load_file(build_tiny_qwen("qwen2-vl", tmp_path / "other", seed=1) / "model.safetensors")
    assert torch.equal(torch.random.get_rng_state(), rng_before)

    first = load_file(tiny_qwen2_dir / "model.safetensors")
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_cached_builds_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    real_build = qwen.build_tiny_qwen

    def counting_build(family: str, out_dir: Path, **kwargs) -> Path:
        calls.append(Path(out_dir))
        return real_build(family, out_dir, **kwargs)

    monkeypatch.setattr(qwen, "build_tiny_qwen", counting_build)
    first = cached_tiny_qwen("qwen2.5-vl", cache_dir=tmp_path)
    second = cached_tiny_qwen("qwen2.5-vl", cache_dir=tmp_path)
    assert first == second == tmp_path / "tiny-models" / f"qwen2.5-vl-tiny-s0-v{BUILDER_VERSION}"
    assert len(calls) == 1 and calls[0] != first  # built beside the final path, then renamed
    assert sorted(p.name for p in first.parent.iterdir()) == [first.name]  # no temp dir left


def test_cached_uses_the_winner_of_a_race(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_build = qwen.build_tiny_qwen
    final = tmp_path / "tiny-models" / f"qwen2-vl-tiny-s0-v{BUILDER_VERSION}"

    def build_after_another_process(family: str, out_dir: Path, **kwargs) -> Path:
        # The other process finishes first (through the same helper, so its build is marked complete).
        cached_build(final, lambda d: real_build(family, d, **kwargs))
        (final / "winner").write_text("")
        return real_build(family, out_dir, **kwargs)

    monkeypatch.setattr(qwen, "build_tiny_qwen", build_after_another_process)
    assert cached_tiny_qwen("qwen2-vl", cache_dir=tmp_path) == final
    assert (final / "winner").exists()
    assert sorted(p.name for p in final.parent.iterdir()) == [final.name]


def test_family_names() -> None:
    assert [family_of_model_type(t) for t in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")] == list(FAMILIES)
    assert set(FAMILIES) <= {
        f.name for f in families.FAMILIES.values()
    }  # the builder's families are real ones
    with pytest.raises(ValueError, match="qwen2_5_vl") as unknown_type:
        family_of_model_type("llava")
    with pytest.raises(ValueError, match="qwen3-vl") as unknown_family:
        build_tiny_qwen("qwen4-vl", "/nonexistent")
    with pytest.raises(ValueError, match="small") as unknown_size:
        cached_tiny_qwen("qwen2-vl", size="huge", cache_dir="/nonexistent")
    # Deliberate errors, so the CLI prints them as one line instead of a traceback.
    assert all(isinstance(e.value, MllmrecError) for e in (unknown_type, unknown_family, unknown_size))
