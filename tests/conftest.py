"""Test-wide settings: never touch the network, keep CPU threads predictable."""

from __future__ import annotations

import os

# Must be set before transformers/huggingface_hub are imported anywhere in the test session:
# a hub lookup would otherwise hang ~22 s before failing on this offline machine.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402  (after the env settings above, which must come first)

import pytest  # noqa: E402


def _tiny_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Per-session cache for tiny models, so tests never write to ~/.cache."""
    return tmp_path_factory.getbasetemp() / "mllmrec-cache"


@pytest.fixture(scope="session")
def tiny_qwen_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Family name -> directory of a tiny random Qwen-VL model (model, tokenizer, image processor)."""
    from mllmrec.testing.qwen import FAMILIES, cached_tiny_qwen

    cache = _tiny_model_cache(tmp_path_factory)
    return {family: cached_tiny_qwen(family, cache_dir=cache) for family in FAMILIES}


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of the tiny Qwen2-VL model only; shares the cache with `tiny_qwen_dirs`."""
    from mllmrec.testing.qwen import cached_tiny_qwen

    return cached_tiny_qwen("qwen2-vl", cache_dir=_tiny_model_cache(tmp_path_factory))


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    """A 12-item catalogue (items.jsonl + images/) in a fresh folder."""
    from mllmrec.testing.catalog import write_small_catalog

    return write_small_catalog(tmp_path / "cat")
