"""Run every command on hostile inputs and damaged artefacts, and check that each answer is clear.

    python eval/fuzz_inputs.py                        # table on stdout
    python eval/fuzz_inputs.py --record eval/results/fuzz_inputs.md

A catalogue mixing every kind of bad item (eval/fuzz_cases.py: odd image modes and shapes, files
that only look like images, bad paths, broken and 1 MB text, bad ids) is embedded with a tiny
random Qwen2-VL under each --on-bad-image policy; then index, neighbors, export, pairs, distill and
recommend run on good artefacts and on a damaged copy of each kind (store, pairs, distill run,
export). Every command is a real `python -m mllmrec.cli` process.

Per case the table says the exit code, the first line of the message, and for embed whether every
catalogue row is accounted for (embedded + rejected = rows, from the manifest). The script exits 1
if a command ends in a traceback, a damaged artefact is accepted, or a row is unaccounted for.
Issue 12.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import common  # noqa: E402
import fuzz_cases as F  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Case:
    """One command on one input; `expect_ok`: whether it should succeed (damage must be refused)."""

    name: str
    args: list[str]
    expect_ok: bool
    catalogue: Path | None = None  # embed: the catalogue whose rows must all be accounted for
    store: Path | None = None
    rc: int | None = None
    message: str = ""
    accounted: str = "–"
    problems: list[str] = field(default_factory=list)


def run_case(case: Case, timeout: int) -> Case:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    try:
        p = subprocess.run(
            [sys.executable, "-m", "mllmrec.cli", *case.args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        case.rc, case.message = -1, f"timed out after {timeout} s"
        case.problems.append("timeout")
        return case
    case.rc = p.returncode
    err = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith(("WARNING", "INFO"))]
    out = [ln for ln in p.stdout.splitlines() if ln.strip()]
    case.message = (err[-1] if p.returncode and err else (out[0] if out else err[0] if err else "")).strip()
    if "Traceback (most recent call last)" in p.stderr:
        case.problems.append("traceback")
        case.message = "TRACEBACK: " + (err[-1] if err else "")
    if case.expect_ok and p.returncode != 0:
        case.problems.append("failed")
    if not case.expect_ok and p.returncode == 0:
        case.problems.append("damage accepted")
    if case.catalogue is not None and case.store is not None:
        case.accounted = accounting(case.catalogue, case.store, case)
    return case


def accounting(catalogue: Path, store: Path, case: Case) -> str:
    """'yes (e + r = n)' when the store's manifest accounts for every catalogue row."""
    rows = F.catalogue_rows(catalogue)
    try:
        m = json.loads((store / "manifest.json").read_text())
    except (OSError, ValueError):
        return "no store" if case.rc else "no manifest"
    c = m.get("counts")
    if not c:
        return f"run stopped ({m.get('status')})"
    ok = (
        c["input"] == rows
        and c["embedded"] + c["rejected"] == rows
        and len(m.get("rejected", [])) == c["rejected"]
    )
    if not ok:
        case.problems.append("rows unaccounted")
    return f"{'yes' if ok else 'NO'} ({c['embedded']} + {c['rejected']} = {c['embedded'] + c['rejected']} of {rows})"


def build(work: Path, n_items: int) -> dict[str, Path]:
    """Synthetic data, the fuzz catalogue and the tiny model."""
    from mllmrec.datasets.config import SyntheticConfig
    from mllmrec.datasets.synthetic import make_synthetic
    from mllmrec.testing.qwen import cached_tiny_qwen

    data = work / "data"
    if not (data / "meta.json").is_file():
        make_synthetic(
            SyntheticConfig(out=str(data), n_items=n_items, n_users=n_items, image_size=16, seed=0)
        )
    return {
        "data": data,
        "catalogue": F.write_fuzz_catalogue(data),
        "log": data / "interactions.csv",
        "model": cached_tiny_qwen("qwen2-vl", cache_dir=work / "models"),
    }


def embed_cases(p: dict[str, Path], work: Path) -> list[Case]:
    base = [
        "embed",
        "--catalog",
        str(p["catalogue"]),
        "--model",
        str(p["model"]),
        "--batch-size",
        "8",
        "--no-progress",
        "--max-tokens",
        "512",
    ]
    cases = []
    for policy in ("text-only", "reject", "error"):
        store = work / f"store-{policy}"
        cases.append(
            Case(
                f"embed fuzz catalogue --on-bad-image {policy}",
                [*base, "--on-bad-image", policy, "--out", str(store), "--overwrite"],
                expect_ok=policy != "error",
                catalogue=p["catalogue"],
                store=store,
            )
        )
    for name in F.ID_CATALOGUES:
        cases.append(
            Case(
                f"embed {name}",
                [
                    *base,
                    "--catalog",
                    str(p["catalogue"].parent / name),
                    "--out",
                    str(work / f"store-{Path(name).stem}"),
                    "--overwrite",
                ],
                False,
            )
        )
    return cases


def artefact_cases(p: dict[str, Path], work: Path, good: Path) -> list[Case]:
    """Commands on the good artefacts (they must work) and on every damaged copy (they must refuse)."""
    first_id = json.loads(p["catalogue"].read_text().splitlines()[0])["id"]
    quick = ["--epochs", "2", "--teacher-epochs", "2", "--dim", "8", "--teacher-dim", "8", "--no-progress"]
    pairs, run, export = work / "pairs", work / "distill", work / "export"
    cases = [
        Case("index good store", ["index", str(good)], True),
        Case("neighbors good store", ["neighbors", str(good), first_id, "--k", "3"], True),
        Case("neighbors unknown item", ["neighbors", str(good), "no-such-item"], False),
        Case("export good store (npy)", ["export", str(good), "--format", "npy", "--out", str(export)], True),
        Case(
            "pairs from the log",
            ["pairs", str(p["log"]), "--out", str(pairs), "--catalog", str(p["catalogue"])],
            True,
        ),
        Case(
            "distill good store",
            ["distill", str(good), "--interactions", str(p["log"]), "--out", str(run), *quick],
            True,
        ),
        Case("recommend good run", ["recommend", str(run), "--user", "u0", "--k", "3"], True),
    ]
    return cases


def damaged_cases(work: Path, good: Path, p: dict[str, Path]) -> list[Case]:
    first_id = json.loads(p["catalogue"].read_text().splitlines()[0])["id"]
    bad = work / "damaged"
    cases = []
    for name, d in F.damaged_copies("store", good, bad).items():
        cases += [
            Case(f"index store:{name}", ["index", str(d)], False),
            Case(f"neighbors store:{name}", ["neighbors", str(d), first_id], False),
            Case(
                f"export store:{name}",
                ["export", str(d), "--format", "npy", "--out", str(bad / f"x-{name}")],
                False,
            ),
        ]
    if (work / "pairs" / "manifest.json").is_file():
        for name, d in F.damaged_copies("pairs", work / "pairs", bad).items():
            cases.append(
                Case(
                    f"train pairs:{name}",
                    [
                        "train",
                        str(d),
                        "--catalog",
                        str(p["catalogue"]),
                        "--model",
                        str(p["model"]),
                        "--out",
                        str(bad / f"t-{name}"),
                    ],
                    False,
                )
            )
    if (work / "distill" / "manifest.json").is_file():
        for name, d in F.damaged_copies("distill", work / "distill", bad).items():
            cases += [
                Case(f"recommend distill:{name}", ["recommend", str(d), "--user", "u0"], False),
                Case(
                    f"export distill:{name}",
                    ["export", str(d), "--format", "npy", "--out", str(bad / f"xd-{name}")],
                    False,
                ),
            ]
    if (work / "export" / "manifest.json").is_file():
        for name, d in F.damaged_copies("export", work / "export", bad).items():
            cases.append(
                Case(
                    f"export export:{name}",
                    ["export", str(d), "--format", "npy", "--out", str(bad / f"xe-{name}")],
                    False,
                )
            )
    return cases


def table(cases: list[Case]) -> str:
    lines = [
        "| case | exit | expected | message (first line) | rows accounted | problem |",
        "|---|---|---|---|---|---|",
    ]
    for c in cases:
        msg = c.message.replace("|", "\\|")[:160]
        lines.append(
            f"| {c.name} | {c.rc} | {'ok' if c.expect_ok else 'refuse'} | {msg} | {c.accounted} | "
            f"{', '.join(c.problems) or '–'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--work", default="eval/work/fuzz", help="Work folder (data, model, stores, damaged copies)."
    )
    ap.add_argument("--n-items", type=int, default=24, help="Good synthetic items beside the bad ones.")
    ap.add_argument("--timeout", type=int, default=300, help="Seconds per command.")
    ap.add_argument("--only", choices=("embed", "artefacts"), default=None, help="Run one half only.")
    ap.add_argument(
        "--record", default=None, help="Also write the table with date/machine/command to this .md."
    )
    args = ap.parse_args()
    t0 = time.perf_counter()
    work = Path(args.work).resolve()
    p = build(work, args.n_items)
    cases = embed_cases(p, work) if args.only != "artefacts" else []
    for c in cases:
        print(f"... {c.name}", file=sys.stderr, flush=True)
        run_case(c, args.timeout)
    good = work / "store-text-only"
    if args.only != "embed" and (good / "manifest.json").is_file():
        for group in (artefact_cases, lambda p_, w, g: damaged_cases(w, g, p_)):
            more = group(p, work, good)
            for c in more:
                print(f"... {c.name}", file=sys.stderr, flush=True)
                run_case(c, args.timeout)
            cases += more
    text = table(cases)
    bad = [c for c in cases if c.problems]
    summary = (
        f"{len(cases)} cases, {len(bad)} with a problem "
        f"({', '.join(sorted({x for c in bad for x in c.problems})) or 'none'}); "
        f"{F.catalogue_rows(p['catalogue'])} catalogue rows; {time.perf_counter() - t0:.0f} s"
    )
    print(text + "\n" + summary)
    if args.record:
        head = common.header()
        Path(args.record).write_text(
            f"# Fuzz: bad inputs and damaged artefacts through every command\n\nDate {head['date']}, machine "
            f"{head['machine']}. Command: `{head['command']}`\n\n{text}\n{summary}\n",
            encoding="utf-8",
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
