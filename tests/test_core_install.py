"""The torch-only core (issue 24): ``pip install mixviz`` needs torch and
numpy; mixing and losses run with every optional package blocked, and a
missing extra names its ``pip install`` line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("pandas", "matplotlib", "seaborn", "captum", "torchmetrics", "scipy", "sklearn", "maxflow",
         "torchvision", "tqdm", "filelock")

BLOCKER = f"""
import importlib.abc, sys
BLOCKED = {HEAVY!r}
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None
sys.meta_path.insert(0, Refuse())
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_mixing_and_losses_run_a_cutmix_dm_step_without_the_optional_packages():
    done = _run("""
        import torch
        from mixviz import losses, mixing, models
        net = models.build("smallcnn", 10, (3, 16, 16))
        x, y = torch.rand(6, 3, 16, 16), torch.randint(0, 10, (6,))
        batch = mixing.mix("cutmix", x, y, alpha=1.0, generator=torch.Generator().manual_seed(0))
        loss = losses.build("dm", 10)(mixing.forward(net, batch), batch)
        loss.backward()
        images, targets = mixing.Mix("mixup", num_classes=10)(x, y)
        assert targets.shape == (6, 10)
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not leaked, leaked
        print("ok", float(loss))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")


def test_a_missing_extra_names_its_pip_install_line():
    done = _run("""
        import mixviz
        for name in ("analysis", "viz", "train", "stats"):
            try:
                getattr(mixviz, name)
            except ImportError as err:
                assert 'pip install "mixviz[analysis]"' in str(err), (name, str(err))
            else:
                raise AssertionError(name + " imported without pandas")
        import torch
        from mixviz import mixing
        try:
            mixing.mix("puzzlemix", torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), model=torch.nn.Sequential(
                torch.nn.Flatten(), torch.nn.Linear(192, 2)), block_num=2)
        except ImportError as err:
            assert 'pip install "mixviz[puzzlemix]"' in str(err), str(err)
        else:
            raise AssertionError("puzzlemix ran without PyMaxflow")
        print("ok")
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_required_dependencies_are_the_core_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = {d.split(">")[0].split("=")[0].split("<")[0].strip().lower() for d in project["dependencies"]}
    heavy = {"pandas", "matplotlib", "seaborn", "captum", "torchmetrics", "scipy", "scikit-learn", "pymaxflow"}
    assert not required & heavy, required & heavy
    assert "torch" in required
    extras = project["optional-dependencies"]
    assert {"analysis", "puzzlemix", "notebooks", "dev", "all"} <= set(extras)
    analysis = " ".join(extras["analysis"]).lower()
    assert all(name in analysis for name in heavy - {"pymaxflow"})
    assert any("pymaxflow" in d.lower() for d in extras["puzzlemix"])


def test_py_typed_ships_in_the_package():
    assert (ROOT / "mixviz" / "py.typed").is_file()
