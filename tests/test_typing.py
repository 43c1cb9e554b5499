"""mypy passes on the public core (the files of ``[tool.mypy]`` in
pyproject.toml); ``make test`` runs this.  The package ships ``py.typed``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_passes_on_the_public_core():
    pytest.importorskip("mypy", reason="mypy is pinned in requirements.txt (make setup installs it)")
    done = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def test_py_typed_is_in_the_package():
    assert (ROOT / "mixviz" / "py.typed").is_file()
