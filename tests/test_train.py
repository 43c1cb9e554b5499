"""The training loop: config checks, exact resume (the run store: tests/test_runs.py)."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pandas as pd
import pytest
import torch

from mixviz.train import TrainConfig, fit, resolve_device

# Small and fast: a few hundred clutter images, a narrow CNN.
TINY = dict(dataset="clutter", model="smallcnn", epochs=3, batch_size=32, lr=0.05, seed=1, device="cpu",
            progress=False, dataset_options=dict(n_train=192, n_test=64), model_options=dict(width=8))


def tiny(**kw):
    return TrainConfig(**{**TINY, **kw})


@pytest.mark.parametrize("field,value", [
    ("epochs", 0), ("epochs", -1), ("lr", 0.0), ("lr", -0.1), ("batch_size", 0), ("alpha", 0.0),
    ("device", "tpu"), ("dataset", "imagenet"), ("model", "vgg"), ("policy", "bogus"), ("loss", "focal"),
    ("optimizer", "lion"), ("scheduler", "step"), ("amp", "fp8"), ("warmup_epochs", 3), ("seed", -1),
    ("weight_decay", -1.0),
])
def test_bad_config_names_the_field(field, value):
    with pytest.raises((ValueError, TypeError), match=field):
        tiny(**{field: value})


def test_unavailable_device_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto").type in ("cpu", "mps")


def test_fit_learns_and_records_history(tmp_path):
    run = fit(tiny(out_dir=str(tmp_path), dataset="digits", epochs=4, dataset_options=dict(size=16)))
    assert list(run.history["epoch"]) == [1, 2, 3, 4]
    for col in ("train_loss", "test_acc", "test_nll", "test_ece", "mixed_top1", "mixed_top2", "epoch_sec", "lr"):
        assert col in run.history
    # learning happened: the loss falls and accuracy is far above chance (10 classes)
    assert run.history["train_loss"].iloc[-1] < 0.5 * run.history["train_loss"].iloc[0]
    assert run.metrics["test_acc"] > 0.8
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "metrics.json").exists()
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert stored["test_acc"] == pytest.approx(run.metrics["test_acc"])
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "history.csv"), run.history, check_dtype=False)
    # cosine schedule: the last lr is far below the peak
    assert run.history["lr"].iloc[-1] < 0.2 * 0.05



@pytest.mark.parametrize("policy,loss", [("none", "ce"), ("cutmix", "dm"), ("average", "midpoint")])
def test_resume_after_a_crash_mid_epoch_gives_the_unbroken_weights(tmp_path, policy, loss, crashed_and_resumed):
    config = tiny(policy=policy, loss=loss)
    unbroken = fit(replace(config, out_dir=str(tmp_path / "a")))
    resumed = crashed_and_resumed(config, tmp_path / "b", epoch=1, step=3)  # in the middle of the second epoch
    for (name, a), (_, b) in zip(unbroken.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    for (name, a), (_, b) in zip(unbroken.criterion.state_dict().items(), resumed.criterion.state_dict().items()):
        assert torch.equal(a, b), name
    assert list(resumed.history["epoch"]) == [1, 2, 3]
    assert resumed.history["train_loss"].tolist() == unbroken.history["train_loss"].tolist()


@pytest.mark.slow
def test_resume_after_kill_9(tmp_path):
    """A training process killed with SIGKILL mid-run resumes to the unbroken weights."""
    args = ["--dataset", "clutter", "--model", "smallcnn", "--epochs", "4", "--batch-size", "32",
            "--seed", "2", "--device", "cpu", "--no-progress", "--dataset-option", "n_train=384",
            "--dataset-option", "n_test=64", "--model-option", "width=8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "mixviz", "train", *args, "--out"]
    subprocess.run([*cmd, str(tmp_path / "a")], check=True, env=env, capture_output=True)
    proc = subprocess.Popen([*cmd, str(tmp_path / "b")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "b" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "b" / "metrics.json").exists(), "the run finished before it was killed"
    subprocess.run([*cmd, str(tmp_path / "b"), "--resume"], check=True, env=env, capture_output=True)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path):
    fit(tiny(out_dir=str(tmp_path), epochs=1))
    with pytest.raises(ValueError, match="lr"):
        fit(tiny(out_dir=str(tmp_path), epochs=1, lr=0.01), resume=True)


def test_same_seed_same_run_other_seed_other_run():
    a = fit(tiny(epochs=1, policy="mixup", loss="mixup_ce"))
    b = fit(tiny(epochs=1, policy="mixup", loss="mixup_ce"))
    c = fit(tiny(epochs=1, policy="mixup", loss="mixup_ce", seed=5))
    wa, wb, wc = (next(r.model.parameters()) for r in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_points_train_with_the_mlp():
    run = fit(TrainConfig(dataset="moons", model="mlp", epochs=20, batch_size=64, lr=0.05, device="cpu",
                          progress=False, policy="mixup", loss="mixup_ce"))
    assert run.metrics["test_acc"] > 0.85
    assert run.metrics["eval_policy"] == "mixup"


def test_cli_train_help_explains_every_option(capsys):
    from mixviz.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for opt in ("--dataset", "--model", "--policy", "--loss", "--alpha", "--epochs", "--batch-size", "--lr",
                "--seed", "--device", "--resume", "--policy-option", "--loss-option"):
        assert opt in out


def test_cli_reports_bad_values_clearly(capsys, runs_root):
    from mixviz.cli import main

    assert main(["train", "--epochs", "0", "--no-progress"]) == 2
    assert "epochs" in capsys.readouterr().err


def test_cli_train_runs_and_stores(capsys, runs_root):
    from mixviz.cli import main

    rc = main(["train", "--dataset", "moons", "--model", "mlp", "--epochs", "2", "--device", "cpu",
               "--no-progress", "--policy", "mixup", "--loss", "mixup_ce"])
    assert rc == 0
    out = capsys.readouterr().out
    assert '"test_acc"' in out and "run stored in" in out
    assert len(list(runs_root.iterdir())) == 1


def test_fit_trains_the_step_the_seam_gives_it(monkeypatch):
    """fit names no kind of training: it trains what steps.for_config gives it (the first registered kind
    that claims the config, else the supervised step), with that kind's history columns and final metrics;
    both built-in kinds are TrainingSteps."""
    from mixviz import data, models, steps
    from mixviz.semi import SemiTraining

    class Recording(steps.SupervisedStep):
        def epoch_end(self):
            return {"extra": 1.0}

        def finish(self, history):
            return {"finished_after": len(history), **super().finish(history)}

    monkeypatch.setattr(steps, "_KINDS", dict(steps._KINDS))  # registrations end with the test
    steps.register("recording", lambda c: c.epochs == 2, Recording)
    assert steps.kinds() == ("semi", "recording")
    run = fit(tiny(epochs=2))
    assert list(run.history["extra"]) == [1.0, 1.0] and run.metrics["finished_after"] == 2
    assert "extra" not in fit(tiny(epochs=1)).history  # not claimed: the supervised step

    train_set = data.load("clutter", "train", n_train=240, n_test=40, size=16, objects="shapes")
    model = models.build("smallcnn", train_set.num_classes, tuple(train_set.in_shape), width=4)
    plain = steps.for_config(tiny(epochs=1), train_set, model, torch.device("cpu"))
    semi = steps.for_config(tiny(labels_per_class=3, semi="fixmatch", mu=2, batch_size=8), train_set, model,
                            torch.device("cpu"))
    assert type(plain) is steps.SupervisedStep and isinstance(semi, SemiTraining)
    assert isinstance(plain, steps.TrainingStep) and isinstance(semi, steps.TrainingStep)
    with pytest.raises(TypeError, match="build must be callable"):
        steps.register("broken", lambda c: True, None)
