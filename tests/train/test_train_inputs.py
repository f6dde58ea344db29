"""Bad input and the less common paths of `mllmrec train`: unknown ids, missing files, wrong
targets, mismatched runs, modality dropout, QLoRA, two processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mllmrec.artifacts import write_manifest
from mllmrec.backbone.trained_run import RunDirError
from mllmrec.config import ConfigError
from mllmrec.embed.config import EmbedConfig
from mllmrec.testing.processes import accelerate_launch
from mllmrec.train.config import TrainConfig
from mllmrec.train.data import TrainDataError
from mllmrec.train.lora import LoraError
from mllmrec.train.trainer import Trainer, load_train_encoder, run_train


def _cfg(items: Path, pairs: Path, model: Path, out: Path, **kw) -> TrainConfig:
    base = {
        "batch_pairs": 6,
        "steps": 1,
        "lr": 1e-3,
        "progress": False,
        "valid_every": 0,
        "device": "cpu",
        "max_valid_queries": 8,
    }
    return TrainConfig(pairs=str(pairs), out=str(out), model=str(model), catalog=str(items), **{**base, **kw})


def _with_extra_pairs(pairs: Path, out: Path, rows: list[tuple[str, str, float, str]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(pairs / "pairs.parquet")
    extra = pa.table(
        {
            "query_id": [r[0] for r in rows],
            "partner_id": [r[1] for r in rows],
            "score": [r[2] for r in rows],
            "part": [r[3] for r in rows],
        }
    )
    out.mkdir()
    pq.write_table(pa.concat_tables([t, extra.cast(t.schema)]), out / "pairs.parquet")
    (out / "manifest.json").write_text((pairs / "manifest.json").read_text())
    return out


def test_unknown_ids_in_pairs_are_reported_and_left_out(synthetic_pairs, tiny_qwen2_dir, tmp_path):
    items, pairs = synthetic_pairs
    first = json.loads(items.read_text().splitlines()[0])["id"]
    edited = _with_extra_pairs(
        pairs, tmp_path / "p", [("ghost-1", first, 1.0, "train"), (first, "ghost-2", 1.0, "valid")]
    )
    tr = Trainer(
        _cfg(items, edited, tiny_qwen2_dir, tmp_path / "r"),
        load_train_encoder(_cfg(items, edited, tiny_qwen2_dir, tmp_path / "r"), "cpu"),
    )
    rep = tr.data.report
    assert rep["unknown_items"] == {"count": 2, "examples": ["ghost-1", "ghost-2"]}
    assert rep["pairs_dropped"] == 2
    assert (
        "ghost-1" not in set(tr.data.train.ravel()) and "ghost-2" not in tr.data.protocols["valid"].candidates
    )


def test_items_with_bad_images_follow_the_policy(synthetic_pairs, tiny_qwen2_dir, tmp_path):
    items, pairs = synthetic_pairs
    rows = [json.loads(x) for x in items.read_text().splitlines()]
    rows[0]["image"] = "images/missing.png"
    bad_items = items.parent / "items_bad.jsonl"
    bad_items.write_text("".join(json.dumps(r) + "\n" for r in rows))
    enc = load_train_encoder(_cfg(bad_items, pairs, tiny_qwen2_dir, tmp_path / "r"), "cpu")
    tr = Trainer(_cfg(bad_items, pairs, tiny_qwen2_dir, tmp_path / "a"), enc)
    assert [r["id"] for r in tr.data.report["text_only_items"]] == [rows[0]["id"]]
    assert rows[0]["id"] in tr.data.text_only
    cfg = _cfg(bad_items, pairs, tiny_qwen2_dir, tmp_path / "b", on_bad_image="reject")
    tr = Trainer(cfg, load_train_encoder(cfg, "cpu"))
    assert [r["id"] for r in tr.data.report["rejected_items"]] == [rows[0]["id"]]
    assert rows[0]["id"] not in set(tr.data.train.ravel()) and tr.data.report["pairs_dropped"] > 0


def test_missing_or_tiny_pair_sets_are_clear_errors(synthetic_pairs, tiny_qwen2_dir, tmp_path):
    items, pairs = synthetic_pairs
    with pytest.raises(TrainDataError, match="expected an mllmrec pairs folder"):
        run_train(_cfg(items, tmp_path / "nowhere", tiny_qwen2_dir, tmp_path / "r"))
    store_like = tmp_path / "store_like"  # a store handed in by mistake (pairs.parquet copied in)
    shutil.copytree(pairs, store_like)
    write_manifest(store_like, {"status": "complete"}, stage="embed")
    with pytest.raises(TrainDataError, match="holds a 'embed' artefact, not an mllmrec pairs folder"):
        run_train(_cfg(items, store_like, tiny_qwen2_dir, tmp_path / "r1"))
    with pytest.raises(TrainDataError, match="fewer than one batch"):
        run_train(_cfg(items, pairs, tiny_qwen2_dir, tmp_path / "r2", batch_pairs=100_000))
    with pytest.raises(ConfigError, match="batch_pairs"):
        _cfg(items, pairs, tiny_qwen2_dir, tmp_path / "r3", batch_pairs=1)
    with pytest.raises(ConfigError, match="matryoshka_dims"):
        _cfg(items, pairs, tiny_qwen2_dir, tmp_path / "r3", proj_dim=16, matryoshka_dims=(32,))


def test_lora_targets_that_match_nothing_name_the_layers(synthetic_pairs, tiny_qwen2_dir, tmp_path):
    items, pairs = synthetic_pairs
    with pytest.raises(LoraError, match="match no linear layer.*q_proj"):
        run_train(_cfg(items, pairs, tiny_qwen2_dir, tmp_path / "r", lora_targets=("c_attn",)))


def test_vision_lora_goes_on_the_vision_blocks_only(synthetic_pairs, tiny_qwen2_dir, tmp_path):
    items, pairs = synthetic_pairs
    cfg = _cfg(items, pairs, tiny_qwen2_dir, tmp_path / "r", vision_lora=True)
    tr = Trainer(cfg, load_train_encoder(cfg, "cpu"))
    lora = [n for n in tr.params if "lora_A" in n]
    assert any(
        ".visual.blocks." in n and n.split(".lora_A")[0].endswith(("attn.qkv", "attn.proj")) for n in lora
    )
    assert any(".language_model." in n and "q_proj" in n for n in lora)
    assert not any("patch_embed" in n or "merger" in n for n in lora)


def test_modality_dropout_drops_image_or_text(synthetic_pairs, tiny_qwen2_dir, tmp_path):
    items, pairs = synthetic_pairs
    cfg = _cfg(items, pairs, tiny_qwen2_dir, tmp_path / "r", modality_dropout=1.0)
    tr = Trainer(cfg, load_train_encoder(cfg, "cpu"))
    ids = list(tr.data.train[:8].ravel())
    full, dropped = tr.batches.render(ids), tr.batches.render(ids, step=0)
    lost_image = sum(bool(f.images) and not d.images for f, d in zip(full, dropped, strict=True))
    lost_text = sum(bool(d.images) and len(d.text) < len(f.text) for f, d in zip(full, dropped, strict=True))
    assert lost_image + lost_text == sum(bool(f.images) for f in full) and lost_image > 0 and lost_text > 0
    assert [r.text for r in tr.batches.render(ids, step=0)] == [r.text for r in dropped]  # seeded by step


def test_embed_refuses_an_adapter_for_other_base_weights_or_an_unfinished_run(
    synthetic_pairs, tiny_qwen2_dir, tmp_path
):
    from mllmrec.embed import run_embed
    from mllmrec.testing.qwen import cached_tiny_qwen

    items, pairs = synthetic_pairs
    run_train(_cfg(items, pairs, tiny_qwen2_dir, tmp_path / "run"))
    other = cached_tiny_qwen("qwen2-vl", seed=1, cache_dir=tmp_path / "cache")
    with pytest.raises(RunDirError, match="weights fingerprint"):
        run_embed(
            EmbedConfig(
                catalog=str(items),
                model=str(other),
                out=str(tmp_path / "s"),
                adapter=str(tmp_path / "run"),
                progress=False,
                device="cpu",
            )
        )
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    man["status"] = "running"
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(RunDirError, match="not complete"):
        run_embed(
            EmbedConfig(
                catalog=str(items),
                model=str(tiny_qwen2_dir),
                out=str(tmp_path / "s2"),
                adapter=str(tmp_path / "run"),
                progress=False,
                device="cpu",
            )
        )


@pytest.mark.slow
def test_qlora_trains_on_4bit_base_weights_and_merges(synthetic_pairs, tmp_path):
    from mllmrec.testing.composed import cached_tiny_composed
    from mllmrec.train.merge import merge_run

    items, pairs = synthetic_pairs
    model = cached_tiny_composed(tmp_path / "cache", vision=None)
    cfg = _cfg(items, pairs, model, tmp_path / "run", quantize="4bit", image_field=None, steps=2, lr=1e-2)
    enc = load_train_encoder(cfg, "cpu")
    assert any("4bit" in type(m).__name__ for m in enc.lm.modules())
    man = run_train(cfg, encoder=enc)
    assert man["quantized"] == "4bit" and all(np.isfinite(h["loss"]) for h in man["history"]["loss"])
    from mllmrec.train.config import MergeConfig

    merge_run(MergeConfig(run=str(tmp_path / "run"), out=str(tmp_path / "merged")))
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "merged" / "lm")
    assert not any("lora" in n for n, _ in plain.named_parameters())


@pytest.mark.slow
def test_two_processes_see_the_whole_batch_as_negatives(synthetic_pairs, tiny_qwen2_dir, tmp_path):
    """accelerate launch with 2 CPU processes (3 pairs each) trains the same weights as one process
    with all 6 pairs: representations are gathered, so the loss is the same global loss."""
    from safetensors.torch import load_file

    items, pairs = synthetic_pairs
    args = [
        "--catalog",
        str(items),
        "--model",
        str(tiny_qwen2_dir),
        "--batch-pairs",
        "6",
        "--steps",
        "2",
        "--lr",
        "1e-2",
        "--no-progress",
        "--valid-every",
        "0",
        "--device",
        "cpu",
        "--max-valid-queries",
        "8",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    one = subprocess.run(
        [sys.executable, "-m", "mllmrec.cli", "train", str(pairs), "--out", str(tmp_path / "one"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run(
        accelerate_launch("train", str(pairs), "--out", str(tmp_path / "two"), *args),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    man = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert man["processes"] == 2 and man["status"] == "complete"
    a = load_file(str(tmp_path / "one" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "two" / "adapter" / "adapter_model.safetensors"))
    moved = max(float(v.abs().max()) for k, v in a.items() if "lora_B" in k)
    assert moved > 1e-3
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-5, msg=k)


def test_merge_never_takes_trust_remote_code_from_the_runs_manifest(tmp_path, monkeypatch):
    """A run folder may come from anyone: its manifest must not turn on remote code (issue 12)."""
    import mllmrec.backbone.load as load
    import mllmrec.train.merge as merge
    from mllmrec.train.config import MergeConfig

    seen = []

    class Stop(Exception):
        pass

    def fake_open(spec, *a, **kw):
        seen.append(spec.trust_remote_code)
        raise Stop

    manifest = {"config": {"model": "org/model", "trust_remote_code": True}}
    monkeypatch.setattr(merge, "read_run_manifest", lambda run: manifest)
    monkeypatch.setattr(load, "open_encoder", fake_open)
    for flag in (False, True):
        with pytest.raises(Stop):
            merge.merge_run(
                MergeConfig(run=str(tmp_path / "run"), out=str(tmp_path / "m"), trust_remote_code=flag)
            )
    assert seen == [False, True]
