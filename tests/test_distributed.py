"""torch.distributed: 2 gloo processes on the CPU train what 1 process trains."""

import json
import os
import subprocess
import sys

import pytest
import torch

from mixviz.train import TrainConfig, fit

ARGS = ["--dataset", "moons", "--model", "mlp", "--policy", "none", "--loss", "ce", "--epochs", "3",
        "--batch-size", "64", "--lr", "0.05", "--seed", "3", "--device", "cpu", "--no-progress"]


def _torchrun(args, nproc=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # --standalone: a local rendezvous on a free loopback port
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "mixviz", "train", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_with_the_same_global_batch(tmp_path):
    out = tmp_path / "ddp"
    proc = _torchrun([*ARGS, "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    # only rank 0 printed and wrote
    assert proc.stdout.count("run stored in") == 1
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "history.csv", "metrics.json"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2

    single = fit(TrainConfig(dataset="moons", model="mlp", policy="none", loss="ce", epochs=3, batch_size=64,
                             lr=0.05, seed=3, device="cpu", progress=False))
    ddp = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    for name, w in single.model.state_dict().items():
        torch.testing.assert_close(ddp[name], w, rtol=1e-4, atol=1e-5, msg=name)
    assert metrics["test_acc"] == pytest.approx(single.metrics["test_acc"], abs=0.01)


@pytest.mark.slow
def test_ranks_mix_their_own_shards_and_training_works(tmp_path):
    out = tmp_path / "ddp"
    args = [a if a != "none" else "mixup" for a in ARGS]
    args[args.index("ce")] = "mixup_ce"
    args[args.index("3", args.index("--epochs"))] = "15"
    proc = _torchrun([*args, "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_acc"] > 0.85 and metrics["policy"] == "mixup"


@pytest.mark.slow
def test_distributed_run_killed_mid_run_resumes_to_the_unbroken_weights(tmp_path):
    import signal
    import time

    args = [*ARGS]
    args[args.index("3", args.index("--epochs"))] = "20"
    done = _torchrun([*args, "--out", str(tmp_path / "a")])
    assert done.returncode == 0, done.stderr[-3000:]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mixviz", "train", *args, "--out", str(tmp_path / "b")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    ckpt = tmp_path / "b" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks
    proc.wait()
    assert not (tmp_path / "b" / "metrics.json").exists(), "the run finished before it was killed"
    resumed = _torchrun([*args, "--out", str(tmp_path / "b"), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(ckpt, weights_only=True)["model"]
    for name in a:
        assert torch.equal(a[name], b[name]), name
