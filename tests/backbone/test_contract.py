"""The Encoder contract, checked for every row of the backbone family table (and each tiny variant
of it): the protocol's members, batched = one at a time, declared dims, a stable fingerprint, and
LoRA attach -> save -> apply (merged) -> save -> reload giving the tuned vectors.

Cases come from iterating `FAMILIES`, so a new row is tested without editing this file; a row
without a tiny builder in `mllmrec.testing.encoders` fails here, saying so.
"""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from mllmrec.backbone.base import Encoder
from mllmrec.backbone.config import ModelSpec
from mllmrec.backbone.families import FAMILIES
from mllmrec.backbone.load import open_encoder
from mllmrec.testing.encoders import TINY_BUILDS, tiny_variants
from mllmrec.types import Item, RenderedItem

ROWS = {f.name: f for f in FAMILIES.values()}
CASES = tiny_variants(list(ROWS))
TOL = 1e-5


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """Variant id -> tiny model directory, built on first use (cached for the module)."""
    cache, built = tmp_path_factory.mktemp("contract-models"), {}

    def get(family: str, variant: str):
        if variant not in built:
            builder = TINY_BUILDS.get(family, {}).get(variant)
            if builder is None:
                pytest.fail(
                    f"family {family!r} has no tiny model builder in mllmrec.testing.encoders.TINY_BUILDS"
                )
            built[variant] = builder(cache)
        return built[variant]

    return get


def load(path) -> Encoder:
    return open_encoder(ModelSpec(model=str(path), device="cpu"))


def items(enc: Encoder) -> list[RenderedItem]:
    """Three items of different lengths: two with images of different sizes, one text-only."""
    from mllmrec.prompts import load_template, render

    t = load_template("notellm2")
    red, blue = Image.new("RGB", (64, 64), (200, 30, 30)), Image.new("RGB", (120, 80), (30, 30, 200))
    specs = [
        (Item("a", {"title": "red mug"}, ("r",)), [red]),
        (Item("b", {"title": "a much longer title of a blue poster with words"}, ("b",)), [blue]),
        (Item("c", {"title": "text only"}, ()), []),
    ]
    return [
        render(
            t,
            it,
            ims if enc.accepts_images else [],
            image_placeholder=enc.image_placeholder,
            chat=enc.render_chat,
            special_tokens=enc.special_tokens,
        )
        for it, ims in specs
    ]


def close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: float = TOL) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=tol, rtol=0) for k in a)


@pytest.fixture(params=CASES, ids=[v or f"{f}-no-builder" for f, v in CASES])
def case(request, model_dirs):
    family, variant = request.param
    return ROWS[family], model_dirs(family, variant)


def test_the_family_table_opens_its_encoder_with_every_protocol_member(case):
    row, path = case
    enc = load(path)
    assert isinstance(enc, Encoder) and isinstance(enc, row.encoder_class()) and enc.family == row
    members = {n for n in Encoder.__dict__ if not n.startswith("_")} | set(Encoder.__annotations__)
    assert not [m for m in sorted(members) if not hasattr(enc, m)]
    assert enc.image_placeholder == row.image_placeholder and enc.supports_fusion_gate == row.fusion_gate
    assert set(enc.networks()) and enc.network in enc.networks().values()


def test_batched_equals_one_at_a_time_with_the_declared_dims(case):
    from mllmrec.fusion.projection import ProjectionHead

    enc = load(case[1])
    batch = items(enc)
    together = enc.encode(batch)
    alone = [enc.encode([it]) for it in batch]
    for k in range(len(batch)):
        assert close({ch: v[k] for ch, v in together.items()}, {ch: v[0] for ch, v in alone[k].items()})
    assert enc.out_dim == enc.hidden_size
    assert all(v.shape == (len(batch), enc.out_dim) and v.dtype == torch.float32 for v in together.values())
    enc.projection = ProjectionHead(enc.hidden_size, 8)
    assert enc.out_dim == 8 and all(v.shape == (len(batch), 8) for v in enc.encode(batch).values())


def test_the_fingerprint_is_stable_across_loads(case):
    a, b = load(case[1]), load(case[1])
    assert a.fingerprint() == b.fingerprint() and a.fingerprint()["weights_fingerprint"]


def test_lora_attach_save_apply_and_merge_give_the_tuned_vectors(case, tmp_path):
    from mllmrec.backbone.trained_run import apply_run, artefacts_sha256
    from mllmrec.train.lora import LoraSpec, attach_lora, save_adapters

    row, path = case
    enc = load(path)
    base = enc.fingerprint()
    batch = items(enc)
    before = enc.encode(batch)
    peft = attach_lora(enc, LoraSpec(rank=4, vision=enc.accepts_images))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # LoRA's B starts at zero: move it, or "tuned" would equal the base
        for _, pm in peft:
            for n, p in pm.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    tuned = enc.encode(batch)
    assert not close(before, tuned, 1e-3)
    run = tmp_path / "run"
    save_adapters(peft, run)
    manifest = {
        "stage": "train",
        "status": "complete",
        "backbone": base,
        "adapter_sha256": artefacts_sha256(run),
    }
    (run / "manifest.json").write_text(json.dumps(manifest))

    fresh = load(path)
    assert apply_run(fresh, run)["adapter_sha256"] == manifest["adapter_sha256"]
    assert fresh.fingerprint()["weights_fingerprint"] != base["weights_fingerprint"]  # hashed again
    assert close(fresh.encode(batch), tuned, 1e-4)
    merged = load(fresh.save(tmp_path / "merged"))
    assert merged.family == row and close(merged.encode(batch), tuned, 1e-4)
