"""Tests of mixviz.figures: collecting the runs of a preset, the summary, and
the ``mixviz figures`` command writing every named file.  The computations it
calls are tested in test_analysis.py."""

from __future__ import annotations

import json
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

matplotlib.use("Agg")

from mixviz import analysis, experiments, figures, mixing  # noqa: E402
from mixviz.runs import config_id  # noqa: E402

TINY = experiments.Preset(
    "tiny-figures", "test preset: 1 epoch on 128 clutter images, 20 % of their labels flipped",
    bases={"clutter": dict(model="smallcnn", epochs=1, batch_size=32, lr=0.05,
                           dataset_options=dict(n_train=128, n_test=64, label_noise=0.2),
                           model_options=dict(width=4))},
    seeds=(0,), policies=("none", "mixup", "cutmix", "puzzlemix"), figure_regime="clutter")
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
    assert {analysis.method_name(c) for c in configs} >= {"none+ce", "cutmix+dm", "puzzlemix+mixup_ce"}


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
    assert dm == ref


# --------------------------------------------------------------------------- on tiny runs


def test_collect_trains_once_then_loads(tiny, monkeypatch):
    runs = tiny["runs"]
    assert sorted(runs.clutter) == sorted(analysis.method_name(c) for c in experiments.grid(TINY))
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


def test_results_table(tiny):
    table = figures.results_table(tiny["runs"].clutter_all)
    assert set(experiments.RESULT_COLUMNS) <= set(table.columns)
    assert list(table["method"]) == [analysis.method_name(r.config) for r in tiny["runs"].clutter_all]
    assert table.set_index("method").loc["puzzlemix+mixup_ce", "kind"] == "dynamic"


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
    half = stats.t.ppf(0.975, 1) * np.std([0.5, 0.7], ddof=1) / math.sqrt(2)   # 95 % Student t, 2 seeds
    assert a["test_acc"] == pytest.approx(0.6) and a["test_acc_ci"] == pytest.approx(half)
    assert a["mixed_top1"] == pytest.approx(0.5) and a["mixed_top2"] == pytest.approx(0.1)
    assert a["mixed_top2_ci"] == 0.0 and math.isnan(a["memorised"]) and math.isnan(a["memorised_ci"])
    assert math.isnan(s["methods"][1]["ece_ci"])   # one seed: no interval
    assert s["effects"] == [] and s["headline"] == ""   # no regime/seed columns: nothing to pair
    assert s["label_mismatch"] == [{"policy": "cutmix", "kind": "static", "rate": 0.25, "n_mismatched": 16,
                                    "n_samples": 64, "unmixed_rate": 0.1, "n_unmixed": 6, "n_pairs": 60}]
    md = figures.summary_markdown(s)
    h = f"{100 * half:.1f}"
    assert f"| a+ce | static | 2 | 60.0 ± {h} | 20.0 ± {h} | – | 50.0 ± {h} | 10.0 ± 0.0 | – | – | 1.00 |" in md
    assert "| b+dm | DM | 1 | 90.0 | 5.0 | – | 80.0 | 30.0 | – | – | 2.00 |" in md
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
                 "training_curves", "method_comparison", "memorisation"):
        assert any(kind in name for name in pngs), (kind, pngs)
    assert sorted(f"{stem}.png" for stems in figures.FIGURE_KINDS.values() for stem in stems) == pngs
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    s = json.loads((out / "summary.json").read_text())
    assert [m["method"] for m in s["methods"]] == [analysis.method_name(c) for c in experiments.grid(TINY)]
    learned = {p for p, info in mixing.POLICIES.items() if info.state is not None}  # no run of them here
    assert {r["policy"] for r in s["label_mismatch"]} == set(mixing.available()) - {"none"} - learned
    assert {r["kind"] for r in s["saliency"]} == {"baseline", "static", "dynamic", "DM"}
    assert "## Label mismatch per policy" in (out / "summary.md").read_text()
    printed = capsys.readouterr().out
    from mixviz.ioutil import shown_path

    assert f"to {shown_path(out)}:" in printed and "loaded" in printed
    assert not list(out.glob(".*tmp"))   # atomic writes leave no temporary files


def test_gallery_figures_at_64_px(tiny):
    """The class gallery: 64 px images of the preset's scenes, static and dynamic policies in two figures of at
    most six columns, every λ under an image the realised share of a's pixels, PuzzleMix once per block grid."""
    from matplotlib import pyplot as plt

    runs, test = tiny["runs"], tiny["test"]
    large = figures.clutter_eval_set(TINY.name, size=analysis.GALLERY_SIZE)
    assert torch.equal(large.labels, test.labels) and large.images.shape[-1] == 64 >= 2 * test.images.shape[-1]
    policies = ["mixup", "cutmix", "puzzlemix"]
    models = analysis.dynamic_models(runs.clutter, policies)
    figs = figures.mixed_sample_figures(large.images[:16], large.labels[:16], policies, models=models,
                                        model_size=test.images.shape[-1], class_names=large.classes)
    assert list(figs) == ["mixed_samples", "mixed_samples_dynamic"]
    batches = analysis.large_gallery_batches(large.images[:16], large.labels[:16], policies, models=models,
                                             model_size=test.images.shape[-1])
    blocks = [analysis.block_title("puzzlemix", n) for n in analysis.PUZZLEMIX_BLOCKS]
    for stem, fig in figs.items():
        images = [ax for ax in fig.axes if ax.images and ax.images[0].get_array().ndim == 3]
        assert images and all(ax.images[0].get_array().shape[:2] == (64, 64) for ax in images)
        titles = [ax.get_title().split("\npixels from a")[0] for ax in images[:len(images) // analysis.GALLERY_ROWS]]
        assert len(titles) <= analysis.GALLERY_MAX_POLICIES
        assert titles == (["mixup", "cutmix"] if stem == "mixed_samples" else blocks)
        assert f"{test.images.shape[-1]} px model" in fig.get_suptitle() or stem == "mixed_samples"
        for col, key in enumerate(titles):
            batch = batches[key]
            for row in range(analysis.GALLERY_ROWS):
                shown = images[row * len(titles) + col].get_xlabel().splitlines()[0]
                share = batch.mask[row].mean() if batch.mask is not None else batch.lam[row]
                assert shown == f"λ = {float(share):.2f}", (key, row)
        plt.close(fig)


def test_clutter_config_picks_method_and_seed():
    full = figures.clutter_configs("full")
    c = figures.clutter_config("full", "cutmix+dm")
    assert (c.policy, c.loss, c.seed) == ("cutmix", "dm", min(x.seed for x in full))
    assert figures.clutter_config("full", "cutmix+dm", seed=2).seed == 2
    with pytest.raises(ValueError, match="method"):
        figures.clutter_config("quick", "cutmix+nope")


def _pdf_pages(pdf: bytes) -> list[tuple[float, float]]:
    """(width, height) in points of every page of a PDF that matplotlib wrote."""
    import re

    boxes = re.findall(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", pdf)
    return [(float(w), float(h)) for w, h in boxes]


def test_slides_deck_from_tiny_runs(tiny, tmp_path, monkeypatch, capsys):
    """mixviz slides: a 16:9 PDF, one picture a page, at most 4 panels, text >= 18 pt on the page."""
    from matplotlib.text import Text

    from mixviz import cli, slides

    monkeypatch.setitem(experiments.PRESETS, TINY.name, TINY)
    monkeypatch.setattr(figures, "TOY_BASE", TINY_TOY)
    pages = slides.slides(tiny["runs"])
    titles = [p.title for p in pages]
    for wanted in ("memorisation", "decision boundaries: moons", "gradients of mixup CE and DM",
                   "calibration before and after temperature scaling", "mixed samples"):
        assert any(wanted in t for t in titles), (wanted, titles)
    for page in pages:
        fig = page.figure
        assert tuple(fig.get_size_inches()) == slides.PAGE_INCHES
        assert 1 <= page.panels <= slides.MAX_PANELS, page.title
        fig.canvas.draw()
        sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text() and t.get_visible()]
        assert min(sizes) >= slides.MIN_FONT_PT, page.title
    for page in pages:
        matplotlib.pyplot.close(page.figure)
    out = tmp_path / "deck" / "slides.pdf"
    assert cli.main(["slides", "--preset", TINY.name, "--out", str(out), "--runs", str(tiny["root"])]) == 0
    pdf = out.read_bytes()
    assert pdf[:5] == b"%PDF-"
    sizes = _pdf_pages(pdf)
    assert len(sizes) == len(pages) >= 6
    assert all(abs(w / h - 16 / 9) < 1e-3 and w == 72 * slides.PAGE_INCHES[0] for w, h in sizes)
    assert "slides to" in capsys.readouterr().out
    assert not list(out.parent.glob(".*tmp"))
