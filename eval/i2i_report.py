"""report.md of an item-to-item run of `eval/run.py` (eval/i2i.py's results dict): test and valid
Recall@k per method, the training runs on the same pairs with their valid numbers (how settings
were chosen), the settings and stage times. Layout of the former eval/train_ml100k.py report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def se(p: float, n: int) -> float:
    """Binomial standard error of a recall measured on n queries."""
    return math.sqrt(max(p * (1 - p), 0.0) / max(n, 1))


def _table(scores: dict[str, dict[str, float]], ks: list[int], n: int | None) -> list[str]:
    """One row per method; with n, each value carries ± its standard error."""
    lines = ["| method | " + " | ".join(f"Recall@{k}" for k in ks) + " |", "|---" * (len(ks) + 1) + "|"]
    for method, r in scores.items():
        cells = [r.get(f"recall@{k}", float("nan")) for k in ks]
        lines.append(
            f"| {method} | "
            + " | ".join(f"{v:.3f} ± {se(v, n):.3f}" if n else f"{v:.3f}" for v in cells)
            + " |"
        )
    return lines


def _selection(res: dict[str, Any], ks: list[int]) -> list[str]:
    def fmt(d: dict[str, float]) -> str:
        return "/".join(f"{d.get(f'recall@{k}', float('nan')):.3f}" for k in ks)

    keys = ("batch_pairs", "steps", "lr", "warmup_steps", "lora_rank", "lora_alpha", "proj_dim")
    lines = [
        "",
        f"Training runs on these pairs (valid Recall@{'/'.join(map(str, ks))}, zero-shot -> tuned):",
        "",
        "| run | B | steps | lr | warm-up | rank | alpha | proj | valid zero-shot | valid tuned | train min |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["selection"]:
        c = r["config"] | {"steps": r["steps"]}
        chosen = " **(chosen)**" if r["run"] == res["train"]["run"] else ""
        lines.append(
            f"| {r['run']}{chosen} | "
            + " | ".join(
                f"{c[k]:g}" if isinstance(c[k], float) else str(c[k] if c[k] is not None else "-")
                for k in keys
            )
            + f" | {fmt(r['valid_zero_shot'])} | {fmt(r['valid_tuned'])} | {(r['train_seconds'] or 0) / 60:.1f} |"
        )
    return lines


def _settings(res: dict[str, Any]) -> list[str]:
    pm, tr, model = res["pairs"], res["train"], res["model"]
    th = pm["thresholds"] or {}
    lines = [
        "",
        "## Settings",
        "",
        f"- Data: {pm['interactions']} interactions, {pm['users']} users, {pm['items']} items "
        f"(dataset `{res['config']['dataset']}`).",
    ]
    if model:
        lines.append(
            f"- Model: `{model['model']}`, prompt `{model['prompt']}`, options {model['options'] or {}}; "
            f"vector = store channel `{model['channel']}`."
        )
    lines.append(
        f"- Pairs (`mllmrec pairs`, options {pm['options']}): mode {pm['mode']}, "
        + ", ".join(
            f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in th.items() if v is not None
        )
        + f"; score = sum of 1/N_u over users. {pm['pairs']} pairs; query items split by part: "
        + ", ".join(f"{k} {c['queries']} queries / {c['pairs']} pairs" for k, c in pm["per_part"].items())
        + "."
    )
    if tr:
        c = tr["config"]
        lines.append(
            f"- Training (`mllmrec train`, on the pairs minus the test part): {tr['train_pairs']} unordered training "
            f"pairs, batch {c['batch_pairs']} pairs ({2 * c['batch_pairs']} in-batch items), {tr['steps']} steps "
            f"({tr['steps'] * c['batch_pairs']} pairs seen), AdamW lr {c['lr']:g}, warm-up {c['warmup_steps']}, "
            f"LoRA r={c['lora_rank']} alpha={c['lora_alpha']:g}, projection head {c['proj_dim'] or 'none'}, "
            f"loss {c['loss']}, seed {c['seed']}; {tr['trainable_parameters']} trainable parameters; final training "
            f"loss {tr['final_loss']:.3f} (first step {tr['first_loss']:.3f}); {tr['pairs_per_s']:.2f} pairs/s"
            + (
                f" (run reused from an earlier identical invocation; it took {(tr['seconds'] or 0) / 60:.1f} min)"
                if tr["reused"]
                else ""
            )
            + "."
        )
    kinds = set(res["methods"].values())
    if "popularity" in kinds:
        lines.append(
            "- Popularity ranks a query's candidates by their number of interactions in the whole log "
            "(the log the pairs are mined from), identical for every query."
        )
    if "random" in kinds:
        lines.append("- Random: Gaussian vectors through the same cosine protocol.")
    return lines


def write(res: dict[str, Any], path: Path) -> None:
    """Write the report of `res` (see eval/i2i.py) to `path`."""
    ks, n, nv = res["ks"], res["protocol"]["test"]["queries"], res["protocol"]["valid"]["queries"]
    lines = [
        f"# {res['config']['name']}: item-to-item recall, zero-shot vs tuned",
        "",
        f"Date {res['date']}, machine: {res['machine']} (timings are noisy on a shared machine). "
        f"Runtime of this command: {res['runtime_seconds'] / 60:.1f} min.",
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
        *_table(res["test"], ks, n),
        "",
        "## Valid part (used for choosing hyperparameters; test was not looked at to choose)",
        "",
        f"{nv} queries, {res['protocol']['valid']['candidates']} candidates.",
        "",
        *_table(res["valid"], ks, None),
    ]
    if res.get("selection"):
        lines += _selection(res, ks)
    lines += _settings(res)
    times = res["stage_seconds"]
    lines += [
        "",
        "## Stage times (s)",
        "",
        "| " + " | ".join(times) + " |",
        "|" + "---|" * len(times),
        "| " + " | ".join(f"{s:.0f}" for s in times.values()) + " |",
        "",
    ]
    path.write_text("\n".join(lines))
