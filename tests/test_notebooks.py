"""The notebooks.

* Committed *with* outputs, executed by their committed code: the hash of
  their code cells that ``make notebooks`` (scripts/run_notebooks.py) stored in
  their metadata matches, no cell has an error output, and each file stays
  under 2 MB.
* Each runs top to bottom (nbclient, the venv's python3 kernel) from an empty
  run store under MIXVIZ_PRESET=quick, on a copy: one run store is shared by the
  whole test session, so every quick run trains once.
* The DM notebook's numbers are those of mixviz.losses.
* The pinned environment starts JupyterLab, and ``make lab`` / ``make
  notebooks`` run what the README says.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(p.name for p in NB_DIR.glob("*.ipynb"))
FIRST = ["00_tour.ipynb", "01_mixed_samples.ipynb", "02_decision_boundaries.ipynb", "03_calibration.ipynb",
         "04_top1_top2_mismatch.ipynb", "05_saliency.ipynb", "06_dm_loss.ipynb", "07_your_model.ipynb",
         "08_semi_supervised.ipynb"]
CELL_TIMEOUT = 900  # a cell may train the quick grid (3 to 5 minutes on a 2-core CPU)


def _runner():
    spec = importlib.util.spec_from_file_location("run_notebooks_under_test", ROOT / "scripts" / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = _runner()


def _read(name: str):
    import nbformat

    return nbformat.read(NB_DIR / name, as_version=4)


def test_the_notebooks_are_there():
    assert NOTEBOOKS[:len(FIRST)] == FIRST
    assert all(re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", n) for n in NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_title_parameters_and_package_calls(name):
    nb = _read(name)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert code and code[0].source.startswith("# Parameters")
    assert 'os.environ.get("MIXVIZ_PRESET", "quick")' in code[0].source
    sources = "\n".join(c.source for c in code)
    if "load_or_train" in sources or "collect(" in sources:
        assert 'os.environ.get("MIXVIZ_RUNS"' in code[0].source
    assert "mixviz" in sources and "viz." in sources
    assert "viz.inline_png()" in sources  # figures stored as small palette PNGs


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_outputs_come_from_the_committed_code(name):
    """make notebooks executed this very notebook: the stored hash of its code
    cells matches, nothing failed, and the file stays small."""
    assert runner.problems(NB_DIR / name) == []
    nb = _read(name)
    shown = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert shown, f"{name} has no outputs"
    assert all(c.execution_count is not None for c in nb.cells if c.cell_type == "code")


def test_source_hash_sees_code_only():
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), nbformat.v4.new_code_cell("x = 1")]
    h = runner.source_hash(nb)
    nb.cells[0].source = "# other words"
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="1")]
    nb.metadata["mixviz"] = {"source_hash": "x"}
    assert runner.source_hash(nb) == h
    nb.cells[1].source = "x = 2"
    assert runner.source_hash(nb) != h
    nb.cells[1].source = ["x = ", "2"]  # a source stored as a list of lines hashes like the joined string
    assert runner.source_hash(nb) == runner.source_hash({"cells": [{"cell_type": "code", "source": "x = 2"}]})


def test_problems_names_what_is_wrong(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("1 / 0")]
    nb.cells[0].outputs = [nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                                                  traceback=[])]
    path = tmp_path / "a.ipynb"
    nbformat.write(nb, path)
    assert any("never executed" in p for p in runner.problems(path))
    nb.metadata["mixviz"] = {"source_hash": runner.source_hash(nb)}
    nbformat.write(nb, path)
    assert runner.problems(path) == ["error output ZeroDivisionError: division by zero"]
    nb.cells[0].source = "1 / 1"
    nb.cells[0].outputs = []
    nbformat.write(nb, path)
    assert runner.problems(path) == ["its outputs come from other code cells than the committed ones: "
                                     "run make notebooks"]
    nb.metadata["mixviz"]["source_hash"] = runner.source_hash(nb)
    nbformat.write(nb, path)
    assert runner.problems(path) == [] and runner.problems(path, max_mb=1e-6)[0].endswith("MB")


def test_readme_table_lists_every_notebook():
    text = (ROOT / "README.md").read_text()
    section = text.split(runner.BEGIN)[1].split(runner.END)[0]
    for name in NOTEBOOKS:
        assert f"[`{name}`](notebooks/{name})" in section
    assert runner.update_readme(text, [NB_DIR / n for n in NOTEBOOKS]) == text, "run make notebooks"


# --------------------------------------------------------------------------- JupyterLab and make


def test_jupyterlab_starts_in_the_pinned_environment():
    """`make setup` installs JupyterLab (pinned), so the README's
    `.venv/bin/jupyter lab notebooks/` works as written."""
    pytest.importorskip("nbclient")  # an environment set up for the notebooks
    pins = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    jupyter = Path(sys.executable).parent / "jupyter"
    assert jupyter.exists(), f"{jupyter} is missing: make setup installs jupyterlab=={pins['jupyterlab']}"
    out = subprocess.run([str(jupyter), "lab", "--version"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == pins["jupyterlab"]


def test_make_lab_and_make_notebooks():
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    venv = Path(sys.prefix)
    lab = subprocess.run([make, "-n", "lab", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert f'MIXVIZ_RUNS="{ROOT}/runs" MIXVIZ_PRESET=quick {venv}/bin/jupyter lab notebooks/' in lab.stdout
    run = subprocess.run([make, "-n", "notebooks", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert f'{venv}/bin/python scripts/run_notebooks.py --preset quick --runs "{ROOT}/runs"' in run.stdout


# --------------------------------------------------------------------------- executing copies


@pytest.fixture(scope="session")
def notebook_env(tmp_path_factory):
    """MIXVIZ_PRESET=quick, MPLBACKEND=Agg and one empty run store for the
    session (the kernels inherit the environment)."""
    runs = tmp_path_factory.mktemp("notebook-runs")
    values = {"MIXVIZ_PRESET": "quick", "MPLBACKEND": "Agg", "MIXVIZ_RUNS": str(runs)}
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield runs
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _execute(nb, attempts: int = 2):
    """Execute ``nb`` (a copy) in a fresh kernel.  Once in a CI run the client
    waited for a cell's reply that never came, with the kernel idle (a lost
    message between nbclient and ipykernel 7's shell-channel thread): a cell
    that times out is run again, notebook and all, in a new kernel (the runs it
    trained are stored, so the second try only loads them).  A cell that
    *fails* is not retried."""
    import copy

    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError

    for attempt in range(attempts):
        client = NotebookClient(copy.deepcopy(nb), timeout=CELL_TIMEOUT, kernel_name="python3",
                                record_timing=False, resources={"metadata": {"path": str(NB_DIR)}})
        try:
            return client.execute()
        except CellTimeoutError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def venv_kernel(notebook_env):
    """The python3 kernel must be this interpreter's (the venv's) Python."""
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os, sys; print(sys.prefix); print(os.environ['MIXVIZ_RUNS'])")]
    out = _execute(nb).cells[0].outputs[0]["text"].split()
    assert out == [sys.prefix, str(notebook_env)], (out, sys.prefix)


def _errors(nb) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NOTEBOOKS if n != "06_dm_loss.ipynb"])
def test_notebook_runs_top_to_bottom(name, venv_kernel, notebook_env):
    nb = _execute(_read(name))
    assert not _errors(nb)
    shown = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.outputs
                if o.get("output_type") in ("display_data", "execute_result", "stream"))
    assert shown > 0, f"{name} printed nothing"
    assert any(p.is_dir() for p in notebook_env.iterdir()), "the notebook stored no run"


#: Appended to a copy of the DM notebook: its numbers, as JSON, for the test to recompute.
DM_PROBE = """
import json
print(json.dumps({
    "found_a": {row: found_a.loc[row, ["loss", "grad_z_a", "grad_z_b", "grad_z_rest"]].tolist()
                for row in ("mixup CE", "DM")},
    "num_classes": NUM_CLASSES,
    "argmin": {k: list(v) for k, v in static_grid["argmin"].items()},
    "step": static_grid["step"], "lam": static_grid["lam"], "eta": static_grid["eta"],
    "trace_rows": len(trace), "trace_first": trace.groupby("loss_name").head(1).set_index("loss_name")["loss"].to_dict(),
    "x_labels": y[:8].tolist(),
}))
"""


@pytest.mark.slow
def test_dm_notebook_runs_and_its_numbers_are_the_losses(venv_kernel, notebook_env):
    """06_dm_loss runs top to bottom without a trained run, and what it shows
    is what mixviz.losses computes."""
    import nbformat
    import torch

    from mixviz import analysis, figures, losses

    nb = _read("06_dm_loss.ipynb")
    nb.cells.append(nbformat.v4.new_code_cell(DM_PROBE))
    before = set(notebook_env.iterdir())
    nb = _execute(nb)
    assert not _errors(nb)
    assert set(notebook_env.iterdir()) == before, "the DM notebook must not train a run"
    got = json.loads(nb.cells[-1].outputs[0]["text"])
    c = got["num_classes"]
    # "found only a": lam 0.5, eta 1, mode both, z = (3, 0, 0, ...)
    z = torch.tensor([[3.0, 0.0] + [0.0] * (c - 2)], dtype=torch.float64, requires_grad=True)
    y_a, y_b = torch.tensor([0]), torch.tensor([1])
    for row, fn in (("mixup CE", lambda z: losses.mixup_cross_entropy(z, y_a, y_b, 0.5)),
                    ("DM", lambda z: losses.decoupled_mixup_loss(z, y_a, y_b, 0.5, eta=1.0, mode="both"))):
        value = fn(z)
        (grad,) = torch.autograd.grad(value, z)
        assert got["found_a"][row] == pytest.approx([float(value.detach()), *grad[0, :3].tolist()], rel=1e-9, abs=1e-12)
    # the heat map: mixup CE's minimum at p = (lam, 1 - lam) within a grid step; DM's moves towards p_b
    lam, step = got["lam"], got["step"]
    p_a, p_b = got["argmin"]["mixup_ce"]
    assert abs(p_a - lam) <= step and abs(p_b - (1 - lam)) <= step
    assert got["argmin"]["dm"][1] > p_b and got["eta"] == 1.0
    # the trace starts from the same weights for both losses, on the clutter images of the preset
    assert got["trace_rows"] == 2 * 300
    test = figures.clutter_eval_set("quick")
    assert got["x_labels"] == test.labels[:8].tolist()
    mixed = analysis.mix_at_lam("cutmix", test.images[:128], test.labels[:128], 0.7)
    torch.manual_seed(0)
    start = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(test.images[0].numel(), c))
    with torch.no_grad():
        z0 = start(mixed.inputs)
    assert got["trace_first"]["mixup_ce"] == pytest.approx(
        float(losses.mixup_cross_entropy(z0, mixed.y_a, mixed.y_b, mixed.lam)), rel=1e-5)
    assert got["trace_first"]["dm"] == pytest.approx(
        float(losses.decoupled_mixup_loss(z0, mixed.y_a, mixed.y_b, mixed.lam, eta=1.0)), rel=1e-5)


# --------------------------------------------------------------------------- inline figures


def test_inline_png_registers_a_palette_png_formatter():
    """Notebook figures go through the same PNG writer as the committed files."""
    pytest.importorskip("IPython")
    import io

    import matplotlib
    import matplotlib.pyplot as plt
    from IPython.core.interactiveshell import InteractiveShell
    from matplotlib.figure import Figure
    from PIL import Image

    from mixviz import viz

    assert viz.inline_png() is None  # outside IPython: nothing to do
    class Shell(InteractiveShell):  # a kernel's shell has GUI hooks; the bare one raises NotImplementedError
        def enable_gui(self, gui=None):
            pass

    backend = matplotlib.get_backend()
    shell = Shell.instance()
    try:
        viz.inline_png(dpi=40, colors=16)
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        data, _ = shell.display_formatter.format(fig)
        png = data["image/png"]
        png = png if isinstance(png, bytes) else __import__("base64").b64decode(png)
        assert png == viz.png_bytes(fig, 40, 16)
        image = Image.open(io.BytesIO(png))
        assert image.mode == "P" and len(image.getcolors(256)) <= 16
        assert "image/svg+xml" not in data
        plt.close(fig)
        assert isinstance(fig, Figure)
        assert matplotlib.is_interactive()  # %matplotlib inline: every new figure is shown
    finally:
        Shell.clear_instance()
        plt.switch_backend(backend)
        matplotlib.interactive(False)
    with pytest.raises(ValueError, match="colors"):
        viz.inline_png(colors=1000)


def test_a_cell_that_times_out_is_run_again_once_in_a_new_kernel(monkeypatch):
    import nbclient
    import nbformat
    from nbclient.exceptions import CellTimeoutError

    calls = []

    class Client:
        def __init__(self, nb, **kw):
            self.nb = nb
            calls.append(kw["timeout"])

        def execute(self):
            if len(calls) == 1:
                raise CellTimeoutError("no reply")
            self.nb.metadata["ran"] = True
            return self.nb

    monkeypatch.setattr(nbclient, "NotebookClient", Client)
    nb = nbformat.v4.new_notebook()
    out = _execute(nb)
    assert calls == [CELL_TIMEOUT, CELL_TIMEOUT] and out.metadata["ran"] and "ran" not in nb.metadata
    calls.clear()

    class Stuck(Client):
        def execute(self):
            raise CellTimeoutError("no reply")

    monkeypatch.setattr(nbclient, "NotebookClient", Stuck)
    with pytest.raises(CellTimeoutError):
        _execute(nb)
    assert len(calls) == 2
