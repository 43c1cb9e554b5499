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


class Crash(RuntimeError):
    """Raised by :func:`crashed_and_resumed`'s step hook: the 'crash' of a run."""


@pytest.fixture
def crashed_and_resumed():
    """``run(config, out_dir, epoch=1, step=2)``: fit ``config`` into
    ``out_dir``, crash it at ``step`` of ``epoch`` (0-based epoch), check that
    the crash happened, then resume it and return the resumed Run."""
    from dataclasses import replace

    from mixviz.train import fit

    def run(config, out_dir, epoch=1, step=2):
        def crash(e, s):
            if e == epoch and s == step:
                raise Crash

        broken = replace(config, out_dir=str(out_dir))
        with pytest.raises(Crash):
            fit(broken, on_step=crash)
        return fit(broken, resume=True)

    return run
