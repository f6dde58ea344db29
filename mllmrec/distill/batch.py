"""Batch recommendations for every user of a run: `mllmrec recommend RUN --all-users --out DIR`.

Users are cut into chunks of `chunk_users` (in table order); chunk c goes to process c mod world
under torchrun / `accelerate launch` (mllmrec.dist), and each chunk becomes one parquet file

    DIR/parts/part-00000.parquet …   user_id, rank, item_id, score, via (written atomically)
    DIR/manifest.json          stage "recommend-all": run, k, index and its recall, parts, rows; last

so memory holds one chunk's results at a time, and a crash loses at most the chunk in flight:
`--resume` keeps finished parts (a part file exists only once complete) and writes the rest. Process
0 prepares the folder (mllmrec.artifacts, under the writer lock) and writes the manifest after every
process has finished; `pyarrow.parquet.read_table(DIR / "parts")` reads the parts as one table.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mllmrec.artifacts import WriterLock, check_identity, mode_of, prepare_dir, write_manifest
from mllmrec.dist import barrier, dist_info, end_processes

if TYPE_CHECKING:
    from mllmrec.distill.config import RecommendConfig
    from mllmrec.distill.recommend import Recommender

log = logging.getLogger(__name__)
STAGE = "recommend-all"


def part_name(chunk: int) -> str:
    """Relative to the output folder."""
    return f"parts/part-{chunk:05d}.parquet"


def recommend_all(rec: Recommender, cfg: RecommendConfig, command: list[str] | None = None) -> dict[str, Any]:
    """Write every user's top-k into cfg.out (module docstring); returns the manifest (process 0)."""
    out = Path(cfg.out)
    rank, world = dist_info()
    users = rec.run.user_ids
    chunks = range(0, len(users), cfg.chunk_users)
    identity = {
        "run": str(Path(cfg.run).resolve()),
        "run_completed": rec.run.manifest.get("completed"),
        "k": cfg.k,
        "exclude_seen": cfg.exclude_seen,
        "new_items": cfg.new_items,
        "index": rec.index_info.get("kind"),
        "chunk_users": cfg.chunk_users,
        "users": len(users),
    }
    if rank == 0:
        with WriterLock(out, stage=STAGE):
            old = prepare_dir(out, stage=STAGE, mode=mode_of(resume=cfg.resume, overwrite=False))
            if old is not None:
                check_identity(old.get("identity", {}), identity, out=out, what="batch run")
            write_manifest(out, {"status": "running", "identity": identity}, stage=STAGE)
    barrier(world)
    mine = [c for c in range(len(chunks)) if c % world == rank]
    todo = [c for c in mine if not (out / part_name(c)).is_file()]
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(users),
        desc=f"recommend[{rank}]" if world > 1 else "recommend",
        unit="user",
        disable=None,
        initial=sum(min(cfg.chunk_users, len(users) - c * cfg.chunk_users) for c in mine if c not in todo),
    )
    for c in todo:
        ids = users[c * cfg.chunk_users : (c + 1) * cfg.chunk_users]
        results = rec.recommend(ids, cfg.k, exclude_seen=cfg.exclude_seen)
        write_part(out / part_name(c), ids, results)
        bar.update(len(ids))
    bar.close()
    barrier(world)
    manifest: dict[str, Any] = {}
    if rank == 0:
        import pyarrow.parquet as pq

        parts = [part_name(c) for c in range(len(chunks))]
        rows = sum(pq.ParquetFile(out / p).metadata.num_rows for p in parts)
        manifest = write_manifest(
            out,
            {
                "status": "complete",
                "identity": identity,
                "command": command,
                "processes": world,
                "parts": parts,
                "rows": rows,
                "index": {k: v for k, v in rec.index_info.items() if k != "fingerprint"},
            },
            stage=STAGE,
        )
        print(f"wrote top-{cfg.k} for {len(users)} users to {out} ({len(parts)} parts, {rows} rows)")
    end_processes(world)
    return manifest


def write_part(path: Path, users: list[str], results: list[list[Any]]) -> None:
    """One results table (user_id, rank, item_id, score, via), written atomically (parquet or csv by suffix)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from mllmrec.fsutil import atomic_path

    n = np.fromiter((len(r) for r in results), np.int64, len(results))
    table = pa.table(
        {
            "user_id": pa.array(np.repeat(np.asarray(users, dtype=object), n), pa.string()),
            "rank": pa.array(np.concatenate([np.arange(1, m + 1) for m in n]) if len(n) else [], pa.int32()),
            "item_id": pa.array([r.item_id for recs in results for r in recs], pa.string()),
            "score": pa.array([r.score for recs in results for r in recs], pa.float32()),
            "via": pa.array([r.via for recs in results for r in recs], pa.string()),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            pq.write_table(table, str(tmp))
        else:
            pcsv.write_csv(table, str(tmp))
