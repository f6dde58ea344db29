"""Lazy package exports: `from mllmrec.catalog import load_catalog` works, while importing the
package alone (as `cli.py` does to read a stage's config) pulls in none of its heavy modules."""

from __future__ import annotations

import importlib
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]):
    """A module `__getattr__` resolving each exported name from its submodule on first use."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    return __getattr__
