"""report.md and PNG plots from an eval/run.py results dict (mean ± std over seeds)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from mllmrec.catalog.splits import STATS_MEANING

TABLE_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "precision@20", "map@20")


def headline(metrics: dict[str, float], ks: tuple[int, ...] | list[int]) -> str:
    """One run's recall and NDCG at 20, or at the grid's largest cut-off when `ks` has no 20 (a
    metric that was never computed is not printed as nan)."""
    k = 20 if 20 in ks else max(ks)
    return "  ".join(
        f"{m}@{k} {metrics[f'{m}@{k}']:.4f}" for m in ("recall", "ndcg") if f"{m}@{k}" in metrics
    )


def table_metrics(runs: list[dict]) -> tuple[str, ...]:
    """TABLE_METRICS that the runs computed; when none (a grid without 10 or 20 in ks), every
    recall/ndcg the runs have, so no column is all dashes."""
    have = {m for r in runs for m in (r.get("test") or {})}
    shown = tuple(m for m in TABLE_METRICS if m in have)
    return shown or tuple(
        sorted(
            (m for m in have if m.startswith(("recall@", "ndcg@"))),
            key=lambda m: (m.split("@")[0], int(m.split("@")[1])),
        )
    )


def _by_method(runs: list[dict], part: str) -> dict[str, list[dict[str, float]]]:
    grouped: dict[str, list[dict[str, float]]] = defaultdict(list)
    for r in runs:
        if r[part]:
            grouped[r["method"]].append(r[part])
    return grouped


def _fmt(values: list[float]) -> str:
    v = np.asarray([x for x in values if x == x], dtype=float)  # drop NaN
    if len(v) == 0:
        return "–"
    return f"{v.mean():.4f} ± {v.std(ddof=1):.4f}" if len(v) > 1 else f"{v.mean():.4f}"  # one seed: no spread


def _mean_or_nan(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def table(runs: list[dict], part: str, metrics: tuple[str, ...] | None = None) -> str:
    metrics = metrics or table_metrics(runs)
    grouped = _by_method(runs, part)
    if not grouped:
        return "(none)\n"
    lines = ["| method | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for method, rs in grouped.items():
        lines.append(
            f"| {method} | " + " | ".join(_fmt([r.get(m, float("nan")) for r in rs]) for m in metrics) + " |"
        )
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], out: Path) -> None:
    runs = results["runs"]
    seeds = sorted({r["seed"] for r in runs})
    secs: dict[str, list[float]] = defaultdict(list)
    for r in runs:
        secs[r["method"]].append(r["seconds"])
    md_lines = [
        f"# Evaluation: {results['config']['name']}",
        "",
        f"Date {results['date']}, machine {results['machine']}, seeds {seeds}. Command: `{results['command']}`",
        "",
        "Protocol: "
        + ", ".join(f"{k}={v}" for k, v in results["config"].get("protocol", {}).items())
        + ". Full ranking over all items with only the training items masked (validation items stay "
        "candidates, as in MMRec); cold items are ranked against the whole catalogue. Model selection on "
        "validation Recall@20 over items that have training interactions; test evaluated once per "
        "method and seed. Negatives are drawn only from items with training interactions. "
        "Mean ± sample std over seeds.",
        "",
        "Item features per method: "
        + ", ".join(sorted({f"{r['method']}: {r.get('features', 'ids only')}" for r in runs}))
        + ".",
        "",
        "Items without a vector (scored from zero vectors): " + _missing_line(runs) + ".",
        "",
        "Interactions not evaluated (per seed): "
        + "; ".join(
            f"seed {s}: " + ", ".join(f"{k}={v}" for k, v in st.get("dropped", {}).items())
            for s, st in results["splits"].items()
        )
        + ".",
        "",
        "## Tuning (declared search spaces, chosen on validation Recall@20 only)",
        "",
        *tuning_lines(results.get("tuning", {}), sorted({r["method"] for r in runs})),
        "",
        "## Test (all held-out items)",
        "",
        table(runs, "test"),
        "## Warm items (seen in training)",
        "",
        table(runs, "warm"),
        "## Cold items (never seen in training; only content can reach them)",
        "",
        table(runs, "cold"),
        "## Recall@20 by item popularity (training-count tertiles)",
        "",
        table(runs, "buckets", ("tail", "torso", "head")),
        "## Time per method (train + evaluate, seconds per seed)",
        "",
        "| method | seconds |",
        "|---|---|",
        *[f"| {m} | {_fmt(v)} |" for m, v in secs.items()],
        "",
        "Embedding the catalogue (once per model and prompt, shared by the methods that use it; "
        "the time it took when the store was made): "
        + (", ".join(f"{k} {v:.1f} s" for k, v in results.get("embedding_seconds", {}).items()) or "none")
        + ".",
        "",
        "## Split statistics",
        "",
        *[
            f"- seed {s}: " + ", ".join(f"{k}={v}" for k, v in st.items())
            for s, st in results["splits"].items()
        ],
        "",
        "What the counts mean: " + "; ".join(f"`{k}` = {v}" for k, v in STATS_MEANING.items()) + ".",
        "",
        "## Versions",
        "",
        ", ".join(f"{k} {v}" for k, v in results["versions"].items()),
        "",
        f"Total wall time: {results['seconds']:.0f} s.",
        "",
    ]
    (out / "report.md").write_text("\n".join(md_lines), encoding="utf-8")
    plots(runs, out)


def tuning_lines(tuning: dict[str, dict], methods: list[str]) -> list[str]:
    """One line per method: its search space, budget, choice and time, or that it was not tuned (a
    report never shows an untuned method beside a tuned one without saying so)."""
    lines = []
    for m in methods:
        t = tuning.get(m) or {}
        if not t.get("budget"):
            lines.append(f"- {m}: **not tuned** (the config's values)")
            continue
        space = ", ".join(f"{k} {v}" for k, v in t["space"].items())
        sample = f" (a random {t['budget']} of {t['space_size']})" if t["budget"] < t["space_size"] else ""
        best = next(x["valid_recall@20"] for x in t["tried"] if x["config"] == t["chosen"])
        lines.append(
            f"- {m}: {t['budget']} point(s){sample} of {space}, seed {t['seed']}; chosen {t['chosen']} "
            f"(valid Recall@20 {best:.4f}); {t['seconds']:.0f} s"
        )
    return lines


def _missing_line(runs: list[dict]) -> str:
    seen = {(r["method"], r["seed"]): r["missing_vectors"] for r in runs if r.get("missing_vectors")}
    return (
        ", ".join(f"{m} seed {s}: {c['missing']} of {c['items']}" for (m, s), c in sorted(seen.items()))
        or "none"
    )


def plots(runs: list[dict], out: Path) -> None:
    """recall_at_k.png (curves), popularity.png (buckets), cold_warm.png (bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grouped = _by_method(runs, "test")
    ks = sorted({int(k.split("@")[1]) for rs in grouped.values() for k in rs[0] if k.startswith("recall@")})
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, rs in grouped.items():
        ax.plot(ks, [np.mean([r[f"recall@{k}"] for r in rs]) for k in ks], marker="o", label=method)
    ax.set(xlabel="K", ylabel="Recall@K (test, mean over seeds)", title="Recall@K")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "recall_at_k.png", dpi=110)
    plt.close(fig)

    for name, part, keys in (
        ("popularity.png", "buckets", ("tail", "torso", "head")),
        ("cold_warm.png", None, ("warm", "cold")),
    ):
        fig, ax = plt.subplots(figsize=(6, 4))
        methods = list(grouped)
        width = 0.8 / len(keys)
        for n, key in enumerate(keys):
            if part == "buckets":
                vals = [
                    np.nanmean([r["buckets"].get(key, np.nan) for r in runs if r["method"] == m])
                    for m in methods
                ]
            else:
                vals = [
                    _mean_or_nan(
                        [r[key].get("recall@20", np.nan) for r in runs if r["method"] == m and r[key]]
                    )
                    for m in methods
                ]
            ax.bar(
                np.arange(len(methods)) + n * width, vals, width, label=key
            )  # NaN: no bar (nothing to show)
        ax.set_xticks(np.arange(len(methods)) + width * (len(keys) - 1) / 2, methods, rotation=20)
        ax.set(ylabel="Recall@20 (test)", title="By item popularity" if part else "Warm vs cold items")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
