"""`mllmrec export --format mmrec`, checked against the rules of MMRec's loader.

MMRec (enoche/MMRec) reads `<dataset>.inter` tab-separated with the columns userID, itemID and
x_label (`RecDataset.load_inter_graph`), sets item_num = max(itemID) + 1, and loads image_feat.npy /
text_feat.npy with np.load, using row i for item i (`GeneralRecommender.__init__`).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mllmrec.datasets.synthetic import make_synthetic
from mllmrec.features import export as E
from mllmrec.features.config import ExportConfig
from mllmrec.features.exporters.mmrec import MmrecError
from mllmrec.features.provider import FeatureProvider
from mllmrec.testing.stores import write_array_store


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A synthetic catalogue + log and a store over its items (two channels, random vectors)."""
    from mllmrec.datasets.config import SyntheticConfig

    root = tmp_path_factory.mktemp("mmrec")
    data = make_synthetic(SyntheticConfig(out=str(root / "syn"), n_items=60, n_users=40, image_size=16))
    ids = [json.loads(line)["id"] for line in data.items.read_text().splitlines()]
    rng = np.random.default_rng(1)
    vecs = {
        "mm": rng.normal(size=(60, 8)).astype(np.float32),
        "visual": rng.normal(size=(60, 8)).astype(np.float32),
    }
    return data, write_array_store(root / "store", ids, vecs), vecs, ids


def mmrec_load(folder, dataset):
    """What MMRec's loader does with a dataset folder: (inter rows, item_num, user_num, {file: array})."""
    with open(folder / f"{dataset}.inter", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        assert {"userID", "itemID", "x_label"} <= set(reader.fieldnames), (
            "MMRec: 'lost some required columns'"
        )
        rows = [(int(r["userID"]), int(r["itemID"]), int(r["x_label"])) for r in reader]
    item_num = max(i for _, i, _ in rows) + 1
    user_num = max(u for u, _, _ in rows) + 1
    feats = {
        n: np.load(folder / n, allow_pickle=True)
        for n in ("image_feat.npy", "text_feat.npy")
        if (folder / n).is_file()
    }
    assert feats, "MMRec: 'Features all NONE'"
    return rows, item_num, user_num, feats


def _id_map(folder):
    with open(folder / "i_id_mapping.tsv", newline="") as f:
        return {int(r["itemID"]): r["item_id"] for r in csv.DictReader(f, delimiter="\t")}


def test_raw_log_is_remapped_into_mmrecs_layout(tmp_path, synthetic):
    data, src, vecs, ids = synthetic
    out = tmp_path / "data" / "syn"
    m = E.run_export(
        ExportConfig(source=str(src), format="mmrec", out=str(out), interactions=str(data.interactions))
    )
    rows, item_num, user_num, feats = mmrec_load(out, "syn")
    assert {lab for _, _, lab in rows} == {0, 1, 2}
    assert sorted({i for _, i, _ in rows}) == list(range(item_num))  # ids 0..n-1, each used
    assert sorted({u for u, _, _ in rows}) == list(range(user_num))
    for name, channel in (("image_feat.npy", "visual"), ("text_feat.npy", "mm")):
        assert feats[name].shape == (item_num, 8) and feats[name].dtype == np.float32
        raw = _id_map(out)
        want = vecs[channel][[ids.index(raw[k]) for k in range(item_num)]]
        np.testing.assert_array_equal(feats[name], want)
    assert m["mmrec"]["mode"] == "remapped" and m["rows"] == item_num
    assert m["mmrec"]["items"] + m["mmrec"]["items_dropped_by_split"] == len({*ids} & _log_items(data))
    # the same split protocol as our evaluation: the written x_label is MMRec's random 8:1:1 for the seed
    from mllmrec.catalog.interactions import read_interactions
    from mllmrec.catalog.splits import random_split

    split = random_split(read_interactions(data.interactions), seed=0)
    assert sum(1 for *_, lab in rows if lab == 0) == len(split.train)


def _log_items(data):
    with open(data.interactions, newline="") as f:
        return {r["item_id"] for r in csv.DictReader(f)}


def test_existing_mmrec_dataset_with_scrambled_id_map(tmp_path, synthetic):
    _, src, vecs, ids = synthetic
    folder = tmp_path / "baby"
    folder.mkdir()
    # An MMRec dataset: items 0..4, item 3 never interacted (MMRec still allocates its row).
    (folder / "baby.inter").write_text(
        "userID\titemID\trating\tx_label\n0\t0\t5\t0\n0\t4\t3\t0\n1\t2\t4\t1\n1\t1\t4\t2\n"
    )
    raw = ["i0009", "i0001", "i0033", "i0004", "i0050"]  # MMRec item k = raw[k]
    order = [3, 0, 4, 1, 2]  # the mapping file lists the items out of order
    (folder / "i_id_mapping.csv").write_text("asin\titemID\n" + "".join(f"{raw[k]}\t{k}\n" for k in order))
    (folder / "image_adj_10.pt").write_bytes(b"old graph")
    (folder / "mm_adj_freedomdsp_10_1.pt").write_bytes(b"old graph")
    (folder / "user_graph_dict.npy").write_bytes(b"not feature-derived")
    m = E.run_export(
        ExportConfig(
            source=str(src),
            format="mmrec",
            out=str(folder),
            interactions=str(folder / "baby.inter"),
            ids=str(folder / "i_id_mapping.csv"),
        )
    )
    rows, item_num, _, feats = mmrec_load(folder, "baby")
    assert item_num == 5 and feats["image_feat.npy"].shape == (5, 8)
    np.testing.assert_array_equal(feats["image_feat.npy"], vecs["visual"][[ids.index(r) for r in raw]])
    np.testing.assert_array_equal(feats["text_feat.npy"], vecs["mm"][[ids.index(r) for r in raw]])
    assert m["mmrec"]["item_ids_without_interactions"] == 1
    # stale feature-derived graph caches are deleted; other files are left alone
    assert m["stale_caches"] == {
        "action": "delete",
        "files": ["image_adj_10.pt", "mm_adj_freedomdsp_10_1.pt"],
    }
    assert sorted(p.name for p in folder.glob("*.pt")) == [] and (folder / "user_graph_dict.npy").is_file()
    assert not (folder / "i_id_mapping.tsv").exists()  # MMRec's own ids: no remapping written
    (folder / "image_adj_10.pt").write_bytes(b"old graph")
    m = E.run_export(
        ExportConfig(
            source=str(src),
            format="mmrec",
            out=str(folder),
            overwrite=True,
            stale_caches="warn",
            interactions=str(folder / "baby.inter"),
            ids=str(folder / "i_id_mapping.csv"),
        )
    )
    assert m["stale_caches"] == {"action": "warn", "files": ["image_adj_10.pt"]}
    assert (folder / "image_adj_10.pt").is_file()


@pytest.mark.parametrize("id_column", [None, "raw_item_id"])
def test_three_column_id_map_of_mmrec_preprocessing(tmp_path, synthetic, id_column):
    _, src, vecs, ids = synthetic
    folder = tmp_path / "baby"
    folder.mkdir()
    (folder / "baby.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n0\t2\t0\n1\t1\t2\n")
    raw = ["i0009", "i0001", "i0033"]
    (folder / "i_id_mapping.csv").write_text(
        "orig_item_id,itemID,raw_item_id\n" + "".join(f"B{k:04d},{k},{r}\n" for k, r in enumerate(raw))
    )
    m = E.run_export(
        ExportConfig(
            source=str(src),
            format="mmrec",
            out=str(folder),
            id_column=id_column,
            interactions=str(folder / "baby.inter"),
            ids=str(folder / "i_id_mapping.csv"),
        )
    )
    _, item_num, _, feats = mmrec_load(folder, "baby")
    assert item_num == 3 and m["files"]["text_feat.npy"]["shape"] == [3, 8]
    np.testing.assert_array_equal(feats["text_feat.npy"], vecs["mm"][[ids.index(r) for r in raw]])
    assert E.get_exporter("mmrec").read(folder, m)[0] == raw


def test_scrambled_interactions_give_the_same_per_item_features(tmp_path, synthetic):
    data, src, _, _ = synthetic
    lines = data.interactions.read_text().splitlines()
    body = lines[1:]
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text(
        "\n".join([lines[0], *[body[k] for k in np.random.default_rng(5).permutation(len(body))]]) + "\n"
    )
    per_item = []
    for name, log in (("a", data.interactions), ("b", shuffled)):
        out = tmp_path / name
        E.run_export(ExportConfig(source=str(src), format="mmrec", out=str(out), interactions=str(log)))
        feats = np.load(out / "text_feat.npy")
        per_item.append({raw: feats[k] for k, raw in _id_map(out).items()})
    assert per_item[0].keys() == per_item[1].keys()
    for raw, v in per_item[0].items():
        np.testing.assert_array_equal(per_item[1][raw], v)
    a, b = (json.loads((tmp_path / n / "manifest.json").read_text()) for n in "ab")
    assert a["files"]["text_feat.npy"]["sha256"] != b["files"]["text_feat.npy"]["sha256"]  # rows did move


def test_a_log_with_x_label_keeps_its_split(tmp_path, synthetic):
    _, src, _, _ = synthetic
    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id,x_label\nu1,i0001,0\nu1,i0002,2\nu2,i0002,0\nu2,i0003,1\n")
    E.run_export(
        ExportConfig(source=str(src), format="mmrec", out=str(tmp_path / "o"), interactions=str(log))
    )
    rows, item_num, _, _ = mmrec_load(tmp_path / "o", "o")
    assert item_num == 3 and sorted(lab for *_, lab in rows) == [0, 0, 1, 2]


@pytest.mark.parametrize(
    "choice, files",
    [
        ("both", {"image_feat.npy", "text_feat.npy"}),
        ("image", {"image_feat.npy"}),
        ("text", {"text_feat.npy"}),
        ("auto", {"text_feat.npy"}),
    ],
)
def test_single_channel_store_fills_both_or_one(tmp_path, synthetic, choice, files):
    data, _, vecs, ids = synthetic
    src = write_array_store(tmp_path / "mm-only", ids, {"mm": vecs["mm"]})
    m = E.run_export(
        ExportConfig(
            source=str(src),
            format="mmrec",
            out=str(tmp_path / "o"),
            single_channel=choice,
            interactions=str(data.interactions),
        )
    )
    assert {p.name for p in (tmp_path / "o").glob("*_feat.npy")} == files
    assert set(m["channels"].values()) == {"mm"}


def _with_prompt(store, prompt: str | None = None, **manifest):
    """Give an array store the manifest entries an embed run writes (its prompt, notes, config)."""
    from mllmrec import artifacts
    from mllmrec.prompts import load_template

    m = artifacts.read_manifest(store)
    if prompt is not None:
        m["prompt"], m["config"] = load_template(prompt).identity(), {**m["config"], "prompt": prompt}
    artifacts.write_manifest(store, {**m, **manifest})
    return store


@pytest.mark.parametrize(
    "prompt, manifest, files, why",
    [
        ("text-only", {}, ["text_feat.npy"], "reads text only"),
        ("image-only", {}, ["image_feat.npy"], "reads the image only"),
        (
            "notellm2",
            {"notes": ["the backbone has no vision encoder: images were not used"]},
            ["text_feat.npy"],
            "no vision encoder",
        ),
    ],
)
def test_single_channel_default_fills_the_file_its_content_says(
    tmp_path, synthetic, capsys, prompt, manifest, files, why
):
    """A text-only store once went into both files by default, so MMRec also used the text vector
    as image features and a comparison with text-only baselines was no longer fair (issue 16.3)."""
    data, _, vecs, ids = synthetic
    src = _with_prompt(write_array_store(tmp_path / "mm-only", ids, {"mm": vecs["mm"]}), prompt, **manifest)
    cfg = ExportConfig(
        source=str(src), format="mmrec", out=str(tmp_path / "o"), interactions=str(data.interactions)
    )
    assert E.main(cfg, ["mllmrec", "export"]) == 0
    assert sorted(p.name for p in (tmp_path / "o").glob("*_feat.npy")) == files
    decision = json.loads((tmp_path / "o" / "manifest.json").read_text())["mmrec"]["single_channel"]
    assert decision["files"] == files and why in decision["why"]
    printed = capsys.readouterr().out
    assert (
        f"single-channel source: channel mm -> {files[0]}" in printed and "--single-channel both" in printed
    )


def test_text_only_export_and_channel_errors(tmp_path, synthetic):
    data, src, _, _ = synthetic
    base = dict(source=str(src), format="mmrec", interactions=str(data.interactions))
    E.run_export(ExportConfig(**base, out=str(tmp_path / "t"), image_channel="none"))
    assert [p.name for p in (tmp_path / "t").glob("*_feat.npy")] == ["text_feat.npy"]
    with pytest.raises(MmrecError, match="both 'none'"):
        E.run_export(ExportConfig(**base, out=str(tmp_path / "x"), image_channel="none", text_channel="none"))
    with pytest.raises(MmrecError, match="none of the channels"):
        E.run_export(
            ExportConfig(**base, out=str(tmp_path / "x"), image_channel="fused", text_channel="text")
        )


@pytest.mark.parametrize(
    "inter, idmap, message",
    [
        (None, None, "needs --interactions"),
        ("userID\titemID\tx_label\n0\tabc\t0\n", None, "must be integers, found 'abc'"),
        ("userID\titemID\tx_label\n0\t-1\t0\n", None, "must be >= 0"),
        (
            "userID\titemID\tx_label\n0\t0\t0\n0\t3\t0\n",
            "asin\titemID\ni0001\t0\ni0002\t1\n",
            "itemIDs 2..3 have no raw id",
        ),
    ],
)
def test_mmrec_input_errors(tmp_path, synthetic, inter, idmap, message):
    _, src, _, _ = synthetic
    kw = {}
    if inter is not None:
        (tmp_path / "d.inter").write_text(inter)
        kw["interactions"] = str(tmp_path / "d.inter")
    if idmap is not None:
        (tmp_path / "map.tsv").write_text(idmap)
        kw["ids"] = str(tmp_path / "map.tsv")
    with pytest.raises(MmrecError, match=message):
        E.run_export(ExportConfig(source=str(src), format="mmrec", out=str(tmp_path / "o"), **kw))


def test_without_an_id_map_mmrec_ids_are_the_raw_ids(tmp_path):
    src = write_array_store(tmp_path / "s", ["0", "1", "2"], {"mm": np.eye(3, dtype=np.float32)})
    (tmp_path / "d.inter").write_text("userID\titemID\tx_label\n0\t2\t0\n1\t0\t0\n1\t1\t2\n")
    E.run_export(
        ExportConfig(
            source=str(src), format="mmrec", out=str(tmp_path), interactions=str(tmp_path / "d.inter")
        )
    )
    np.testing.assert_array_equal(np.load(tmp_path / "text_feat.npy"), np.eye(3))
    assert FeatureProvider.open(src).matrix(["2"]).tolist() == [[0, 0, 1]]
