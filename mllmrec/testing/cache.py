"""Build-once directories for the tiny test/demo models, safe when several processes race.

`cached_build(final, build)` returns `final` if a finished build is there, else runs
`build(tmp)` on an empty temporary directory beside `final`, marks it complete, makes it
readable for a shared cache and renames it into place. Readers therefore only ever see a
complete directory; when two processes build at once, the first rename wins and the loser's
copy is discarded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from mllmrec.errors import MllmrecError

# Written by `cached_build` after `build` returns and before the rename, so its presence is the
# one test for "finished" whatever the build writes (model loaders ignore unknown dotfiles).
COMPLETE_MARKER = ".mllmrec-cache-complete"


class CacheError(MllmrecError, RuntimeError):
    """Something that is not a finished build sits at a cache path; the message says to delete it."""


def is_complete(path: Path) -> bool:
    """`path` holds a finished `cached_build` (the marker is written after every other file)."""
    return (path / COMPLETE_MARKER).is_file()


def cached_build(final: Path, build: Callable[[Path], object]) -> Path:
    """Return `final`, first filling it with `build(directory)` unless a finished build is there.

    `build` receives an existing empty directory on the same filesystem as `final` and must
    fill it (or replace it with a directory of the same name); its return value is ignored.
    """
    final = Path(final)
    if is_complete(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    # Hidden name on the same filesystem, so os.replace is an atomic rename.
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        build(tmp)
        (tmp / COMPLETE_MARKER).write_text("complete\n", encoding="utf-8")
        _make_readable(tmp)
        try:
            # Replaces an empty directory too; fails if another process already put a build there.
            os.replace(tmp, final)
        except OSError as err:
            if not is_complete(final):
                raise CacheError(f"{final} exists but is not a complete cached build; delete it") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _make_readable(root: Path) -> None:
    """Open up permissions for a shared cache: mkdtemp creates the directory 0700, and
    transformers 5.x writes model.safetensors 0600 (also inside subdirectories)."""
    os.chmod(root, 0o755)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
