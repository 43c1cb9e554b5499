"""Every run records where it ran (issue 18, item 4): metrics.json's
``machine``, the ``machine`` column of results.csv; run ids do not change and
older tables without the column still read."""

import json
import math

import pandas as pd
import pytest
import torch

from mixviz import experiments, runs
from mixviz.machine import MACHINE_KEYS, machine_info, machine_text
from mixviz.train import TrainConfig

MOONS = dict(dataset="moons", model="mlp", epochs=1, batch_size=32, lr=0.05, device="cpu",
             dataset_options=dict(n=128), model_options=dict(hidden=16, depth=2), progress=False)


def test_machine_info_names_cpu_cores_threads_torch_and_device():
    info = machine_info("cpu")
    assert tuple(info) == MACHINE_KEYS
    assert info["cores"] >= 1 and info["threads"] == torch.get_num_threads()
    assert info["torch"] == torch.__version__ and info["device"] == "cpu" and info["cpu"]
    with pytest.raises(TypeError, match="device"):
        machine_info(3)


def test_machine_text_is_one_short_line():
    info = {"cpu": "Some CPU", "cores": 2, "threads": 1, "torch": "2.5.1", "device": "cpu", "device_name": "Some CPU"}
    assert machine_text(info) == "Some CPU, 2 cores, 1 thread, torch 2.5.1, cpu"
    gpu = dict(info, threads=8, device="cuda:0", device_name="NVIDIA H200")
    assert machine_text(gpu) == "Some CPU, 2 cores, 8 threads, torch 2.5.1, cuda:0 (NVIDIA H200)"
    assert machine_text(None) == "" and machine_text(math.nan) == ""
    with pytest.raises(TypeError, match="info"):
        machine_text("a string")


def test_a_run_records_its_machine_without_changing_its_id(tmp_path):
    config = TrainConfig(**MOONS)
    before = runs.config_id(config)
    run = runs.load_or_train(config, tmp_path)
    assert runs.config_id(config) == before  # the machine is not part of the config
    stored = json.loads((tmp_path / before / "metrics.json").read_text())
    assert stored["machine"] == machine_info("cpu")
    assert run.metrics["machine"] == stored["machine"]
    loaded = runs.load_or_train(config, tmp_path)  # loaded, not trained: the record comes back
    assert loaded.metrics["machine"] == stored["machine"]
    row = experiments.result_row(loaded, before)
    assert row["machine"] == machine_text(stored["machine"]) and row["machine"].endswith(", cpu")
    assert list(row) == experiments.RESULT_COLUMNS and experiments.RESULT_COLUMNS[-1] == "machine"


def test_a_run_without_a_record_gives_an_empty_machine_cell():
    from types import SimpleNamespace

    run = SimpleNamespace(config=TrainConfig(**MOONS), metrics={"test_acc": 0.5})
    assert experiments.result_row(run, "x")["machine"] == ""


def test_results_of_new_runs_carry_the_machine_and_old_tables_still_read(tmp_path):
    p = experiments.Preset("t", "", bases={"moons": {k: v for k, v in MOONS.items() if k != "dataset"}},
                           seeds=(0, 1), policies=("none", "mixup"), skip=("mixup+dm",))
    results = experiments.compare(p, tmp_path / "out", runs_root=tmp_path / "store", log=lambda _: None,
                                  plots=False)
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    assert list(table.columns) == experiments.RESULT_COLUMNS
    assert set(table["machine"]) == {machine_text(machine_info("cpu"))}
    # an older results.csv has no machine column: the tables still build, and resume keeps its rows
    old = results.drop(columns="machine")
    pd.testing.assert_frame_equal(experiments.paired_effects(old), experiments.paired_effects(results))
    old.to_csv(tmp_path / "out" / "results.csv", index=False)
    again = experiments.compare(p, tmp_path / "out", resume=True, runs_root=tmp_path / "store", log=lambda _: None,
                                plots=False)
    assert len(again) == len(results) and again["machine"].isna().all()
