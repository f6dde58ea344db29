"""Composed backbone (causal LM + vision encoder + connector): build, save/load, splice, pool, GGUF."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from mllmrec.backbone.base import Encoder
from mllmrec.backbone.composed import ComposedEncoder, compose, is_composed_dir
from mllmrec.backbone.config import ComposeConfig
from mllmrec.backbone.connector import MLPConnector, QFormerConnector, build_connector
from mllmrec.testing.composed import (
    build_tiny_composed,
    build_tiny_sources,
    cached_tiny_composed,
    tiny_lm,
    write_tiny_gguf,
)
from mllmrec.testing.tokenizer import build_tokenizer
from mllmrec.types import RenderedItem

RED, BLUE = (200, 30, 30), (30, 30, 200)


def image(colour: tuple[int, int, int], size: tuple[int, int] = (48, 40)) -> Image.Image:
    return Image.new("RGB", size, colour)


def item(enc: ComposedEncoder, body: str, images: list | None = None, item_id: str = "x") -> RenderedItem:
    """The chat template around `body`, with the generation prompt opened by a quote (NoteLLM-2)."""
    return RenderedItem(item_id, enc.render_chat(body) + '"', list(images or []))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("composed-cache")


@pytest.fixture(scope="module")
def mlp_clip(cache) -> ComposedEncoder:
    return ComposedEncoder.load(cached_tiny_composed(cache, connector="mlp", vision="clip"), device="cpu")


@pytest.fixture(scope="module")
def qformer_siglip(cache) -> ComposedEncoder:
    return ComposedEncoder.load(
        cached_tiny_composed(cache, connector="qformer", vision="siglip"), device="cpu"
    )


def test_connector_shapes():
    patches = torch.randn(3, 16, 32)  # [n_img, P, dv]
    mlp = build_connector("mlp", 32, 64)
    assert (
        isinstance(mlp, MLPConnector) and mlp(patches).shape == (3, 16, 64) and mlp.tokens_per_image(16) == 16
    )
    qf = build_connector("qformer", 32, 64, n_query=5, n_layers=2, n_heads=4)
    assert (
        isinstance(qf, QFormerConnector) and qf(patches).shape == (3, 5, 64) and qf.tokens_per_image(16) == 5
    )
    assert build_connector(**qf.config()).config() == qf.config()
    with pytest.raises(ValueError, match="unknown connector"):
        build_connector("perceiver", 32, 64)


@pytest.mark.slow
def test_round_trip_gives_identical_vectors(tmp_path):
    lm_dir, vision_dir = build_tiny_sources(tmp_path / "src", vision="clip", seed=3)
    cfg = ComposeConfig(lm=str(lm_dir), vision=str(vision_dir), out=str(tmp_path / "out"), seed=3)
    built = ComposedEncoder.from_sources(cfg)
    items = [
        item(built, "Item: <image> red mug. Compress this item into one word:", [image(RED)], "a"),
        item(built, "Item: plain text only. Compress this item into one word:", [], "b"),
    ]
    before = built.encode(items)
    out = built.save(cfg.out)
    assert is_composed_dir(out) and not is_composed_dir(tmp_path / "src")
    assert {p.name for p in out.iterdir()} == {"composed.json", "lm", "vision", "connector.safetensors"}
    meta = json.loads((out / "composed.json").read_text())
    assert meta["format_version"] == 1 and meta["image_token"] == "<image>"
    assert meta["connector"]["kind"] == "mlp" and meta["sources"]["gguf_file"] is None
    loaded = ComposedEncoder.load(out, device="cpu")
    assert isinstance(loaded, Encoder) and loaded.hidden_size == 64 and loaded.image_placeholder == "<image>"
    after = loaded.encode(items)
    assert torch.equal(before["mm"], after["mm"])
    assert loaded.fingerprint()["weights_fingerprint"] == built.fingerprint()["weights_fingerprint"]
    with pytest.raises(FileExistsError):
        built.save(out)


@pytest.mark.parametrize("name, per_image", [("mlp_clip", 17), ("qformer_siglip", 4)])
def test_connectors_splice_tokens_per_image(request, name, per_image):
    enc = request.getfixturevalue(name)  # CLIP: 16 patches + class token; Q-Former: k = 4 queries
    assert enc.accepts_images and enc.tokens_per_image == per_image
    batch = [
        item(
            enc,
            "Two views: <image> and <image>. Compress this item into one word:",
            [image(RED), image(BLUE)],
        ),
        item(enc, "One view: <image>. Compress this item into one word:", [image(RED)]),
    ]
    enc_ids, _ = enc.tokenize(batch)
    assert (enc_ids["input_ids"] == enc.image_token_id).sum(dim=1).tolist() == [2 * per_image, per_image]
    out = enc.encode(batch)
    assert out["mm"].shape == (2, 64) and out["mm"].dtype == torch.float32 and torch.isfinite(out["mm"]).all()


@pytest.mark.parametrize("name", ["mlp_clip", "qformer_siglip"])
def test_batched_equals_one_at_a_time(request, name):
    enc = request.getfixturevalue(name)
    batch = [
        item(enc, "Item: <image> red mug. Compress this item into one word:", [image(RED)], "a"),
        item(
            enc,
            "Item: a much longer description of a vintage wooden chair with cotton stripes and a lamp. "
            "Compress this item into one word:",
            [],
            "b",
        ),
        item(
            enc,
            "Item: <image> <image> blue kettle. Compress this item into one word:",
            [image(BLUE), image(RED)],
            "c",
        ),
    ]
    together = enc.encode(batch)["mm"]
    alone = torch.cat([enc.encode([it])["mm"] for it in batch])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)


def test_slot_channel_is_causal(mlp_clip):
    enc = mlp_clip
    head = 'Image: <image> Compress this image into one word:"'
    full = item(enc, head + " Text: red mug. Compress this item into one word:", [image(RED)])
    offset = full.text.index(head) + len(head)
    full.slots = {"visual": offset}
    out = enc.encode([full])
    truncated = RenderedItem("t", full.text[:offset], [image(RED)])
    torch.testing.assert_close(out["visual"], enc.encode([truncated])["mm"], atol=1e-5, rtol=0)
    other = RenderedItem(
        "o", full.text.replace("red mug", "green wool sofa"), [image(RED)], {"visual": offset}
    )
    changed = enc.encode([other])
    torch.testing.assert_close(changed["visual"], out["visual"], atol=1e-5, rtol=0)
    assert not torch.allclose(changed["mm"], out["mm"], atol=1e-4)


def test_changing_the_image_changes_mm(mlp_clip):
    body = "Item: <image> mug. Compress this item into one word:"
    red, blue = (mlp_clip.encode([item(mlp_clip, body, [image(c)])])["mm"] for c in (RED, BLUE))
    assert not torch.allclose(red, blue, atol=1e-4)


def test_text_only_model_rejects_images(cache):
    enc = ComposedEncoder.load(cached_tiny_composed(cache, vision=None), device="cpu")
    assert not enc.accepts_images and enc.image_placeholder == "<image>" and enc.vision is None
    assert enc.encode([item(enc, "Item: red mug. Compress this item into one word:")])["mm"].shape == (1, 64)
    with pytest.raises(ValueError, match="text-only"):
        enc.encode(
            [item(enc, "Item: <image> red mug. Compress this item into one word:", [image(RED)], "img")]
        )


def test_gguf_lm_composes_and_embeds(tmp_path):
    name = write_tiny_gguf(tmp_path / "gguf", seed=5)
    _, vision_dir = build_tiny_sources(tmp_path / "src", vision="siglip")
    out = compose(
        ComposeConfig(
            lm=str(tmp_path / "gguf"), gguf_file=name, vision=str(vision_dir), out=str(tmp_path / "composed")
        )
    )
    assert json.loads((out / "composed.json").read_text())["sources"]["gguf_file"] == name
    assert (out / "lm" / "model.safetensors").is_file()
    enc = ComposedEncoder.load(out, device="cpu")
    # Dequantized weights equal the model the GGUF was written from (q/k permutation undone).
    reference = tiny_lm(build_tokenizer(), "llama", seed=5).state_dict()
    for key, value in enc.lm.state_dict().items():
        torch.testing.assert_close(value, reference[key], atol=0, rtol=0, msg=key)
    # The tokenizer read from GGUF metadata splits like the one it was written from; `<image>`
    # was added by compose and lies beyond the embedding matrix.
    text = enc.render_chat("Item: vintage red mug, 1999. Compress this item into one word:") + '"'
    assert enc.tokenizer(text)["input_ids"] == build_tokenizer()(text, add_special_tokens=False)["input_ids"]
    assert enc.image_token_id >= enc.lm.get_input_embeddings().num_embeddings
    batch = [
        item(enc, "Item: <image> red mug. Compress this item into one word:", [image(RED)], "a"),
        item(enc, "Item: a longer text-only wooden desk note. Compress this item into one word:", [], "b"),
    ]
    together = enc.encode(batch)["mm"]
    assert together.shape == (2, 64) and torch.isfinite(together).all()
    torch.testing.assert_close(
        together, torch.cat([enc.encode([it])["mm"] for it in batch]), atol=1e-5, rtol=0
    )


def test_dual_vision_model_uses_its_vision_tower(tmp_path):
    from transformers import CLIPConfig, CLIPModel

    from mllmrec.testing.composed import TINY_VISION, tiny_vision

    text = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "vocab_size": 99,
        "max_position_embeddings": 16,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 1,
    }
    dual = CLIPModel(CLIPConfig(text_config=text, vision_config=TINY_VISION, projection_dim=16))
    _, processor = tiny_vision("clip")
    dual.save_pretrained(tmp_path / "dual")
    processor.save_pretrained(tmp_path / "dual")
    lm_dir, _ = build_tiny_sources(tmp_path / "src", vision=None)
    out = compose(ComposeConfig(lm=str(lm_dir), vision=str(tmp_path / "dual"), out=str(tmp_path / "c")))
    enc = ComposedEncoder.load(out, device="cpu")
    assert type(enc.vision).__name__ == "CLIPVisionModel"
    torch.testing.assert_close(enc.vision.state_dict(), dual.vision_model.state_dict(), atol=0, rtol=0)
    assert enc.encode([item(enc, "Item: <image>. Compress:", [image(RED)])])["mm"].shape == (1, 64)


def test_fingerprint_differs_by_seed(cache, tmp_path):
    a = ComposedEncoder.load(cached_tiny_composed(cache, seed=0), device="cpu").fingerprint()
    b = ComposedEncoder.load(cached_tiny_composed(cache, seed=1), device="cpu").fingerprint()
    again = ComposedEncoder.load(build_tiny_composed(tmp_path / "again", seed=0), device="cpu").fingerprint()
    assert (
        a["weights_fingerprint"] != b["weights_fingerprint"]
        and a["weights_fingerprint"] == again["weights_fingerprint"]
    )
    assert a["kind"] == "composed" and a["sources"]["seed"] == 0


def test_run_compose_reports_text_only_model(tmp_path, capsys):
    from mllmrec.backbone.composed import run_compose

    lm_dir, _ = build_tiny_sources(tmp_path / "src", vision=None)
    assert run_compose(ComposeConfig(lm=str(lm_dir), out=str(tmp_path / "c"))) == 0
    assert "text-only" in capsys.readouterr().out and is_composed_dir(tmp_path / "c")
    assert ComposedEncoder.load(tmp_path / "c", device="cpu").encode([])["mm"].shape == (0, 64)
    with pytest.raises(FileExistsError, match="not empty"):  # refused before any model is loaded
        run_compose(ComposeConfig(lm=str(tmp_path / "missing"), out=str(tmp_path / "c")))
