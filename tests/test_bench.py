"""``mixviz bench``: the per-method step timing and the GPU epoch."""

import math
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

import mixviz
from mixviz import bench, cli

TINY = dict(model="smallcnn", in_shape=(3, 8, 8), num_classes=3, batch_size=4, device="cpu",
            model_options=dict(width=4))
METHODS = (("none", "ce"), ("mixup", "mixup_ce"), ("cutmix", "dm"), ("average", "midpoint"),
           ("saliencymix", "mixup_ce"))
COLUMNS = ["policy", "loss", "sec_per_step", "vs_mixup", "images_per_sec"]
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")


def test_time_methods_one_row_per_method_relative_to_mixup():
    table = bench.time_methods(METHODS, steps=1, rounds=2, **TINY)
    assert list(table.columns) == COLUMNS
    assert list(zip(table.policy, table.loss)) == list(METHODS)
    assert (table.sec_per_step > 0).all() and table.sec_per_step.map(math.isfinite).all()
    ref = table.sec_per_step[1]
    assert table.vs_mixup[1] == 1.0
    assert list(table.vs_mixup) == [s / ref for s in table.sec_per_step]
    assert list(table.images_per_sec) == [4 / s for s in table.sec_per_step]
    # value checks are off while timing and restored afterwards
    assert bool(mixviz.validation()) is True


def test_time_methods_medians_of_interleaved_rounds(monkeypatch):
    """Each round times every method once, in order; the median of the rounds is reported."""
    # per method and round: (start, end) of `steps` = 2 steps
    durations = {("mixup", "mixup_ce"): [6, 2, 4], ("none", "ce"): [8, 8, 20]}
    order = [m for _ in range(3) for m in durations]   # round 1: mixup, none; round 2: ...
    clock, now = [], 0
    for r, m in enumerate(order):
        d = durations[m][r // 2]
        clock += [now, now + d]
        now += d + 1
    ticks = iter(clock)
    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    table = bench.time_methods(tuple(durations), steps=2, rounds=3, **TINY)
    assert next(ticks, "done") == "done"  # exactly two clock reads per method and round
    assert list(table.sec_per_step) == [2.0, 4.0]    # medians of (3, 1, 2) and (4, 4, 10)
    assert list(table.vs_mixup) == [1.0, 2.0]
    assert list(table.images_per_sec) == [2.0, 1.0]


def test_time_methods_without_the_mixup_reference_has_nan_ratios():
    table = bench.time_methods((("none", "ce"), ("cutmix", "mixup_ce")), steps=1, rounds=1, **TINY)
    assert list(table.columns) == COLUMNS
    assert table.vs_mixup.isna().all()
    assert (table.sec_per_step > 0).all()


@pytest.mark.parametrize("steps,rounds", [(0, 1), (1, 0), (-1, 3)])
def test_time_methods_rejects_empty_timing(steps, rounds):
    with pytest.raises(ValueError, match=f"steps and rounds must be >= 1, got {steps} and {rounds}"):
        bench.time_methods(METHODS, steps=steps, rounds=rounds, **TINY)


def test_default_methods_cover_every_policy_but_smoothmix():
    from mixviz import mixing

    assert set(p for p, _ in bench.DEFAULT_METHODS) == set(mixing.available()) - {"smoothmix"}
    assert ("mixup", "mixup_ce") in bench.DEFAULT_METHODS
    assert len(set(bench.DEFAULT_METHODS)) == len(bench.DEFAULT_METHODS)


@no_cuda
def test_gpu_epoch_without_cuda_raises_and_measures_nothing(monkeypatch):
    def never(*a, **kw):
        raise AssertionError("gpu_epoch built something without a GPU")

    monkeypatch.setattr(bench, "_setup", never)
    monkeypatch.setattr(bench, "_DeviceBatches", never)
    with pytest.raises(ValueError, match="device is 'cuda' but CUDA is not available here"):
        bench.gpu_epoch()
    for device in ("cpu", "auto"):
        with pytest.raises(ValueError, match="^gpu_epoch needs a CUDA device; none is available here$"):
            bench.gpu_epoch(device=device)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_epoch_on_cuda():
    res = bench.gpu_epoch(batch_size=50, n=200, epochs=2)
    assert set(res) == {"gpu", "batch_size", "sec_per_epoch", "images_per_sec", "policy", "loss"}
    assert res["gpu"] == torch.cuda.get_device_name(torch.device("cuda"))
    assert (res["batch_size"], res["policy"], res["loss"]) == (50, "mixup", "mixup_ce")
    assert res["sec_per_epoch"] > 0
    assert res["images_per_sec"] == 200 / res["sec_per_epoch"]


def test_cli_bench_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bench", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: mixviz bench")
    for flag in ("--steps", "--rounds", "--batch-size", "--gpu-batch-size", "--gpu-epochs", "--device"):
        assert flag in text


@no_cuda
def test_cmd_bench_passes_the_arguments_and_prints_the_table(monkeypatch, capsys):
    seen = {}
    table = pd.DataFrame({"policy": ["mixup"], "loss": ["mixup_ce"], "sec_per_step": [0.5], "vs_mixup": [1.0],
                          "images_per_sec": [8.0]})

    def fake_time_methods(**kw):
        seen.update(kw)
        return table

    def no_gpu_epoch(**kw):
        raise AssertionError("gpu_epoch called without a GPU")

    monkeypatch.setattr(bench, "time_methods", fake_time_methods)
    monkeypatch.setattr(bench, "gpu_epoch", no_gpu_epoch)
    assert cli.main(["bench", "--steps", "2", "--rounds", "3", "--batch-size", "4", "--device", "cpu"]) == 0
    assert seen == {"steps": 2, "rounds": 3, "batch_size": 4, "device": "cpu"}
    out = capsys.readouterr().out
    assert out == (f"device: cpu (CPU), torch {torch.__version__}, {torch.get_num_threads()} CPU threads\n"
                   "\nTraining step per method (smallcnn, 3x32x32, batch 4; median of 3 rounds):\n\n"
                   f"{bench.markdown_table(table)}\n"
                   "\nNo GPU here: the CIFAR-100 epoch-time measurement needs one and was not run.\n")


@no_cuda
def test_cmd_bench_out_writes_the_same_report(monkeypatch, capsys, tmp_path):
    table = pd.DataFrame({"policy": ["mixup"], "loss": ["mixup_ce"], "sec_per_step": [0.5], "vs_mixup": [1.0],
                          "images_per_sec": [8.0]})
    monkeypatch.setattr(bench, "time_methods", lambda **kw: table)
    out_file = tmp_path / "methods.md"
    assert cli.main(["bench", "--steps", "1", "--rounds", "1", "--device", "cpu", "--out", str(out_file)]) == 0
    printed = capsys.readouterr().out
    text = out_file.read_text()
    assert text.startswith("# mixviz bench\n\ndevice: cpu (CPU)")
    report = printed[: printed.index("\nwritten to")]
    assert text == "# mixviz bench\n\n" + report
    assert f"written to {out_file}" in printed and bench.markdown_table(table) in text


@no_cuda
def test_cmd_bench_end_to_end_on_cpu(capsys):
    assert cli.main(["bench", "--steps", "1", "--rounds", "1", "--batch-size", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("device: cpu (CPU), torch ")
    assert "Training step per method (smallcnn, 3x32x32, batch 2; median of 1 rounds):" in out
    assert out.endswith("\nNo GPU here: the CIFAR-100 epoch-time measurement needs one and was not run.\n")
    for policy, loss in bench.DEFAULT_METHODS:
        assert any(line.split("|")[1:3] == [f" {policy} ", f" {loss} "] for line in out.splitlines()), (policy, loss)
    header = "| policy "
    assert any(line.strip().startswith(header.strip()) for line in out.splitlines())


@no_cuda
def test_cmd_bench_on_cuda_without_cuda_is_an_error(capsys):
    assert cli.main(["bench", "--device", "cuda"]) == 2
    assert "mixviz bench: error: device is 'cuda' but CUDA is not available here" in capsys.readouterr().err


def test_markdown_table_formats_numbers_and_aligns_them():
    table = pd.DataFrame({"policy": ["mixup", "cutmix"], "loss": ["mixup_ce", "dm"], "sec_per_step": [0.251188, 0.5],
                          "vs_mixup": [1.0, 1.99062]})
    assert bench.markdown_table(table).splitlines() == [
        "| policy | loss | sec_per_step | vs_mixup |",
        "|---|---|---:|---:|",
        "| mixup | mixup_ce | 0.2512 | 1 |",
        "| cutmix | dm | 0.5 | 1.991 |",
    ]


def test_markdown_table_rejects_what_is_not_a_table():
    with pytest.raises(TypeError, match="table must be a pandas DataFrame"):
        bench.markdown_table([[1, 2]])


# ----------------------------------------------------------------------------- epoch_speed and loss_speed


def test_epoch_speed_extrapolates_from_a_few_steps_on_cpu():
    res = bench.epoch_speed(batch_size=4, n=400, num_classes=5, epochs=2, steps=2, model="smallcnn", device="cpu")
    assert res["extrapolated"] and res["steps_timed"] == 2 and res["device"] == "cpu" and res["gpu"] is None
    assert res["amp"] is False and res["channels_last"] is False and res["compile"] is False
    assert res["sec_per_epoch"] > 0
    assert res["images_per_sec"] == pytest.approx(100 * 4 / res["sec_per_epoch"])  # 100 steps of 4 per epoch
    assert bool(mixviz.validation()) is True


def test_epoch_speed_compile_times_the_first_step_apart(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda model, **kw: compiled.append(model) or model)
    res = bench.epoch_speed(batch_size=4, n=40, num_classes=5, epochs=1, steps=3, model="smallcnn", device="cpu",
                            compile=True)
    assert len(compiled) == 1 and res["compile"] and res["compile_sec"] > 0
    assert res["steps_timed"] == 2  # one epoch: the compiling step is left out


@pytest.mark.parametrize("kw, word", [(dict(batch_size=0), "batch_size"), (dict(n=-1), "n"),
                                      (dict(epochs=0), "epochs"), (dict(steps=0), "steps")])
def test_epoch_speed_checks_its_arguments(kw, word):
    with pytest.raises(ValueError, match=word):
        bench.epoch_speed(device="cpu", **kw)


def test_loss_speed_rows_and_ratios():
    table = bench.loss_speed(batch=16, num_classes=10, device="cpu", rounds=3, calls=2)
    assert list(table["loss"]) == ["soft-target CE", "mixup CE", "DM"]
    assert table.loc[0, "vs_soft_ce"] == 1.0 and (table["us_per_call"] > 0).all()
    assert table.attrs == {"batch": 16, "num_classes": 10, "device": "cpu", "compile_sec": None}


def test_loss_speed_with_a_compile_that_falls_back_fails(monkeypatch):
    """The fused row is only timed when the compile really worked."""
    from mixviz.losses import dm

    def broken(fn, **kw):
        def run(*a):
            raise RuntimeError("no compiler")
        return run

    monkeypatch.setattr(dm, "_COMPILED", {})
    monkeypatch.setattr(torch, "compile", broken)
    with pytest.raises(RuntimeError, match="compiled DM loss failed.*no compiler"):
        bench.loss_speed(batch=8, num_classes=5, device="cpu", rounds=1, calls=1, compile=True)
