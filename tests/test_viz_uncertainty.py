"""Pictures with intervals over seeds: the memorisation curves and the DM sweep."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

matplotlib.use("Agg")

from mixviz import viz  # noqa: E402


def history(seed_shift):
    epochs = np.arange(1, 6)
    return pd.DataFrame({"epoch": epochs, "memorised": 0.1 * epochs / 5 + seed_shift,
                         "still_right": 0.5 - seed_shift + 0 * epochs, "test_acc": 0.6 + 0 * epochs})


def test_seed_band_is_the_t_interval_per_epoch():
    runs = [history(0.0), history(0.02), history(0.04)]
    epochs, mean, half, n = viz.seed_band(runs, "memorised")
    assert n == 3 and list(epochs) == [1, 2, 3, 4, 5]
    values = np.array([[100 * (0.1 * e / 5 + s) for s in (0.0, 0.02, 0.04)] for e in epochs])
    assert np.allclose(mean, values.mean(1))
    assert np.allclose(half, sps.t.ppf(0.975, 2) * values.std(1, ddof=1) / math.sqrt(3))
    one = viz.seed_band(runs[:1], "memorised")
    assert one[3] == 1 and np.isnan(one[2]).all()


def test_memorisation_curves_draws_bands_and_says_how_many_seeds():
    fig = viz.memorisation_curves({"none+ce": [history(0.0), history(0.02)], "mixup+mixup_ce": [history(0.05)]})
    assert len(fig.axes) == 3
    assert "95 % interval over 1/2 seeds" in fig.get_suptitle()
    # one band (a PolyCollection) per panel: only none+ce has two seeds
    assert [len(ax.collections) for ax in fig.axes] == [1, 1, 1]
    fig1 = viz.memorisation_curves({"none+ce": [history(0.0)]})
    assert "one seed per method, no interval shown" in fig1.get_suptitle()
    with pytest.raises(TypeError, match="list of run histories"):
        viz.memorisation_curves({"none+ce": history(0.0)})


def test_dm_sweep_plot():
    rows = []
    for regime in ("clean", "noisy"):
        for eta in (0.0, 0.1, 1.0):
            for mode in (("both",) if eta == 0 else ("both", "less")):
                rows.append(dict(regime=regime, policy="cutmix", eta=eta, mode=mode, seeds=3, test_acc=0.01 * eta,
                                 test_acc_ci=0.005, ece=-0.01, ece_ci=0.02))
    fig = viz.dm_sweep(pd.DataFrame(rows), metrics=("test_acc", "ece"))
    assert len(fig.axes) == 4
    assert "over 3 seeds" in fig.get_suptitle()
    with pytest.raises(ValueError, match="table must have the column"):
        viz.dm_sweep(pd.DataFrame(rows).drop(columns="ece_ci"), metrics=("ece",))


def test_comparison_error_bars_are_the_95_percent_interval():
    results = pd.DataFrame({"policy": ["mixup"] * 3 + ["none"], "loss": ["mixup_ce"] * 3 + ["ce"],
                            "test_acc": [0.70, 0.74, 0.72, 0.6], "sec_per_epoch": [1.0, 1.2, 1.1, 0.9]})
    summary = viz.method_summary(results, ["sec_per_epoch", "test_acc"], {"mixup": "static"})
    row = summary.set_index("method").loc["mixup+mixup_ce"]
    lo, hi = sps.t.interval(0.95, 2, loc=72.0, scale=sps.sem([70.0, 74.0, 72.0]))
    assert row["test_acc_ci"] == pytest.approx((hi - lo) / 2)
    assert math.isnan(summary.set_index("method").loc["none+ce", "test_acc_ci"])
    fig = viz.method_comparison(results, kinds={"mixup": "static"})
    assert "95 % interval" in fig.axes[0].get_title()
    final = viz.final_mixed_accuracy(pd.DataFrame({"method": ["a"] * 3, "mixed_top1": [0.5, 0.6, 0.7],
                                                   "mixed_top2": [0.1, 0.2, 0.3]}))
    assert final["top1_ci"][0] == pytest.approx(sps.t.ppf(0.975, 2) * 10.0 / math.sqrt(3))
