"""The RecBole venv for `-m recbole` tests: the one CI built (MLLMREC_RECBOLE_PYTHON), else built
here by adapters/recbole/venv.sh (minutes, from PyPI, once; then reused). Never a skip: a test
marked `recbole` that is selected either gets real RecBole or fails."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def recbole_python() -> Path:
    given = os.environ.get("MLLMREC_RECBOLE_PYTHON")
    if given:
        assert Path(given).is_file(), f"MLLMREC_RECBOLE_PYTHON={given} does not exist"
        return Path(given)
    r = subprocess.run(
        [str(ROOT / "adapters" / "recbole" / "venv.sh"), str(ROOT / ".venv-recbole")],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert r.returncode == 0, f"building RecBole's venv failed:\n{r.stderr[-3000:]}"
    return Path(r.stdout.strip().splitlines()[-1])
