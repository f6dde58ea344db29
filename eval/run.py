"""Run a dataset x methods x seeds evaluation grid and write results.json, report.md and plots.

    python eval/run.py --config eval/configs/synthetic.yaml
    python eval/run.py --config eval/configs/ml100k.yaml --out eval/results/ml100k
    python eval/run.py --config eval/configs/train-ml100k.yaml   # item-to-item: pairs, train, zero-shot vs tuned

Every method sees the same split per seed (saved under the work folder, verified by fingerprint);
models are selected on validation only; test is evaluated once per (method, seed). Content
methods use vectors from `mllmrec embed`, computed once per dataset/model/prompt and reused.
A config with `protocol: {split: i2i}` is an item-to-item check of the train stage instead (eval/i2i.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import common  # noqa: E402
import coverage  # noqa: E402
import grid_config  # noqa: E402
import i2i  # noqa: E402
import methods as M  # noqa: E402
import report  # noqa: E402
from grid_config import (  # noqa: E402
    BPR_TRAIN_KEYS,
    DISTILL_METHODS,
    BprTrain,
    DatasetConfig,
    GridConfig,
    I2IConfig,
    MethodConfig,
    ProtocolConfig,
    search_points,
)
from stores import make_store, store_channels  # noqa: E402


def prepare_dataset(ds: DatasetConfig, work: Path) -> tuple[Path, Path]:
    """(catalogue, interactions) files for the config's dataset."""
    if ds.kind == "synthetic":
        from mllmrec.datasets.config import SyntheticConfig
        from mllmrec.datasets.synthetic import make_synthetic

        s = make_synthetic(SyntheticConfig(out=str(work / "data"), **ds.synthetic()))
        return s.items, s.interactions
    if ds.kind == "ml100k":
        from mllmrec.datasets.movielens import find_ml100k, prepare_ml100k

        p = prepare_ml100k(find_ml100k(ds.search), work / "data", text=ds.text)
        return p.catalog, p.interactions
    assert ds.catalog and ds.interactions  # DatasetConfig checks kind files has both
    return Path(ds.catalog), Path(ds.interactions)


def make_split(inter: Any, protocol: ProtocolConfig, seed: int, work: Path, data_key: str) -> Any:
    """The split for one seed, saved once and reloaded (fingerprint-checked) by later runs.

    The folder name carries a hash of the interaction log's content and the protocol, so changing
    either (another cold_share, k-core, dataset) makes a new split instead of reusing a stale one.
    """
    import hashlib

    from mllmrec.catalog import splits as P
    from mllmrec.catalog.saved_splits import load_split, save_split

    key = hashlib.sha256(
        json.dumps([data_key, dataclasses.asdict(protocol)], sort_keys=True).encode()
    ).hexdigest()[:12]
    where = work / "splits" / f"{protocol.split}-seed{seed}-{key}"
    if (where / "meta.json").is_file():
        return load_split(where)
    if protocol.kcore:
        inter = P.kcore(inter, protocol.kcore)
    options = (
        {"cold_share": protocol.cold_share} if "cold_share" in P.PROTOCOLS[protocol.split].options else {}
    )
    split = P.make_split(protocol.split, inter, seed, **options)
    save_split(split, where)
    return split


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--config", required=True, help="YAML config: dataset, protocol, seeds, methods (see eval/configs/)."
    )
    ap.add_argument("--out", default=None, help="Results folder (default: eval/results/<config name>).")
    ap.add_argument(
        "--work",
        default=None,
        help="Work folder for data, splits, models, stores (default: eval/work/<name>).",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="Override the config's seeds.")
    ap.add_argument("--methods", nargs="+", default=None, help="Run only these methods (by name).")
    ap.add_argument("--no-progress", action="store_true", help="No progress bars.")
    ap.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="RESULTS_DIR",
        help="Combine the results.json of runs of this config over different seeds (e.g. run in "
        "parallel with --seeds N) into one report in --out; runs nothing.",
    )
    args = ap.parse_args()
    if args.merge:
        return merge(args)

    import yaml

    cfg = grid_config.load(args.config)
    raw = yaml.safe_load(
        Path(args.config).read_text()
    )  # kept as written in results.json (--merge compares it)
    out = Path(args.out or f"eval/results/{cfg.name}")
    work = Path(args.work or f"eval/work/{cfg.name}")
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(cfg, I2IConfig):
        if args.seeds or args.methods:
            raise SystemExit("--seeds and --methods belong to the user-to-item grid, not an i2i config")
        catalog, log = prepare_dataset(cfg.dataset, work)
        res = i2i.run(cfg, raw, args.config, not args.no_progress, catalog, log, out, work)
        print(json.dumps({"test": res["test"]}, indent=2))
        print(
            f"wrote {out / 'results.json'} and {out / 'report.md'} in {res['runtime_seconds'] / 60:.1f} min"
        )
        return 0
    return run_grid(cfg, raw, args, out, work)


def features_for(
    spec: MethodConfig,
    catalog: Path,
    work: Path,
    item_ids: list[str],
    cache: dict[Any, Any],
    seconds: dict[str, float],
) -> tuple[dict[str, np.ndarray] | None, coverage.Coverage | None]:
    """({channel: [n_items, d]} for a method's `embed:` or `store:` entry in `item_ids` order, which
    of those items the store lacks: they get zero vectors); (None, None) for ID methods. The store is
    made once, only the row order follows the split."""
    if spec.embed is None and spec.store is None:
        return None, None
    key = (
        json.dumps(dataclasses.asdict(spec.embed), sort_keys=True) if spec.embed else spec.store,
        tuple(item_ids),
    )
    if key not in cache:
        store = make_store(spec.embed, catalog, work) if spec.embed else Path(spec.store or "")
        feats, seconds[spec.features] = store_channels(store, item_ids)
        cache[key] = feats, coverage.coverage(store, item_ids)
    return cache[key]


def run_grid(cfg: GridConfig, raw: dict[str, Any], args: argparse.Namespace, out: Path, work: Path) -> int:
    """The user-to-item grid: every method on the same split per seed, test evaluated once."""
    from mllmrec.catalog.interactions import read_interactions

    t_start = time.perf_counter()
    catalog, log = prepare_dataset(cfg.dataset, work)
    inter = read_interactions(log)
    data_key = common.file_sha256(log)
    seeds = args.seeds or list(cfg.seeds)
    specs = [m for m in cfg.methods if not args.methods or m.title in args.methods]
    runs, splits, feature_cache, embed_seconds = [], {}, {}, {}
    tuning: dict[str, dict[str, Any]] = {}
    for seed in seeds:
        split = make_split(inter, cfg.protocol, seed, work, data_key)
        splits[seed] = split.stats() | {
            "fingerprint": split.fingerprint(),
            "dropped": coverage.dropped(split, len(inter)),
        }
        # Every method's vectors first, so a store missing too many items stops the grid before any training.
        feats = {
            s.title: features_for(s, catalog, work, list(split.item_ids), feature_cache, embed_seconds)
            for s in specs
        }
        for spec in specs:
            if feats[spec.title][1] is not None:
                coverage.refuse_if_sparse(
                    feats[spec.title][1], cfg.max_missing_share, spec.title, spec.features
                )
        for spec in specs:
            vectors, cov = feats[spec.title]
            print(f"[seed {seed}] {spec.title}", flush=True)
            if cov is not None and cov.missing:
                print(
                    f"    {len(cov.missing)} of {cov.items} items have no vector (scored from zero vectors)"
                )
            if spec.title not in tuning:  # the first seed tunes (validation only); later seeds reuse
                tuning[spec.title] = tune(spec, split, vectors, seed, cfg, not args.no_progress)
            point = tuning[spec.title]["chosen"]
            r = tuning[spec.title].pop("run", None) or M.run(
                spec.with_point(point),
                split,
                vectors,
                seed,
                train_with(cfg.train, spec, point),
                list(cfg.ks),
                progress=not args.no_progress,
            )
            print(f"    test {report.headline(r.test, cfg.ks)}  ({r.seconds:.1f} s)", flush=True)
            runs.append(
                dataclasses.asdict(r)
                | {"features": spec.features}
                | ({"missing_vectors": cov.as_dict()} if cov is not None else {})
            )
    head = common.header("")
    results = {
        "config": raw,
        "config_file": args.config,
        "command": head["command"],
        "date": head["date"],
        "machine": head["machine"],
        "versions": common.versions(),
        "splits": {str(k): v for k, v in splits.items()},
        "runs": runs,
        "embedding_seconds": embed_seconds,
        "tuning": tuning,
        "seconds": time.perf_counter() - t_start,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    report.write(results, out)
    print(
        f"wrote {out / 'results.json'}, {out / 'report.md'} and plots in {time.perf_counter() - t_start:.0f} s"
    )
    return 0


def tune(
    spec: MethodConfig, split: Any, vectors: Any, seed: int, cfg: GridConfig, progress: bool
) -> dict[str, Any]:
    """Try the method's declared search points (at most cfg.search_budget, a seeded random sample
    when the space is larger) on this seed's split; choose by validation Recall@20. Test is computed
    by each run but never looked at here; the chosen point's run is kept for this seed's results."""
    if not spec.search:
        return {"chosen": {}, "budget": 0, "space": {}, "tried": [], "seconds": 0.0}
    points = search_points(spec.search)
    space_size = len(points)
    if cfg.search_budget is not None and space_size > cfg.search_budget:
        pick = np.random.default_rng(cfg.search_seed).choice(space_size, cfg.search_budget, replace=False)
        points = [points[i] for i in sorted(pick)]
    t0, tried, best = time.perf_counter(), [], None
    for point in points:
        r = M.run(
            spec.with_point(point), split, vectors, seed, train_with(cfg.train, spec, point), list(cfg.ks),
            progress=progress,
        )  # fmt: skip
        valid = r.valid.get("recall@20", float("nan"))
        score = valid if valid == valid else -1.0  # NaN (no validation positives) never wins
        tried.append(
            {"config": point, "valid_recall@20": valid, "best_epoch": r.best_epoch, "seconds": r.seconds}
        )
        print(f"    search {point}: valid recall@20 {valid:.4f}", flush=True)
        if best is None or score > best[0]:
            best = (score, point, r)
    if best[0] < 0:
        raise SystemExit(f"{spec.title}: no search point has a validation Recall@20 to choose by")
    return {
        "space": spec.search,
        "space_size": space_size,
        "budget": len(points),
        "tried": tried,
        "chosen": best[1],
        "seed": seed,
        "seconds": time.perf_counter() - t0,
        "run": best[2],
    }


def train_with(train: BprTrain, spec: MethodConfig, point: dict[str, Any]) -> BprTrain:
    """The shared train settings with a search point's train keys (user-to-item methods)."""
    if spec.name in DISTILL_METHODS:
        return train
    return dataclasses.replace(train, **{k: v for k, v in point.items() if k in BPR_TRAIN_KEYS})


def merge(args: argparse.Namespace) -> int:
    """One results.json + report from runs of the same config over different seeds (run in
    parallel) or different `--methods` (a few methods re-run after a change): where two parts ran a
    method on the same seed, the later part's run is kept. Every part must come from --config
    unchanged apart from its method list, and every kept run's method must be the config's entry of
    that name; parts that tuned the same kept method must have chosen the same point."""
    import yaml

    cfg = yaml.safe_load(Path(args.config).read_text())

    def entries(config: dict[str, Any]) -> dict[str, Any]:
        return {m.get("label") or m["name"]: m for m in config.get("methods", [])}

    def rest(config: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in config.items() if k != "methods"}

    parts = [json.loads((Path(d) / "results.json").read_text()) for d in args.merge]
    wanted = entries(cfg)
    last = {(r["method"], r["seed"]): n for n, p in enumerate(parts) for r in p["runs"]}
    kept = [[r for r in p["runs"] if last[r["method"], r["seed"]] == n] for n, p in enumerate(parts)]
    tuning: dict[str, Any] = {}
    for d, p, runs in zip(args.merge, parts, kept, strict=True):
        if rest(p["config"]) != rest(cfg):
            raise SystemExit(f"--merge: {d} comes from another config than --config")
        methods = {r["method"] for r in runs}
        changed = sorted(m for m in methods if entries(p["config"]).get(m) != wanted.get(m))
        if changed:
            raise SystemExit(f"--merge: in {d}, {', '.join(changed)} differ from --config's entries")
        for m, t in p.get("tuning", {}).items():
            if m not in methods:
                continue
            if m in tuning and t.get("chosen") != tuning[m].get("chosen"):
                raise SystemExit(f"--merge: the runs chose different search points for {m}")
            tuning.setdefault(m, t)
    out = Path(args.out or f"eval/results/{cfg['name']}")
    out.mkdir(parents=True, exist_ok=True)
    order = list(wanted)  # the config's method order, then seeds
    results = {
        **parts[0],
        "config": cfg,
        "tuning": tuning,
        "command": " ; ".join(p["command"] for p in parts) + " ; " + common.command(),
        "splits": {k: v for p in parts for k, v in p["splits"].items()},
        "runs": sorted(
            (r for runs in kept for r in runs), key=lambda r: (r["seed"], order.index(r["method"]))
        ),
        "embedding_seconds": {k: v for p in parts for k, v in p["embedding_seconds"].items()},
        "seconds": sum(p["seconds"] for p in parts),
        "merged_from": [str(d) for d in args.merge],
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    report.write(results, out)
    print(f"merged {len(parts)} runs ({len(results['runs'])} method runs) into {out}")
    return 0


if __name__ == "__main__":
    from mllmrec.errors import MllmrecError

    try:
        sys.exit(main())
    except MllmrecError as e:  # missing data, bad config, mismatched artefacts: a message, not a traceback
        print(f"eval/run.py: error: {e}", file=sys.stderr)
        sys.exit(2)
