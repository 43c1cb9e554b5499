"""Figures and tables never rank methods on one seed (issue 18, item 1): a
method on one seed is drawn hollow, without an interval, and named
"1 seed: illustration"."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from mixviz import viz
from mixviz.stats import ILLUSTRATION

KINDS = {"none": "static", "mixup": "static", "cutmix": "static", "puzzlemix": "dynamic"}


def results():
    """none and mixup on 3 seeds; cutmix + dm and puzzlemix on 1 (puzzlemix the highest mean of all)."""
    rows = []
    for seed in range(3):
        rows.append(dict(policy="none", loss="ce", seed=seed, test_acc=0.60 + 0.01 * seed, sec_per_epoch=0.5,
                         mixed_top1=0.5, mixed_top2=0.1))
        rows.append(dict(policy="mixup", loss="mixup_ce", seed=seed, test_acc=0.70 + 0.02 * seed,
                         sec_per_epoch=0.5, mixed_top1=0.6, mixed_top2=0.12 + 0.01 * seed))
    rows.append(dict(policy="cutmix", loss="dm", seed=0, test_acc=0.55, sec_per_epoch=0.6, mixed_top1=0.6,
                     mixed_top2=0.1))
    rows.append(dict(policy="puzzlemix", loss="mixup_ce", seed=0, test_acc=0.90, sec_per_epoch=2.5, mixed_top1=0.7,
                     mixed_top2=0.2))
    return pd.DataFrame(rows)


def hollow(color):
    return matplotlib.colors.to_rgba(color)[3] == 0  # facecolor 'none'


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_method_comparison_draws_one_seed_hollow_without_an_interval():
    fig = viz.method_comparison(results(), kinds=KINDS)
    ax = fig.axes[0]
    by_method = {c.get_label(): c for c in ax.containers}
    for method in ("none+ce", "mixup+mixup_ce"):
        c = by_method[method]
        assert c.has_xerr and c.has_yerr and not hollow(c.lines[0].get_markerfacecolor())
    for method in ("cutmix+dm", "puzzlemix+mixup_ce"):
        c = by_method[method]
        assert not c.has_xerr and not c.has_yerr
        assert c.lines[0].get_markerfacecolor() == "none"
    # the text beside them says so: the point's annotation, the method legend and the marker legend
    notes = [t.get_text() for t in ax.texts]
    assert f"puzzlemix+mixup_ce ({ILLUSTRATION})" in notes and "mixup+mixup_ce" in notes
    legend_texts = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert f"cutmix+dm ({ILLUSTRATION})" in legend_texts and f"hollow: {ILLUSTRATION}" in legend_texts
    assert f"hollow: {ILLUSTRATION}, no interval" in ax.get_title() and "3 runs per method" in ax.get_title()


def test_method_bars_rank_only_methods_on_several_seeds():
    fig = viz.method_bars(results(), metric="test_acc", kinds=KINDS)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    # bottom to top: the one-seed rows (table order, top-down), then the ranked ones, best on top
    assert labels == [f"puzzlemix+mixup_ce ({ILLUSTRATION})", f"cutmix+dm ({ILLUSTRATION})", "none+ce",
                      "mixup+mixup_ce"]
    faces = [p.get_facecolor() for p in ax.patches]
    assert [hollow(f) for f in faces] == [True, True, False, False]
    # error bars only on the ranked rows
    segments = [seg for coll in ax.collections if isinstance(coll, matplotlib.collections.LineCollection)
                for seg in coll.get_segments()]
    widths = sorted(round(abs(seg[1][0] - seg[0][0]), 6) for seg in segments if seg[0][1] == seg[1][1])
    assert len([w for w in widths if w > 0]) == 2
    assert "1 seed below, not ranked" in ax.get_title()
    all_single = results().drop_duplicates(["policy", "loss"])
    title = viz.method_bars(all_single, kinds=KINDS).axes[0].get_title()
    assert "not ranked" in title and "best on top" not in title


def test_final_mixed_accuracy_bars_of_one_seed_are_hollow():
    history = pd.DataFrame({"epoch": [1, 2], "mixed_top1": [0.4, 0.5], "mixed_top2": [0.1, 0.2]})
    ax = viz.mixed_accuracy_plot({"mixup+mixup_ce": history}, final=results()).axes[2]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[:2] == ["none+ce", "mixup+mixup_ce"] and labels[2] == f"cutmix+dm\n({ILLUSTRATION})"
    top1 = ax.patches[:4]
    assert [hollow(p.get_facecolor()) for p in top1] == [False, False, True, True]
    assert f"hollow: {ILLUSTRATION}" in ax.get_title()


def test_dm_sweep_points_on_one_seed_are_hollow():
    rows = [dict(regime="r", policy="mixup", eta=eta, mode="both", seeds=seeds, test_acc=0.01, test_acc_ci=0.005)
            for eta, seeds in ((0.0, 3), (0.1, 3), (1.0, 1))]
    fig = viz.dm_sweep(pd.DataFrame(rows), metrics=("test_acc",))
    ax = fig.axes[0]
    line = ax.lines[0]
    extra = next(line for line in ax.lines if line.get_label() == f"both ({ILLUSTRATION})")
    assert list(line.get_markevery()) == [True, True, False]
    assert extra.get_markerfacecolor() == "none" and np.allclose(extra.get_xdata(), [0.94])  # modes jittered side by side
    assert f"hollow: {ILLUSTRATION}" in fig.get_suptitle()
