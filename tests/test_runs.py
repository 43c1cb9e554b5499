"""The run store: ids, train once, safe loading, one trainer per run, damaged runs."""

import collections
import hashlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixviz import data, runs, train
from mixviz.ioutil import (
    DamagedCheckpointError,
    UnsafeCheckpointError,
    check_checkpoint_types,
    load_checkpoint,
    save_checkpoint,
)
from mixviz.train import CHECKPOINT, TrainConfig, fit

from _runs_worker import weights_digest  # noqa: E402  (tests/ is on sys.path under pytest)

REPO = Path(__file__).resolve().parents[1]
# Small and fast: a few hundred clutter images, a narrow CNN.
TINY = dict(dataset="clutter", model="smallcnn", epochs=3, batch_size=32, lr=0.05, seed=1, device="cpu",
            progress=False, dataset_options=dict(n_train=192, n_test=64), model_options=dict(width=8))
# Faster still (a fraction of a second per run): the store tests that copy or spawn runs.
MOONS = TrainConfig(dataset="moons", model="mlp", epochs=3, batch_size=64, lr=0.05, seed=4, device="cpu",
                    progress=False, policy="mixup", loss="mixup_ce", dataset_options=dict(n=256))
TIMING = ("sec_per_epoch", "images_per_sec")  # metrics that are measured, not computed


def tiny(**kw):
    return TrainConfig(**{**TINY, **kw})


class _Crash(RuntimeError):
    pass


def _weights(run):
    return {k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()}


def _same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- ids, train once, resume


def test_run_store_trains_once_then_loads(runs_root):
    config = tiny(epochs=1)
    first = runs.load_or_train(config)
    path = runs.run_dir(config)
    assert path.parent == runs_root and runs.is_finished(path)
    stamp = (path / "metrics.json").stat().st_mtime_ns
    second = runs.load_or_train(config)
    assert (path / "metrics.json").stat().st_mtime_ns == stamp  # loaded, not trained again
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu())
    assert second.metrics["test_acc"] == pytest.approx(first.metrics["test_acc"])
    assert len(second.history) == 1


def test_run_id_depends_on_what_is_trained_only():
    a = tiny()
    assert runs.config_id(a) == runs.config_id(replace(a, progress=True, out_dir="x", num_workers=0))
    assert runs.config_id(a) != runs.config_id(replace(a, lr=0.01))
    assert runs.config_id(a) != runs.config_id(replace(a, policy_options=dict(correct_lam=False)))
    assert runs.config_id(a).startswith("clutter-smallcnn-none-ce-s1-")


def test_run_store_resumes_an_interrupted_run(runs_root):
    config = tiny(epochs=2)
    path = runs.run_dir(config)

    def crash(epoch, step):
        if epoch == 1:
            raise _Crash

    with pytest.raises(_Crash):
        fit(replace(config, out_dir=str(path)), on_step=crash)
    assert not runs.is_finished(path)
    run = runs.load_or_train(config)
    assert runs.is_finished(path) and list(run.history["epoch"]) == [1, 2]
    assert run.history["epoch_sec"].iloc[0] == pd.read_csv(path / "history.csv")["epoch_sec"].iloc[0]


def test_retrain_trains_again(tmp_path):
    first = runs.load_or_train(MOONS, tmp_path, log=None)
    path = runs.run_dir(MOONS, tmp_path)
    stamp = (path / "metrics.json").stat().st_mtime_ns
    again = runs.load_or_train(MOONS, tmp_path, retrain=True, log=None)
    assert (path / "metrics.json").stat().st_mtime_ns != stamp
    assert again.history["epoch_sec"].tolist() != first.history["epoch_sec"].tolist()  # measured anew
    assert _same_weights(_weights(first), _weights(again))


def test_load_or_train_checks_its_arguments(tmp_path):
    with pytest.raises(TypeError, match="config"):
        runs.load_or_train({"dataset": "moons"}, tmp_path)
    with pytest.raises(TypeError, match="retrain"):
        runs.load_or_train(MOONS, tmp_path, retrain="yes")
    with pytest.raises(TypeError, match="log"):
        runs.load_or_train(MOONS, tmp_path, log="stderr")


# ----------------------------------------------------------------------------- what a checkpoint may hold

_LEAVES = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6)
           | st.lists(st.floats(-1e6, 1e6), max_size=4).map(torch.tensor)
           | st.lists(st.integers(0, 255), max_size=6).map(lambda xs: torch.tensor(xs, dtype=torch.uint8))
           | st.sampled_from([torch.float32, torch.int64, torch.device("cpu"), torch.Size([2, 3])]))
_TREES = st.recursive(
    _LEAVES,
    lambda inner: (st.lists(inner, max_size=3) | st.tuples(inner, inner)
                   | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=3)
                   | st.dictionaries(st.text(max_size=5), inner, max_size=3).map(collections.OrderedDict)),
    max_leaves=12)


def _same(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and not isinstance(a, torch.Size):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=_TREES)
def test_what_the_type_check_accepts_loads_back_identically(tmp_path, tree):
    """Soundness of the rule: whatever passes the check loads with
    weights_only=True, as the same types and values."""
    ckpt = {"entry": tree}
    check_checkpoint_types(ckpt)
    back = load_checkpoint(save_checkpoint(ckpt, tmp_path / "c.pt"))
    assert _same(back, ckpt)


@pytest.mark.parametrize("bad,kind", [
    (np.arange(3, dtype=np.uint32), "numpy.ndarray"), (np.float64(0.5), "numpy.float64"), ({1, 2}, "set"),
    (Path("a"), "Path"), (lambda: 0, "function"), (collections.defaultdict(list), "defaultdict"),
    (b"bytes", "bytes"), (torch.nn.Linear(2, 2), "Linear"),
])
def test_an_entry_of_another_type_is_refused_at_save_time(tmp_path, bad, kind):
    ckpt = {"model": {"w": torch.ones(2)}, "rng": {"numpy": {"key": bad}}}
    with pytest.raises(TypeError, match=r"checkpoint\['rng'\]\['numpy'\]\['key'\] is a \S*" + kind):
        save_checkpoint(ckpt, tmp_path / "c.pt")
    assert not (tmp_path / "c.pt").exists()


def test_dict_keys_must_be_str_or_int(tmp_path):
    with pytest.raises(TypeError, match=r"checkpoint\['history'\] has a key \('a', 1\)"):
        save_checkpoint({"history": {("a", 1): 1.0}}, tmp_path / "c.pt")


def test_what_fit_writes_passes_the_check(tmp_path):
    fit(replace(MOONS, out_dir=str(tmp_path), loss="dm"))
    ckpt = load_checkpoint(tmp_path / CHECKPOINT)
    check_checkpoint_types(ckpt)
    assert {"numpy", "python", "torch", "gen"} <= set(ckpt["rng"])


@pytest.mark.parametrize("damage", ["empty", "half", "garbage", "not_a_dict"])
def test_a_damaged_checkpoint_file_is_a_clear_error(tmp_path, damage):
    path = save_checkpoint({"model": {"w": torch.arange(1000.0)}, "epoch": 3}, tmp_path / "c.pt")
    raw = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "half":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(2000))
    else:
        torch.save([1, 2, 3], path)
    with pytest.raises(DamagedCheckpointError, match=re.escape(str(path))):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")


# ----------------------------------------------------------------------------- loading never runs code


class _Planted:
    """Unpickling this runs a shell command that creates a marker file (what
    an altered checkpoint could do with any command)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def _plant(checkpoint, entry, marker):
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt[entry] = _Planted(marker)
    torch.save(ckpt, checkpoint)  # a plain torch.save, as someone altering the file would do


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """One finished MOONS run: its folder, weights, metrics and history."""
    root = tmp_path_factory.mktemp("stored")
    run = runs.load_or_train(MOONS, root, log=None)
    return dict(path=run.path, weights=_weights(run), metrics=dict(run.metrics), history=run.history.copy())


def _copy_run(stored, root):
    dest = runs.run_dir(MOONS, root)
    shutil.copytree(stored["path"], dest)
    return dest


@pytest.mark.parametrize("entry", ["model", "rng", "history"])
def test_loading_a_run_never_runs_code_from_its_checkpoint(stored, tmp_path, entry):
    path = _copy_run(stored, tmp_path / "runs")
    marker = tmp_path / "marker"
    _plant(path / CHECKPOINT, entry, marker)
    for load in (lambda: runs.load_run(path), lambda: runs.load_or_train(MOONS, tmp_path / "runs", log=None)):
        with pytest.raises(runs.UnsafeCheckpointError, match="holds objects that mixviz does not load") as err:
            load()
        assert str(path / CHECKPOINT) in str(err.value) and "system" in str(err.value)
        assert not marker.exists()
    assert runs.UnsafeCheckpointError is UnsafeCheckpointError and issubclass(UnsafeCheckpointError, ValueError)
    # the plant is real: loading the file with plain pickle runs the command
    torch.load(path / CHECKPOINT, weights_only=False)
    assert marker.exists()


def test_resuming_never_runs_code_from_the_checkpoint(stored, tmp_path):
    path = _copy_run(stored, tmp_path / "runs")
    (path / "metrics.json").unlink()  # an unfinished run: load_or_train would resume it
    marker = tmp_path / "marker"
    _plant(path / CHECKPOINT, "optimizer", marker)
    refused = re.escape(f"{path / CHECKPOINT} holds objects that mixviz does not load")
    with pytest.raises(UnsafeCheckpointError, match=refused):
        fit(replace(MOONS, out_dir=str(path)), resume=True)
    with pytest.raises(UnsafeCheckpointError, match="holds objects that mixviz does not load"):
        runs.load_or_train(MOONS, tmp_path / "runs", log=None)
    assert not marker.exists()
    assert (path / CHECKPOINT).exists()  # refused, not overwritten: the user decides
    # retrain=True discards the file and trains the run afresh, still without running it
    run = runs.load_or_train(MOONS, tmp_path / "runs", retrain=True, log=None)
    assert not marker.exists() and _same_weights(_weights(run), stored["weights"])


# ----------------------------------------------------------------------------- random states


def _draws(gen):
    return (torch.rand(3, generator=gen).tolist(), torch.rand(3).tolist(), np.random.normal(size=3).tolist(),
            np.random.rand(2).tolist(), [random.gauss(0, 1) for _ in range(3)], random.random())


def test_random_states_round_trip_through_a_checkpoint(tmp_path):
    gen = torch.Generator().manual_seed(5)
    torch.manual_seed(6)
    np.random.seed(7)
    random.seed(8)
    np.random.normal(), random.gauss(0, 1)  # leave a cached Gaussian in both
    path = save_checkpoint({"rng": train._rng_state(gen)}, tmp_path / "rng.pt")
    expected = _draws(gen)
    _draws(gen), np.random.seed(1), random.seed(1)  # move every state on
    train._set_rng_state(gen, load_checkpoint(path)["rng"])
    assert _draws(gen) == expected


def test_cuda_random_states_are_saved_and_restored(tmp_path, monkeypatch):
    """The CUDA branch, on the CPU: torch.cuda patched to hand out and take
    per-device byte tensors."""
    states = [torch.arange(16, dtype=torch.uint8), torch.arange(100, 116, dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in states])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda new: restored.append(list(new)))
    gen = torch.Generator().manual_seed(0)
    path = save_checkpoint({"rng": train._rng_state(gen)}, tmp_path / "rng.pt")
    train._set_rng_state(gen, load_checkpoint(path)["rng"])
    assert len(restored) == 1 and len(restored[0]) == 2
    for got, want in zip(restored[0], states):
        assert got.dtype == torch.uint8 and got.device.type == "cpu" and torch.equal(got, want)


def test_a_checkpoint_without_numpy_and_python_states_still_resumes():
    """Checkpoints written before those states were kept restore the torch states."""
    gen = torch.Generator().manual_seed(3)
    state = {k: v for k, v in train._rng_state(gen).items() if k in ("gen", "torch")}
    expected = torch.rand(2, generator=gen).tolist(), torch.rand(2).tolist()
    train._set_rng_state(gen, state)
    assert (torch.rand(2, generator=gen).tolist(), torch.rand(2).tolist()) == expected


def test_resume_restores_the_numpy_and_python_random_states(tmp_path):
    """A callback that draws from numpy and Python's random gets the same
    numbers after a resume as in the unbroken run."""

    def recorder(store, crash_at=None):
        def on_step(epoch, step):
            store[(epoch, step)] = (np.random.rand(), np.random.normal(), random.random(), random.gauss(0, 1))
            if (epoch, step) == crash_at:
                raise _Crash

        return on_step

    np.random.seed(11), random.seed(11)
    unbroken = {}
    fit(replace(MOONS, out_dir=str(tmp_path / "a")), on_step=recorder(unbroken))
    np.random.seed(11), random.seed(11)
    with pytest.raises(_Crash):
        fit(replace(MOONS, out_dir=str(tmp_path / "b")), on_step=recorder({}, crash_at=(1, 2)))
    np.random.seed(99), random.seed(99)  # what the resumed run gets must not depend on these
    resumed = {}
    fit(replace(MOONS, out_dir=str(tmp_path / "b")), resume=True, on_step=recorder(resumed))
    assert resumed == {k: v for k, v in unbroken.items() if k[0] >= 1}
    assert len(resumed) == 2 * 4  # epochs 2 and 3, 4 steps each


# ----------------------------------------------------------------------------- damaged runs


def _cut(file):
    raw = file.read_bytes()
    file.write_bytes(raw[: len(raw) // 2])


DAMAGE = {
    "metrics_cut": (lambda p: _cut(p / "metrics.json"), "resuming"),
    "metrics_not_a_dict": (lambda p: (p / "metrics.json").write_text("[1, 2]\n"), "resuming"),
    "history_missing": (lambda p: (p / "history.csv").unlink(), "resuming"),
    "history_cut": (lambda p: _cut(p / "history.csv"), "resuming"),
    "config_future_field": (lambda p: (p / "config.json").write_text(json.dumps(
        {**json.loads((p / "config.json").read_text()), "ema_decay": 0.999})), "resuming"),
    "config_cut": (lambda p: _cut(p / "config.json"), "resuming"),
    "checkpoint_cut": (lambda p: _cut(p / CHECKPOINT), "from scratch"),
    "checkpoint_missing": (lambda p: (p / CHECKPOINT).unlink(), "from scratch"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_run_is_trained_again_with_one_warning(stored, tmp_path, damage):
    root = tmp_path / "runs"
    path = _copy_run(stored, root)
    spoil, action = DAMAGE[damage]
    spoil(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = runs.load_or_train(MOONS, root, log=None)
    damaged = [w for w in caught if issubclass(w.category, runs.DamagedRunWarning)]
    assert len(damaged) == 1, [str(w.message) for w in caught]
    assert str(path) in str(damaged[0].message) and action in str(damaged[0].message)
    assert damaged[0].filename == __file__  # points at the caller
    # the same run as before: resumed from its last checkpoint or trained again (deterministic on the CPU)
    assert _same_weights(_weights(run), stored["weights"])
    same = {k: v for k, v in stored["metrics"].items() if k not in TIMING}
    assert {k: run.metrics[k] for k in same} == same
    if action == "resuming":  # nothing was trained: even the measured times are the stored ones
        assert run.metrics == stored["metrics"]
        pd.testing.assert_frame_equal(run.history, stored["history"])
    # and the store is whole again: the next call loads it, silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = runs.load_or_train(MOONS, root, log=None)
    assert runs.is_finished(path) and _same_weights(_weights(again), stored["weights"])
    pd.testing.assert_frame_equal(again.history, run.history, check_dtype=False)


def test_load_run_names_the_damaged_file(stored, tmp_path):
    path = _copy_run(stored, tmp_path)
    (path / "history.csv").unlink()
    with pytest.raises(runs.DamagedRunError, match=re.escape(f"{path / 'history.csv'} is missing")):
        runs.load_run(path)
    with pytest.raises(FileNotFoundError, match="no finished run"):
        runs.load_run(tmp_path / "nothing")


def test_a_run_whose_dataset_is_missing_says_what_and_where(tmp_path):
    config = TrainConfig(dataset="cifar10", model="smallcnn", epochs=1, device="cpu", progress=False,
                         data_root=str(tmp_path / "no-data"))
    with pytest.raises(data.DatasetNotFoundError) as err:
        runs.load_or_train(config, tmp_path / "runs", log=None)
    message = str(err.value)
    assert str(runs.run_dir(config, tmp_path / "runs")) in message
    assert "cifar10" in message and str(tmp_path / "no-data") in message


# ----------------------------------------------------------------------------- one trainer per run


def test_a_finished_run_loads_without_taking_the_lock(stored, tmp_path, monkeypatch):
    """So a store on a read-only share can be read."""
    _copy_run(stored, tmp_path)

    def no_lock(*a, **kw):
        raise AssertionError("took the lock")

    monkeypatch.setattr(runs, "_run_lock", no_lock)
    assert _same_weights(_weights(runs.load_or_train(MOONS, tmp_path, log=None)), stored["weights"])


def test_a_second_caller_waits_for_the_lock_then_loads(stored, tmp_path, monkeypatch):
    from filelock import FileLock

    path = runs.run_dir(MOONS, tmp_path)
    path.mkdir(parents=True)
    holder = FileLock(str(path / runs.LOCK_FILE))
    holder.acquire()
    lines, result = [], {}
    waiter = threading.Thread(target=lambda: result.update(run=runs.load_or_train(MOONS, tmp_path, log=lines.append)))
    waiter.start()
    deadline = time.time() + 60
    while not lines and time.time() < deadline:
        time.sleep(0.01)
    assert waiter.is_alive()
    # the lock holder stores the finished run; the waiter must load it, not train
    for name in ("config.json", "history.csv", CHECKPOINT, "metrics.json"):
        shutil.copy(stored["path"] / name, path / name)
    monkeypatch.setattr(runs, "fit", lambda *a, **kw: pytest.fail("trained a run that was stored"))
    holder.release()
    waiter.join(60)
    assert lines == [f"mixviz: run {path.name} is being trained by another process; waiting for it to finish "
                     f"(lock {path / runs.LOCK_FILE})"]
    assert _same_weights(_weights(result["run"]), stored["weights"])


def _worker(config, root, out, *, go=None, sleep=0.0):
    """Start tests/_runs_worker.py: load_or_train(config, root) in its own process."""
    cmd = [sys.executable, str(REPO / "tests" / "_runs_worker.py"), json.dumps(config.to_dict()), str(root), str(out)]
    if go is not None:
        cmd += ["--go", str(go)]
    if sleep:
        cmd += ["--sleep", str(sleep)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(f"{out}.err", "w"))


def _wait_for(predicate, what, timeout=120):
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _finish(proc, out):
    assert proc.wait(timeout=300) == 0, Path(f"{out}.err").read_text()[-3000:]
    return json.loads(Path(out).read_text())


def test_two_processes_asking_for_one_run_train_it_once(tmp_path):
    root, go = tmp_path / "runs", tmp_path / "go"
    outs = [tmp_path / "p1.json", tmp_path / "p2.json"]
    # each checkpoint write takes 0.3 s longer, so the second process surely asks while the first trains
    procs = [_worker(MOONS, root, out, go=go, sleep=0.3) for out in outs]
    _wait_for(lambda: all(Path(f"{o}.ready").exists() for o in outs), "both workers to start")
    go.touch()  # both call load_or_train now
    results = [_finish(p, o) for p, o in zip(procs, outs)]
    assert sorted(r["fits"] for r in results) == [0, 1]  # trained exactly once
    waited = [r for r, o in zip(results, outs) if Path(f"{o}.log").exists()]
    assert len(waited) == 1 and waited[0]["fits"] == 0
    log = Path(f"{outs[results.index(waited[0])]}.log").read_text()
    assert f"run {runs.config_id(MOONS)} is being trained by another process" in log
    assert results[0]["metrics"] == results[1]["metrics"] and results[0]["weights"] == results[1]["weights"]
    assert results[0]["epoch_sec"] == results[1]["epoch_sec"]  # the second loaded what the first measured


def test_a_lock_holder_killed_mid_run_is_taken_over_and_resumed(tmp_path):
    """kill -9 the process that trains a run: the OS drops its lock, and the
    process waiting for it resumes the run from the last checkpoint."""
    config = replace(MOONS, epochs=4)
    root, go = tmp_path / "runs", tmp_path / "go"
    holder = _worker(config, root, tmp_path / "a.json", sleep=600)  # sleeps after its first checkpoint
    taker = _worker(config, root, tmp_path / "b.json", go=go)
    path = runs.run_dir(config, root)
    _wait_for(lambda: (path / CHECKPOINT).exists(), "the first checkpoint")
    _wait_for(lambda: Path(tmp_path / "b.json.ready").exists(), "the second worker to start")
    go.touch()
    _wait_for(lambda: Path(tmp_path / "b.json.log").exists(), "the second worker to wait for the lock")
    assert holder.poll() is None and not (path / "metrics.json").exists()  # still mid-run
    first_epoch = [row["epoch_sec"] for row in load_checkpoint(path / CHECKPOINT)["history"]]
    os.kill(holder.pid, signal.SIGKILL)
    assert holder.wait(timeout=60) == -signal.SIGKILL
    took_over = _finish(taker, tmp_path / "b.json")
    assert took_over["fits"] == 1 and runs.is_finished(path)
    assert took_over["epoch_sec"][:1] == first_epoch  # epoch 1 is the killed process's: resumed, not restarted
    # and resumed exactly: the weights of an unbroken run, trained here with the workers' one thread
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        unbroken = fit(config)
    finally:
        torch.set_num_threads(threads)
    assert took_over["weights"] == weights_digest(unbroken.model)
    assert {k: v for k, v in took_over["metrics"].items() if k not in TIMING} == \
        json.loads(json.dumps({k: v for k, v in unbroken.metrics.items() if k not in TIMING}))


@pytest.mark.slow
def test_torchrun_trains_a_stored_run_once_and_then_loads_it(tmp_path):
    """Under torchrun the store works the same: rank 0 takes the lock and
    writes, every rank loads the finished run the second time, and every rank
    fails the way rank 0 does."""
    args = ["--dataset", "moons", "--model", "mlp", "--epochs", "2", "--batch-size", "64", "--seed", "3",
            "--device", "cpu", "--no-progress", "--dataset-option", "n=256", "--runs", str(tmp_path / "runs")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mixviz", "train", *args]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    (path,) = (tmp_path / "runs").iterdir()
    assert sorted(p.name for p in path.iterdir()) == [".lock", "checkpoint.pt", "config.json", "history.csv",
                                                      "metrics.json"]
    assert json.loads((path / "metrics.json").read_text())["world_size"] == 2
    stamp = (path / "metrics.json").stat().st_mtime_ns
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert (path / "metrics.json").stat().st_mtime_ns == stamp  # loaded, not trained again
    assert second.stdout.count("run stored in") == 1 and first.stdout.split("run stored in")[0] == \
        second.stdout.split("run stored in")[0]
    # an error on rank 0 (here: an altered checkpoint) reaches every rank instead of leaving them waiting
    marker = tmp_path / "marker"
    _plant(path / CHECKPOINT, "history", marker)
    third = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert third.returncode != 0 and not marker.exists()
    assert third.stderr.count("mixviz train: error: ") == 2  # both ranks
    assert third.stderr.count("holds objects that mixviz does not load") == 2


def test_revised_policies_and_losses_get_new_ids_and_the_rest_keep_theirs():
    """A run stored before a behaviour change is not served for the new behaviour: the revision of a
    changed policy or loss enters the identity; every other config keeps the id it had."""
    from mixviz.config import REVISIONS

    plain = TrainConfig(dataset="moons", model="mlp", policy="mixup", loss="mixup_ce")
    assert "revision" not in plain.identity()
    assert runs.config_id(plain).endswith("-" + hashlib.sha256(
        json.dumps({k: v for k, v in plain.identity().items()}, sort_keys=True, default=str).encode()).hexdigest()[:12])
    dm = TrainConfig(dataset="moons", model="mlp", policy="mixup", loss="dm")
    assert dm.identity()["revision"] == {"loss": REVISIONS["loss"]["dm"]}
    grid = TrainConfig(dataset="clutter", policy="gridmix", loss="dm")
    assert grid.identity()["revision"] == {"policy": 2, "loss": 2}
    without = {k: v for k, v in dm.identity().items() if k != "revision"}
    old_id = hashlib.sha256(json.dumps(without, sort_keys=True, default=str).encode()).hexdigest()[:12]
    assert not runs.config_id(dm).endswith(old_id)
