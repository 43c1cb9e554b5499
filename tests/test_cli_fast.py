"""The CLI answers at once (issue 24): ``--help`` and ``--version`` import
neither torch nor pandas, help texts show no ``%%`` and no repository
paths, and training without a terminal logs one plain line per epoch."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mixviz(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "mixviz", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)


def test_help_imports_neither_torch_nor_pandas():
    code = ("import sys\nfrom mixviz.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n"
            "    assert e.code == 0\nheavy = [m for m in ('torch', 'pandas', 'torchvision', 'matplotlib') "
            "if m in sys.modules]\nassert not heavy, heavy\nprint('clean')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert "COMMAND" in done.stdout and done.stdout.strip().endswith("clean")
    start = time.perf_counter()
    assert _mixviz("--help").returncode == 0
    assert time.perf_counter() - start < 5.0  # about 0.05 s on this project's CPU; generous for a loaded one


def test_version_exits_zero():
    from mixviz import __version__

    done = _mixviz("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"mixviz {__version__}"


@pytest.mark.parametrize("command", ["compare", "figures", "doctor"])
def test_command_help_has_no_escapes_or_repository_paths(command):
    from mixviz.cli import build_parser

    text = build_parser(command)._subparsers._group_actions[0].choices[command].format_help()
    assert "%%" not in text
    assert "scripts/" not in text and "benchmarks/" not in text


def test_training_without_a_terminal_logs_one_line_per_epoch(tmp_path, capsys):
    from mixviz.train import TrainConfig, fit

    config = TrainConfig(dataset="moons", model="mlp", policy="mixup", loss="mixup_ce", epochs=2, batch_size=64,
                         device="cpu", progress=True, dataset_options={"n": 192})
    fit(config)
    lines = [line for line in capsys.readouterr().err.splitlines() if " epoch " in line]
    assert len(lines) == 2 and lines[0].startswith("mixup/mixup_ce epoch 1/2: train_loss"), lines
