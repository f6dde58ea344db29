"""Fair tuning on a fixed MMRec split: a declared grid per method, chosen on validation Recall@20
only, then the chosen config re-run for several seeds and tested once per seed.

    python eval/office_quality.py --method freedom --vectors /work/minilm_office.npy \\
        --grid content_in_score=0,1 --final-seeds 0 1 2 --out eval/results/office-quality

Data: an MMRec `.inter` with x_label 0/1/2 (train/valid/test); row i of --vectors is itemID i.
Methods: every recsys registry model (popularity, mf, lightgcn, vbpr, content-knn, freedom, ease),
teacher (the distillation teacher --teacher and the grid describe, with its EASE channel chosen on
validation; shares --teacher-cache with the students), student-mf / student-lightgcn (distilled
from the --teacher teacher; `kd=0` in the grid or --fixed trains the same student with BPR alone).
The grid is searched with --tune-seed (default 0); test is never read while tuning. Writes <out>/<label>.json and re-renders <out>/README.md from every
json there.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from mllmrec.recsys.registry import MODELS  # names only: imports no torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
KS = (10, 20)


def load_split(path: Path, n_items: int | None) -> tuple[Any, list[np.ndarray], list[np.ndarray]]:
    """(train CSR [U, I], valid positives per user, test positives per user) from x_label 0/1/2."""
    import scipy.sparse as sp

    d = np.loadtxt(path, skiprows=1, dtype=np.int64, usecols=(0, 1, 4))  # userID, itemID, x_label
    n_users, n_items = int(d[:, 0].max()) + 1, max(int(d[:, 1].max()) + 1, n_items or 0)

    def part(label: int) -> Any:
        m = d[:, 2] == label
        return sp.csr_matrix((np.ones(m.sum(), np.float32), (d[m, 0], d[m, 1])), shape=(n_users, n_items))

    def positives(mat: Any) -> list[np.ndarray]:
        mat.sort_indices()
        return np.split(mat.indices.astype(np.int64), mat.indptr[1:-1])

    return part(0), positives(part(1)), positives(part(2))


def parse_grid(spec: list[str]) -> list[dict[str, Any]]:
    """['lr=1e-3,5e-3', 'reg=0'] -> every combination as {name: value} (numbers parsed)."""

    def value(v: str) -> Any:
        for cast in (int, float):
            try:
                return cast(v)
            except ValueError:
                pass
        return v

    axes = [(k, [value(v) for v in vs.split(",")]) for k, vs in (s.split("=", 1) for s in spec)]
    return [
        dict(zip([a for a, _ in axes], combo, strict=True))
        for combo in itertools.product(*[v for _, v in axes])
    ]


def evaluate(model: Any, train: Any, positives: list[np.ndarray]) -> dict[str, float]:
    import torch

    from mllmrec.metrics import full_ranking_metrics

    model.eval()

    def score(users: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model.full_sort(torch.as_tensor(users, dtype=torch.long)).float().numpy()

    users = np.flatnonzero([len(p) for p in positives])
    m = full_ranking_metrics(score, users, [positives[u] for u in users], train, ks=KS)
    return {k: round(float(v), 5) for k, v in m.items() if k.split("@")[0] in ("recall", "ndcg")}


TEACHERS: dict[str, Any] = {}
USER_ITEM = tuple(MODELS)  # every recsys registry row; students and teachers go through distill


def fit(
    method: str,
    cfg: dict[str, Any],
    seed: int,
    train: Any,
    valid: list[np.ndarray],
    feats: dict[str, np.ndarray] | None,
    teacher_cfg: dict[str, Any],
) -> tuple[Any, Any]:
    """(trained model, TrainResult) for one method/config/seed; selection on `valid` only."""
    import torch

    from mllmrec.recsys import train_bpr
    from mllmrec.recsys.registry import build_model, spec

    if method not in USER_ITEM:
        return fit_distill(method, cfg, seed, train, valid, feats, teacher_cfg)
    torch.manual_seed(seed)
    tr = {k: cfg[k] for k in ("lr", "batch_size", "patience", "epochs") if k in cfg}
    own = {k: v for k, v in cfg.items() if k not in tr}
    x = torch.from_numpy(feats["text"]) if spec(method).features else None
    model = build_model(method, train, x, run_seed=seed, **own)  # run_seed: Freedom's edge pruning
    return model, train_bpr(model, train, valid, seed=seed, progress=False, **tr)  # popularity: no epochs


def fit_distill(
    method: str,
    cfg: dict[str, Any],
    seed: int,
    train: Any,
    valid: list[np.ndarray],
    feats: dict[str, np.ndarray],
    teacher_cfg: dict[str, Any],
) -> tuple[Any, Any]:
    from mllmrec.config import from_dict
    from mllmrec.distill.config import DistillSettings
    from mllmrec.distill.trainer import distill

    if method == "teacher":  # the students' teacher when the grid is empty (one cache key for both)
        return shared_teacher({**teacher_cfg, **cfg}, seed, train, valid, feats)
    student = method.removeprefix("student-")
    if isinstance(cfg.get("losses"), str):  # --grid losses=bpr+listwise_kd:2,bpr+listwise_kd:4
        cfg = {**cfg, "losses": tuple(cfg["losses"].split("+"))}
    s = from_dict(
        DistillSettings, {**teacher_cfg, **cfg, "student": student, "seed": seed, "progress": False}
    )
    teacher = None
    if s.kd:
        teacher, teacher_result = shared_teacher(teacher_cfg, seed, train, valid, feats)
    out = distill(feats, train, valid, s, teacher=teacher, teacher_result=teacher_result if s.kd else None)
    return out.tables, out.student_result


def shared_teacher(
    settings: dict[str, Any], seed: int, train: Any, valid: list[np.ndarray], feats: dict[str, np.ndarray]
) -> tuple[Any, Any]:
    """(teacher, TrainResult) for DistillSettings `settings` and `seed`: trained once per process
    (TEACHERS) and, with --teacher-cache, once across processes (`cached_teacher`)."""
    from mllmrec.config import from_dict
    from mllmrec.distill.config import DistillSettings
    from mllmrec.distill.trainer import train_teacher

    key = json.dumps([seed, settings], sort_keys=True)
    if key not in TEACHERS:
        ts = from_dict(DistillSettings, {**settings, "seed": seed, "progress": False})
        TEACHERS[key] = cached_teacher(
            ts, key, lambda: train_teacher(feats, train, valid, ts), feats, train, valid
        )
    return TEACHERS[key]


TEACHER_CACHE: dict[str, Any] = {}  # "dir": --teacher-cache, "inputs": what the split and vectors were


def cached_teacher(
    s: Any, key: str, train_it: Any, feats: dict[str, np.ndarray], train: Any, valid: list[np.ndarray]
) -> tuple[Any, Any]:
    """A trained teacher from --teacher-cache (keyed by its settings, seed, the split file and the
    vectors file's identity), or trained now and saved there: students run in separate processes
    (seeds in parallel, the MF and LightGCN students) then share one teacher per seed."""
    import dataclasses
    import hashlib

    import torch

    from mllmrec.distill.trainer import attach_cf, build_teacher
    from mllmrec.recsys.trainer import TrainResult

    folder = TEACHER_CACHE.get("dir")
    if folder is None:
        return train_it()
    name = hashlib.sha256(json.dumps([key, TEACHER_CACHE["inputs"]]).encode()).hexdigest()[:16]
    path = Path(folder) / f"teacher-{name}.pt"
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        torch.manual_seed(s.seed)
        teacher = build_teacher(feats, train, s)
        teacher.load_state_dict(saved["state"])
        teacher.eval()
        print(f"  teacher from {path}", flush=True)
        # The EASE channel is not in the state dict: choose it again (deterministic given the weights).
        return teacher, attach_cf(teacher, train, valid, s, TrainResult(**json.loads(saved["result"])))
    teacher, result = train_it()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"state": teacher.state_dict(), "result": json.dumps(dataclasses.asdict(result))}, tmp)
    tmp.replace(path)
    return teacher, result


def _cf_summary(choice: dict[str, Any]) -> dict[str, Any]:
    return {"weight": choice["weight"], "l2": choice["l2"], "tried": choice["tried"]}


def summary(rows: list[dict[str, Any]], part: str) -> dict[str, str]:
    keys = sorted({k for r in rows for k in r[part]})
    out = {}
    for k in keys:
        v = np.array([r[part][k] for r in rows])
        out[k] = f"{v.mean():.4f}" + (f" ± {v.std(ddof=0):.4f}" if len(v) > 1 else "")
    return out


def render(out: Path) -> None:
    lines = [
        "# Office: tuned on validation Recall@20, tested once per seed",
        "",
        "Generated by `eval/office_quality.py` from the json files in this folder. Grid rows are the "
        "tuning seed's validation numbers only (test is never read while tuning); the chosen config is "
        "then run for each final seed. std is the population std over seeds.",
        "",
        "| method | features | chosen config | grid size | seeds | valid R@20 | test R@10 | test R@20 | "
        "test N@10 | test N@20 | time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in sorted(out.glob("*.json")):
        r = json.loads(f.read_text())
        v, t = summary(r["final"], "valid"), summary(r["final"], "test")
        lines.append(
            f"| {r['label']} | {r['features']} | `{json.dumps(r['chosen'])}` | {len(r['grid'])} | "
            f"{','.join(str(x['seed']) for x in r['final'])} | {v.get('recall@20', '-')} | "
            f"{t.get('recall@10', '-')} | {t.get('recall@20', '-')} | {t.get('ndcg@10', '-')} | "
            f"{t.get('ndcg@20', '-')} | {r['seconds']:.0f} |"
        )
    lines += ["", "Per-run details (grid, epochs, machine, command, date): the json files."]
    (out / "README.md").write_text("\n".join(lines) + "\n")


def merge(args: argparse.Namespace) -> int:
    """One record from per-seed records of the same method and config (seeds must not repeat)."""
    parts = [json.loads(Path(f).read_text()) for f in args.merge]
    if len({json.dumps([p["method"], p["chosen"], p["teacher"]], sort_keys=True) for p in parts}) != 1:
        raise SystemExit("--merge: the runs differ in method, chosen config or teacher")
    seeds = [f["seed"] for p in parts for f in p["final"]]
    if len(seeds) != len(set(seeds)):
        raise SystemExit(f"--merge: a seed occurs twice ({seeds})")
    label = args.label or parts[0]["label"]
    record = {
        **parts[0],
        "label": label,
        "final": sorted((f for p in parts for f in p["final"]), key=lambda f: f["seed"]),
        "grid": parts[0]["grid"],
        "per_seed_runs": [g for p in parts for g in p["grid"]],
        "command": " ; ".join(p["command"] for p in parts),
        "selection": parts[0]["selection"]
        if len(parts[0]["grid"]) > 1
        else "no grid (one declared config); each seed's run is its own",
        "merged_from": args.merge,
        "seconds": round(sum(p["seconds"] for p in parts), 1),
    }
    out = Path(args.out)
    (out / f"{label}.json").write_text(json.dumps(record, indent=2))
    for f in args.merge:
        if Path(f).resolve() != (out / f"{label}.json").resolve():
            Path(f).unlink()
    render(out)
    print(f"merged {len(parts)} runs into {out / (label + '.json')}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--method",
        required=True,
        choices=[*USER_ITEM, "teacher", "student-mf", "student-lightgcn"],
    )
    ap.add_argument("--label", default=None, help="name in the report (default: --method)")
    ap.add_argument("--inter", default="/work/shared/data/amazon-office/mmrec/office.inter")
    ap.add_argument("--vectors", default=None, help=".npy [n_items, d], row i = itemID i (channel 'text')")
    ap.add_argument(
        "--grid",
        nargs="*",
        default=[],
        help="NAME=V1,V2 ... (all combinations are tried); a students' loss list joins its losses with +, "
        "e.g. losses=bpr+listwise_kd:1,bpr+listwise_kd:2",
    )
    ap.add_argument("--fixed", nargs="*", default=[], help="NAME=V settings shared by every grid point")
    ap.add_argument(
        "--teacher", nargs="*", default=[], help="NAME=V DistillSettings of the teacher (students)"
    )
    ap.add_argument(
        "--teacher-cache",
        default=None,
        help="students: a folder where each seed's trained teacher is saved and reused by later runs",
    )
    ap.add_argument("--tune-seed", type=int, default=0)
    ap.add_argument("--final-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="eval/results/office-quality")
    ap.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="JSON",
        help="combine runs of one config over different final seeds (run in parallel with --tune-seed S "
        "--final-seeds S) into <out>/<label>.json; trains nothing",
    )
    args = ap.parse_args()
    if args.merge:
        return merge(args)

    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    feats = {"text": np.load(args.vectors).astype(np.float32)} if args.vectors else None
    if args.teacher_cache:
        ident = [str(Path(p).resolve()) + f":{Path(p).stat().st_size}:{Path(p).stat().st_mtime_ns}" for p in
                 (args.inter, args.vectors) if p]  # fmt: skip
        TEACHER_CACHE.update(dir=args.teacher_cache, inputs=ident)
    train, valid, test = load_split(Path(args.inter), None if feats is None else feats["text"].shape[0])
    counts = np.asarray(train.sum(axis=0)).ravel()
    valid = [p[counts[p] > 0] for p in valid]  # selection on items with training interactions
    fixed = parse_grid(args.fixed)[0] if args.fixed else {}
    teacher_cfg = parse_grid(args.teacher)[0] if args.teacher else {}
    grid = parse_grid(args.grid) if args.grid else [{}]
    label = args.label or args.method
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')} {platform.node()} {platform.machine()} {os.cpu_count()} cores; "
        f"python {' '.join(sys.argv)}",
        flush=True,
    )
    rows, reuse = [], {}
    for point in grid:
        t = time.perf_counter()
        model, res = fit(args.method, {**fixed, **point}, args.tune_seed, train, valid, feats, teacher_cfg)
        reuse[json.dumps(point, sort_keys=True)] = (model, res, time.perf_counter() - t)
        rows.append(
            {
                "config": point,
                "valid": {k: round(v, 5) for k, v in res.best_valid.items()},
                "best_epoch": res.best_epoch,
                "seconds": round(time.perf_counter() - t, 1),
            }
        )
        print(
            f"  grid {point}: valid recall@20 {res.best_valid['recall@20']:.4f} (epoch {res.best_epoch}, "
            f"{rows[-1]['seconds']:.0f} s)",
            flush=True,
        )
    chosen = max(rows, key=lambda r: r["valid"]["recall@20"])["config"]
    final = []
    for seed in args.final_seeds:
        t = time.perf_counter()
        if seed == args.tune_seed:  # the tuning run of the chosen config (deterministic): reuse it
            model, res, secs = reuse[json.dumps(chosen, sort_keys=True)]
        else:
            model, res = fit(args.method, {**fixed, **chosen}, seed, train, valid, feats, teacher_cfg)
            secs = time.perf_counter() - t
        final.append(
            {
                "seed": seed,
                "best_epoch": res.best_epoch,
                "valid": evaluate(model, train, valid),
                "test": evaluate(model, train, test),
                "seconds": round(secs, 1),
                # a teacher's EASE channel (recsys.cf_blend): chosen w and l2, validation points tried
                **({"cf_blend": _cf_summary(model.cf_choice)} if hasattr(model, "cf_choice") else {}),
            }
        )
        print(
            f"  seed {seed} {chosen}: valid recall@20 {final[-1]['valid']['recall@20']:.4f} test recall@20 "
            f"{final[-1]['test']['recall@20']:.4f} ndcg@20 {final[-1]['test']['ndcg@20']:.4f} "
            f"({final[-1]['seconds']:.0f} s)",
            flush=True,
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "label": label,
        "method": args.method,
        "features": Path(args.vectors).name if feats else "ids only",
        "fixed": fixed,
        "teacher": teacher_cfg,
        "grid": rows,
        "chosen": {**fixed, **chosen},
        "selection": f"max validation recall@20, tune seed {args.tune_seed}; test read only for final seeds",
        "final": final,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()}-core CPU (shared), torch threads 1",
        "command": "python " + " ".join(sys.argv),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (out / f"{label}.json").write_text(json.dumps(record, indent=2))
    render(out)
    print(f"wrote {out / (label + '.json')} in {record['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
