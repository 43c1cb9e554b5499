import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _value_checks_on():
    """Every test starts with value checks on and leaves them as it found them."""
    import mixviz

    with mixviz.validation(True):
        yield


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    """An empty run store for the test."""
    root = tmp_path / "runs"
    monkeypatch.setenv("MIXVIZ_RUNS", str(root))
    return root


def pytest_configure(config):
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
