"""The ``mixviz compare`` harness: presets, the grid, results written atomically,
resume after a kill (in-process and SIGKILL), determinism, the summary and the CLI."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mixviz import cli, experiments, runs
from mixviz.experiments import RESULT_COLUMNS, Preset, compare, grid, method_config, methods, summarize
from mixviz.losses import dm_defaults
from mixviz.train import TrainConfig

# Two moons, a small MLP, one epoch: a run takes a few tens of milliseconds on a CPU.
MOONS_BASE = dict(model="mlp", epochs=1, batch_size=32, lr=0.05, device="cpu",
                  dataset_options=dict(n=128), model_options=dict(hidden=16, depth=2))
TINY = Preset("tiny", "moons, small MLP, 1 epoch", bases={"moons": MOONS_BASE}, seeds=(0, 1),
              policies=("none", "mixup", "average"))
# Images (static and dynamic policies), still tiny.
CLUTTER_BASE = dict(model="smallcnn", epochs=1, batch_size=32, lr=0.05, device="cpu",
                    dataset_options=dict(n_train=64, n_test=32, objects="shapes"), model_options=dict(width=4))
TINY_IMAGES = Preset("tiny-images", "clutter, width-4 CNN, 1 epoch", bases={"clutter": CLUTTER_BASE}, seeds=(0,),
                     policies=("cutmix", "saliencymix"))

REQUIRED = ["dataset", "model", "policy", "loss", "seed", "test_acc", "ece", "nll", "mixed_top1", "mixed_top2",
            "sec_per_epoch", "epochs", "alpha", "run_id"]
METRICS = ["test_acc", "ece", "nll", "mixed_top1", "mixed_top2", "sec_per_epoch"]


def keys_of(table):
    return [(r.dataset, r.policy, r.loss, int(r.seed)) for r in table.itertuples()]


def grid_keys(p, **kw):
    return [(c.dataset, c.policy, c.loss, c.seed) for c in grid(p, **kw)]


def quiet(_msg):
    pass


def count_training(monkeypatch):
    """Count the runs that ``compare`` asks the run store for (compare imports
    ``load_or_train`` from ``mixviz.runs`` when it is called)."""
    calls = []
    real = runs.load_or_train

    def counting(config, root=None, **kw):
        calls.append((config.dataset, config.policy, config.loss, config.seed))
        return real(config, root, **kw)

    monkeypatch.setattr(runs, "load_or_train", counting)
    return calls


def forbid_training(monkeypatch):
    def no(*a, **kw):
        raise AssertionError("compare trained or loaded a run it should have skipped")

    monkeypatch.setattr(runs, "load_or_train", no)


def assert_complete(table, expected_keys=None):
    """Every required cell is filled, every key appears once."""
    assert list(table.columns) == RESULT_COLUMNS
    assert not table[REQUIRED].isna().any().any(), table[table[REQUIRED].isna().any(axis=1)]
    keys = keys_of(table)
    assert len(keys) == len(set(keys))
    for col in METRICS:
        assert np.isfinite(table[col].to_numpy(dtype=float)).all()
    assert ((table.test_acc >= 0) & (table.test_acc <= 1)).all()
    assert (table.mixed_top2 >= table.mixed_top1).all()
    assert (table.sec_per_epoch > 0).all()
    if expected_keys is not None:
        assert keys == expected_keys


# ---------------------------------------------------------------------------- grid


def test_methods_per_policy():
    assert methods("none") == ["ce"]
    assert methods("average") == ["mixup_ce", "midpoint"]
    for policy in ("mixup", "cutmix", "fmix", "resizemix", "saliencymix", "puzzlemix", "gridmix", "smoothmix"):
        assert methods(policy) == ["mixup_ce", "dm"]


@pytest.mark.parametrize("name", sorted(experiments.PRESETS))
def test_grid_is_datasets_x_seeds_x_policies_x_losses(name):
    p = experiments.preset(name)
    assert p is experiments.PRESETS[name]
    configs = grid(p)
    expected = [(ds, pol, loss, seed) for ds in p.bases for seed in p.seeds for pol in p.policies
                for loss in methods(pol)]
    assert [(c.dataset, c.policy, c.loss, c.seed) for c in configs] == expected
    n_losses = sum(len(methods(pol)) for pol in p.policies)
    assert len(configs) == len(p.bases) * len(p.seeds) * n_losses
    assert all(isinstance(c, TrainConfig) for c in configs)
    for c in configs:
        base = p.bases[c.dataset]
        for k, v in base.items():
            assert getattr(c, k) == v, (c.dataset, k)
        assert c.progress is False
        if c.loss == "dm" and p.dm_alpha:
            assert c.alpha == dm_defaults(c.policy, p.dm_kind)["alpha"]
        else:
            assert c.alpha == p.alpha.get(c.policy, base.get("alpha", TrainConfig.alpha))
        if c.loss == "dm":
            dm = dm_defaults(c.policy, p.dm_kind)
            assert c.loss_options == {"eta": dm["eta"], "mode": dm["mode"], "lam_power": dm["lam_power"]}
        else:
            assert c.loss_options == {}


def test_builtin_presets():
    quick, full, gpu = (experiments.preset(n) for n in ("quick", "full", "gpu-cifar100"))
    assert quick.policies == full.policies == gpu.policies == experiments.POLICIES
    assert len(grid(quick)) == 15                  # none + 7 policies x 2 losses, 1 seed
    assert len(grid(full)) == 2 * 3 * 15           # 2 data sets, 3 seeds
    assert len(grid(gpu)) == 3 * 15
    assert {c.dataset for c in grid(full)} == {"clutter", "digits"}
    # the CIFAR-100 preset carries the authors' alpha per policy, and their alpha 0.2 for DM runs
    for c in grid(gpu):
        assert c.alpha == (0.2 if c.loss == "dm" else experiments.CIFAR_ALPHA[c.policy])
        assert (c.model, c.epochs, c.batch_size, c.lr, c.momentum, c.weight_decay, c.scheduler) == \
            ("preact_resnet18", 200, 100, 0.1, 0.9, 1e-4, "cosine")
    assert {c.alpha for c in grid(gpu) if c.policy == "cutmix"} == {0.2}
    assert {c.alpha for c in grid(gpu) if c.policy == "mixup"} == {1.0, 0.2}
    # the CPU presets leave alpha at the TrainConfig default, for DM too (only the loss differs)
    assert not quick.dm_alpha and not full.dm_alpha
    assert {c.alpha for c in grid(quick)} == {1.0}


def test_dm_rows_follow_dm_defaults_per_policy():
    rows = {(c.policy, c.loss): c for c in grid(experiments.preset("quick"))}
    assert rows[("mixup", "dm")].loss_options == {"eta": 0.01, "mode": "more", "lam_power": 0.5}
    assert rows[("cutmix", "dm")].loss_options == {"eta": 0.1, "mode": "less", "lam_power": 0.5}
    assert rows[("fmix", "dm")].loss_options == {"eta": 0.01, "mode": "less", "lam_power": 0.0}
    assert rows[("puzzlemix", "dm")].loss_options == {"eta": 0.1, "mode": "both", "lam_power": 1.0}
    assert ("average", "dm") not in rows and ("none", "dm") not in rows
    assert rows[("average", "midpoint")].loss_options == {}


def test_method_config_alpha_dm_kind_and_overrides():
    c = method_config(MOONS_BASE, "moons", "mixup", "dm", 3, alpha=0.4, dm_kind="imagenet")
    assert (c.dataset, c.policy, c.loss, c.seed, c.alpha, c.progress) == ("moons", "mixup", "dm", 3, 0.4, False)
    assert c.loss_options == {k: dm_defaults("mixup", "imagenet")[k] for k in ("eta", "mode", "lam_power")}
    assert c.loss_options == {"eta": 0.1, "mode": "both", "lam_power": 1.0}
    # alpha=None keeps the base's alpha (here the default)
    assert method_config(MOONS_BASE, "moons", "mixup", "mixup_ce", 0).alpha == 1.0
    assert method_config(dict(MOONS_BASE, alpha=0.3), "moons", "mixup", "mixup_ce", 0).alpha == 0.3
    # overrides win over base and DM settings
    c = method_config(MOONS_BASE, "moons", "mixup", "dm", 0, epochs=5, loss_options={"eta": 0.5})
    assert c.epochs == 5 and c.loss_options == {"eta": 0.5}
    # the base dict is not modified
    assert "loss_options" not in MOONS_BASE and "seed" not in MOONS_BASE
    # a bad cell is a config error naming the field
    with pytest.raises(ValueError, match="policy"):
        method_config(MOONS_BASE, "moons", "nope", "ce", 0)


def test_grid_filters_and_overrides():
    full = experiments.preset("full")
    configs = grid(full, seeds=(5,), policies=("mixup", "none"), datasets=("digits",), epochs=2)
    assert [(c.dataset, c.policy, c.loss, c.seed) for c in configs] == [
        ("digits", "mixup", "mixup_ce", 5), ("digits", "mixup", "dm", 5), ("digits", "none", "ce", 5)]
    assert {c.epochs for c in configs} == {2}
    assert len(grid(full, seeds=(0,))) == 2 * 15
    assert len(grid(full, datasets=("clutter",))) == 3 * 15
    assert grid_keys(TINY, policies=("average",)) == [("moons", "average", "mixup_ce", 0),
                                                     ("moons", "average", "midpoint", 0),
                                                     ("moons", "average", "mixup_ce", 1),
                                                     ("moons", "average", "midpoint", 1)]


@pytest.mark.parametrize("kw,name", [
    (dict(policies=("bogus",)), "policies"),
    (dict(policies=("gridmix",)), "policies"),           # a real policy, but not in the preset
    (dict(policies=("mixup", "cutmix")), "policies"),    # cutmix is not in TINY
    (dict(datasets=("cifar10",)), "datasets"),
    (dict(datasets=("moons", "clutter")), "datasets"),
])
def test_grid_unknown_names_raise_naming_the_argument(kw, name):
    with pytest.raises(ValueError, match=f"^{name} must be one of"):
        grid(TINY, **kw)


def test_unknown_preset_raises():
    with pytest.raises(ValueError, match="^preset must be one of 'quick', 'full', 'gpu-cifar100'; got 'nope'"):
        experiments.preset("nope")
    with pytest.raises(ValueError, match="preset"):
        compare("nope", "unused-never-created")


def test_result_row_takes_config_and_metrics():
    config = TrainConfig(dataset="moons", model="mlp", policy="mixup", loss="dm", seed=4, alpha=0.2)
    metrics = dict(test_acc=0.9, ece=0.05, nll=0.3, mixed_top1=0.7, mixed_top2=0.95, sec_per_epoch=1.5,
                   epochs=3, eval_policy="mixup", images_per_sec=10.0)
    row = experiments.result_row(SimpleNamespace(config=config, metrics=metrics), "rid")
    assert list(row) == RESULT_COLUMNS
    assert row == dict(dataset="moons", model="mlp", policy="mixup", loss="dm", seed=4, test_acc=0.9, ece=0.05,
                       nll=0.3, mixed_top1=0.7, mixed_top2=0.95, sec_per_epoch=1.5, epochs=3, alpha=0.2,
                       eval_policy="mixup", run_id="rid")
    del metrics["eval_policy"]
    assert experiments.result_row(SimpleNamespace(config=config, metrics=metrics), "x")["eval_policy"] == ""


# ---------------------------------------------------------------------------- compare


def test_compare_writes_one_row_per_config_and_a_summary(tmp_path):
    out, store = tmp_path / "out", tmp_path / "store"
    log = []
    results = compare(TINY, out, runs_root=store, log=log.append)
    configs = grid(TINY)
    assert len(configs) == 10
    table = pd.read_csv(out / "results.csv")
    assert list(table.columns) == RESULT_COLUMNS
    assert_complete(table, grid_keys(TINY))
    assert set(table.dataset) == {"moons"} and set(table.model) == {"mlp"}
    assert set(table.epochs) == {1} and set(table.alpha) == {1.0} and set(table.eval_policy) == {"mixup"}
    assert list(table.run_id) == [runs.config_id(c) for c in configs]
    # the returned table is what the file holds
    pd.testing.assert_frame_equal(results, table, check_exact=True)
    # every run is in the store, finished, and its metrics are the row's
    for c, row in zip(configs, table.itertuples()):
        path = store / runs.config_id(c)
        assert runs.is_finished(path)
        stored = json.loads((path / "metrics.json").read_text())
        assert (stored["test_acc"], stored["nll"], stored["sec_per_epoch"]) == (row.test_acc, row.nll,
                                                                                 row.sec_per_epoch)
    # one log line per run, numbered
    assert len(log) == 10
    assert log[0].startswith("[1/10] moons none+ce seed 0: acc ")
    assert log[9].startswith("[10/10] moons average+midpoint seed 1: acc ")
    # the summary: 5 methods, 2 seeds each
    summary = pd.read_csv(out / "summary.csv")
    assert list(zip(summary.policy, summary.loss)) == [("none", "ce"), ("mixup", "mixup_ce"), ("mixup", "dm"),
                                                       ("average", "mixup_ce"), ("average", "midpoint")]
    assert set(summary.seeds) == {2}
    expected = summarize(results)
    pd.testing.assert_frame_equal(summary, expected, check_exact=False, rtol=1e-12)
    assert (out / "summary.md").read_text() == experiments.summary_markdown(expected)
    assert (out / "summary.md").read_text().startswith("**moons** (mean ± std over 2 seeds)\n")
    # plots=True (the default): one accuracy-vs-time plot per data set
    assert (out / "accuracy_vs_time_moons.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # atomic writes leave no temporary files and readable permissions
    assert sorted(f.name for f in out.iterdir()) == ["accuracy_vs_time_moons.png", "results.csv", "summary.csv",
                                                     "summary.md"]
    assert (out / "results.csv").stat().st_mode & 0o777 == 0o644


def test_compare_by_preset_name_uses_the_registry(tmp_path, monkeypatch, runs_root):
    monkeypatch.setitem(experiments.PRESETS, "tiny", TINY)
    results = compare("tiny", tmp_path / "out", seeds=(0,), policies=("none",), log=quiet, plots=False)
    assert keys_of(results) == [("moons", "none", "ce", 0)]
    # runs_root=None: the store is $MIXVIZ_RUNS
    assert runs.is_finished(runs_root / results.run_id[0])


def test_compare_refuses_an_existing_results_file_without_resume(tmp_path):
    out, store = tmp_path / "out", tmp_path / "store"
    compare(TINY, out, runs_root=store, seeds=(0,), log=quiet, plots=False)
    before = (out / "results.csv").read_bytes()
    with pytest.raises(ValueError, match=r"results\.csv exists; pass resume=True"):
        compare(TINY, out, runs_root=store, seeds=(0,), log=quiet, plots=False)
    assert (out / "results.csv").read_bytes() == before


def test_resume_of_a_finished_grid_trains_nothing(tmp_path, monkeypatch):
    out, store = tmp_path / "out", tmp_path / "store"
    first = compare(TINY, out, runs_root=store, log=quiet, plots=False)
    csv = (out / "results.csv").read_bytes()
    forbid_training(monkeypatch)
    log = []
    again = compare(TINY, out, runs_root=store, resume=True, log=log.append, plots=False)
    assert log == []
    pd.testing.assert_frame_equal(again, first, check_exact=True)
    assert (out / "results.csv").read_bytes() == csv
    assert sorted(f.name for f in out.iterdir()) == ["results.csv", "summary.csv", "summary.md"]  # plots=False


def test_resume_trains_only_what_is_missing(tmp_path, monkeypatch):
    out, store = tmp_path / "out", tmp_path / "store"
    compare(TINY, out, runs_root=store, seeds=(0,), log=quiet, plots=False)
    first_lines = (out / "results.csv").read_text().splitlines()
    calls = count_training(monkeypatch)
    results = compare(TINY, out, runs_root=store, resume=True, log=quiet, plots=False)
    assert calls == [k for k in grid_keys(TINY) if k[3] == 1]
    assert_complete(results, grid_keys(TINY))
    lines = (out / "results.csv").read_text().splitlines()
    assert lines[:len(first_lines)] == first_lines


def test_resume_with_a_narrower_grid_keeps_the_other_rows_in_the_file(tmp_path, monkeypatch):
    out, store = tmp_path / "out", tmp_path / "store"
    compare(TINY, out, runs_root=store, log=quiet, plots=False)
    forbid_training(monkeypatch)
    results = compare(TINY, out, runs_root=store, resume=True, policies=("mixup",), log=quiet, plots=False)
    assert keys_of(results) == grid_keys(TINY, policies=("mixup",))
    assert len(pd.read_csv(out / "results.csv")) == 10
    summary = pd.read_csv(out / "summary.csv")
    assert list(zip(summary.policy, summary.loss)) == [("mixup", "mixup_ce"), ("mixup", "dm")]


def test_a_new_out_dir_reuses_finished_runs_from_the_store(tmp_path, monkeypatch):
    store = tmp_path / "store"
    first = compare(TINY, tmp_path / "a", runs_root=store, log=quiet, plots=False)

    def no_fit(*a, **kw):
        raise AssertionError("a stored run was trained again")

    monkeypatch.setattr(runs, "fit", no_fit)
    second = compare(TINY, tmp_path / "b", runs_root=store, log=quiet, plots=False)
    # loaded from metrics.json: identical, seconds per epoch included
    pd.testing.assert_frame_equal(second, first, check_exact=True)


def test_compare_of_an_empty_grid_writes_nothing(tmp_path, monkeypatch):
    forbid_training(monkeypatch)
    results = compare(TINY, tmp_path / "out", runs_root=tmp_path / "store", seeds=(), log=quiet, plots=False)
    assert results.empty and list(results.columns) == RESULT_COLUMNS
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- killed grids


@pytest.mark.parametrize("k", [0, 1, 4, 9])
def test_grid_interrupted_after_k_runs_keeps_k_rows_and_resumes(tmp_path, monkeypatch, k):
    out, store = tmp_path / "out", tmp_path / "store"
    real = runs.load_or_train
    done = []

    def dies_after_k(config, root=None, **kw):
        if len(done) == k:
            raise KeyboardInterrupt("killed")
        done.append(1)
        return real(config, root, **kw)

    monkeypatch.setattr(runs, "load_or_train", dies_after_k)
    with pytest.raises(KeyboardInterrupt):
        compare(TINY, out, runs_root=store, log=quiet, plots=False)
    keys = grid_keys(TINY)
    if k == 0:
        assert not (out / "results.csv").exists()
    else:
        killed = pd.read_csv(out / "results.csv")
        assert_complete(killed, keys[:k])
        assert sorted(f.name for f in out.iterdir()) == ["results.csv"]  # no summary of a partial grid
    before = (out / "results.csv").read_text().splitlines() if k else []
    monkeypatch.setattr(runs, "load_or_train", real)

    calls = count_training(monkeypatch)
    results = compare(TINY, out, runs_root=store, resume=True, log=quiet, plots=False)
    assert calls == keys[k:]
    assert_complete(results, keys)
    table = pd.read_csv(out / "results.csv")
    assert_complete(table, keys)
    assert (out / "results.csv").read_text().splitlines()[:len(before)] == before
    # the same table as an unbroken grid over the same store
    unbroken = compare(TINY, tmp_path / "unbroken", runs_root=store, log=quiet, plots=False)
    pd.testing.assert_frame_equal(table, unbroken, check_exact=True)
    assert (out / "summary.md").read_text() == (tmp_path / "unbroken" / "summary.md").read_text()


def test_interrupt_inside_the_results_write_leaves_the_previous_file(tmp_path, monkeypatch):
    """Ctrl-C between writing the temporary file and renaming it: the old
    results.csv stays whole and the temporary file is removed."""
    from mixviz import ioutil

    out, store = tmp_path / "out", tmp_path / "store"
    real_replace = os.replace
    writes = []

    def replace_dies_on_third_results_write(src, dst):
        if str(dst).endswith("results.csv"):
            writes.append(dst)
            if len(writes) == 3:
                assert os.path.exists(src)
                raise KeyboardInterrupt("killed mid-write")
        return real_replace(src, dst)

    monkeypatch.setattr(ioutil.os, "replace", replace_dies_on_third_results_write)
    with pytest.raises(KeyboardInterrupt):
        compare(TINY, out, runs_root=store, log=quiet, plots=False)
    monkeypatch.setattr(ioutil.os, "replace", real_replace)
    assert sorted(f.name for f in out.iterdir()) == ["results.csv"]
    assert_complete(pd.read_csv(out / "results.csv"), grid_keys(TINY)[:2])
    calls = count_training(monkeypatch)
    results = compare(TINY, out, runs_root=store, resume=True, log=quiet, plots=False)
    # the third run had finished in the store: it is loaded, not trained again
    assert calls == grid_keys(TINY)[2:]
    assert_complete(results, grid_keys(TINY))


KILL_SCRIPT = r"""
import json, sys
from mixviz import experiments
spec = json.loads(sys.argv[1])
p = experiments.Preset("killme", "", bases=spec["bases"], seeds=tuple(spec["seeds"]),
                       policies=tuple(spec["policies"]))
experiments.compare(p, sys.argv[2], runs_root=sys.argv[3], log=lambda msg: print(msg, flush=True),
                    plots=False)
"""


@pytest.mark.slow
def test_grid_killed_with_sigkill_resumes_without_partial_or_lost_rows(tmp_path):
    seeds = (0, 1, 2, 3)
    p = Preset("killme", "", bases={"moons": MOONS_BASE}, seeds=seeds, policies=TINY.policies)
    spec = json.dumps({"bases": p.bases, "seeds": seeds, "policies": p.policies})
    out, store = tmp_path / "out", tmp_path / "store"
    results_path = out / "results.csv"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, spec, str(out), str(store)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if results_path.exists() and len(results_path.read_text().splitlines()) >= 2:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr.read().decode()[-2000:])
    keys = grid_keys(p)
    killed = pd.read_csv(results_path)
    assert 1 <= len(killed) <= len(keys)
    assert_complete(killed, keys[:len(killed)])
    before = results_path.read_text().splitlines()

    results = compare(p, out, runs_root=store, resume=True, log=quiet, plots=False)
    assert_complete(results, keys)
    table = pd.read_csv(results_path)
    assert_complete(table, keys)
    assert results_path.read_text().splitlines()[:len(before)] == before
    assert (out / "summary.csv").exists() and (out / "summary.md").exists()


# ---------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("p", [TINY, TINY_IMAGES], ids=["moons", "clutter"])
def test_same_seed_twice_gives_identical_rows_except_time(tmp_path, p):
    a = compare(p, tmp_path / "a", runs_root=tmp_path / "store_a", log=quiet, plots=False)
    b = compare(p, tmp_path / "b", runs_root=tmp_path / "store_b", log=quiet, plots=False)
    # the second grid really trained: its runs are in its own store
    assert all(runs.is_finished(tmp_path / "store_b" / rid) for rid in b.run_id)
    assert len(a) == len(grid(p))
    rest = [c for c in RESULT_COLUMNS if c != "sec_per_epoch"]
    pd.testing.assert_frame_equal(a[rest], b[rest], check_exact=True)
    file_a = pd.read_csv(tmp_path / "a" / "results.csv")
    file_b = pd.read_csv(tmp_path / "b" / "results.csv")
    pd.testing.assert_frame_equal(file_a[rest], file_b[rest], check_exact=True)
    assert file_a.drop(columns="sec_per_epoch").to_csv(index=False) == \
        file_b.drop(columns="sec_per_epoch").to_csv(index=False)


# ---------------------------------------------------------------------------- summarize


def hand_results():
    def row(dataset, policy, loss, seed, acc, ece, nll, top1, top2, sec):
        return dict(dataset=dataset, model="m", policy=policy, loss=loss, seed=seed, test_acc=acc, ece=ece,
                    nll=nll, mixed_top1=top1, mixed_top2=top2, sec_per_epoch=sec, epochs=1, alpha=1.0,
                    eval_policy="cutmix", run_id=f"{dataset}-{policy}-{loss}-{seed}")

    rows = [
        row("a", "mixup", "mixup_ce", 0, 0.50, 0.10, 1.0, 0.40, 0.80, 1.0),
        row("a", "mixup", "mixup_ce", 1, 0.70, 0.30, 2.0, 0.60, 1.00, 3.0),
        row("a", "mixup", "dm", 0, 0.60, 0.20, 1.5, 0.50, 0.90, 3.0),
        row("a", "mixup", "dm", 1, 0.80, 0.20, 0.5, 0.70, 0.90, 5.0),
        row("a", "puzzlemix", "mixup_ce", 0, 0.80, 0.05, 0.25, 0.75, 0.95, 6.0),
        row("b", "cutmix", "mixup_ce", 0, 0.25, 0.01, 3.0, 0.20, 0.30, 1.0),
        row("b", "cutmix", "mixup_ce", 1, 0.50, 0.02, 4.0, 0.30, 0.40, 2.0),
        row("b", "cutmix", "mixup_ce", 2, 0.75, 0.03, 5.0, 0.40, 0.50, 3.0),
        row("a", "none", "ce", 0, 0.40, 0.15, 2.5, 0.30, 0.60, 0.5),
    ]
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def test_summarize_mean_std_seeds_kind_and_time_vs_mixup():
    s = summarize(hand_results())
    assert list(s.columns) == ["dataset", "policy", "loss"] + [f"{m}_{x}" for m in METRICS for x in ("mean", "std")] \
        + ["seeds", "kind", "time_vs_mixup"]
    # groups in order of first appearance
    assert list(zip(s.dataset, s.policy, s.loss)) == [
        ("a", "mixup", "mixup_ce"), ("a", "mixup", "dm"), ("a", "puzzlemix", "mixup_ce"), ("b", "cutmix", "mixup_ce"),
        ("a", "none", "ce")]
    assert list(s.seeds) == [2, 2, 1, 3, 1]
    assert list(s.kind) == ["static", "DM", "dynamic", "static", "baseline"]
    r = s.set_index(["dataset", "policy", "loss"])
    mm = r.loc[("a", "mixup", "mixup_ce")]
    approx = lambda v: pytest.approx(v, rel=1e-12, abs=1e-15)  # noqa: E731
    assert (mm.test_acc_mean, mm.test_acc_std) == (approx(0.6), approx(math.sqrt(0.02)))
    assert (mm.ece_mean, mm.ece_std) == (approx(0.2), approx(math.sqrt(0.02)))
    assert (mm.nll_mean, mm.nll_std) == (1.5, approx(math.sqrt(0.5)))
    assert (mm.mixed_top1_mean, mm.mixed_top2_mean) == (approx(0.5), approx(0.9))
    assert (mm.sec_per_epoch_mean, mm.sec_per_epoch_std) == (2.0, approx(math.sqrt(2)))
    dm = r.loc[("a", "mixup", "dm")]
    assert (dm.ece_mean, dm.ece_std) == (approx(0.2), 0.0)
    assert (dm.nll_mean, dm.nll_std) == (1.0, approx(math.sqrt(0.5)))
    cut = r.loc[("b", "cutmix", "mixup_ce")]
    assert (cut.test_acc_mean, cut.test_acc_std) == (0.5, 0.25)          # sample std (ddof 1)
    assert (cut.nll_mean, cut.nll_std) == (4.0, 1.0)
    # single seed: the mean is the value, the std is NaN
    pz = r.loc[("a", "puzzlemix", "mixup_ce")]
    assert pz.test_acc_mean == 0.8 and math.isnan(pz.test_acc_std) and math.isnan(pz.sec_per_epoch_std)
    # seconds per epoch relative to mixup + mixup CE on the same data set; NaN where that is missing
    assert list(s.time_vs_mixup[[0, 1, 2, 4]]) == [1.0, 2.0, 3.0, 0.25]
    assert math.isnan(s.time_vs_mixup[3])


def test_summarize_on_an_empty_table_raises():
    with pytest.raises(ValueError, match="empty"):
        summarize(pd.DataFrame(columns=RESULT_COLUMNS))


def test_kind_of():
    assert experiments.kind_of("mixup", "dm") == "DM"
    assert experiments.kind_of("puzzlemix", "dm") == "DM"
    assert experiments.kind_of("mixup", "mixup_ce") == "static"
    assert experiments.kind_of("none", "ce") == "baseline"
    assert experiments.kind_of("average", "midpoint") == "static"
    assert experiments.kind_of("cutmix", "mixup_ce") == "static"
    assert experiments.kind_of("saliencymix", "mixup_ce") == "dynamic"
    assert experiments.kind_of("puzzlemix", "mixup_ce") == "dynamic"


def test_summary_markdown_one_table_per_dataset():
    md = experiments.summary_markdown(summarize(hand_results()))
    header = ("| method | kind | test acc % | ECE % | NLL | mixed Top-1 % | mixed Top-2 % | s/epoch | "
              "time vs mixup |")
    assert md.count(header) == 2
    assert md.count("|---|---|---|---|---|---|---|---|---|") == 2
    lines = md.splitlines()
    a, b = lines.index("**a** (mean ± std over 2 seeds)"), lines.index("**b** (mean ± std over 3 seeds)")
    assert a == 0 and b > a
    assert lines[a + 1] == "" and lines[a + 2] == header
    block_a = lines[a + 4:a + 8]
    assert block_a == [
        "| mixup + mixup_ce | static | 60.0 ± 14.1 | 20.0 ± 14.1 | 1.500 ± 0.707 | 50.0 ± 14.1 | 90.0 ± 14.1 | "
        "2.00 ± 1.41 | 1.00x |",
        "| mixup + dm | DM | 70.0 ± 14.1 | 20.0 ± 0.0 | 1.000 ± 0.707 | 60.0 ± 14.1 | 90.0 ± 0.0 | 4.00 ± 1.41 | "
        "2.00x |",
        "| puzzlemix + mixup_ce | dynamic | 80.0 | 5.0 | 0.250 | 75.0 | 95.0 | 6.00 | 3.00x |",
        "| none + ce | baseline | 40.0 | 15.0 | 2.500 | 30.0 | 60.0 | 0.50 | 0.25x |",
    ]
    # DM's effect per policy: differences of the means, ± the standard error of the difference
    assert lines[a + 8:b] == [
        "", "DM minus mixup CE on the same policy, in points (± standard error of the difference over seeds):", "",
        "| policy | test acc | ECE | mixed Top-1 | mixed Top-2 |", "|---|---|---|---|---|",
        "| mixup | +10.0 ± 14.1 | +0.0 ± 10.0 | +10.0 ± 14.1 | +0.0 ± 10.0 |", "",
        "Best test accuracy by kind: baseline: none + ce 40.0 %; static: mixup + mixup_ce 60.0 %; "
        "dynamic: puzzlemix + mixup_ce 80.0 %; DM: mixup + dm 70.0 %.", ""]
    row_b = lines[b + 4]
    assert row_b.startswith("| cutmix + mixup_ce | static | 50.0 ± 25.0 | 2.0 ± 1.0 | 4.000 ± 1.000 | "
                            "30.0 ± 10.0 | 40.0 ± 10.0 | 2.00 ± 1.00 | ")
    # no DM row on b: no effect table, only the best of the kinds present
    assert lines[b + 5:] == ["", "Best test accuracy by kind: static: cutmix + mixup_ce 50.0 %."]


def test_summary_markdown_single_seed_and_missing_values():
    table = hand_results()
    table = table[table.seed == 0].copy()
    table.loc[table.policy == "none", "ece"] = float("nan")
    md = experiments.summary_markdown(summarize(table))
    assert "**a** (mean ± std over 1 seed)\n" in md
    assert "±" not in md.replace("mean ± std", "")
    assert "| mixup + mixup_ce | static | 50.0 | 10.0 | 1.000 | 40.0 | 80.0 | 1.00 | 1.00x |" in md
    assert "| none + ce | baseline | 40.0 | – | 2.500 | 30.0 | 60.0 | 0.50 | 0.50x |" in md
    # one seed: the DM effect has no standard error
    assert "| mixup | +10.0 | +10.0 | +10.0 | +10.0 |" in md


def test_dm_effects_pairs_dm_with_the_same_policy():
    s = summarize(hand_results())
    e = experiments.dm_effects(s)
    assert list(zip(e.dataset, e.policy)) == [("a", "mixup")]
    assert e.test_acc[0] == pytest.approx(0.1)
    assert e.test_acc_se[0] == pytest.approx(math.sqrt(0.02 / 2 + 0.02 / 2))
    assert e.ece_se[0] == pytest.approx(0.1)
    assert experiments.dm_effects(s[s.loss != "dm"]).empty


def test_summary_markdown_missing_mixup_reference_prints_a_dash():
    md = experiments.summary_markdown(summarize(hand_results()))
    row_b = next(line for line in md.splitlines() if line.startswith("| cutmix + mixup_ce"))
    assert row_b.endswith("| 2.00 ± 1.00 | – |")
    assert "nan" not in md


# ---------------------------------------------------------------------------- the command


def test_cli_compare_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["compare", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: mixviz compare")
    for flag in ("--preset", "--out", "--resume", "--runs", "--seeds", "--policies", "--datasets", "--epochs",
                 "--device"):
        assert flag in text
    for name in experiments.PRESETS:
        assert name in text


def test_cli_compare_runs_a_tiny_preset_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(experiments.PRESETS, "tiny", TINY)
    out, store = tmp_path / "out", tmp_path / "store"
    argv = ["compare", "--preset", "tiny", "--out", str(out), "--runs", str(store), "--seeds", "1",
            "--policies", "mixup", "none", "--epochs", "2", "--device", "cpu"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(out / "results.csv")
    assert keys_of(table) == [("moons", "mixup", "mixup_ce", 0), ("moons", "mixup", "dm", 0),
                              ("moons", "none", "ce", 0)]
    assert set(table.epochs) == {2}
    assert "[3/3] moons none+ce seed 0: acc " in printed
    md = (out / "summary.md").read_text()
    assert md in printed
    assert printed.endswith(f"results in {out}/results.csv, summary in {out}/summary.md\n")
    # again without --resume: an error, reported by the command
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("mixviz compare: error: ") and "exists; pass resume=True (--resume)" in err
    # with --resume: nothing is trained
    forbid_training(monkeypatch)
    assert cli.main(argv + ["--resume"]) == 0
    assert capsys.readouterr().out.endswith(f"results in {out}/results.csv, summary in {out}/summary.md\n")
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), table, check_exact=True)


def test_cli_compare_default_out_and_bad_names(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(experiments.PRESETS, "tiny", TINY)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["compare", "--preset", "tiny", "--runs", "store", "--seeds", "1", "--policies", "none"]) == 0
    assert keys_of(pd.read_csv(tmp_path / "results" / "tiny" / "results.csv")) == [("moons", "none", "ce", 0)]
    assert capsys.readouterr().out.endswith("results in results/tiny/results.csv, summary in results/tiny/summary.md\n")
    assert cli.main(["compare", "--preset", "tiny", "--out", "x", "--datasets", "digits"]) == 2
    assert "mixviz compare: error: datasets must be one of 'moons'; got 'digits'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit) as exit_:
        cli.main(["compare", "--preset", "nope"])
    assert exit_.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_cli_compare_with_an_empty_grid_says_so(tmp_path, capsys):
    from mixviz import cli

    assert cli.main(["compare", "--preset", "quick", "--seeds", "0", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "nothing was run or written" in out and "results in" not in out
    assert not (tmp_path / "out").exists()


def test_summary_functions_reject_bad_tables(tmp_path):
    with pytest.raises(TypeError, match="results must be a pandas DataFrame"):
        summarize([{"dataset": "a"}])
    with pytest.raises(ValueError, match="results must have the column"):
        summarize(hand_results().drop(columns="ece"))
    with pytest.raises(ValueError, match="summary must have the column"):
        experiments.dm_effects(summarize(hand_results()).drop(columns="seeds"))
    with pytest.raises(ValueError, match="results must have the column"):
        experiments.write_plots(hand_results().drop(columns="sec_per_epoch"), tmp_path)
    assert not list(tmp_path.iterdir())


def test_write_plots_draws_one_png_per_data_set(tmp_path):
    from PIL import Image

    paths = experiments.write_plots(hand_results(), tmp_path)
    assert [p.name for p in paths] == ["accuracy_vs_time_a.png", "accuracy_vs_time_b.png"]
    for p in paths:
        with Image.open(p) as img:
            assert img.format == "PNG" and img.mode == "P"
