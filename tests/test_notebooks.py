"""The notebooks: committed without outputs, and each runs top to bottom
(nbclient, the venv's python3 kernel) under MIXVIZ_PRESET=quick with one run
store shared by the whole test session, so every quick run trains once."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(p.name for p in NB_DIR.glob("*.ipynb"))
EXPECTED = ["00_tour.ipynb", "01_mixed_samples.ipynb", "02_decision_boundaries.ipynb", "03_calibration.ipynb",
            "04_top1_top2_mismatch.ipynb", "05_saliency.ipynb", "08_semi_supervised.ipynb"]
CELL_TIMEOUT = 1800  # a cell may train the quick grid (minutes on a laptop CPU)


def _read(name: str):
    import nbformat

    return nbformat.read(NB_DIR / name, as_version=4)


def test_every_notebook_is_there():
    assert NOTEBOOKS == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_committed_without_outputs_and_with_a_parameters_cell(name):
    nb = _read(name)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, name
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, f"{name} has outputs: clear them before committing"
    assert 'os.environ.get("MIXVIZ_PRESET", "quick")' in code[0].source
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    sources = "\n".join(c.source for c in code)
    assert "mixviz" in sources and "viz." in sources


@pytest.fixture(scope="session")
def notebook_env(tmp_path_factory):
    """MIXVIZ_PRESET=quick, MPLBACKEND=Agg and one run store for the session
    (the kernels inherit the environment)."""
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


def _execute(nb):
    from nbclient import NotebookClient

    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(NB_DIR)}})
    return client.execute()


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


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_runs_top_to_bottom(name, venv_kernel, notebook_env):
    nb = _execute(_read(name))
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
    shown = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.outputs
                if o.get("output_type") in ("display_data", "execute_result", "stream"))
    assert shown > 0, f"{name} printed nothing"
    assert any(p.is_dir() for p in notebook_env.iterdir()), "the notebook stored no run"
