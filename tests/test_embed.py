"""End-to-end embed stage on tiny offline models: store, channels, resume, bad input, manifests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mllmrec import artifacts
from mllmrec import store as st
from mllmrec.artifacts import ArtifactError
from mllmrec.embed import EmbedError, run_embed
from mllmrec.embed.config import EmbedConfig
from mllmrec.embed.run import _time_spent
from mllmrec.store import EmbeddingStore
from mllmrec.testing.catalog import write_small_catalog as write_catalog


def cfg_for(catalog: Path, model: Path, out: Path, **kw) -> EmbedConfig:
    return EmbedConfig(catalog=str(catalog), model=str(model), out=str(out), progress=False, **kw)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """One loaded tiny Qwen2-VL encoder shared by the tests of this module (loading is the slow part)."""
    from mllmrec.backbone.hf import QwenVLEncoder
    from mllmrec.testing.qwen import cached_tiny_qwen

    d = cached_tiny_qwen("qwen2-vl", cache_dir=tmp_path_factory.getbasetemp() / "mllmrec-cache")
    return d, QwenVLEncoder.load(str(d))


@pytest.mark.parametrize("family", ["qwen2-vl", "qwen2.5-vl", "qwen3-vl"])
def test_each_family_embeds_a_catalog(family, tiny_qwen_dirs, catalog, tmp_path):
    run_embed(cfg_for(catalog, tiny_qwen_dirs[family], tmp_path / "store", shard_size=5, batch_size=4))
    s = EmbeddingStore.open(tmp_path / "store")
    assert s.ids == [f"x{i}" for i in range(12)]
    v = np.asarray(s.vectors("mm"))
    assert v.shape == (12, s.manifest["dims"]["mm"]) and np.isfinite(v).all()
    assert len({tuple(np.round(row, 5)) for row in v}) == 12  # every item gets its own vector
    m = s.manifest
    assert m["backbone"]["family"] == family and m["prompt"]["name"] == "notellm2"
    assert m["counts"] == {"input": 12, "embedded": 12, "rejected": 0, "text_only": 0, "truncated": 0}
    assert not (tmp_path / "store" / st.SHARDS).exists()  # shards are consolidated and removed


def test_batched_equals_one_at_a_time(encoder, catalog, tmp_path):
    d, enc = encoder
    a = run_embed(cfg_for(catalog, d, tmp_path / "a", batch_size=8), encoder=enc)
    b = run_embed(cfg_for(catalog, d, tmp_path / "b", batch_size=1), encoder=enc)
    va, vb = (np.asarray(EmbeddingStore.open(r["config"]["out"]).vectors("mm")) for r in (a, b))
    np.testing.assert_allclose(va, vb, atol=1e-5)


def test_micl_gives_visual_channel_independent_of_text(encoder, tmp_path):
    d, enc = encoder
    cat_a = write_catalog(tmp_path / "a", n=6, title_prefix="first")
    cat_b = write_catalog(tmp_path / "b", n=6, title_prefix="totally other words")  # same images, other text
    ra = run_embed(cfg_for(cat_a, d, tmp_path / "sa", prompt="notellm2-micl"), encoder=enc)
    rb = run_embed(cfg_for(cat_b, d, tmp_path / "sb", prompt="notellm2-micl"), encoder=enc)
    sa, sb = EmbeddingStore.open(ra["config"]["out"]), EmbeddingStore.open(rb["config"]["out"])
    assert sa.channels == ["mm", "visual"]
    np.testing.assert_allclose(np.asarray(sa.vectors("visual")), np.asarray(sb.vectors("visual")), atol=1e-5)
    assert np.abs(np.asarray(sa.vectors("mm")) - np.asarray(sb.vectors("mm"))).max() > 1e-3


def test_resume_after_injected_crash_equals_uninterrupted(encoder, tmp_path, monkeypatch):
    d, enc = encoder
    cat = write_catalog(tmp_path / "cat", n=20)
    full = run_embed(cfg_for(cat, d, tmp_path / "full", shard_size=4, batch_size=3), encoder=enc)

    real_write = st.write_shard
    calls, seen_seconds = {"n": 0}, []

    def crashing_write(out, index, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # die half-way through writing the third shard
            # the time so far is already in the manifest, so even a hard kill here keeps it
            seen_seconds.append(st.read_manifest(out)["runs"][-1]["seconds"])
            (out / st.SHARDS / f".shard-{index:06d}.safetensors.tmp-999").write_bytes(b"partial")
            raise KeyboardInterrupt("simulated crash")
        return real_write(out, index, *a, **k)

    monkeypatch.setattr(st, "write_shard", crashing_write)
    cfg = cfg_for(cat, d, tmp_path / "crashed", shard_size=4, batch_size=3)
    with pytest.raises(KeyboardInterrupt):
        run_embed(cfg, encoder=enc)
    assert st.read_manifest(cfg.out)["status"] == "running"
    assert st.done_shards(Path(cfg.out)) == {0, 1}
    monkeypatch.setattr(st, "write_shard", real_write)

    with pytest.raises(ArtifactError, match="--resume"):  # a plain rerun must not clobber the work
        run_embed(cfg, encoder=enc)
    resumed = run_embed(
        cfg_for(cat, d, tmp_path / "crashed", shard_size=4, batch_size=3, resume=True), encoder=enc
    )
    a, b = EmbeddingStore.open(full["config"]["out"]), EmbeddingStore.open(resumed["config"]["out"])
    assert a.ids == b.ids
    assert np.array_equal(np.asarray(a.vectors("mm")), np.asarray(b.vectors("mm")))
    assert not (Path(cfg.out) / st.SHARDS).exists()  # the partial temp file went with the shards
    assert resumed["counts"]["embedded"] == 20
    # Every run's time is kept and the total covers them all (issue 16.7).
    assert seen_seconds and seen_seconds[0] > 0
    first, second = resumed["runs"]
    assert first["seconds"] >= seen_seconds[0] and second["seconds"] == resumed["seconds_last_run"] > 0
    assert resumed["seconds_total"] == pytest.approx(first["seconds"] + second["seconds"], abs=2e-3)
    assert _time_spent(resumed).endswith(f"over 2 runs (this one {second['seconds']:.1f} s)")


def test_progress_bar_advances_per_batch(encoder, catalog, tmp_path, monkeypatch):
    """A 1,024-item shard takes minutes on a CPU: the bar must move per batch (issue 16.2), with a
    total and an item unit so tqdm shows items/s and an ETA."""
    import tqdm.auto

    bars = []

    class Recorder:
        def __init__(self, total=None, unit="it", disable=False, **kw):
            self.total, self.unit, self.disable, self.updates = total, unit, disable, []
            bars.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n=1):
            self.updates.append(n)

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorder)
    d, enc = encoder
    run_embed(
        EmbedConfig(catalog=str(catalog), model=str(d), out=str(tmp_path / "s"), shard_size=8, batch_size=3),
        encoder=enc,
    )
    (bar,) = bars
    assert (bar.total, bar.unit, bar.disable) == (12, "item", False)
    assert bar.updates == [3, 3, 2, 3, 1]  # shards of 8 and 4 items, batches of at most 3


def test_resume_refuses_other_prompt_or_model(encoder, tiny_qwen_dirs, catalog, tmp_path):
    d, enc = encoder
    out = tmp_path / "s"
    run_embed(cfg_for(catalog, d, out, shard_size=4), encoder=enc)
    (out / artifacts.MANIFEST).write_text(json.dumps({**st.read_manifest(out), "status": "running"}))
    with pytest.raises(ArtifactError, match=r"prompt\.name: store has 'notellm2', this run has 'text-only'"):
        run_embed(cfg_for(catalog, d, out, shard_size=4, prompt="text-only", resume=True), encoder=enc)
    with pytest.raises(
        ArtifactError, match=r"backbone\.family: store has 'qwen2-vl', this run has 'qwen3-vl'"
    ):
        run_embed(cfg_for(catalog, tiny_qwen_dirs["qwen3-vl"], out, shard_size=4, resume=True))
    with pytest.raises(ArtifactError, match=r"config\.shard_size"):
        run_embed(cfg_for(catalog, d, out, shard_size=5, resume=True), encoder=enc)


def test_resume_of_complete_store_is_a_no_op_and_overwrite_restarts(encoder, catalog, tmp_path):
    d, enc = encoder
    out = tmp_path / "s"
    first = run_embed(cfg_for(catalog, d, out), encoder=enc)
    again = run_embed(cfg_for(catalog, d, out, resume=True), encoder=enc)
    assert again["completed"] == first["completed"]
    with pytest.raises(ArtifactError, match="already holds an earlier embed run"):
        run_embed(cfg_for(catalog, d, out), encoder=enc)
    run_embed(cfg_for(catalog, d, out, overwrite=True, prompt="text-only"), encoder=enc)
    assert EmbeddingStore.open(out).manifest["prompt"]["name"] == "text-only"


def test_overwrite_refuses_a_folder_that_is_not_a_store(encoder, catalog, tmp_path):
    d, enc = encoder
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("do not delete")
    with pytest.raises(ArtifactError, match="--overwrite refuses to delete .*thesis.tex"):
        run_embed(cfg_for(catalog, d, out, overwrite=True), encoder=enc)
    assert (out / "thesis.tex").exists()


@pytest.mark.parametrize("fmt,dtype", [("parquet", "float32"), ("safetensors", "float16")])
def test_store_formats(encoder, catalog, tmp_path, fmt, dtype):
    d, enc = encoder
    ref = EmbeddingStore.open(run_embed(cfg_for(catalog, d, tmp_path / "ref"), encoder=enc)["config"]["out"])
    s = EmbeddingStore.open(
        run_embed(cfg_for(catalog, d, tmp_path / "s", format=fmt, store_dtype=dtype), encoder=enc)["config"][
            "out"
        ]
    )
    v = np.asarray(s.vectors("mm"))
    assert v.dtype == np.dtype(dtype) and s.ids == ref.ids
    np.testing.assert_allclose(
        v.astype(np.float32), np.asarray(ref.vectors("mm")), atol=2e-2 if dtype == "float16" else 0
    )


def test_fusion_gate_adds_fused_channel_following_the_formula(encoder, catalog, tmp_path):
    import torch

    from mllmrec.fusion.gate import LateFusionGate

    d, enc = encoder
    torch.manual_seed(0)
    enc.fusion_gate = LateFusionGate(enc.hidden_size, enc.hidden_size)
    try:
        r = run_embed(cfg_for(catalog, d, tmp_path / "s"), encoder=enc)
        s = EmbeddingStore.open(r["config"]["out"])
        assert s.channels == ["mm", "fused"] and r["fusion_gate"]
        mm, fused = (torch.from_numpy(np.array(s.vectors(c))) for c in ("mm", "fused"))
        # Recompute by hand for item 0: pooled = mean of its merged image tokens.
        from mllmrec.catalog import load_catalog, load_item_images

        cat = load_catalog(cfg_for(catalog, d, tmp_path / "x"))
        images, _ = load_item_images(cat.items[0], cat.base_dir, cfg_for(catalog, d, tmp_path / "x"))
        px = enc.image_processor(images=images, return_tensors="pt")
        with torch.inference_mode():
            feats = enc.model.model.get_image_features(**px).pooler_output[0].mean(0, keepdim=True)
            expected = enc.fusion_gate(mm[:1], feats)
        torch.testing.assert_close(fused[:1], expected, atol=1e-5, rtol=1e-5)
        assert (fused - mm).abs().max() > 1e-3
    finally:
        enc.fusion_gate = None


def test_mixed_text_only_and_image_batches_match_one_at_a_time(tiny_qwen_dirs, tmp_path):
    from mllmrec.backbone.hf import QwenVLEncoder

    cat = write_catalog(tmp_path / "cat", n=8)
    rows = cat.read_text().splitlines()
    rows = [
        r.replace('"image": "images/', '"image": null, "x": "') if k % 3 == 0 else r
        for k, r in enumerate(rows)
    ]
    cat.write_text("\n".join(rows) + "\n")
    for family, d in tiny_qwen_dirs.items():
        enc = QwenVLEncoder.load(str(d))
        a = run_embed(cfg_for(cat, d, tmp_path / f"{family}-a", batch_size=8), encoder=enc)
        b = run_embed(cfg_for(cat, d, tmp_path / f"{family}-b", batch_size=1), encoder=enc)
        va, vb = (np.asarray(EmbeddingStore.open(r["config"]["out"]).vectors("mm")) for r in (a, b))
        np.testing.assert_allclose(va, vb, atol=1e-5, err_msg=family)


def test_resume_refused_when_the_catalogue_changed_and_allowed_with_another_batch_size(
    encoder, catalog, tmp_path
):
    d, enc = encoder
    out = tmp_path / "s"
    run_embed(cfg_for(catalog, d, out, shard_size=4, batch_size=4), encoder=enc)
    (out / artifacts.MANIFEST).write_text(json.dumps({**st.read_manifest(out), "status": "running"}))
    st.clean_partial_files(out)
    catalog.write_text(catalog.read_text().replace("item 3", "item three"))
    with pytest.raises(ArtifactError, match="catalog_sha256"):
        run_embed(cfg_for(catalog, d, out, shard_size=4, resume=True), encoder=enc)


def test_a_smaller_batch_may_finish_an_interrupted_run(encoder, catalog, tmp_path, monkeypatch):
    d, enc = encoder
    real = st.write_shard

    def die_on_second(out, index, *a, **k):
        if index == 1:
            raise MemoryError("simulated out-of-memory")
        return real(out, index, *a, **k)

    monkeypatch.setattr(st, "write_shard", die_on_second)
    with pytest.raises(MemoryError):
        run_embed(cfg_for(catalog, d, tmp_path / "s", shard_size=4, batch_size=8), encoder=enc)
    monkeypatch.setattr(st, "write_shard", real)
    r = run_embed(cfg_for(catalog, d, tmp_path / "s", shard_size=4, batch_size=2, resume=True), encoder=enc)
    assert [run["batch_size"] for run in r["runs"]] == [8, 2]
    ref = run_embed(cfg_for(catalog, d, tmp_path / "ref", shard_size=4, batch_size=8), encoder=enc)
    np.testing.assert_allclose(
        np.asarray(EmbeddingStore.open(r["config"]["out"]).vectors()),
        np.asarray(EmbeddingStore.open(ref["config"]["out"]).vectors()),
        atol=1e-5,
    )


def test_a_gate_on_an_encoder_without_pooled_vision_is_refused(encoder, catalog, tmp_path, monkeypatch):
    from mllmrec.fusion.gate import LateFusionGate

    d, enc = encoder
    monkeypatch.setattr(type(enc), "supports_fusion_gate", property(lambda self: False))
    enc.fusion_gate = LateFusionGate(enc.hidden_size, enc.hidden_size)
    try:
        with pytest.raises(EmbedError, match="cannot apply a late-fusion gate"):
            run_embed(cfg_for(catalog, d, tmp_path / "s"), encoder=enc)
    finally:
        enc.fusion_gate = None


def test_resume_redoes_a_truncated_shard(encoder, tmp_path, monkeypatch):
    """A shard damaged after it was written (disk, copy) is named in the log and embedded again on
    --resume, instead of a SafetensorError at consolidation (issue 12)."""
    d, enc = encoder
    cat = write_catalog(tmp_path / "cat", n=12)
    full = run_embed(cfg_for(cat, d, tmp_path / "full", shard_size=4, batch_size=4), encoder=enc)
    real_write = st.write_shard

    def stop_at_third(out, index, *a, **k):
        if index == 2:
            raise KeyboardInterrupt("simulated crash")
        return real_write(out, index, *a, **k)

    monkeypatch.setattr(st, "write_shard", stop_at_third)
    out = tmp_path / "crashed"
    with pytest.raises(KeyboardInterrupt):
        run_embed(cfg_for(cat, d, out, shard_size=4, batch_size=4), encoder=enc)
    monkeypatch.setattr(st, "write_shard", real_write)
    shard = st.shard_path(out, 1)
    shard.write_bytes(shard.read_bytes()[:60])
    resumed = run_embed(cfg_for(cat, d, out, shard_size=4, batch_size=4, resume=True), encoder=enc)
    assert resumed["counts"]["embedded"] == 12
    a, b = EmbeddingStore.open(full["config"]["out"]), EmbeddingStore.open(out)
    assert a.ids == b.ids and np.array_equal(np.asarray(a.vectors("mm")), np.asarray(b.vectors("mm")))


def test_resume_of_complete_store_with_another_model_is_refused_not_a_no_op(
    encoder, tiny_qwen_dirs, catalog, tmp_path
):
    """Issue 12 item 7: the model path is free on resume, so a complete store used to answer "nothing
    to do" for any --model; now other weights are refused and the same weights moved elsewhere pass."""
    import shutil

    d, enc = encoder
    out = tmp_path / "s"
    first = run_embed(cfg_for(catalog, d, out), encoder=enc)
    with pytest.raises(
        ArtifactError, match=r"backbone\.family: store has 'qwen2-vl', this run has 'qwen3-vl'"
    ):
        run_embed(cfg_for(catalog, tiny_qwen_dirs["qwen3-vl"], out, resume=True))
    moved = shutil.copytree(d, tmp_path / "moved-model")
    again = run_embed(cfg_for(catalog, moved, out, resume=True))
    assert again["status"] == "complete" and again["completed"] == first["completed"]
