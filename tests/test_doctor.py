"""``mixviz doctor``: the checks' logic (the CUDA branches too, run on the CPU),
the report, a deliberately broken policy, and one quick run of the command."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from types import MappingProxyType, SimpleNamespace

import pandas as pd
import pytest
import torch

import mixviz
from mixviz import cli, doctor, losses, mixing
from mixviz.doctor import correctness, speed, training
from mixviz.doctor.report import Check, Report, run_check
from mixviz.mixing import registry

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def batch():
    return correctness.sample_batch(CPU)


# ----------------------------------------------------------------------------- CUDA branches, decided on the CPU


def test_precisions_bf16_and_channels_last_on_cuda_only():
    assert correctness.precisions(CPU) == [correctness.Precision("fp32", amp=False, channels_last=False)]
    assert correctness.precisions(torch.device("mps")) == correctness.precisions(CPU)
    cuda = correctness.precisions(torch.device("cuda", 1))
    assert [(p.name, p.amp, p.channels_last) for p in cuda] == [("fp32", False, False),
                                                                ("bf16 + channels_last", True, True)]


def test_the_bf16_channels_last_step_runs_its_code_on_the_cpu(batch):
    """The CUDA precision (bf16 autocast + channels_last) through the same
    step function, for every policy (CPU autocast has bf16 too): the model is
    channels_last and the step is finite (e.g. PuzzleMix's graph cut gets its
    costs in float64, not bf16, on the host)."""
    x, y, num_classes = batch
    x, y = x[:8], y[:8]
    precision = correctness.precisions(torch.device("cuda"))[1]
    for policy in mixing.available():
        check = correctness.step_check(policy, "dm", precision, CPU, x, y, num_classes)
        assert check.status == "pass", (policy, check.detail)
        assert math.isfinite(check.data["loss_value"])


def test_bench_setup_channels_last_choice():
    from mixviz import bench
    from mixviz.train import TrainConfig

    config = TrainConfig(dataset="clutter", model="smallcnn", policy="mixup", loss="mixup_ce", device="cpu",
                         progress=False, model_options=dict(width=4), amp="off")
    model, _ = bench._setup(config, 5, (3, 8, 8), CPU, 2, channels_last=True)
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert not all(w.is_contiguous() for w in convs)
    model, _ = bench._setup(config, 5, (3, 8, 8), CPU, 2)  # None: channels_last only on CUDA
    assert all(m.weight.is_contiguous() for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def test_every_generator_of_a_step_is_on_the_step_device(monkeypatch, batch):
    seen = []
    real = registry.mix

    def spy(policy, x, y, **kw):
        seen.append((kw["generator"].device, x.device))
        return real(policy, x, y, **kw)

    monkeypatch.setattr(registry, "mix", spy)
    monkeypatch.setattr(mixing, "mix", spy)
    x, y, num_classes = batch
    for policy in ("mixup", "puzzlemix"):
        check = correctness.step_check(policy, "mixup_ce", correctness.precisions(CPU)[0], CPU, x, y, num_classes)
        assert check.status == "pass", check.detail
    assert len(seen) == 2 and all(g == d == CPU for g, d in seen)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_every_generator_of_a_step_is_on_the_gpu(monkeypatch):
    seen = []
    real = registry.mix

    def spy(policy, x, y, **kw):
        seen.append((kw["generator"].device.type, x.device.type))
        return real(policy, x, y, **kw)

    monkeypatch.setattr(mixing, "mix", spy)
    dev = torch.device("cuda")
    x, y, num_classes = correctness.sample_batch(dev)
    check = correctness.step_check("cutmix", "dm", correctness.precisions(dev)[1], dev, x, y, num_classes)
    assert check.status == "pass", check.detail
    assert seen == [("cuda", "cuda")]


def test_compare_tolerance_logic():
    g = torch.tensor([[0.5, -2.0], [1.0, 0.25]], dtype=torch.float64)
    loss = torch.tensor(3.0, dtype=torch.float64)
    assert correctness.compare((loss, g), (loss, g.clone())) == (True, 0.0, 0.0)
    ok, loss_err, grad_err = correctness.compare((loss, g), (loss * (1 + 5e-5), g + 1e-3))
    assert ok and loss_err == pytest.approx(5e-5, rel=1e-3) and grad_err == pytest.approx(1e-3 / 2.0)
    assert not correctness.compare((loss, g), (loss * (1 + 2e-4), g))[0]            # loss off by 2e-4
    assert not correctness.compare((loss, g), (loss, g + 5e-3))[0]                  # gradient off by 2.5e-3
    small = torch.tensor(1e-3, dtype=torch.float64)                                                       # |loss| < 1: absolute
    assert correctness.compare((small, g), (small + 5e-5, g))[0]
    assert not correctness.compare((loss, g), (torch.tensor(float("nan")), g))[0]    # NaN never passes
    zero = torch.zeros(2, 2)
    assert correctness.compare((loss, zero), (loss, zero + 1e-4)) == (True, 0.0, pytest.approx(1e-4))
    with pytest.raises(ValueError, match="shape"):
        correctness.compare((loss, g), (loss, g[0]))


def test_cpu_vs_device_comparison_on_the_cpu_and_with_a_device_that_is_off(monkeypatch, batch):
    """CPU against "device" = CPU agrees exactly; a device that computes
    differently (here: the moved batch is perturbed) fails, with the numbers."""
    x, y, num_classes = batch
    for policy, loss in (("cutmix", "dm"), ("puzzlemix", "midpoint"), ("mixup", "ce")):
        check = correctness.compare_check(policy, loss, CPU, x, y, num_classes)
        assert check.status == "pass", check.detail
        assert check.data["loss_err"] == 0.0 and check.data["grad_err"] == 0.0
    real_to = mixing.MixedBatch.to

    def off_by_a_bit(self, device, non_blocking=False):
        moved = real_to(self, device, non_blocking)
        return dataclasses.replace(moved, inputs=moved.inputs * 1.01)

    monkeypatch.setattr(mixing.MixedBatch, "to", off_by_a_bit)
    check = correctness.compare_check("cutmix", "dm", CPU, x, y, num_classes)
    assert check.status == "fail"
    assert check.data["grad_err"] > correctness.GRAD_RTOL or check.data["loss_err"] > correctness.LOSS_RTOL
    assert "CPU" in check.detail and "rel. error" in check.detail


def test_policy_model_is_the_one_place_a_policy_gets_its_model(monkeypatch):
    model = torch.nn.Linear(2, 2)
    assert correctness.policy_model("mixup", model) is None
    assert correctness.policy_model("saliencymix", model) is model
    # a policy with a learned state gets it from mixing.build_state
    info = dataclasses.replace(registry.POLICIES["cutmix"], kind="dynamic", needs_model=True)
    object.__setattr__(info, "state", object())
    monkeypatch.setattr(mixing, "policy_info", lambda name: info)
    built = torch.nn.Identity()
    monkeypatch.setattr(mixing, "build_state", lambda name, m: built if m is model else None, raising=False)
    assert correctness.policy_model("learned", model) is built
    monkeypatch.delattr(mixing, "build_state")
    with pytest.raises(RuntimeError, match="policy 'learned' has a learned state"):
        correctness.policy_model("learned", model)


def test_nondeterministic_operations_are_read_from_the_warnings():
    messages = [
        "scatter_add_cuda_kernel does not have a deterministic implementation, but you set "
        "'torch.use_deterministic_algorithms(True, warn_only=True)'. You can file an issue at ...",
        "upsample_bilinear2d_backward_out_cuda does not have a deterministic implementation, but ...",
        "scatter_add_cuda_kernel does not have a deterministic implementation, but ...",
        "Deterministic behavior was enabled with either `torch.use_deterministic_algorithms(True)` ... but this "
        "operation is not deterministic because it uses CuBLAS and you have CUDA >= 10.2.",
        "some other warning",
    ]
    assert correctness.nondeterministic_ops(messages) == [
        "cuBLAS (CUBLAS_WORKSPACE_CONFIG not set)", "scatter_add_cuda_kernel", "upsample_bilinear2d_backward_out_cuda"]
    with correctness.nondeterminism_watch(CPU) as seen:
        torch.zeros(3).index_add_(0, torch.tensor([0, 0]), torch.ones(2))
    assert seen == [] and not torch.are_deterministic_algorithms_enabled()


# ----------------------------------------------------------------------------- a deliberately broken policy


@pytest.fixture
def nan_cutmix(monkeypatch):
    """cutmix patched to return NaN images."""
    info = registry.POLICIES["cutmix"]

    def broken(x, y, **kw):
        mixed = info.fn(x, y, **kw)
        return dataclasses.replace(mixed, inputs=torch.full_like(mixed.inputs, float("nan")))

    patched = dict(registry.POLICIES)
    patched["cutmix"] = dataclasses.replace(info, fn=broken)
    monkeypatch.setattr(registry, "POLICIES", MappingProxyType(patched))


def test_a_policy_that_returns_nan_fails_by_name(nan_cutmix):
    rep = doctor.run("cpu", sections=["correctness"], policies=["mixup", "cutmix"], losses=["mixup_ce", "dm"],
                     echo=None)
    failed = {c.name for c in rep.failed()}
    assert failed == {"fp32 step: cutmix + mixup_ce", "fp32 step: cutmix + dm", "mixed Top-1/Top-2 metric (cutmix)"}
    assert rep.exit_code() == 1
    assert "cutmix" in rep.summary() and "FAILED" in rep.summary()
    assert "**FAIL**" in rep.to_markdown() and "NaN" in " ".join(c.detail for c in rep.failed())


def test_the_command_exits_non_zero_and_names_the_broken_policy(nan_cutmix, capsys, tmp_path):
    out = tmp_path / "doctor.md"
    code = cli.main(["doctor", "--device", "cpu", "--sections", "correctness", "--policies", "mixup,cutmix",
                     "--losses", "mixup_ce", "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("mixviz doctor: failed: correctness: fp32 step: cutmix + mixup_ce")
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["result"] == "fail" and saved["failed"] == ["correctness: fp32 step: cutmix + mixup_ce",
                                                             "correctness: mixed Top-1/Top-2 metric (cutmix)"]


# ----------------------------------------------------------------------------- training: resume logic


class _FakeRun(SimpleNamespace):
    pass


def _fake_fit(weights: dict[str, list[float]]):
    """A stand-in for fit: each out_dir's run ends with the given weight."""
    calls = []

    def fit(config, resume=False, on_step=None):
        calls.append((Path(config.out_dir).name, resume))
        if on_step is not None:
            on_step(0, 1)
            on_step(1, 2)          # the doctor interrupts here (step 2 of epoch 2 of 4 steps)
        model = torch.nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            model.weight.fill_(weights[Path(config.out_dir).name][resume])
        history = pd.DataFrame({"train_loss": [2.0, 1.5], "test_nll": [2.1, 1.9], "test_acc": [0.2, 0.3]})
        return _FakeRun(model=model, history=history, metrics={"test_acc": 0.3, "sec_per_epoch": 0.5,
                                                               "images_per_sec": 256.0})
    return fit, calls


@pytest.mark.parametrize("resumed, control, status, words", [
    (1.0, 1.0, "pass", "identical weights"),
    (1.001, 1.002, "pass", "nondeterministic kernels on this device (index_add_cuda_)"),
    (1.001, 1.0, "fail", "while two unbroken runs are identical"),
])
def test_resume_check_tells_nondeterminism_from_a_resume_bug(monkeypatch, resumed, control, status, words):
    import mixviz.train

    fit, calls = _fake_fit({"a": [1.0, 1.0], "b": [0.0, resumed], "c": [control, control]})
    monkeypatch.setattr(mixviz.train, "fit", fit)
    monkeypatch.setattr(training, "plan", lambda device, quick: dict(
        model="smallcnn", batch_size=32, model_options={}, dataset_options=dict(n_train=128, n_test=32)))
    fit_check, resume_check = list(training.checks(CPU, True, ["index_add_cuda_"]))
    assert fit_check.status == "pass" and "2.000 -> 1.500" in fit_check.detail
    assert resume_check.status == status and words in resume_check.detail
    assert resume_check.data["identical"] is (resumed == 1.0)
    assert [c[0] for c in calls] == ["a", "b", "b"] + ([] if resumed == 1.0 else ["c"])
    assert calls[2] == ("b", True)


def test_weight_distance():
    a = {"w": torch.tensor([1.0, -4.0]), "n": torch.tensor(3)}
    assert training.weight_distance(a, {k: v.clone() for k, v in a.items()}) == (True, 0.0, 0.0)
    same, diff, rel = training.weight_distance(a, {"w": torch.tensor([1.0, -3.0]), "n": torch.tensor(3)})
    assert not same and diff == 1.0 and rel == 0.25
    with pytest.raises(ValueError, match="different tensors"):
        training.weight_distance(a, {"w": a["w"]})


# ----------------------------------------------------------------------------- speed: plans and compile fallback


def test_speed_methods_come_from_the_policy_list():
    got = speed.methods(["none", "mixup", "cutmix", "puzzlemix", "automix"])
    assert got == (("mixup", "mixup_ce"), ("mixup", "dm"), ("cutmix", "mixup_ce"), ("cutmix", "dm"),
                   ("puzzlemix", "mixup_ce"), ("automix", "mixup_ce"), ("none", "ce"))
    assert speed.methods(["saliencymix"]) == (("saliencymix", "mixup_ce"),)
    assert speed.methods(["none", "mixup", "cutmix", "fmix", "puzzlemix", "automix"], quick=True) == (
        ("mixup", "mixup_ce"), ("mixup", "dm"), ("cutmix", "mixup_ce"), ("puzzlemix", "mixup_ce"),
        ("automix", "mixup_ce"))


def test_torch_compile_is_only_tried_where_it_can_work_and_falls_back(monkeypatch):
    plan = dict(batch_size=4, n=40, epochs=1, steps=1, model="smallcnn", num_classes=5)
    assert speed.compiled_epoch(CPU, True, plan)[0] == "skip"
    assert speed.compiled_epoch(CPU, False, plan)[0] == "skip"

    def broken_compile(model, **kw):
        def run(*a, **k):
            raise RuntimeError("inductor needs a compiler")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    status, detail, data = speed.compiled_epoch(CPU, False, plan, force=True)
    assert status == "info" and detail.startswith("torch.compile failed here, eager numbers only")
    assert data["compile_error"] == "RuntimeError: inductor needs a compiler"
    monkeypatch.setattr(torch, "compile", lambda model, **kw: model)   # a compile that works
    status, detail, data = speed.compiled_epoch(CPU, False, plan, force=True)
    assert status == "info" and data["compile"] is True and data["compile_sec"] > 0 and data["sec_per_epoch"] > 0


# ----------------------------------------------------------------------------- report


def test_run_check_names_failures_and_never_raises():
    def boom():
        raise ValueError("bad thing")

    check = run_check("speed", "a timing", boom, policy="x")
    assert (check.status, check.name, check.section) == ("fail", "a timing", "speed")
    assert check.detail.startswith("ValueError: bad thing") and check.data["policy"] == "x"
    check = run_check("training", "named here", lambda: Check("speed", "inner", "pass", "ok", data={"a": 1}), b=2)
    assert (check.section, check.name) == ("training", "named here")
    assert check.data["a"] == 1 and check.data["b"] == 2 and check.data["cpu_seconds"] >= 0
    with pytest.raises(ValueError, match="status"):
        Check("speed", "x", "maybe")


def test_report_markdown_json_and_exit_code(tmp_path):
    rep = Report(meta={"device_arg": "cpu", "device": "cpu", "device_name": "a CPU", "quick": True,
                       "date": "2026-01-01", "seconds": 12.0, "cpu_seconds": 10.0, "load_average": 0.5,
                       "cpu_cores": 2})
    rep.add(Check("correctness", "fp32 step: mixup + dm", "pass", "loss 3", data=dict(
        policy="mixup", loss="dm", column="fp32 step", short="loss 3")))
    rep.add(Check("correctness", "fp32 step: cutmix + dm", "fail", "non-finite loss nan", data=dict(
        policy="cutmix", loss="dm", column="fp32 step")))
    rep.add(Check("speed", "timing", "info", "fast", table=[{"loss": "DM", "vs_soft_ce": 1.2345}]))
    rep.goals = [{"goal": "g", "target": "<= 2x", "measured": "1.2x", "met": True}]
    assert rep.exit_code() == 1 and [c.name for c in rep.failed()] == ["fp32 step: cutmix + dm"]
    text = rep.to_markdown()
    assert "| mixup | dm | pass (loss 3) |" in text
    assert "| cutmix | dm | **FAIL**: non-finite loss nan |" in text
    assert "| DM | 1.23 |" in text and "| g | <= 2x | 1.2x | yes |" in text
    assert "1 check(s) FAILED" in text and "correctness: fp32 step: cutmix + dm" in text
    md, js = rep.write(tmp_path / "r" / "doctor.md")
    assert md.read_text() == text and js == tmp_path / "r" / "doctor.json"
    data = json.loads(js.read_text())
    assert data["result"] == "fail" and data["failed"] == ["correctness: fp32 step: cutmix + dm"]
    assert len(data["checks"]) == 3 and data["goals"][0]["met"] is True


def test_goals_from_measurements():
    rep = Report(meta={"device_name": "NVIDIA H200"})
    epoch = dict(sec_per_epoch=4.2, amp=True, compile=False, extrapolated=False, batch_size=128)
    rep.add(Check("speed", "PreAct-ResNet-18 epoch, CIFAR-100-shaped", "info", data=epoch))
    rep.add(Check("speed", "PreAct-ResNet-18 epoch with torch.compile", "info",
                  data={**epoch, "sec_per_epoch": 3.1, "compile": True}))
    rep.add(Check("speed", "training step per method vs the mixup step", "info", data={"model": "preact_resnet18", "rows": [
        {"policy": "mixup", "loss": "mixup_ce", "vs_mixup": 1.0}, {"policy": "mixup", "loss": "dm", "vs_mixup": 1.01},
        {"policy": "puzzlemix", "loss": "mixup_ce", "vs_mixup": 2.5}]}))
    rep.add(Check("speed", "DM loss vs soft-target CE, B=256, C=100", "info", data={"rows": [
        {"loss": "soft-target CE", "vs_soft_ce": 1.0}, {"loss": "DM", "vs_soft_ce": 1.8},
        {"loss": "DM, compiled", "vs_soft_ce": 1.1}]}))
    rows = {r["goal"]: r for r in doctor.goals(rep, torch.device("cuda"))}
    epoch_goal = rows["PreAct-ResNet-18 epoch, CIFAR-100-shaped (50 000 images)"]
    assert epoch_goal["met"] is True and epoch_goal["measured"].startswith("3.1 s (batch 128, torch.compile, bf16")
    assert rows["DM step (mixup + DM) vs the mixup step"]["met"] is True
    assert rows["PuzzleMix (full) step vs the mixup step"]["met"] is False
    assert rows["DM loss vs soft-target CE, B=256, C=100"]["met"] is False          # 1.8x > 1.5x on a GPU
    assert rows["DM, compiled loss vs soft-target CE, B=256, C=100"]["met"] is True
    on_cpu = {r["goal"]: r for r in doctor.goals(rep, CPU)}
    assert on_cpu["DM loss vs soft-target CE, B=256, C=100"]["met"] is True       # <= 2x on a CPU
    assert on_cpu["PreAct-ResNet-18 epoch, CIFAR-100-shaped (50 000 images)"]["met"] is None


# ----------------------------------------------------------------------------- arguments and the command


@pytest.mark.parametrize("kwargs, exc, word", [
    (dict(device="tpu"), ValueError, "device"), (dict(device="cuda:x"), ValueError, "device"),
    (dict(quick="yes"), TypeError, "quick"), (dict(sections=["speedy"]), ValueError, "sections"),
    (dict(policies="mixup"), TypeError, "policies"), (dict(policies=["nope"]), ValueError, "policies"),
    (dict(losses=["focal"]), ValueError, "losses"),
])
def test_bad_arguments_name_the_argument(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        doctor.run(**{"device": "cpu", **kwargs}, echo=None)


def test_cli_doctor_help_and_bad_device(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["doctor", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--device", "--quick", "--out", "--sections", "--policies", "--losses"):
        assert flag in text
    if not torch.cuda.is_available():
        assert cli.main(["doctor", "--device", "cuda"]) == 2
        assert "mixviz doctor: error: device is 'cuda' but CUDA is not available here" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_doctor_passes_on_this_cpu(tmp_path):
    """What `make test` runs once: the whole quick doctor on the CPU, through
    the GPU session's script as a dry run (DEVICE=cpu QUICK_ONLY=1): exit 0,
    every policy x loss checked, the report in Markdown and JSON.  Budget:
    90 s of wall time on this two-core CPU."""
    # one thread unless told otherwise: on a CPU shared with other processes, two spinning OpenMP threads made
    # it 6x slower here (160-260 s against 30 s at a load average of 13-17 on 2 cores)
    env = {"OMP_NUM_THREADS": "1", **os.environ, "OUT": str(tmp_path), "DEVICE": "cpu", "QUICK_ONLY": "1",
           "PYTHON": sys.executable, "QUICK_BUDGET": "900"}
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "device_check.sh")], capture_output=True, text=True,
                          env=env, timeout=960, cwd=ROOT)
    wall = time.perf_counter() - t0
    out = tmp_path / "doctor-cpu-quick.md"
    log = (tmp_path / "doctor-cpu-quick.log").read_text() if (tmp_path / "doctor-cpu-quick.log").exists() else ""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + log[-3000:]
    assert "quick doctor: exit 0" in proc.stdout and "full doctor" not in proc.stdout
    text, data = out.read_text(), json.loads(out.with_suffix(".json").read_text())
    assert data["result"] == "pass" and data["failed"] == [] and data["meta"]["quick"] is True
    names = {c["name"] for c in data["checks"]}
    for policy in mixing.available():
        for loss in losses.LOSSES:
            assert f"fp32 step: {policy} + {loss}" in names
            assert f"| {policy} | {loss} | pass" in text
    for section in ("## Environment", "## Correctness on the device", "## Training", "## Speed", "## Goals"):
        assert section in text
    assert "resume from a mid-run checkpoint" in names and "identical weights" in text
    assert "all checks passed" in log
    print(f"quick doctor: {wall:.0f} s wall, {data['meta']['cpu_seconds']} s CPU, "
          f"load average {data['meta']['load_average']} at the start")
