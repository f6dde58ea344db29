"""The time a store cost, over every run that worked on it.

A store may be built by several runs (a crash or Ctrl-C, then `--resume`); reporting only the last
one's time understates the cost (issue 16: 964 s reported, 680 s more spent before the crash).
Each run's record in the manifest's "runs" carries its own "seconds": process 0 rewrites it after
every shard it writes, while it waits for other processes, and when the run stops on an
exception, so a run killed hard still counts up to its last shard. The store's total is the sum
(a lower bound when a run died before writing a shard).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mllmrec.artifacts import read_manifest, write_manifest


def total_seconds(runs: list[dict[str, Any]]) -> float:
    """Seconds over all runs (runs recorded before times were kept count as 0)."""
    return round(sum(float(r.get("seconds", 0.0)) for r in runs), 3)


def with_run_seconds(manifest: dict[str, Any], seconds: float) -> dict[str, Any]:
    """`manifest` with the current (last) run's seconds set and the store's total updated."""
    runs = [*manifest.get("runs", [])] or [{}]
    runs[-1] = {**runs[-1], "seconds": round(seconds, 3)}
    return {**manifest, "runs": runs, "seconds_total": total_seconds(runs)}


class RunClock:
    """Process 0's clock for the current run of the store at `out` (started at `t0`,
    `time.perf_counter()` seconds), written into its manifest."""

    def __init__(self, out: Path, stage: str, t0: float, every_s: float = 10.0) -> None:
        self.out, self.stage, self.t0, self.every_s = out, stage, t0, every_s
        self._last = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.t0

    def record(self) -> None:
        """Write the run's time so far into the manifest."""
        manifest = read_manifest(self.out, expect_stage=self.stage)
        write_manifest(self.out, with_run_seconds(manifest, self.seconds()), stage=self.stage)
        self._last = time.perf_counter()

    def tick(self) -> None:
        """`record`, at most every `every_s` seconds (for polling loops)."""
        if time.perf_counter() - self._last >= self.every_s:
            self.record()
