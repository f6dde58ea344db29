"""The build-once cache behind the tiny models: one build, atomic publication, the race winner
kept, readable permissions, and a clear error for foreign content at a cache path."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mllmrec.errors import MllmrecError
from mllmrec.testing import composed
from mllmrec.testing.cache import COMPLETE_MARKER, CacheError, cached_build, is_complete


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write_model(d: Path, text: str = "weights") -> None:
    """A stand-in build with a nested folder and a private file, like save_pretrained writes."""
    (d / "sub").mkdir()
    (d / "sub" / "model.safetensors").write_text(text)
    (d / "sub" / "model.safetensors").chmod(0o600)
    (d / "config.json").write_text("{}")


def test_builds_once_and_publishes_a_readable_complete_directory(tmp_path: Path) -> None:
    calls: list[Path] = []

    def build(d: Path) -> None:
        assert d.is_dir() and not any(d.iterdir()) and d.parent == final.parent
        calls.append(d)
        _write_model(d)

    final = tmp_path / "cache" / "model-v1"
    assert cached_build(final, build) == final
    assert cached_build(final, build) == final
    assert len(calls) == 1 and calls[0] != final
    assert is_complete(final) and (final / COMPLETE_MARKER).is_file()
    assert sorted(p.name for p in final.parent.iterdir()) == [final.name]  # no temp dir left
    assert _mode(final) == _mode(final / "sub") == 0o755
    assert _mode(final / "sub" / "model.safetensors") == _mode(final / "config.json") == 0o644


def test_a_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    def build(d: Path) -> None:
        _write_model(d)
        raise RuntimeError("simulated crash")

    final = tmp_path / "model"
    with pytest.raises(RuntimeError, match="simulated crash"):
        cached_build(final, build)
    assert list(tmp_path.iterdir()) == []


def test_the_first_finished_build_wins_a_race(tmp_path: Path) -> None:
    final = tmp_path / "model"

    def slow_build(d: Path) -> None:
        cached_build(final, lambda other: _write_model(other, "winner"))  # another process finishes first
        _write_model(d, "loser")

    assert cached_build(final, slow_build) == final
    assert (final / "sub" / "model.safetensors").read_text() == "winner"
    assert sorted(p.name for p in tmp_path.iterdir()) == [final.name]


def test_an_empty_directory_is_replaced(tmp_path: Path) -> None:
    final = tmp_path / "model"
    final.mkdir()
    assert is_complete(cached_build(final, _write_model))


def test_foreign_content_is_refused_and_kept(tmp_path: Path) -> None:
    final = tmp_path / "model"
    final.mkdir()
    (final / "notes.txt").write_text("mine")
    with pytest.raises(CacheError, match="not a complete cached build; delete it") as err:
        cached_build(final, _write_model)
    assert isinstance(err.value, MllmrecError) and isinstance(err.value, RuntimeError)
    assert [p.name for p in final.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [final.name]


def test_cached_tiny_composed_uses_the_shared_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    real_build = composed.build_tiny_composed

    def counting_build(out_dir: Path, **kwargs: object) -> Path:
        calls.append(Path(out_dir))
        return real_build(out_dir, **kwargs)

    monkeypatch.setattr(composed, "build_tiny_composed", counting_build)
    first = composed.cached_tiny_composed(tmp_path, vision=None)
    second = composed.cached_tiny_composed(tmp_path, vision=None)
    assert first == second == tmp_path / f"tiny-composed-v{composed.CACHE_VERSION}-mlp-text-q4-s0"
    assert len(calls) == 1 and is_complete(first) and (first / "composed.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]
    assert _mode(first / "lm" / "model.safetensors") == 0o644


def test_unknown_tiny_vision_kind_is_a_deliberate_error() -> None:
    with pytest.raises(ValueError, match="unknown tiny vision kind") as err:
        composed.tiny_vision("resnet")  # type: ignore[arg-type]
    assert isinstance(err.value, MllmrecError)
