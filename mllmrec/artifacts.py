"""The run-directory contract every stage uses: manifest, atomic writes, fresh/resume/overwrite, lock.

An artefact folder (embedding store, pairs, train run, distill run, export) holds a `manifest.json`
whose `stage` says which stage wrote it. This module is its only reader and writer:

- `write_manifest(out, manifest, stage=...)` writes it atomically (temp file + rename), so a reader
  sees the old or the new manifest, never half of one; `read_manifest(out, expect_stage=...)`
  refuses a folder of another stage with a message that names both.
- `prepare_dir(out, stage=..., mode=...)` readies a folder for writing: `fresh` needs it new or
  empty; `resume` needs a run of this stage there; `overwrite` deletes only a folder this package
  wrote for the same stage (or an empty one) and otherwise refuses, naming what is there. A fresh or
  overwritten folder gets a `preparing` manifest at once, so a crash before the stage writes its own
  still leaves a folder that is recognisably ours.
- `check_identity(stored, current, ...)` lists every setting or input that differs on resume.
- `WriterLock(out)` is held while a stage writes a folder: a second writer fails at once, naming the
  holder's pid and host; a lock left by a killed process (its pid is gone on this host) is taken
  over, so `kill -9` then `--resume` just works.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Literal

from mllmrec import __version__
from mllmrec.errors import MllmrecError
from mllmrec.fsutil import atomic_write_bytes, temp_name

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
LOCK = ".mllmrec-writer.lock"
Mode = Literal["fresh", "resume", "overwrite"]


class ArtifactError(MllmrecError, ValueError):
    """An artefact folder is missing, of another stage, in use, or not ours to delete."""


# ---------------------------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------------------------
def write_manifest(out: str | Path, manifest: dict[str, Any], *, stage: str | None = None) -> dict[str, Any]:
    """Atomically write `manifest` (with `stage` and the package version set) into `out`; the
    stage comes from the argument or the manifest's own "stage" key, and they must agree."""
    stage = stage or manifest.get("stage")
    if not stage:
        raise ArtifactError("a manifest needs a stage")
    if manifest.get("stage", stage) != stage:
        raise ArtifactError(f"manifest for stage {stage!r} says stage {manifest['stage']!r}")
    manifest = {"stage": stage, "mllmrec_version": __version__, **manifest}
    data = json.dumps(manifest, indent=2, ensure_ascii=False, default=_jsonable) + "\n"
    atomic_write_bytes(Path(out) / MANIFEST, data.encode("utf-8"))
    return manifest


def _jsonable(value: Any) -> Any:
    """json fallback for numpy scalars/arrays and paths a stage may have put into a manifest."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (Path, tuple, set)):
        return str(value) if isinstance(value, Path) else list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def has_manifest(out: str | Path) -> bool:
    return (Path(out) / MANIFEST).is_file()


def stage_of(out: str | Path) -> str | None:
    """The stage recorded in `out`'s manifest; None when there is none or it is unreadable."""
    try:
        return json.loads((Path(out) / MANIFEST).read_text(encoding="utf-8")).get("stage")
    except (OSError, ValueError, AttributeError):
        return None


def read_manifest(out: str | Path, *, expect_stage: str | tuple[str, ...] | None = None) -> dict[str, Any]:
    """The manifest of `out`; with `expect_stage`, refuse a folder written by another stage."""
    p = Path(out) / MANIFEST
    want = (expect_stage,) if isinstance(expect_stage, str) else expect_stage
    what = f"an mllmrec {' or '.join(want)} folder" if want else "an mllmrec artefact folder"
    if not Path(out).is_dir():
        raise ArtifactError(f"{out} does not exist or is not a folder (expected {what})")
    if not p.is_file():
        raise ArtifactError(f"{out} is not {what}: no {MANIFEST}")
    try:
        manifest = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ArtifactError(f"{p}: not valid JSON ({e}); the folder is damaged") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{p}: not a manifest (a JSON object is expected)")
    if want and manifest.get("stage") not in want:
        raise ArtifactError(f"{out} holds a {manifest.get('stage')!r} artefact, not {what}")
    return manifest


# ---------------------------------------------------------------------------------------------
# Preparing a folder: fresh / resume / overwrite
# ---------------------------------------------------------------------------------------------
def mode_of(*, resume: bool, overwrite: bool) -> Mode:
    if resume and overwrite:
        raise ArtifactError("--resume and --overwrite contradict each other")
    return "resume" if resume else "overwrite" if overwrite else "fresh"


def contents(out: Path) -> list[str]:
    """What the folder holds (the writer lock aside), sorted."""
    return sorted(p.name for p in out.iterdir() if p.name != LOCK) if out.is_dir() else []


def _describe(names: list[str], limit: int = 8) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def prepare_dir(out: str | Path, *, stage: str, mode: Mode, resumable: bool = True) -> dict[str, Any] | None:
    """Make `out` ready for `stage` to write; returns the existing manifest on resume.

    Call it while holding the folder's `WriterLock` (the lock file is the one thing kept).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ArtifactError(f"{out} exists and is not a folder")
    names = contents(out)
    found = stage_of(out)
    if names == [MANIFEST] and found == stage and read_manifest(out).get("status") == "preparing":
        names = []  # a run of this stage that stopped before writing anything: nothing to keep
    if mode == "resume":
        if found != stage:
            held = f"a {found!r} artefact" if found else (f"no {MANIFEST}" if names else "nothing")
            raise ArtifactError(f"--resume: {out} holds {held}, not a {stage} run to continue")
        return read_manifest(out, expect_stage=stage)
    if names and mode == "fresh":
        held = (
            f"an earlier {stage} run"
            if found == stage
            else f"a {found!r} artefact"
            if found
            else _describe(names)
        )
        again = (
            "use --resume to continue it or --overwrite to start again"
            if resumable
            else "pass --overwrite to replace it"
        )
        hint = again if found == stage else "choose a new or empty folder"
        raise ArtifactError(f"{out} already holds {held}; {hint}")
    if names and found != stage:
        held = (
            f"a {found!r} artefact written by mllmrec"
            if found
            else f"files that mllmrec did not write: {_describe(names)}"
        )
        raise ArtifactError(
            f"--overwrite refuses to delete {out}: it holds {held}, not a {stage} run; "
            "choose a new or empty folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    # The manifest goes first and stays: a crash while deleting leaves a folder still marked as ours.
    write_manifest(out, {"status": "preparing"}, stage=stage)
    for name in names:
        if name == MANIFEST:
            continue
        p = out / name
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    return None


def check_identity(
    stored: dict[str, Any], current: dict[str, Any], *, out: str | Path, what: str = "run"
) -> None:
    """Refuse to resume when the settings or inputs that shape the result differ; list each one."""
    from mllmrec.config import diff_values

    current = json.loads(json.dumps(current, default=_jsonable))
    diffs = diff_values({k: stored.get(k) for k in current}, current)
    if diffs:
        lines = "\n".join(f"  {k}: {what} has {a!r}, this run has {b!r}" for k, a, b in diffs)
        raise ArtifactError(
            f"cannot resume {out}: the {what} was started with other settings or inputs:\n{lines}\n"
            "Use the original settings, or --overwrite to start again."
        )


# ---------------------------------------------------------------------------------------------
# Writer lock
# ---------------------------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class WriterLock:
    """An exclusive lock file in `out`, held while one process writes the folder.

    Created atomically with its contents (written to a temp file, then hard-linked into place, which
    fails if the lock exists), so a reader never sees an empty lock. A lock whose process is gone
    (same host, pid not running) is stale: it is taken over with a log line.
    """

    def __init__(self, out: str | Path, *, stage: str) -> None:
        self.out, self.stage = Path(out), stage
        self.path = self.out / LOCK
        self.held = False
        self._created = False  # the lock made the folder: release removes it again if nothing was written

    def holder(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}

    def acquire(self) -> WriterLock:
        self._created = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "stage": self.stage,
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        tmp = temp_name(self.path)
        tmp.write_text(json.dumps(me), encoding="utf-8")
        try:
            for _ in range(3):
                try:
                    os.link(tmp, self.path)
                    self.held = True
                    return self
                except FileExistsError:
                    h = self.holder()
                    if h is None:  # released meanwhile
                        continue
                    if not self._stale(h):
                        raise ArtifactError(
                            f"{self.out} is being written by another mllmrec process (pid {h.get('pid')} on "
                            f"{h.get('host')}, {h.get('stage')} since {h.get('since')}); wait for it to finish. "
                            f"If that process is gone, delete {self.path}"
                        ) from None
                    log.warning(
                        "%s: taking over a stale lock of pid %s on %s", self.out, h.get("pid"), h.get("host")
                    )
                    self.path.unlink(missing_ok=True)
            raise ArtifactError(f"could not take the writer lock {self.path}")
        finally:
            tmp.unlink(missing_ok=True)

    @staticmethod
    def _stale(h: dict[str, Any]) -> bool:
        if h.get("host") != socket.gethostname() or not isinstance(h.get("pid"), int):
            return False  # another machine (shared filesystem) or unreadable: cannot tell, keep it
        return h["pid"] != os.getpid() and not _pid_alive(h["pid"])

    def release(self) -> None:
        if self.held:
            h = self.holder()
            if h and h.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False
            if self._created and not any(self.out.iterdir()):
                self.out.rmdir()  # a run refused before writing anything leaves no folder behind

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
