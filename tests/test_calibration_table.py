"""Calibration after temperature scaling for a finished grid: the per-run table,
its Markdown report and the script that writes both."""

import importlib.util
import math
from pathlib import Path

import pandas as pd
import pytest

from mixviz import analysis, data, stats
from mixviz.experiments import Preset, compare
from mixviz.experiments.calibration import CALIBRATION_COLUMNS, calibration_markdown, temperature_table
from mixviz.runs import load_run

ROOT = Path(__file__).resolve().parent.parent
BASE = dict(model="smallcnn", epochs=2, batch_size=32, lr=0.05, device="cpu",
            dataset_options=dict(n_train=96, n_test=64, size=12, objects="shapes"), model_options=dict(width=4))
GRID = Preset("tiny-cal", "clutter, width-4 CNN, 2 epochs", bases={"clutter": BASE}, seeds=(0, 1),
              policies=("none", "mixup"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("cal")
    results = compare(GRID, root / "out", runs_root=root / "store", log=lambda *a: None, plots=False)
    return results, root


def test_the_table_has_one_row_per_run_with_the_analysis_numbers(finished):
    results, root = finished
    logged = []
    table = temperature_table(results, root / "store", log=logged.append)
    assert list(table.columns) == CALIBRATION_COLUMNS and len(table) == len(results) == 6
    assert list(table.run_id) == list(results.run_id) and len(logged) == 6
    run = load_run(root / "store" / results.run_id[0])
    test = data.load("clutter", "test", **BASE["dataset_options"])
    want = analysis.temperature_scaling(run.model, test.images, test.labels).iloc[0]
    got = table.iloc[0]
    for key in ("temperature", "accuracy", "ece", "ece_scaled", "nll", "nll_scaled"):
        assert got[key] == pytest.approx(float(want[key]), rel=1e-9)
    # the ECE before scaling is the one the run recorded
    assert table.ece.to_numpy() == pytest.approx(results.ece.to_numpy(), abs=1e-6)


def test_the_report_has_intervals_and_paired_differences(finished):
    results, root = finished
    table = temperature_table(results, root / "store", log=None)
    text = calibration_markdown(table)
    assert text.startswith("# Calibration after temperature scaling\n") and "## clutter" in text
    rows = [line for line in text.splitlines() if line.startswith("| mixup+mixup_ce | 2 |")]
    assert len(rows) == 2  # its summary row and its row against none+ce
    mine = table[table.method == "mixup+mixup_ce"].set_index("seed")
    base = table[table.method == "none+ce"].set_index("seed")
    iv = stats.paired_ci(mine.ece_scaled, base.ece_scaled)
    assert stats.format_ci(iv, 100, 1, signed=True) in rows[1]
    one = calibration_markdown(table[table.seed == 0])  # one seed: means without an interval
    assert "| none+ce | 1 |" in one and "±" not in one.split("## clutter")[1].split("Against")[0]
    with pytest.raises(ValueError, match="empty"):
        calibration_markdown(table.iloc[:0])
    with pytest.raises(ValueError, match="temperature"):
        calibration_markdown(table.drop(columns="temperature"))


def test_a_run_missing_from_the_store_is_named(finished, tmp_path):
    results, _ = finished
    with pytest.raises(FileNotFoundError, match=results.run_id[0]):
        temperature_table(results, tmp_path / "empty", log=None)


def test_the_script_writes_both_files_and_says_what_is_missing(finished, tmp_path, capsys):
    results, root = finished
    spec = importlib.util.spec_from_file_location("calibration_table", ROOT / "scripts" / "calibration_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "report"
    assert script.main(["--results", str(root / "out" / "results.csv"), "--runs", str(root / "store"),
                        "--out", str(out)]) == 0
    table = pd.read_csv(out / "calibration.csv")
    assert len(table) == 6 and not table.temperature.isna().any() and all(math.isfinite(t) for t in table.temperature)
    assert (out / "calibration.md").read_text() == calibration_markdown(table)
    assert script.main(["--results", str(root / "out" / "results.csv"), "--runs", str(tmp_path / "none")]) == 2
    assert "is not in" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main(["--results", str(tmp_path / "missing.csv")])


def test_a_table_without_regimes_is_grouped_by_data_set(finished):
    """The semi-supervised comparison writes no regime, policy or loss columns."""
    results, root = finished
    slim = results[["dataset", "method", "seed", "run_id"]]
    table = temperature_table(slim, root / "store", log=None)
    assert set(table.regime) == {"clutter"} and set(table.policy) == {"none", "mixup"}
    assert set(table.loss) == {"ce", "mixup_ce", "dm"}
    semi = slim.assign(labels_per_class=[4, 25] * 3)
    table = temperature_table(semi, root / "store", log=None)
    assert set(table.regime) == {"clutter, 4 labels per class", "clutter, 25 labels per class"}
