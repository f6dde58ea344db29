"""eval/office_relations.py on a six-item Office in miniature whose answers are known by hand:
queries come from the right part and relation, the query never counts as its own neighbour,
planted neighbours score 1 and anti-planted ones 0, popularity counts training interactions only."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "eval"))

import office_relations as rel  # noqa: E402

ITEMS = [f"a{i}" for i in range(6)]  # MMRec itemID i = ASIN a{i}; pairs (a0 a1) (a2 a3) (a4 a5)
RELATIONS = [  # directed, as in the metadata; zz is not in the catalogue and must be ignored
    ("a0", "a1", "also_bought"),
    ("a1", "a0", "also_viewed"),
    ("a2", "a3", "also_bought"),
    ("a4", "a5", "also_viewed"),
    ("a4", "zz", "also_bought"),
]
# (user, itemID, x_label): training makes a5 the most popular item, then a3, then a1; the test part
# repeats a0 many times, which a popularity floor must not see.
SPLIT = (
    [(0, 5, 0), (1, 5, 0), (2, 5, 0), (0, 3, 0), (1, 3, 0), (0, 1, 0)]
    + [(u, 0, 2) for u in range(6)]
    + [(0, 2, 2), (1, 4, 2), (2, 1, 1), (3, 3, 1)]
)


def _office(root: Path) -> Path:
    (root / "mmrec").mkdir(parents=True)
    (root / "items.jsonl").write_text("".join(json.dumps({"id": i, "text": i}) + "\n" for i in ITEMS))
    with open(root / "relations.csv", "w", newline="") as f:
        csv.writer(f).writerows([("item_id", "other_item_id", "relation"), *RELATIONS])
    with open(root / "mmrec" / "i_id_mapping.csv", "w", newline="") as f:
        csv.writer(f).writerows([("orig_item_id", "itemID"), *((a, n) for n, a in enumerate(ITEMS))])
    with open(root / "mmrec" / "u_id_mapping.csv", "w", newline="") as f:
        csv.writer(f).writerows([("orig_user_id", "userID"), *((f"u{n}", n) for n in range(6))])
    lines = ["userID\titemID\trating\ttimestamp\tx_label"]
    lines += [f"{u}\t{i}\t1\t{1000 + n}\t{x}" for n, (u, i, x) in enumerate(SPLIT)]
    (root / "mmrec" / "office.inter").write_text("\n".join(lines) + "\n")
    return root


def test_recall_is_the_share_of_partners_in_top_k_and_skips_the_query():
    # Query row 0 scores itself highest; its partners are rows 2 and 4, ranked 2nd and 4th among
    # the other items: top-1 holds neither, top-2 one of two, top-4 both.
    scores = np.array([[9.0, 5.0, 4.0, 3.0, 2.0]])
    proto = rel.Protocol(np.array([0]), [np.array([2, 4])])
    assert rel.recall_at_k(scores, proto, (1, 2, 4)) == {"recall@1": 0.0, "recall@2": 0.5, "recall@4": 1.0}
    # Averaged over queries, not over partners: a second query with one partner found at rank 1.
    two = rel.Protocol(np.array([0, 1]), [np.array([2, 4]), np.array([0])])
    out = rel.recall_at_k(np.array([[9.0, 5.0, 4.0, 3.0, 2.0], [7.0, 8.0, 1.0, 1.0, 1.0]]), two, (2,))
    assert out == {"recall@2": 0.75}


def test_planted_anti_planted_and_popularity_on_a_tiny_office(tmp_path):
    data = _office(tmp_path / "office")
    group = np.repeat(np.eye(3), 2, axis=0)  # [6, 3] rows 2g and 2g+1 share group g
    np.save(tmp_path / "planted.npy", group + 0.01 * np.arange(6)[:, None])
    anti = group * np.array([1.0, -1.0] * 3)[:, None]  # partners opposite (cosine -1), others 0
    np.save(tmp_path / "anti.npy", anti)
    out = tmp_path / "out"
    argv = ["--data", str(data), "--ks", "1", "2", "--out", str(out)]
    argv += ["--input", f"planted={tmp_path / 'planted.npy'}", f"anti={tmp_path / 'anti.npy'}"]
    assert rel.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    # test queries: a0 a2 a4 (both), a0 a2 (bought; a4's is outside the catalogue), a4 (viewed);
    # valid: a1 only (a3 has no partner of its own: relations are directed).
    proto = res["protocol"]
    assert proto["test"] == {"both": 3, "also_bought": 2, "also_viewed": 1}
    assert proto["valid"] == {"both": 1, "also_bought": 0, "also_viewed": 1}
    assert proto["valid_test_overlap"] == 0
    r = res["results"]
    for part, rels in (("test", rel.RELATIONS), ("valid", ("both", "also_viewed"))):
        for name in rels:
            assert r["planted"][part][name]["recall@1"] == 1.0, (part, name)
            assert r["anti"][part][name]["recall@2"] == 0.0, (part, name)
    assert math.isnan(r["planted"]["valid"]["also_bought"]["recall@1"])
    # Popularity from training only ranks a5 > a3 > a1 > rest: only a4's partner (a5) is a top-1 hit.
    # Counting the test part too would put a0 first and give 0.
    pop = r["popularity (floor, training interactions)"]["test"]["both"]
    assert pop["recall@1"] == 1 / 3
    assert "| planted | 1.0000 |" in (out / "README.md").read_text()


def test_train_log_holds_the_training_part_only_with_asins_and_times(tmp_path):
    data = _office(tmp_path / "office")
    log = tmp_path / "train.csv"
    assert rel.main(["--data", str(data), "--write-train-log", str(log)]) == 0
    with open(log) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {r["item_id"] for r in rows} == {"a1", "a3", "a5"}
    assert rows[0] == {"user_id": "u0", "item_id": "a5", "timestamp": "1000"}
