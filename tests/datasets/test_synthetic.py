"""The synthetic generator: deterministic files, a sound catalogue, and the image/text split that
the visual-neglect evaluation relies on (image attributes never in the text, preferences of both
kinds visible in the interactions)."""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mllmrec.config import ConfigError
from mllmrec.datasets import SyntheticSummary, make_synthetic
from mllmrec.datasets import synthetic as syn
from mllmrec.datasets.config import SyntheticConfig

SMALL = {"n_items": 60, "n_users": 40, "interactions_per_user": 10, "image_size": 32}


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _read_interactions(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSummary:
    return make_synthetic(SyntheticConfig(out=str(tmp_path_factory.mktemp("syn") / "cat"), **SMALL))


def test_same_config_same_bytes_and_other_seed_differs(tmp_path: Path, small: SyntheticSummary) -> None:
    again = make_synthetic(SyntheticConfig(out=str(tmp_path / "again"), **SMALL))
    assert _tree_bytes(again.out) == _tree_bytes(small.out)
    other = make_synthetic(SyntheticConfig(out=str(tmp_path / "other"), **SMALL, seed=1))
    for name in ("items.jsonl", "attributes.jsonl", "users.jsonl", "interactions.csv"):
        assert (other.out / name).read_bytes() != (small.out / name).read_bytes(), name


def test_layout_counts_and_meta(small: SyntheticSummary) -> None:
    meta = json.loads(small.meta.read_text(encoding="utf-8"))
    assert meta["generator"] == syn.GENERATOR and meta["generator_version"] == syn.GENERATOR_VERSION
    assert meta["config"] == {**SMALL, "seed": 0}
    assert meta["counts"] == {"items": 60, "users": 40, "interactions": small.n_interactions}
    assert meta["attributes"]["image_only"] == ["color", "shape"]
    assert meta["attributes"]["text_only"] == ["category", "material"]
    for values in meta["attributes"]["values"].values():
        assert 6 <= len(values) <= 8
    header = small.interactions.read_text(encoding="utf-8").splitlines()[0]
    assert header == "user_id,item_id,timestamp,rating"


def test_items_have_unique_ids_and_images_of_the_right_size(small: SyntheticSummary) -> None:
    items = _read_jsonl(small.items)
    ids = [item["id"] for item in items]
    assert len(ids) == len(set(ids)) == 60
    assert all(isinstance(i, str) and re.fullmatch(r"i\d{4}", i) for i in ids)
    for item in items:
        assert set(item) == {"id", "title", "description", "image"}
        with Image.open(small.out / item["image"]) as im:
            assert im.size == (32, 32) and im.mode == "RGB"
    assert sorted(p.name for p in small.images.iterdir()) == sorted(f"{i}.png" for i in ids)


def test_attributes_ground_truth_matches_items(small: SyntheticSummary) -> None:
    attrs = _read_jsonl(small.attributes)
    assert [a["id"] for a in attrs] == [i["id"] for i in _read_jsonl(small.items)]
    for a in attrs:
        assert a["image_only"] == ["color", "shape"] and a["text_only"] == ["category", "material"]
        for name, values in syn.ATTRIBUTES.items():
            assert a[name] in values


def test_interactions_are_well_formed(small: SyntheticSummary) -> None:
    users = {u["id"] for u in _read_jsonl(small.users)}
    items = {i["id"] for i in _read_jsonl(small.items)}
    rows = _read_interactions(small.interactions)
    assert len(rows) == small.n_interactions
    times: dict[str, list[int]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    for r in rows:
        assert r["user_id"] in users and r["item_id"] in items
        assert 1 <= int(r["rating"]) <= 5
        assert (r["user_id"], r["item_id"]) not in seen  # without replacement
        seen.add((r["user_id"], r["item_id"]))
        times[r["user_id"]].append(int(r["timestamp"]))
    assert set(times) == users
    for ts in times.values():
        assert len(ts) >= syn.MIN_INTERACTIONS
        assert all(a < b for a, b in zip(ts, ts[1:], strict=False))
    assert len({len(ts) for ts in times.values()}) > 3  # the count per user varies


def test_text_never_names_an_image_attribute(small: SyntheticSummary) -> None:
    words = [*syn.IMAGE_ONLY["color"], *syn.IMAGE_ONLY["shape"]]
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, words)) + r")\b", re.IGNORECASE)
    for item in _read_jsonl(small.items):
        text = item["title"] + " " + item["description"]
        assert not pattern.search(text), text


def test_text_states_category_and_material(small: SyntheticSummary) -> None:
    attrs = {a["id"]: a for a in _read_jsonl(small.attributes)}
    titles = set()
    for item in _read_jsonl(small.items):
        text = (item["title"] + " " + item["description"]).lower()
        a = attrs[item["id"]]
        assert any(re.search(rf"\b{w}\b", text) for w in syn.CATEGORIES[a["category"]]), text
        assert any(re.search(rf"\b{w}\b", text) for w in syn.MATERIALS[a["material"]]), text
        titles.add(item["title"])
    assert len(titles) > 40  # templates and synonyms give variety


def _foreground_rgb(path: Path) -> np.ndarray:
    """Mean colour of the pixels that differ clearly from the (grey) corner background."""
    px = np.asarray(Image.open(path), dtype=float)  # [h, w, 3]
    background = np.median(np.concatenate([px[:3, :3], px[-3:, -3:]]).reshape(-1, 3), axis=0)
    mask = np.linalg.norm(px - background, axis=-1) > 60  # [h, w]
    assert mask.mean() > 0.05, f"{path.name}: shape not visible"
    return px[mask].mean(axis=0)


def test_images_show_their_colour(small: SyntheticSummary) -> None:
    attrs = {a["id"]: a for a in _read_jsonl(small.attributes)}
    palette = np.array(list(syn.COLORS.values()), dtype=float)
    names = list(syn.COLORS)
    means: dict[str, list[np.ndarray]] = defaultdict(list)
    for item in _read_jsonl(small.items):
        rgb = _foreground_rgb(small.out / item["image"])
        assert names[int(np.argmin(np.linalg.norm(palette - rgb, axis=1)))] == attrs[item["id"]]["color"]
        means[attrs[item["id"]]["color"]].append(rgb)
    red, blue = np.mean(means["red"], axis=0), np.mean(means["blue"], axis=0)
    assert red[0] > blue[0] + 100 and blue[2] > red[2] + 100


def test_images_vary_within_a_colour_and_shape(small: SyntheticSummary) -> None:
    groups: dict[tuple[str, str], set[bytes]] = defaultdict(set)
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for a in _read_jsonl(small.attributes):
        key = (a["color"], a["shape"])
        groups[key].add((small.images / f"{a['id']}.png").read_bytes())
        counts[key] += 1
    assert all(len(groups[k]) == counts[k] for k in groups)


def enrichment(summary: SyntheticSummary, attribute: str) -> tuple[float, float]:
    """(share of interactions whose item has the user's preferred value, the same share expected
    if users picked items uniformly at random)."""
    attrs = _read_jsonl(summary.attributes)
    prefs = {u["id"]: u["prefers"][attribute] for u in _read_jsonl(summary.users)}
    value_of = {a["id"]: a[attribute] for a in attrs}
    share = {v: sum(a[attribute] == v for a in attrs) / len(attrs) for v in set(value_of.values())}
    rows = _read_interactions(summary.interactions)
    observed = np.mean([value_of[r["item_id"]] == prefs[r["user_id"]] for r in rows])
    baseline = np.mean([share.get(prefs[r["user_id"]], 0.0) for r in rows])
    return float(observed), float(baseline)


@pytest.mark.parametrize("attribute", ["color", "category"])
def test_interactions_are_enriched_for_both_kinds_of_preference(
    small: SyntheticSummary, attribute: str
) -> None:
    observed, baseline = enrichment(small, attribute)
    assert observed > 2.0 * baseline, (attribute, observed, baseline)


def test_refuses_a_foreign_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ConfigError, match="not empty"):
        make_synthetic(SyntheticConfig(out=str(tmp_path), **SMALL))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_regenerates_over_its_own_output_without_stale_files(tmp_path: Path) -> None:
    make_synthetic(SyntheticConfig(out=str(tmp_path), **SMALL))
    s = make_synthetic(SyntheticConfig(out=str(tmp_path), **{**SMALL, "n_items": 30}))
    assert len(list(s.images.iterdir())) == len(_read_jsonl(s.items)) == 30
    assert json.loads(s.meta.read_text(encoding="utf-8"))["counts"]["items"] == 30


def test_crash_leaves_no_meta_and_can_be_regenerated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object) -> None:
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(syn, "_write_interactions", boom)
    with pytest.raises(RuntimeError, match="simulated crash"):
        make_synthetic(SyntheticConfig(out=str(tmp_path), **SMALL))
    assert (tmp_path / "items.jsonl").exists() and not (tmp_path / "meta.json").exists()
    monkeypatch.undo()
    assert make_synthetic(SyntheticConfig(out=str(tmp_path), **SMALL)).meta.exists()


def test_regeneration_clears_temporaries_of_a_killed_run(tmp_path: Path) -> None:
    make_synthetic(SyntheticConfig(out=str(tmp_path), **SMALL))
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]  # atomic writes clean up
    leftover = tmp_path / ".items.jsonl.tmp-999999"  # fsutil.temp_name of a run killed mid-write
    leftover.write_text("half an items file", encoding="utf-8")
    make_synthetic(SyntheticConfig(out=str(tmp_path), **SMALL))
    assert not leftover.exists()


def test_rejects_bad_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="n_items"):
        make_synthetic(SyntheticConfig(out=str(tmp_path), n_items=0))
    with pytest.raises(ConfigError, match="image_size"):
        make_synthetic(SyntheticConfig(out=str(tmp_path), image_size=8))


def test_run_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = syn.run(SyntheticConfig(out=str(tmp_path), **SMALL))
    printed = capsys.readouterr().out
    assert str(tmp_path) in printed and f"{s.n_interactions} interactions" in printed
