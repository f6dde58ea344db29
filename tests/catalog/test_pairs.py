"""Co-interaction pairs: hand-computed scores, modes, filters, the query split, CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mllmrec.catalog.config import PairsConfig
from mllmrec.catalog.interactions import Interactions
from mllmrec.catalog.pairs import PairsError, mine_pairs
from mllmrec.cli import main
from mllmrec.config import ConfigError

# u1: A B C (N=3), u2: A B (N=2), u3: B A D D (N=3: D counts once)
LOG = [
    ("u1", "A", 1),
    ("u1", "B", 2),
    ("u1", "C", 100),
    ("u2", "A", 1),
    ("u2", "B", 5),
    ("u3", "B", 1),
    ("u3", "A", 2),
    ("u3", "D", 3),
    ("u3", "D", 4),
]


def _inter(log=LOG, timed: bool = True) -> Interactions:
    users, items, times = zip(*log, strict=True)
    return Interactions(list(users), list(items), list(times) if timed else None)


def _cfg(**kw) -> PairsConfig:
    kw.setdefault("top_t", 100)
    return PairsConfig(interactions="-", out="-", **kw)


def _scores(inter: Interactions, **kw) -> dict[tuple[str, str], float]:
    pairs, _ = mine_pairs(inter, _cfg(**kw))
    return {(q, p): s for q, p, s in zip(pairs.query_id, pairs.partner_id, pairs.score, strict=True)}


def test_timed_later_hand_computed_with_1_over_n_weighting_and_order():
    s = _scores(_inter())
    third = 1 / 3
    assert s == pytest.approx(
        {
            ("A", "B"): third + 1 / 2,
            ("A", "C"): third,
            ("B", "C"): third,
            ("B", "A"): third,
            ("B", "D"): third,
            ("A", "D"): third,
        }
    )
    assert ("C", "A") not in s and ("D", "A") not in s  # order: A then B, never B then A


def test_no_timestamps_is_symmetric():
    s = _scores(_inter(timed=False))
    assert s[("A", "B")] == pytest.approx(1 / 3 + 1 / 2 + 1 / 3)
    assert all(s[(b, a)] == pytest.approx(v) for (a, b), v in s.items())
    assert _scores(_inter(), order="none") == s  # --order none ignores the times
    assert not any(a == b for a, b in s)


def test_window():
    assert _scores(_inter(), window_seconds=10) == pytest.approx(
        {("A", "B"): 1 / 3 + 1 / 2, ("B", "A"): 1 / 3, ("B", "D"): 1 / 3, ("A", "D"): 1 / 3}
    )
    s3 = _scores(_inter(), window_seconds=3)  # u2's A->B is 4 s apart
    assert s3[("A", "B")] == pytest.approx(1 / 3)


def test_session_differs_from_window():
    log = [("u", "X", 0), ("u", "Y", 8), ("u", "Z", 16), ("u", "W", 100)]
    assert set(_scores(_inter(log), session_gap=10)) == {("X", "Y"), ("X", "Z"), ("Y", "Z")}
    assert set(_scores(_inter(log), window_seconds=10)) == {("X", "Y"), ("Y", "Z")}


def test_max_lag_bounds_the_look_ahead():
    pairs, stats = mine_pairs(_inter(), _cfg(max_lag=1))
    assert set(zip(pairs.query_id, pairs.partner_id, strict=True)) == {
        ("A", "B"),
        ("B", "C"),
        ("B", "A"),
        ("A", "D"),
    }
    assert stats["reachable_beyond_max_lag"] > 0


def test_thresholds_and_top_t_with_ties_by_partner_id():
    inter = _inter(timed=False)  # A: B 7/6, C 1/3, D 1/3
    s = _scores(inter, top_t=2)
    assert {p for q, p in s if q == "A"} == {"B", "C"}  # C and D tie: C wins by id
    s = _scores(inter, max_score=1.0)
    assert {p for q, p in s if q == "A"} == {"C", "D"}
    s = _scores(inter, min_score=0.5)
    assert {p for q, p in s if q == "A"} == {"B"}
    _, stats = mine_pairs(inter, _cfg(min_score=0.5, max_score=1.0))
    assert stats["thresholds"]["min_score"] == 0.5 and stats["dropped_above_max"] == 2


def _random_log(seed: int = 0, n: int = 3000) -> Interactions:
    rng = np.random.default_rng(seed)
    users = [f"u{x}" for x in rng.integers(0, 200, n)]
    items = [f"i{x:03d}" for x in rng.zipf(1.5, n) % 300]
    return Interactions(users, items, rng.uniform(0, 1e5, n))


def test_no_query_in_two_parts_and_determinism_by_seed():
    inter = _random_log()
    a, stats = mine_pairs(inter, _cfg(window_seconds=5000, seed=1))
    b, _ = mine_pairs(inter, _cfg(window_seconds=5000, seed=1))
    c, _ = mine_pairs(inter, _cfg(window_seconds=5000, seed=2))
    sets = {p: set(a.query_id[a.part == p]) for p in ("train", "valid", "test")}
    assert all(sets.values())
    assert (
        not (sets["train"] & sets["valid"])
        and not (sets["train"] & sets["test"])
        and not (sets["valid"] & sets["test"])
    )
    assert all(
        np.array_equal(getattr(a, f), getattr(b, f)) for f in ("query_id", "partner_id", "score", "part")
    )
    assert not np.array_equal(a.part, c.part)
    assert sum(v["pairs"] for v in stats["per_part"].values()) == len(a)
    # No relation in two parts: B->A of a test pair A->B is not kept for training (or validation).
    rel = {
        p: {frozenset(x) for x in zip(a.query_id[a.part == p], a.partner_id[a.part == p], strict=True)}
        for p in ("train", "valid", "test")
    }
    assert (
        not (rel["train"] & rel["valid"])
        and not (rel["train"] & rel["test"])
        and not (rel["valid"] & rel["test"])
    )
    assert stats["dropped_cross_part"]["train"] > 0  # the log is dense enough for reverse pairs to occur


def test_unknown_ids_reported_and_excluded():
    pairs, stats = mine_pairs(_inter(), _cfg(), known_items={"A", "B", "C"})
    assert stats["unknown_items"] == {"ids": 1, "rows": 2, "examples": ["D"]}
    assert "D" not in set(pairs.query_id) | set(pairs.partner_id)
    with pytest.raises(PairsError):
        mine_pairs(_inter(), _cfg(), known_items={"Q"})


def test_config_checks():
    with pytest.raises(ConfigError):
        _cfg(window_seconds=10, session_gap=5)
    with pytest.raises(ConfigError):
        _cfg(valid_share=0.6, test_share=0.5)


def _write_csv(path: Path, log) -> Path:
    path.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in log))
    return path


def test_cli_fails_when_nothing_was_mined_and_refuses_to_clobber_a_pairs_folder(tmp_path: Path, capsys):
    log = _write_csv(tmp_path / "log.csv", LOG)
    assert main(["pairs", str(log), "--out", str(tmp_path / "p"), "--min-score", "1000"]) == 1
    assert "no pair was mined" in capsys.readouterr().err
    assert (
        main(["pairs", str(log), "--out", str(tmp_path / "p")]) == 2
    )  # an earlier pairs folder: needs --overwrite
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["pairs", str(log), "--out", str(tmp_path / "p"), "--overwrite"]) == 0


def test_cli_end_to_end(tmp_path: Path, capsys):
    log = _write_csv(tmp_path / "log.csv", LOG)
    (tmp_path / "cat.csv").write_text("id,title\nA,a\nB,b\nC,c\n")
    out = tmp_path / "pairs"
    rc = main(
        [
            "pairs",
            str(log),
            "--out",
            str(out),
            "--catalog",
            str(tmp_path / "cat.csv"),
            "--window-seconds",
            "10",
            "--seed",
            "3",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "not in the catalogue" in printed and "D" in printed and "window" in printed
    table = pq.read_table(out / "pairs.parquet").to_pydict()
    assert table.keys() == {"query_id", "partner_id", "score", "part"}
    got = dict(zip(zip(table["query_id"], table["partner_id"], strict=True), table["score"], strict=True))
    # D dropped before N_u: u3 has N=2 now
    assert got == pytest.approx({("A", "B"): 1 / 3 + 1 / 2, ("B", "A"): 1 / 2})
    m = json.loads((out / "manifest.json").read_text())
    assert m["stage"] == "pairs" and m["config"]["window_seconds"] == 10
    assert len(m["inputs"]["interactions"]["sha256"]) == 64 and m["unknown_items"]["examples"] == ["D"]
    assert m["thresholds"]["window_seconds"] == 10 and "seconds" in m
    assert sum(p["pairs"] for p in m["per_part"].values()) == len(table["score"])


def test_split_aligned_uses_training_interactions_only(tmp_path: Path):
    from mllmrec.catalog.saved_splits import save_split
    from mllmrec.catalog.splits import Split

    log = _write_csv(tmp_path / "log.csv", LOG)
    users, items = ["u1", "u2", "u3"], ["A", "B", "C", "D"]
    pair = {(u, i): (users.index(u), items.index(i)) for u, i, _ in LOG}
    test = [pair[("u1", "C")]]  # C reaches pairs only through this test interaction
    train = [v for k, v in pair.items() if k != ("u1", "C")]
    save_split(
        Split(
            user_ids=users, item_ids=items, train=np.array(train), valid=np.zeros((0, 2)), test=np.array(test)
        ),
        tmp_path / "split",
    )
    out = tmp_path / "pairs"
    assert (
        main(["pairs", str(log), "--out", str(out), "--interactions-train-only", str(tmp_path / "split")])
        == 0
    )
    t = pq.read_table(out / "pairs.parquet").to_pydict()
    assert "C" not in set(t["query_id"]) | set(t["partner_id"])
    got = dict(zip(zip(t["query_id"], t["partner_id"], strict=True), t["score"], strict=True))
    assert got[("A", "B")] == pytest.approx(1 / 2 + 1 / 2)  # u1 has N=2 without its test item
    assert json.loads((out / "manifest.json").read_text())["inputs"]["split"]["rows_not_in_train"] == 1


def test_chunked_timed_mode_matches_one_chunk(monkeypatch):
    import mllmrec.catalog.pairs as P

    inter = _random_log(seed=4, n=2000)
    whole, _ = mine_pairs(inter, _cfg(session_gap=3000))
    monkeypatch.setattr(P, "CHUNK_EVENTS", 97)  # boundaries fall inside users, including the last one
    chunked, _ = mine_pairs(inter, _cfg(session_gap=3000))
    assert np.array_equal(whole.query_id, chunked.query_id) and np.array_equal(
        whole.partner_id, chunked.partner_id
    )
    assert np.allclose(whole.score, chunked.score)
