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
from mixviz.experiments import (RESULT_COLUMNS, Preset, compare, estimated_cost, grid, longest_first, method_config,
                                methods, summarize)
from mixviz.losses import dm_defaults
from mixviz.mixing import alpha_defaults
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

REQUIRED = ["regime", "dataset", "model", "method", "policy", "loss", "seed", "test_acc", "ece", "nll", "mixed_top1",
            "mixed_top2", "sec_per_epoch", "epochs", "alpha", "label_noise", "run_id"]
METRICS = ["test_acc", "ece", "nll", "mixed_top1", "mixed_top2", "sec_per_epoch"]


def keys_of(table):
    return [(r.regime, r.method, int(r.seed)) for r in table.itertuples()]


def grid_keys(p, **kw):
    return [(c.regime, c.method, c.config.seed) for c in experiments.cells(p, **kw)]


def quiet(_msg):
    pass


def count_training(monkeypatch):
    """Count the runs that ``compare`` asks the run store for (compare imports
    ``load_or_train`` from ``mixviz.runs`` when it is called)."""
    calls = []
    real = runs.load_or_train

    def counting(config, root=None, **kw):
        calls.append((config.dataset, f"{config.policy}+{config.loss}", config.seed))
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
def test_grid_is_regimes_x_seeds_x_methods(name):
    p = experiments.preset(name)
    assert p is experiments.PRESETS[name]
    cs = experiments.cells(p)
    expected = []
    for regime in p.bases:
        for seed in p.all_seeds:
            expected += [(regime, f"{pol}+{loss}", seed) for pol in p.policies for loss in methods(pol)
                         if seed in p.seeds_of(f"{pol}+{loss}") and f"{pol}+{loss}" not in p.skip]
            expected += [(regime, v.label, seed) for v in p.variants if seed in p.seeds_of(v.label)]
    assert [(c.regime, c.method, c.config.seed) for c in cs] == expected
    assert len({(c.regime, c.method, c.config.seed) for c in cs}) == len(cs)
    for c in cs:
        config, base = c.config, p.bases[c.regime]
        assert isinstance(config, TrainConfig) and config.progress is False
        assert config.dataset == base.get("dataset", c.regime)
        for k, v in base.items():
            assert getattr(config, k) == v, (c.regime, k)
        if config.loss == "dm" and p.dm_alpha:
            assert config.alpha == alpha_defaults(config.policy, with_dm=True, dataset_kind=p.dm_kind)
        elif c.method == f"{config.policy}+{config.loss}":
            assert config.alpha == p.alpha.get(config.policy, base.get("alpha", TrainConfig.alpha))
        if c.method == f"{config.policy}+dm":
            dm = dm_defaults(config.policy, p.dm_kind)
            assert config.loss_options == {"eta": dm["eta"], "mode": dm["mode"], "lam_power": dm["lam_power"],
                                           **p.dm_options}
        elif config.loss != "dm":
            assert config.loss_options == {}
    # figures need a clutter regime with object masks
    if p.figure_regime is not None:
        assert p.dataset_of(p.figure_regime) == "clutter"


def test_builtin_presets():
    quick, full, sweep, gpu = (experiments.preset(n) for n in ("quick", "full", "dm-sweep", "gpu-cifar100"))
    assert len(full.seeds) >= 5 and len(sweep.seeds) >= 3
    # full: clean, noisy and few-labels regimes on clutter
    noise = {r: b["dataset_options"].get("label_noise", 0.0) for r, b in full.bases.items()}
    assert noise["clean"] == 0.0 and noise["noisy20"] == 0.2 and noise["noisy40"] == 0.4
    assert any(b["dataset_options"]["n_train"] <= 300 for b in full.bases.values())    # few labels per class
    # quick: noisy labels (the regime where mixing helps), the regime of the pictures
    assert quick.bases[quick.figure_regime]["dataset_options"]["label_noise"] > 0
    # quick: the headline pair on 4 seeds (scripts/headline_seeds.py), the other rows on one; its regime is one
    # of full's (one run store)
    seeds = {}
    for c in experiments.cells(quick):
        seeds.setdefault(c.method, []).append(c.config.seed)
    assert seeds["none+ce"] == seeds["mixup+mixup_ce"] == [0, 1, 2, 3] and seeds["cutmix+dm"] == [0]
    assert quick.bases["noisy40"] == full.bases["noisy40"]
    # the sweep: eta x mode for mixup and CutMix next to their mixup CE, in the noisy regime of quick
    labels = [v.label for v in sweep.variants]
    for policy in ("mixup", "cutmix"):
        assert f"{policy}+mixup_ce" in labels and f"{policy}+dm eta=1 more" in labels
        assert sum(lab.startswith(f"{policy}+dm ") for lab in labels) == 3 * 3
    assert sweep.bases == {"noisy40": quick.bases["noisy40"]}
    # the CIFAR-100 preset carries the authors' alpha per policy, and their alpha 0.2 for DM runs
    for c in grid(gpu):
        assert c.alpha == (0.2 if c.loss == "dm" else experiments.CIFAR_ALPHA[c.policy])
        assert (c.model, c.epochs, c.batch_size, c.lr, c.momentum, c.weight_decay, c.scheduler) == \
            ("preact_resnet18", 200, 100, 0.1, 0.9, 1e-4, "cosine")
    # the CPU presets leave alpha at the TrainConfig default, for DM too (only the loss differs)
    assert not quick.dm_alpha and not full.dm_alpha


def test_dm_rows_follow_dm_defaults_per_policy_with_the_preset_options_on_top():
    p = Preset("t", "", bases={"moons": MOONS_BASE}, policies=("mixup", "cutmix", "puzzlemix", "average"))
    rows = {(c.policy, c.loss): c for c in grid(p)}
    assert rows[("mixup", "dm")].loss_options == {"eta": 0.01, "mode": "more", "lam_power": 0.5}
    assert rows[("cutmix", "dm")].loss_options == {"eta": 0.1, "mode": "less", "lam_power": 0.5}
    assert rows[("puzzlemix", "dm")].loss_options == {"eta": 0.1, "mode": "both", "lam_power": 1.0}
    manifold = {(c.policy, c.loss): c for c in grid(Preset("t", "", bases={"moons": MOONS_BASE},
                                                           policies=("manifold",)))}
    assert manifold[("manifold", "dm")].loss_options == {"eta": 0.01, "mode": "more", "lam_power": 0.0}
    assert ("average", "dm") not in rows and ("none", "dm") not in rows
    assert rows[("average", "midpoint")].loss_options == {}
    strong = Preset("t", "", bases={"moons": MOONS_BASE}, policies=("mixup",), dm_options={"eta": 1.0})
    assert grid(strong)[1].loss_options == {"eta": 1.0, "mode": "more", "lam_power": 0.5}


def test_variants_and_the_sweep_rows():
    p = Preset("t", "", bases={"moons": MOONS_BASE}, policies=("mixup",),
               variants=experiments.dm_sweep_variants(("mixup",), etas=(0.0, 0.3), modes=("both", "less")))
    cs = experiments.cells(p)
    assert [c.method for c in cs] == ["mixup+mixup_ce", "mixup+dm", "mixup+dm eta=0 both", "mixup+dm eta=0.3 both",
                                      "mixup+dm eta=0.3 less"]
    assert cs[3].config.loss_options == {"eta": 0.3, "mode": "both", "lam_power": 1.0}
    assert cs[2].config.loss_options["eta"] == 0.0
    assert cs[3].config.alpha == cs[0].config.alpha                  # only the loss differs


def test_method_config_alpha_dm_kind_and_overrides():
    c = method_config(MOONS_BASE, "moons", "mixup", "dm", 3, alpha=0.4, dm_kind="imagenet")
    assert (c.dataset, c.policy, c.loss, c.seed, c.alpha, c.progress) == ("moons", "mixup", "dm", 3, 0.4, False)
    assert c.loss_options == {"eta": 0.1, "mode": "both", "lam_power": 1.0}
    assert method_config(MOONS_BASE, "moons", "mixup", "mixup_ce", 0).alpha == 1.0
    assert method_config(dict(MOONS_BASE, alpha=0.3), "moons", "mixup", "mixup_ce", 0).alpha == 0.3
    c = method_config(MOONS_BASE, "moons", "mixup", "dm", 0, epochs=5, loss_options={"eta": 0.5})
    assert c.epochs == 5 and c.loss_options == {"eta": 0.5}
    assert "loss_options" not in MOONS_BASE and "seed" not in MOONS_BASE
    with pytest.raises(ValueError, match="policy"):
        method_config(MOONS_BASE, "moons", "nope", "ce", 0)


def test_grid_filters_and_overrides():
    full = experiments.preset("full")
    configs = experiments.cells(full, seeds=(5,), policies=("mixup", "none"), regimes=("noisy40",), epochs=2)
    assert {c.config.epochs for c in configs} == {2} and {c.regime for c in configs} == {"noisy40"}
    assert {c.method for c in configs} == {"mixup+mixup_ce", "mixup+dm", "none+ce"}
    assert len(grid(full, seeds=(0,))) == len(grid(full)) // len(full.seeds)
    assert len(grid(full, datasets=("clutter",))) == len(grid(full))
    assert grid_keys(TINY, policies=("average",)) == [("moons", "average+mixup_ce", 0),
                                                     ("moons", "average+midpoint", 0),
                                                     ("moons", "average+mixup_ce", 1),
                                                     ("moons", "average+midpoint", 1)]


@pytest.mark.parametrize("kw,name", [
    (dict(policies=("bogus",)), "policies"),
    (dict(policies=("gridmix",)), "policies"),           # a real policy, but not in the preset
    (dict(policies=("mixup", "cutmix")), "policies"),    # cutmix is not in TINY
    (dict(datasets=("cifar10",)), "datasets"),
    (dict(datasets=("moons", "clutter")), "datasets"),
    (dict(regimes=("noisy",)), "regimes"),
])
def test_grid_unknown_names_raise_naming_the_argument(kw, name):
    with pytest.raises(ValueError, match=f"^{name} must be one of"):
        grid(TINY, **kw)


def test_unknown_preset_raises():
    with pytest.raises(ValueError, match="^preset must be one of 'quick', 'full'"):
        experiments.preset("nope")
    with pytest.raises(ValueError, match="preset"):
        compare("nope", "unused-never-created")


def test_result_row_takes_config_and_metrics():
    config = TrainConfig(dataset="moons", model="mlp", policy="mixup", loss="dm", seed=4, alpha=0.2,
                         loss_options={"eta": 0.3}, dataset_options={"label_noise": 0.2})
    metrics = dict(test_acc=0.9, ece=0.05, nll=0.3, mixed_top1=0.7, mixed_top2=0.95, sec_per_epoch=1.5,
                   epochs=3, eval_policy="mixup", images_per_sec=10.0, memorised=0.25)
    row = experiments.result_row(SimpleNamespace(config=config, metrics=metrics), "rid", "noisy", "mixup+dm x")
    assert list(row) == RESULT_COLUMNS
    assert (row["regime"], row["method"], row["dataset"], row["seed"]) == ("noisy", "mixup+dm x", "moons", 4)
    assert (row["test_acc"], row["memorised"], row["alpha"], row["label_noise"]) == (0.9, 0.25, 0.2, 0.2)
    assert row["loss_options"] == '{"eta": 0.3}' and row["run_id"] == "rid" and row["eval_policy"] == "mixup"
    assert math.isnan(row["still_right"]) and math.isnan(row["cutmix_top2_both"])
    del metrics["eval_policy"]
    row = experiments.result_row(SimpleNamespace(config=config, metrics=metrics), "x")
    assert row["eval_policy"] == "" and row["regime"] == "moons" and row["method"] == "mixup+dm"


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
    assert list(summary.method) == ["none+ce", "mixup+mixup_ce", "mixup+dm", "average+mixup_ce", "average+midpoint"]
    assert set(summary.seeds) == {2}
    expected = summarize(results)
    pd.testing.assert_frame_equal(summary, expected, check_exact=False, rtol=1e-12)
    effects = experiments.paired_effects(results)
    assert (out / "summary.md").read_text() == experiments.summary_markdown(expected, effects)
    assert (out / "summary.md").read_text().startswith("**moons** (moons; mean ± 95 % interval over 2 seeds)\n")
    assert list(pd.read_csv(out / "effects.csv").treatment) == list(effects.treatment)
    # plots=True (the default): one accuracy-vs-time plot per regime
    assert (out / "accuracy_vs_time_moons.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # atomic writes leave no temporary files and readable permissions
    assert sorted(f.name for f in out.iterdir()) == ["accuracy_vs_time_moons.png", "effects.csv", "results.csv",
                                                     "summary.csv", "summary.md"]
    assert (out / "results.csv").stat().st_mode & 0o777 == 0o644


def test_compare_by_preset_name_uses_the_registry(tmp_path, monkeypatch, runs_root):
    monkeypatch.setitem(experiments.PRESETS, "tiny", TINY)
    results = compare("tiny", tmp_path / "out", seeds=(0,), policies=("none",), log=quiet, plots=False)
    assert keys_of(results) == [("moons", "none+ce", 0)]
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
    assert sorted(f.name for f in out.iterdir()) == ["effects.csv", "results.csv", "summary.csv",
                                                     "summary.md"]  # plots=False


def test_resume_trains_only_what_is_missing(tmp_path, monkeypatch):
    out, store = tmp_path / "out", tmp_path / "store"
    compare(TINY, out, runs_root=store, seeds=(0,), log=quiet, plots=False)
    first_lines = (out / "results.csv").read_text().splitlines()
    calls = count_training(monkeypatch)
    results = compare(TINY, out, runs_root=store, resume=True, log=quiet, plots=False)
    assert calls == [k for k in grid_keys(TINY) if k[2] == 1]
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
    assert list(summary.method) == ["mixup+mixup_ce", "mixup+dm"]


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
    def row(regime, method, seed, acc, ece, nll, top1, top2, sec, memorised=float("nan")):
        policy, loss = method.split(" ")[0].split("+")
        return dict(regime=regime, dataset="clutter", model="m", method=method, policy=policy, loss=loss, seed=seed,
                    test_acc=acc, ece=ece, nll=nll, mixed_top1=top1, mixed_top2=top2, cutmix_top2_both=top2,
                    cutmix_top2_one=top2 / 2, mixup_top2_both=top2, mixup_top2_one=top2 / 2, memorised=memorised,
                    still_right=float("nan"), sec_per_epoch=sec, epochs=1, alpha=1.0, loss_options="{}",
                    label_noise=0.0, eval_policy="cutmix", run_id=f"{regime}-{method}-{seed}")

    rows = [
        row("a", "mixup+mixup_ce", 0, 0.50, 0.10, 1.0, 0.40, 0.80, 1.0, 0.1),
        row("a", "mixup+mixup_ce", 1, 0.70, 0.30, 2.0, 0.60, 1.00, 3.0, 0.2),
        row("a", "mixup+dm", 0, 0.60, 0.20, 1.5, 0.50, 0.90, 3.0, 0.1),
        row("a", "mixup+dm", 1, 0.80, 0.20, 0.5, 0.70, 0.90, 5.0, 0.1),
        row("a", "puzzlemix+mixup_ce", 0, 0.80, 0.05, 0.25, 0.75, 0.95, 6.0),
        row("b", "cutmix+mixup_ce", 0, 0.25, 0.01, 3.0, 0.20, 0.30, 1.0),
        row("b", "cutmix+mixup_ce", 1, 0.50, 0.02, 4.0, 0.30, 0.40, 2.0),
        row("b", "cutmix+mixup_ce", 2, 0.75, 0.03, 5.0, 0.40, 0.50, 3.0),
        row("a", "none+ce", 0, 0.40, 0.15, 2.5, 0.30, 0.60, 0.5, 0.6),
        row("a", "none+ce", 1, 0.45, 0.15, 2.5, 0.30, 0.60, 0.5, 0.7),
        row("b", "none+ce", 0, 0.20, 0.01, 3.0, 0.20, 0.30, 1.0),
        row("b", "none+ce", 1, 0.30, 0.02, 4.0, 0.30, 0.40, 2.0),
        row("b", "none+ce", 2, 0.40, 0.03, 5.0, 0.40, 0.50, 3.0),
    ]
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


T95 = {1: 12.706204736174707, 2: 4.302652729749464}   # scipy.stats.t.ppf(0.975, dof)


def test_summarize_mean_interval_seeds_kind_and_time_vs_mixup():
    s = summarize(hand_results())
    assert list(s.method) == ["mixup+mixup_ce", "mixup+dm", "puzzlemix+mixup_ce", "none+ce", "cutmix+mixup_ce",
                              "none+ce"]
    assert list(s.regime) == ["a", "a", "a", "a", "b", "b"]
    assert list(s.seeds) == [2, 2, 1, 2, 3, 3]
    assert list(s.kind) == ["static", "DM", "dynamic", "baseline", "static", "baseline"]
    mm = s.iloc[0]
    approx = lambda v: pytest.approx(v, rel=1e-12, abs=1e-15)  # noqa: E731
    assert (mm.test_acc_mean, mm.test_acc_std) == (approx(0.6), approx(math.sqrt(0.02)))
    assert mm.test_acc_ci == approx(T95[1] * math.sqrt(0.02) / math.sqrt(2))
    cut = s.iloc[4]
    assert (cut.test_acc_mean, cut.test_acc_std, cut.test_acc_ci) == (0.5, 0.25, approx(T95[2] * 0.25 / math.sqrt(3)))
    pz = s.iloc[2]
    assert pz.test_acc_mean == 0.8 and math.isnan(pz.test_acc_ci) and math.isnan(pz.test_acc_std)
    # seconds per epoch relative to mixup + mixup CE in the same regime; NaN where that is missing
    assert list(s.time_vs_mixup[:4]) == [1.0, 2.0, 3.0, 0.25]
    assert math.isnan(s.time_vs_mixup[4])


def test_paired_effects_by_hand():
    e = experiments.paired_effects(hand_results())
    rows = {(r.regime, r.comparison, r.treatment): r for r in e.itertuples()}
    # mixup minus none, seeds 0 and 1: differences 0.10 and 0.25
    r = rows[("a", "mixing - none+ce", "mixup+mixup_ce")]
    assert r.seeds == 2 and r.reference == "none+ce"
    assert r.test_acc == pytest.approx(0.175) and r.test_acc_ci == pytest.approx(T95[1] * 0.075 * math.sqrt(2) / math.sqrt(2))
    # DM minus mixup CE on the same policy: +0.10 on both seeds -> zero spread, the interval excludes 0
    d = rows[("a", "DM - mixup CE", "mixup+dm")]
    assert d.test_acc == pytest.approx(0.1) and d.test_acc_ci == pytest.approx(0.0, abs=1e-12)
    assert d.memorised == pytest.approx(-0.05)
    # puzzlemix has one seed in common with none: a difference without an interval
    pz = rows[("a", "mixing - none+ce", "puzzlemix+mixup_ce")]
    assert pz.seeds == 1 and math.isnan(pz.test_acc_ci)
    # regime b: cutmix minus none, differences 0.05, 0.20, 0.35
    b = rows[("b", "mixing - none+ce", "cutmix+mixup_ce")]
    assert b.test_acc == pytest.approx(0.2) and b.test_acc_low < 0.2 < b.test_acc_high
    assert b.test_acc_ci == pytest.approx(T95[2] * 0.15 / math.sqrt(3))
    assert ("b", "DM - mixup CE", "cutmix+dm") not in rows
    # dynamic rows against mixup + mixup CE: puzzlemix shares seed 0 (0.80 - 0.50); mixup + dm is the DM row above
    v = rows[("a", "vs mixup - mixup+mixup_ce", "puzzlemix+mixup_ce")]
    assert v.reference == "mixup+mixup_ce" and v.seeds == 1 and v.test_acc == pytest.approx(0.3)
    assert {k[2] for k in rows if k[1] == "vs mixup - mixup+mixup_ce"} == {"puzzlemix+mixup_ce"}


def test_summarize_on_an_empty_table_raises():
    with pytest.raises(ValueError, match="empty"):
        summarize(pd.DataFrame(columns=RESULT_COLUMNS))


def test_kind_of():
    assert experiments.kind_of("mixup", "dm") == "DM"
    assert experiments.kind_of("puzzlemix", "dm") == "DM"
    assert experiments.kind_of("mixup", "mixup_ce") == "static"
    assert experiments.kind_of("none", "ce") == "baseline"
    assert experiments.kind_of("average", "midpoint") == "static"
    assert experiments.kind_of("saliencymix", "mixup_ce") == "dynamic"
    assert experiments.kind_of("puzzlemix", "mixup_ce") == "dynamic"


def test_summary_markdown_tables_intervals_and_claims():
    results = hand_results()
    md = experiments.summary_markdown(summarize(results), experiments.paired_effects(results))
    lines = md.splitlines()
    a = lines.index("**a** (clutter; mean ± 95 % interval over 1/2 seeds)")
    b = lines.index("**b** (clutter; mean ± 95 % interval over 3 seeds)")
    assert a == 0 and b > a
    block = lines[a:b]
    header = next(line for line in block if line.startswith("| method |"))
    assert header.startswith("| method | kind | seeds | test acc % | ECE % | NLL | mixed Top-2 % |")
    mixup = next(line for line in block if line.startswith("| mixup+mixup_ce |"))
    half = 100 * T95[1] * math.sqrt(0.02) / math.sqrt(2)
    assert mixup.startswith(f"| mixup+mixup_ce | static | 2 | 60.0 ± {half:.1f} |")
    assert "| puzzlemix+mixup_ce | dynamic | 1 | 80.0 | 5.0 | 0.250 |" in md
    # paired differences: DM +10 points on both seeds, a zero-width interval that excludes 0 (marked *)
    dm_part = block[block.index(next(line for line in block if line.startswith("DM minus the mixup CE"))):]
    dm = next(line for line in dm_part if line.startswith("| mixup+dm | 2 |"))
    assert dm.startswith("| mixup+dm | 2 | +10.0 ± 0.0 * |")
    assert "Each method minus none + ce, paired per seed" in md
    # the headline names the best mixing method over several seeds and what its interval says; puzzlemix's
    # +40 on one seed is an illustration, never the best method
    assert "| puzzlemix+mixup_ce | 1 seed: illustration | +40.0 |" in md
    assert ("Best mixing method: mixup+dm, +27.5 ± 95.3 points against none + ce over 2 paired seeds: no measurable "
            "difference (the 95 % interval includes 0). 1 seed: illustration, not ranked: puzzlemix+mixup_ce.") in block
    only_one = results[results.seed == 0]
    assert experiments.headline(None, experiments.paired_effects(only_one), "a") == (
        "Every mixing method ran on 1 seed against none + ce (1 seed: illustration): no interval, no claim and no "
        "best method.")
    assert "nan" not in md


def test_headline_claims_only_when_the_interval_excludes_zero():
    results = hand_results()
    s, e = summarize(results), experiments.paired_effects(results)
    text = experiments.headline(s, e, "b")
    assert text.startswith("Best mixing method: cutmix+mixup_ce, +20.0 ± ") and "no measurable difference" in text
    strong = results.copy()
    strong.loc[(strong.regime == "b") & (strong.method == "cutmix+mixup_ce"), "test_acc"] = [0.3, 0.41, 0.5]
    e2 = experiments.paired_effects(strong)
    assert "more accurate (the 95 % interval excludes 0)" in experiments.headline(summarize(strong), e2, "b")


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
    assert keys_of(table) == [("moons", "none+ce", 0), ("moons", "mixup+mixup_ce", 0), ("moons", "mixup+dm", 0)]
    assert set(table.epochs) == {2}
    assert "[3/3] moons mixup+dm seed 0: acc " in printed
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
    assert keys_of(pd.read_csv(tmp_path / "results" / "tiny" / "results.csv")) == [("moons", "none+ce", 0)]
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
        summarize(hand_results().drop(columns="test_acc"))
    with pytest.raises(ValueError, match="results must have the column"):
        experiments.paired_effects(hand_results().drop(columns="method"))
    with pytest.raises(ValueError, match="results must have the column"):
        experiments.write_plots(hand_results().drop(columns="sec_per_epoch"), tmp_path)
    assert not list(tmp_path.iterdir())


def test_write_plots_draws_one_png_per_data_set(tmp_path):
    from PIL import Image

    paths = experiments.write_plots(hand_results(), tmp_path)
    assert [p.name for p in paths] == ["accuracy_vs_time_a.png", "accuracy_vs_time_b.png"]  # one per regime
    for p in paths:
        with Image.open(p) as img:
            assert img.format == "PNG" and img.mode == "P"


# ---------------------------------------------------------------------------- the DM sweep


def sweep_results():
    rows = []
    for seed, (ce, d1, d2) in enumerate([(0.80, 0.82, 0.79), (0.84, 0.85, 0.80), (0.82, 0.85, 0.78)]):
        base = dict(regime="noisy", dataset="clutter", model="m", policy="cutmix", seed=seed, ece=0.1, nll=1.0,
                    mixed_top1=0.5, mixed_top2=0.2, sec_per_epoch=1.0, epochs=1, alpha=1.0, label_noise=0.4,
                    eval_policy="cutmix", run_id="r")
        rows.append(dict(base, method="cutmix+mixup_ce", loss="mixup_ce", test_acc=ce, loss_options="{}"))
        rows.append(dict(base, method="cutmix+dm eta=0.1 both", loss="dm", test_acc=d1,
                         loss_options='{"eta": 0.1, "lam_power": 1.0, "mode": "both"}'))
        rows.append(dict(base, method="cutmix+dm eta=1 less", loss="dm", test_acc=d2,
                         loss_options='{"eta": 1.0, "lam_power": 1.0, "mode": "less"}'))
        rows.append(dict(base, method="cutmix+dm", loss="dm", test_acc=d2,
                         loss_options='{"eta": 0.1, "lam_power": 0.5, "mode": "less"}'))
    return pd.DataFrame(rows)


def test_sweep_table_pairs_each_dm_strength_with_the_mixup_ce():
    table = experiments.sweep_table(sweep_results())
    assert list(zip(table.eta, table["mode"])) == [(0.1, "both"), (1.0, "less")]   # the un-swept dm row is left out
    assert list(table.policy) == ["cutmix", "cutmix"] and list(table.seeds) == [3, 3]
    assert table.test_acc[0] == pytest.approx(np.mean([0.02, 0.01, 0.03]))
    assert table.test_acc[1] == pytest.approx(np.mean([-0.01, -0.04, -0.04]))
    assert table.test_acc_ci[0] == pytest.approx(T95[2] * np.std([0.02, 0.01, 0.03], ddof=1) / math.sqrt(3))
    md = experiments.sweep_markdown(table)
    assert md.startswith("**noisy, cutmix**: DM minus mixup CE")
    assert "| 0.1 | both | 3 | +2.0 ± 2.5 |" in md          # the interval includes 0: no *
    with pytest.raises(ValueError, match="sweep"):
        experiments.sweep_table(hand_results())


def test_sweep_rows_get_their_table_and_figure(tmp_path):
    from PIL import Image

    results = sweep_results()
    experiments.write_summary(results, tmp_path)
    sweep = pd.read_csv(tmp_path / "sweep.csv")
    assert list(zip(sweep.eta, sweep["mode"])) == [(0.1, "both"), (1.0, "less")]
    assert (tmp_path / "sweep.md").read_text() == experiments.sweep_markdown(experiments.sweep_table(results))
    paths = experiments.write_plots(results, tmp_path)
    assert [p.name for p in paths] == ["accuracy_vs_time_noisy.png", "dm_sweep.png"]
    with Image.open(tmp_path / "dm_sweep.png") as img:
        assert img.format == "PNG" and img.mode == "P"
    # without sweep rows: neither file
    other = tmp_path / "plain"
    experiments.write_summary(hand_results(), other)
    assert not (other / "sweep.md").exists() and not (other / "sweep.csv").exists()


def test_method_seeds_give_some_methods_more_seeds():
    p = Preset("t", "", bases={"moons": MOONS_BASE}, policies=("none", "mixup"), seeds=(0,),
               method_seeds={"none+ce": (0, 1, 2), "mixup+mixup_ce": (0, 1, 2)})
    assert p.all_seeds == (0, 1, 2) and p.seeds_of("mixup+dm") == (0,)
    keys = [(c.method, c.config.seed) for c in experiments.cells(p)]
    assert keys == [("none+ce", 0), ("mixup+mixup_ce", 0), ("mixup+dm", 0), ("none+ce", 1), ("mixup+mixup_ce", 1),
                    ("none+ce", 2), ("mixup+mixup_ce", 2)]
    # seeds given explicitly apply to every method
    assert len(experiments.cells(p, seeds=(5,))) == 3


def test_skip_leaves_out_standard_rows():
    p = Preset("t", "", bases={"moons": MOONS_BASE}, policies=("none", "mixup", "average"),
               skip=("mixup+dm", "average+mixup_ce"))
    assert [c.method for c in experiments.cells(p)] == ["none+ce", "mixup+mixup_ce", "average+midpoint"]


# --------------------------------------------------------------------------- scheduling


def test_longest_first_starts_the_expensive_runs_first():
    quick = grid(experiments.preset("quick"))
    order = longest_first(quick)
    assert sorted(order) == list(range(len(quick)))
    assert quick[order[0]].policy == "puzzlemix"        # 5x a mixup epoch: last in grid order, first to start
    costs = [estimated_cost(quick[i]) for i in order]
    assert costs == sorted(costs, reverse=True)
    # equal costs keep grid order, so a grid without dynamic runs is scheduled as written
    plain = grid(TINY)
    assert longest_first(plain) == list(range(len(plain)))
    # the cost grows with epochs, data set size, the policy's measured cost and the unlabelled share
    base = TrainConfig(**CLUTTER_BASE)
    assert estimated_cost(TrainConfig(**dict(CLUTTER_BASE, epochs=2))) == 2 * estimated_cost(base)
    bigger = TrainConfig(**dict(CLUTTER_BASE, dataset_options=dict(CLUTTER_BASE["dataset_options"], n_train=128)))
    assert estimated_cost(bigger) == 2 * estimated_cost(base)
    for policy in ("saliencymix", "puzzlemix", "automix"):
        assert estimated_cost(TrainConfig(**dict(CLUTTER_BASE, policy=policy))) > estimated_cost(base)
    semi = TrainConfig(**dict(CLUTTER_BASE, semi="fixmatch", labels_per_class=2, mu=3))
    assert estimated_cost(semi) == 4 * estimated_cost(base)
    # the full grid: its few-label regime (200 images, 150 epochs) is half a 1000-image, 60-epoch run
    full = experiments.preset("full")
    few, noisy = (TrainConfig(**dict(full.bases[r], policy="mixup")) for r in ("few20", "noisy40"))
    assert estimated_cost(few) == 0.5 * estimated_cost(noisy)
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        longest_first([CLUTTER_BASE])


def test_the_pool_receives_the_longest_runs_first_and_reports_every_cell(tmp_path, monkeypatch):
    import multiprocessing

    seen = []

    class FakePool:  # runs the jobs in this process, in the order the pool would get them
        def __init__(self, *a, **kw): pass
        def __enter__(self): return self
        def __exit__(self, *a): return False
        def imap_unordered(self, fn, jobs):
            for job in jobs:
                seen.append(job[1].policy)
                yield job[0], (job[1], {"test_acc": 1.0}, 0.0)

    class FakeContext:
        Pool = FakePool

    monkeypatch.setattr(multiprocessing, "get_context", lambda kind: FakeContext())
    todo = experiments.cells(TINY_IMAGES)
    assert todo[0].config.policy == "cutmix"
    done = []
    experiments.train_cells(todo, tmp_path, 2, lambda cell, run, seconds: done.append(cell.method))
    assert seen[0] == "saliencymix" and sorted(done) == sorted(c.method for c in todo)
