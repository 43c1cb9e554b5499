"""Tests of mixviz.figures: the computing functions on tiny runs, and the
``mixviz figures`` command writing every named file."""

from __future__ import annotations

import json
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

matplotlib.use("Agg")

from mixviz import experiments, figures, metrics, mixing, saliency  # noqa: E402
from mixviz.mixing import MixedBatch  # noqa: E402
from mixviz.runs import config_id  # noqa: E402

TINY = experiments.Preset(
    "tiny-figures", "test preset: 1 epoch on 128 clutter images",
    bases={"clutter": dict(model="smallcnn", epochs=1, batch_size=32, lr=0.05,
                           dataset_options=dict(n_train=128, n_test=64), model_options=dict(width=4))},
    seeds=(0,), policies=("none", "mixup", "cutmix", "puzzlemix"))
TINY_TOY = dict(figures.TOY_BASE, epochs=1, dataset_options=dict(n=100))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny preset registered, its runs trained once into a module-wide store."""
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(experiments.PRESETS, TINY.name, TINY)
        mp.setattr(figures, "TOY_BASE", TINY_TOY)
        lines: list[str] = []
        runs = figures.collect(TINY.name, root, log=lines.append)
        test = figures.clutter_eval_set(TINY.name)
        yield {"root": root, "runs": runs, "test": test, "log": lines}


# --------------------------------------------------------------------------- configs


def test_clutter_configs_are_the_compare_grid():
    configs = figures.clutter_configs("quick")
    grid = experiments.grid(experiments.preset("quick"), datasets=("clutter",))
    assert [config_id(c) for c in configs] == [config_id(c) for c in grid]
    assert {figures.method_name(c) for c in configs} >= {"none+ce", "cutmix+dm", "average+midpoint"}


def test_preset_without_clutter_is_rejected():
    assert "gpu-cifar100" not in figures.figure_presets()
    with pytest.raises(ValueError, match="preset"):
        figures.clutter_configs("gpu-cifar100")
    with pytest.raises(ValueError, match="preset"):
        figures.collect("no-such-preset")


def test_toy_configs_and_point_policies():
    expected = [n for n, info in mixing.POLICIES.items() if info.has_mask and not info.needs_images]
    assert figures.toy_point_policies() == expected == []  # no cut-and-paste policy takes 2-D points
    configs = figures.toy_configs("quick")
    assert list(configs) == ["moons", "spirals"]
    for dataset, cs in configs.items():
        assert list(cs) == ["none+ce", "mixup+mixup_ce", "mixup+dm", "average+midpoint"]
        assert all(c.model == "mlp" and c.dataset == dataset and not c.progress for c in cs.values())
    dm = configs["moons"]["mixup+dm"].loss_options
    ref = __import__("mixviz.losses", fromlist=["dm_defaults"]).dm_defaults("mixup", "cifar")
    assert dm == {k: ref[k] for k in ("eta", "mode", "lam_power")}


def test_training_kind():
    assert figures.training_kind("none", "ce") == "baseline"
    assert figures.training_kind("cutmix", "mixup_ce") == "static"
    assert figures.training_kind("puzzlemix", "mixup_ce") == "dynamic"
    assert figures.training_kind("puzzlemix", "dm") == "DM"
    with pytest.raises(ValueError, match="policy"):
        figures.training_kind("nope", "ce")


# --------------------------------------------------------------------------- mixing helpers


def _images(b=6, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, size, size, generator=g), torch.arange(b) % 3


def test_fixed_mixed_batch_same_seed_same_set():
    x, y = _images()
    a = figures.fixed_mixed_batch("cutmix", x, y, seed=3)
    b = figures.fixed_mixed_batch("cutmix", x, y, seed=3)
    c = figures.fixed_mixed_batch("cutmix", x, y, seed=4)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.lam, b.lam) and torch.equal(a.index, b.index)
    assert not torch.equal(a.inputs, c.inputs)
    # the same as mixing.mix with a generator of that seed
    ref = mixing.mix("cutmix", x, y, alpha=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.inputs, ref.inputs) and torch.equal(a.mask, ref.mask)
    with pytest.raises(ValueError, match="model"):
        figures.fixed_mixed_batch("puzzlemix", x, y)


def test_mix_at_lam_mixup_is_exact_lerp():
    x, y = _images()
    m = figures.mix_at_lam("mixup", x, y, 0.3, seed=1)
    torch.testing.assert_close(m.inputs, 0.3 * x + 0.7 * x[m.index])
    assert torch.equal(m.lam, torch.full((6,), 0.3))
    assert torch.equal(m.y_b, y[m.index])
    assert torch.equal(m.index, torch.randperm(6, generator=torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("policy", ["cutmix", "fmix", "gridmix", "smoothmix"])
def test_mix_at_lam_mask_policies(policy):
    x, y = _images(size=32)
    m = figures.mix_at_lam(policy, x, y, 0.75)
    assert m.mask is not None and m.policy == policy
    torch.testing.assert_close(m.inputs, m.mask * x + (1 - m.mask) * x[m.index])
    torch.testing.assert_close(m.lam, m.mask.mean((1, 2, 3)))
    if policy == "fmix":  # exactly round(lam H W) pixels from a
        assert torch.equal(m.lam, torch.full((6,), round(0.75 * 1024) / 1024))
    if policy == "cutmix":  # a box of side sqrt(0.25) * 32 = 16, possibly clipped at the border
        assert bool((m.lam >= 0.75 - 1e-6).all()) and bool((m.lam <= 1.0).all())
        assert bool(torch.isclose(m.lam, torch.tensor(0.75)).any())


def test_mix_at_lam_fixed_policies_and_errors():
    x, y = _images()
    assert torch.equal(figures.mix_at_lam("average", x, y, 0.9).lam, torch.full((6,), 0.5))
    assert torch.equal(figures.mix_at_lam("none", x, y, 0.2).inputs, x)
    with pytest.raises(ValueError, match="policy"):
        figures.mix_at_lam("resizemix", x, y, 0.5)
    with pytest.raises(ValueError, match="lam"):
        figures.mix_at_lam("mixup", x, y, 1.5)


def test_gallery_batches_share_partners():
    x, y = _images(b=8, size=16)
    batches = figures.gallery_batches(x, y, ["mixup", "cutmix", "fmix", "average"])
    first = batches["mixup"].index
    for b in batches.values():
        assert torch.equal(b.index, first) and torch.equal(b.y_a, y)


def test_pick_mixed_sample():
    masks = torch.zeros(4, 1, 4, 4)
    masks[:, :, :2, :2] = 1                                  # every object in the top-left corner
    mask = torch.ones(4, 1, 4, 4)
    mask[1, :, :2, :2] = 0                                   # sample 1: object a cut away
    mask[2, :, :, 2:] = 0                                    # sample 2: half from b, b's object hidden
    mask[3, :, 2:, :] = 0
    mask[3, :, :1, :] = 0                                    # sample 3: a half visible, b half visible
    index = torch.tensor([0, 2, 3, 1])
    mixed = MixedBatch(inputs=torch.zeros(4, 1, 4, 4), y_a=torch.tensor([0, 1, 2, 3]),
                       y_b=torch.tensor([0, 2, 3, 1]), index=index, lam=mask.mean((1, 2, 3)), mask=mask)
    assert figures.pick_mixed_sample(mixed, masks, min_visible=0.5, lam_range=(0.2, 0.8)) == 3
    # nothing qualifies at 0.9 visible: the pair whose worse object is most visible
    assert figures.pick_mixed_sample(mixed, masks, min_visible=0.9) == 3


# --------------------------------------------------------------------------- on tiny runs


def test_collect_trains_once_then_loads(tiny, monkeypatch):
    runs = tiny["runs"]
    assert sorted(runs.clutter) == sorted(figures.method_name(c) for c in experiments.grid(TINY))
    assert len(runs.clutter_all) == len(runs.clutter) == 7
    assert set(runs.toy) == {"moons", "spirals"} and all(len(r) == 4 for r in runs.toy.values())
    assert all("trained" in line for line in tiny["log"])
    import mixviz.runs

    def no_training(*a, **k):
        raise AssertionError("collect trained a run that is in the store")

    monkeypatch.setattr(mixviz.runs, "fit", no_training)
    monkeypatch.setitem(experiments.PRESETS, TINY.name, TINY)
    monkeypatch.setattr(figures, "TOY_BASE", TINY_TOY)
    lines: list[str] = []
    again = figures.collect(TINY.name, tiny["root"], parts=("clutter",), log=lines.append)
    assert len(lines) == 7 and all("loaded" in line for line in lines) and not again.toy
    with pytest.raises(ValueError, match="parts"):
        figures.collect(TINY.name, tiny["root"], parts=("nope",))


def test_calibration_matches_the_run_metrics(tiny):
    test = tiny["test"]
    bins, ece = figures.calibration(tiny["runs"].clutter, test.images, test.labels, n_bins=15)
    for name, run in tiny["runs"].clutter.items():
        assert ece[name] == pytest.approx(run.metrics["ece"], abs=1e-6)   # same data, same formula
        b = bins[name]
        assert int(b["count"].sum()) == len(test.labels)
        full = b[b["count"] > 0]
        from_bins = float((full["count"] / len(test.labels) * (full["accuracy"] - full["confidence"]).abs()).sum())
        assert from_bins == pytest.approx(ece[name], abs=1e-5)


def test_mixed_accuracy_fixed_set(tiny):
    test = tiny["test"]
    runs = tiny["runs"].clutter
    table = figures.mixed_accuracy(runs, test.images, test.labels)
    assert list(table["method"]) == list(runs)
    for row in table.itertuples():
        run = runs[row.method]
        # the training loop evaluated on cutmix with seed = config.seed = 0: the same fixed set
        assert row.mixed_top1 == pytest.approx(run.metrics["mixed_top1"], abs=1e-6)
        assert row.mixed_top2 == pytest.approx(run.metrics["mixed_top2"], abs=1e-6)
    # reference: mix once, score every model on the same mixed images
    mixed = figures.fixed_mixed_batch("cutmix", test.images, test.labels)
    run = runs["cutmix+dm"]
    with torch.no_grad():
        logits = run.model.eval()(mixed.inputs)
    top1, top2 = metrics.mixed_topk_accuracy(logits, mixed.y_a, mixed.y_b)
    row = table.set_index("method").loc["cutmix+dm"]
    assert row["mixed_top1"] == pytest.approx(top1) and row["mixed_top2"] == pytest.approx(top2)
    assert row["kind"] == "DM"


def test_results_table(tiny):
    table = figures.results_table(tiny["runs"].clutter_all)
    assert set(experiments.RESULT_COLUMNS) <= set(table.columns)
    assert list(table["method"]) == [figures.method_name(r.config) for r in tiny["runs"].clutter_all]
    assert table.set_index("method").loc["puzzlemix+mixup_ce", "kind"] == "dynamic"


def test_mismatch_reports(tiny):
    test = tiny["test"]
    models = figures.dynamic_models(tiny["runs"].clutter, ["cutmix", "puzzlemix"])
    assert list(models) == ["puzzlemix"]
    assert models["puzzlemix"] is tiny["runs"].clutter["puzzlemix+mixup_ce"].model
    reports = figures.mismatch_reports(test.images, test.labels, test.masks, ["mixup", "cutmix", "puzzlemix"],
                                       models=models)
    # mixup fades, never cuts: an object is as visible as its share, so never mismatched
    assert reports["mixup"]["rate"] == 0.0
    ref = metrics.label_mismatch(figures.fixed_mixed_batch("cutmix", test.images, test.labels), test.masks)
    assert reports["cutmix"]["rate"] == ref["rate"] and reports["cutmix"]["n_samples"] == 64
    np.testing.assert_array_equal(reports["cutmix"]["visibility_a"], ref["visibility_a"])
    with pytest.raises(ValueError, match="model"):
        figures.mismatch_reports(test.images, test.labels, test.masks, ["puzzlemix"])


def test_saliency_table(tiny):
    test = tiny["test"]
    runs = {k: tiny["runs"].clutter[k] for k in ("none+ce", "cutmix+dm")}
    table = figures.saliency_table(runs, test.images, test.labels, test.masks, limit=32)
    assert list(table["method"]) == ["none+ce", "none+ce", "cutmix+dm", "cutmix+dm"]
    assert list(table["attribution"]) == ["gradcam", "saliency"] * 2
    for col in ("mask_share", "pointing", "mixed_share"):
        assert table[col].between(0, 1).all()
    assert table["chance"].iloc[0] == pytest.approx(float(test.masks[:32].mean()))
    ref = saliency.saliency_agreement(runs["cutmix+dm"].model, test.images[:32], test.masks[:32],
                                      test.labels[:32], method="saliency")
    row = table[(table["method"] == "cutmix+dm") & (table["attribution"] == "saliency")].iloc[0]
    assert row["mask_share"] == pytest.approx(ref["mask_share"]) and row["pointing"] == pytest.approx(ref["pointing"])
    assert list(table["kind"]) == ["baseline", "baseline", "DM", "DM"]


def test_saliency_by_kind():
    table = pd.DataFrame({"method": ["a", "b", "c", "d"], "kind": ["static", "DM", "static", "baseline"],
                          "attribution": ["gradcam"] * 4, "mask_share": [0.2, 0.5, 0.4, 0.1],
                          "pointing": [0.0, 1.0, 1.0, 0.5], "mixed_share": [0.1, 0.3, 0.3, 0.2]})
    out = figures.saliency_by_kind(table)
    assert list(out["kind"]) == ["baseline", "static", "DM"]
    static = out.set_index("kind").loc["static"]
    assert static["mask_share"] == pytest.approx(0.3) and static["pointing"] == pytest.approx(0.5)
    assert static["methods"] == 2
    with pytest.raises(ValueError, match="mixed_share"):
        figures.saliency_by_kind(table.drop(columns="mixed_share"))


def test_saliency_example_feeds_the_grid(tiny):
    from mixviz import viz

    test = tiny["test"]
    runs = {k: tiny["runs"].clutter[k] for k in ("none+ce", "cutmix+mixup_ce")}
    ex = figures.saliency_example(runs, test.images, test.labels, test.masks, class_names=test.classes)
    mixed = figures.fixed_mixed_batch("cutmix", test.images, test.labels)
    i = figures.pick_mixed_sample(mixed, test.masks)
    assert torch.equal(ex["mixed"], mixed.inputs[i])
    assert ex["labels"] == (int(mixed.y_a[i]), int(mixed.y_b[i])) and ex["lam"] == pytest.approx(float(mixed.lam[i]))
    assert torch.equal(ex["images"][1], test.images[int(mixed.index[i])])
    for name, (first, second, top2) in ex["attributions"].items():
        assert first.shape == second.shape == (1, 1, 32, 32) and top2.shape == (1, 2)
        assert all(0.0 <= v <= 1.0 for v in ex["agreement"][name])
    fig = viz.saliency_grid(**ex)
    assert len(fig.axes) == 2 * 5 + 1


def test_boundaries_and_notes(tiny):
    from mixviz import data

    runs = tiny["runs"].toy["moons"]
    points = data.load("moons", "test", n=100)
    grids = figures.boundary_grids(runs, points.images, resolution=20)
    assert set(grids) == set(runs)
    for g in grids.values():
        assert g["probs"].shape == (20, 20, 2)
        np.testing.assert_allclose(g["probs"].sum(-1), 1.0, atol=1e-5)
    notes = figures.boundary_notes(runs)
    assert "DM term = 0" in notes["mixup+dm"] and "DM" not in notes["none+ce"]
    assert f"{100 * runs['none+ce'].metrics['test_acc']:.1f} %" in notes["none+ce"]


def test_summary_numbers_and_markdown():
    results = pd.DataFrame({"method": ["a+ce", "a+ce", "b+dm"], "kind": ["static", "static", "DM"],
                            "test_acc": [0.5, 0.7, 0.9], "ece": [0.1, 0.3, 0.05], "sec_per_epoch": [1.0, 1.0, 2.0]})
    mixed = pd.DataFrame({"method": ["a+ce", "a+ce", "b+dm"], "mixed_top1": [0.4, 0.6, 0.8],
                          "mixed_top2": [0.1, 0.1, 0.3]})
    reports = {"cutmix": {"rate": 0.25, "n_mismatched": 16, "n_samples": 64, "unmixed_rate": 0.1, "n_unmixed": 6,
                          "n_pairs": 60}}
    sal = pd.DataFrame({"method": ["a+ce"], "kind": ["static"], "attribution": ["gradcam"], "mask_share": [0.4],
                        "pointing": [0.5], "mixed_share": [0.3], "chance": [0.1]})
    s = figures.summary(results, mixed, reports, sal, preset="p", n_test=64)
    a = s["methods"][0]
    assert a["method"] == "a+ce" and a["runs"] == 2
    assert a["test_acc"] == pytest.approx(0.6) and a["test_acc_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert a["mixed_top1"] == pytest.approx(0.5) and a["mixed_top2"] == pytest.approx(0.1)
    assert math.isnan(s["methods"][1]["ece_std"])
    assert s["label_mismatch"] == [{"policy": "cutmix", "kind": "static", "rate": 0.25, "n_mismatched": 16,
                                    "n_samples": 64, "unmixed_rate": 0.1, "n_unmixed": 6, "n_pairs": 60}]
    md = figures.summary_markdown(s)
    assert "| a+ce | static | 2 | 60.0 ± 14.1 | 20.0 ± 14.1 | 50.0 ± 14.1 | 10.0 ± 0.0 | 1.00 |" in md
    assert "| cutmix | static | 25.0 (16/64) | 10.0 (6/60) |" in md
    assert "| a+ce | static | gradcam | 40.0 | 50.0 | 30.0 |" in md


def test_command_writes_every_named_file(tiny, tmp_path, monkeypatch, capsys):
    from mixviz import cli

    monkeypatch.setitem(experiments.PRESETS, TINY.name, TINY)
    monkeypatch.setattr(figures, "TOY_BASE", TINY_TOY)
    out = tmp_path / "figs"
    assert cli.main(["figures", "--preset", TINY.name, "--out", str(out), "--runs", str(tiny["root"])]) == 0
    pngs = sorted(p.name for p in out.glob("*.png"))
    for kind in ("mixed_samples", "decision_boundary", "reliability", "top1_top2", "saliency", "label_mismatch",
                 "training_curves", "method_comparison"):
        assert any(kind in name for name in pngs), (kind, pngs)
    assert sorted(f"{stem}.png" for stems in figures.FIGURE_KINDS.values() for stem in stems) == pngs
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    s = json.loads((out / "summary.json").read_text())
    assert [m["method"] for m in s["methods"]] == [figures.method_name(c) for c in experiments.grid(TINY)]
    learned = {p for p, info in mixing.POLICIES.items() if info.state is not None}  # no run of them here
    assert {r["policy"] for r in s["label_mismatch"]} == set(mixing.available()) - {"none"} - learned
    assert {r["kind"] for r in s["saliency"]} == {"baseline", "static", "dynamic", "DM"}
    assert "## Label mismatch per policy" in (out / "summary.md").read_text()
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed and "loaded" in printed
    assert not list(out.glob(".*tmp"))   # atomic writes leave no temporary files


def test_clutter_config_picks_method_and_seed():
    full = figures.clutter_configs("full")
    c = figures.clutter_config("full", "cutmix+dm")
    assert (c.policy, c.loss, c.seed) == ("cutmix", "dm", min(x.seed for x in full))
    assert figures.clutter_config("full", "cutmix+dm", seed=2).seed == 2
    with pytest.raises(ValueError, match="method"):
        figures.clutter_config("quick", "cutmix+nope")
