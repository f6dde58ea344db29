"""The item-to-item protocol of `eval/run.py` (`protocol: {split: i2i}`), run in-process.

1. `run_pairs` mines co-interaction pairs from the log and splits their query items train/valid/test;
2. a copy of the pairs without the test part goes to `run_train` (training never sees test);
3. each method's vectors for the items of the valid and test parts (zero-shot: `embed` with the
   model; tuned: `embed --adapter RUN`; an existing store; random or popularity floors) are scored
   with NoteLLM's Recall@k (`mllmrec.train.validate`: one ground-truth partner per query, candidates
   = the part's items except its queries). Valid and test numbers are both computed here from the
   stores, not read from the train run's history.

A training run is named by a hash of its config and pairs and reused (resumed) when it exists; its
valid numbers are kept in WORK/valid/, so the report lists every run trained on the same pairs
(hyperparameters are chosen on valid, never on test).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import common
import i2i_report
import numpy as np
from grid_config import I2IConfig, I2IMethod, shared_with_embed
from stores import make_store, resolve_model, store_channels

PARTS = ("valid", "test")


def mine(cfg: I2IConfig, log: Path, catalog: Path, work: Path) -> tuple[Path, Path, dict[str, Any]]:
    """(pairs folder, the same pairs without the test part, the pairs manifest)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from mllmrec.artifacts import WriterLock, prepare_dir, write_manifest
    from mllmrec.catalog.config import PairsConfig
    from mllmrec.catalog.pairs import run_pairs
    from mllmrec.config import from_dict
    from mllmrec.fsutil import atomic_path

    pairs, notest = work / "pairs", work / "pairs-notest"
    man = run_pairs(
        from_dict(
            PairsConfig,
            {
                **cfg.pairs.options,
                "interactions": str(log),
                "out": str(pairs),
                "catalog": str(catalog),
                "overwrite": True,
            },
        )
    )
    with WriterLock(notest, stage="pairs"):
        prepare_dir(notest, stage="pairs", mode="overwrite", resumable=False)
        table = pq.read_table(pairs / "pairs.parquet")
        with atomic_path(notest / "pairs.parquet") as tmp:
            pq.write_table(table.filter(pc.not_equal(table["part"], "test")), str(tmp))
        write_manifest(notest, {**man, "held_out": "the test part (eval/run.py i2i protocol)"}, stage="pairs")
    return pairs, notest, man


def train_config(cfg: I2IConfig, notest: Path, catalog: Path, work: Path, progress: bool) -> Any:
    """The TrainConfig of this config's run; its folder WORK/runs/<hash> is named by the settings and
    the pairs' content, so a changed setting trains anew and an unchanged one is reused."""
    from mllmrec.config import from_dict, to_dict
    from mllmrec.train.config import TrainConfig

    assert cfg.embed is not None
    shared = {k: v for k, v in (cfg.embed.options or {}).items() if k in shared_with_embed()}
    base = {
        "pairs": str(notest),
        "model": resolve_model(cfg.embed, work),
        "catalog": str(catalog),
        "prompt": cfg.embed.prompt,
        **shared,
        **cfg.train.options,
        "progress": progress,
    }
    key = {
        k: v
        for k, v in to_dict(from_dict(TrainConfig, base | {"out": "-"})).items()
        if k not in ("out", "progress", "pairs")
    } | {"pairs_sha256": common.file_sha256(notest / "pairs.parquet")}
    out = work / "runs" / hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return from_dict(TrainConfig, base | {"out": str(out), "resume": (out / "manifest.json").is_file()})


def protocols(pairs: Path, tcfg: Any) -> dict[str, Any]:
    """The valid and test protocols, built as the trainer builds them (valid: at most
    max_valid_queries queries, sampled with the training seed)."""
    from mllmrec.train.data import read_pairs
    from mllmrec.train.validate import i2i_protocol

    cols, _ = read_pairs(pairs)
    out = {}
    for part in PARTS:
        m = cols["part"] == part
        out[part] = i2i_protocol(
            cols["query_id"][m],
            cols["partner_id"][m],
            cols["score"][m],
            tcfg.max_valid_queries if part == "valid" else None,
            tcfg.seed,
        )
    return out


def part_catalog(catalog: Path, work: Path, part: str, ids: list[str]) -> Path:
    """The catalogue rows a part needs, so only those items are embedded. Written beside the
    catalogue (image paths are relative to it), hence only for a JSONL catalogue this run prepared
    (synthetic, ml100k); any other catalogue is embedded whole."""
    if catalog.suffix != ".jsonl" or not catalog.resolve().is_relative_to(work.resolve()):
        return catalog
    need = set(ids)
    out = catalog.with_name(
        f"{catalog.stem}-{part}-{hashlib.sha256(json.dumps(sorted(need)).encode()).hexdigest()[:10]}.jsonl"
    )
    if not out.is_file():
        with open(catalog, encoding="utf-8") as f:
            rows = [line for line in f if line.strip() and str(json.loads(line)["id"]) in need]
        out.write_text("".join(rows), encoding="utf-8")
    return out


def recall(proto: Any, vectors: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    """Recall@k for vectors [len(proto.items), d] in `proto.items` order."""
    from mllmrec.train.validate import evaluate_i2i

    return evaluate_i2i(proto, lambda ids: vectors, ks)


def popularity_recall(proto: Any, counts: Counter, ks: tuple[int, ...]) -> dict[str, float]:
    """Recall@k when every query ranks the candidates by interaction count (ties: lower index first,
    as `i2i_recall` breaks cosine ties)."""
    pop = np.array([counts.get(c, 0) for c in proto.candidates], np.float64)
    rank = np.empty(len(pop), np.int64)
    rank[np.lexsort((np.arange(len(pop)), -pop))] = np.arange(len(pop))
    r = rank[proto.truth]
    return {f"recall@{k}": float((r < k).mean()) for k in ks}


class Rows:
    """Scores each method on one part; stores are made once per (model, adapter, part)."""

    def __init__(self, cfg: I2IConfig, catalog: Path, work: Path, counts: Counter, run: Path | None) -> None:
        self.cfg, self.catalog, self.work, self.counts, self.run = cfg, catalog, work, counts, run
        self.embed_seconds: dict[str, float] = {}

    def vectors(self, m: I2IMethod, part: str, items: list[str]) -> np.ndarray:
        if m.name == "random":
            return np.random.default_rng(m.seed).standard_normal((len(items), m.dim)).astype(np.float32)
        if m.name == "store":
            return store_channels(m.store or "", items)[0]["mm"]
        assert self.cfg.embed is not None
        tuned = m.name == "tuned"
        name = f"tuned-{self.run.name}" if tuned and self.run else "zero-shot"
        cat = part_catalog(self.catalog, self.work, part, items)
        key = json.dumps([dataclasses.asdict(self.cfg.embed), str(cat)], sort_keys=True)
        out = self.work / "stores" / f"{name}-{part}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
        store = make_store(self.cfg.embed, cat, self.work, out=out, adapter=self.run if tuned else None)
        feats, self.embed_seconds[f"{m.name} {part}"] = store_channels(store, items)
        return feats[self.cfg.embed.channel]

    def score(self, m: I2IMethod, part: str, proto: Any) -> dict[str, float]:
        if m.name == "popularity":
            return popularity_recall(proto, self.counts, self.cfg.ks)
        return recall(proto, self.vectors(m, part, proto.items), self.cfg.ks)


def run(
    cfg: I2IConfig,
    raw: dict[str, Any],
    config_file: str,
    progress: bool,
    catalog: Path,
    log: Path,
    out: Path,
    work: Path,
) -> dict[str, Any]:
    """Mine, train, score every method on valid and test; writes results.json and report.md in `out`."""
    from mllmrec.catalog.interactions import read_interactions
    from mllmrec.train.trainer import run_train

    t0 = time.perf_counter()
    times: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        times[name] = round(now - since, 1)
        return now

    t = time.perf_counter()
    pairs, notest, pman = mine(cfg, log, catalog, work)
    tcfg = train_config(cfg, notest, catalog, work, progress) if cfg.embed else None
    protos = protocols(pairs, tcfg or _defaults())
    t = lap("pairs", t)
    tman, reused = None, False
    if tcfg is not None and any(m.name == "tuned" for m in cfg.methods):
        reused = tcfg.resume and _complete(Path(tcfg.out))
        tman = run_train(tcfg, command=["eval/run.py", "--config", config_file])
        t = lap("train", t)
    rows = Rows(
        cfg, catalog, work, Counter(read_interactions(log).items.tolist()), Path(tcfg.out) if tman else None
    )
    scores = {part: {m.title: rows.score(m, part, protos[part]) for m in cfg.methods} for part in PARTS}
    lap("embed_and_score", t)
    head = common.header("")
    res = {
        "config": raw,
        "config_file": config_file,
        **head,
        "versions": common.versions(),
        "runtime_seconds": round(time.perf_counter() - t0, 1),
        "stage_seconds": times,
        "embedding_seconds": rows.embed_seconds,
        "ks": list(cfg.ks),
        "methods": {m.title: m.name for m in cfg.methods},
        "pairs": {
            k: pman.get(k)
            for k in ("mode", "interactions", "users", "items", "pairs", "per_part", "thresholds")
        }
        | {"options": cfg.pairs.options},
        "protocol": {
            p: {
                "queries": len(protos[p].queries),
                "candidates": len(protos[p].candidates),
                "dropped_queries": protos[p].dropped_queries,
            }
            for p in PARTS
        },
        "model": dataclasses.asdict(cfg.embed) if cfg.embed else None,
        "train": _train_summary(tman, reused) if tman else None,
        **scores,
    }
    if tman:
        res["selection"] = _selection(work, tman, res)
    (out / "results.json").write_text(json.dumps(res, indent=2, default=float) + "\n")
    i2i_report.write(res, out / "report.md")
    return res


def _defaults() -> Any:
    from mllmrec.train.config import TrainConfig

    return TrainConfig(pairs="-", out="-", model="-", catalog="-")


def _complete(run: Path) -> bool:
    from mllmrec.artifacts import read_manifest

    return read_manifest(run, expect_stage="train").get("status") == "complete"


def _train_summary(man: dict[str, Any], reused: bool) -> dict[str, Any]:
    losses = man["history"]["loss"]
    return {
        "run": Path(man["config"]["out"]).name,
        "reused": reused,
        "seconds": man.get("seconds"),
        "steps": man["steps"],
        "config": man["config"],
        "train_pairs": man["data"]["train_pairs"],
        "trainable_parameters": man["trainable_parameters"],
        "first_loss": losses[0]["loss"] if losses else None,
        "final_loss": losses[-1]["loss"] if losses else None,
        "pairs_per_s": losses[-1].get("pairs_per_s") if losses else None,
        "adapter_sha256": man["adapter_sha256"],
        "pairs_sha256": man["identity"]["pairs"]["sha256"],
    }


def _selection(work: Path, man: dict[str, Any], res: dict[str, Any]) -> list[dict[str, Any]]:
    """Record this run's valid numbers in WORK/valid/<run>.json and return every record on the same
    pairs (the runs a hyperparameter choice could have looked at)."""
    tr, by_name = res["train"], {v: k for k, v in res["methods"].items()}
    rec = {
        "run": tr["run"],
        "pairs_sha256": tr["pairs_sha256"],
        "config": tr["config"],
        "steps": tr["steps"],
        "train_seconds": tr["seconds"],
        "valid_zero_shot": res["valid"].get(by_name.get("zero-shot", ""), {}),
        "valid_tuned": res["valid"].get(by_name.get("tuned", ""), {}),
    }
    where = work / "valid"
    where.mkdir(parents=True, exist_ok=True)
    (where / f"{tr['run']}.json").write_text(json.dumps(rec, indent=2, default=float) + "\n")
    recs = [json.loads(p.read_text()) for p in sorted(where.glob("*.json"))]
    return [r for r in recs if r["pairs_sha256"] == tr["pairs_sha256"]]
