"""The DM strength sweep: what the decoupled term does as its weight grows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mixviz.viz._common import check_frame, new_figure
from mixviz.stats import ILLUSTRATION
from mixviz.viz.style import metric_label, themed

__all__ = ["dm_sweep"]

MODE_STYLE = {"both": ("#4c72b0", "o"), "less": ("#dd8452", "s"), "more": ("#55a868", "^")}


@themed
def dm_sweep(table: pd.DataFrame, metrics: Sequence[str] = ("test_acc", "ece", "mixed_top2", "cutmix_top2_both"),
             ) -> Figure:
    """DM minus the mixup CE (paired per seed) against eta, one line per mode,
    with the 95 % interval as error bars; one row of panels per (regime,
    policy), one column per metric.  A dashed line marks 0: an error bar that
    crosses it is no measurable difference.  A point on one seed has no
    interval: it is drawn hollow ("1 seed: illustration").

    Args:
        table: :func:`mixviz.experiments.sweep_table` (columns ``regime``,
            ``policy``, ``eta``, ``mode``, ``seeds`` and per metric ``<m>``,
            ``<m>_ci``; fractions, drawn in points).
        metrics: the metrics to draw (those in the table).

    Returns:
        The figure.
    """
    if isinstance(metrics, str) or not metrics:
        raise ValueError("metrics must be a non-empty sequence of column names")
    check_frame("table", table, ["regime", "policy", "eta", "mode", "seeds", *metrics,
                                 *(f"{m}_ci" for m in metrics)])
    if table.empty:
        raise ValueError("table must have at least one row")
    groups = list(table.groupby(["regime", "policy"], sort=False))
    fig, axes = new_figure(len(groups), len(metrics), figsize=(3.9 * len(metrics) + 0.6, 3.0 * len(groups) + 1.0),
                           layout="constrained", sharex=True)
    etas = sorted(table["eta"].unique())
    positive = [e for e in etas if e > 0]
    linthresh = min(positive) if positive else 1.0
    for row, ((regime, policy), group) in enumerate(groups):
        for col, metric in enumerate(metrics):
            ax = axes[row, col]
            for i, (mode, lines) in enumerate(group.groupby("mode", sort=False)):
                color, marker = MODE_STYLE.get(mode, ("0.4", "x"))
                lines = lines.sort_values("eta")
                x = lines["eta"].to_numpy(dtype=float)
                y = 100 * lines[metric].to_numpy(dtype=float)
                err = 100 * lines[f"{metric}_ci"].to_numpy(dtype=float)
                several = lines["seeds"].to_numpy() > 1  # one seed: no interval, a hollow mark
                jitter = 1.0 + 0.06 * (i - 1)  # modes side by side at the same eta
                xs = np.where(x > 0, x * jitter, x)
                ax.errorbar(xs, y, yerr=np.where(np.isnan(err) | ~several, 0, err), color=color,
                            marker=marker, markevery=list(several), markersize=5, capsize=3, linewidth=1.4,
                            label=mode)
                if not several.all():
                    ax.plot(xs[~several], y[~several], linestyle="none", marker=marker, markersize=6,
                            markerfacecolor="none", markeredgecolor=color, markeredgewidth=1.5,
                            label=f"{mode} ({ILLUSTRATION})")
            ax.axhline(0.0, color="0.3", linestyle="--", linewidth=0.8)
            ax.set_xscale("symlog", linthresh=linthresh)
            ax.set_xticks(etas, [f"{e:g}" for e in etas])
            if row == 0:
                ax.set_title(f"Δ {metric_label(metric).replace(' (%)', '')} (points)")
            if col == 0:
                ax.set_ylabel(f"{regime}, {policy}")
            if row == len(groups) - 1:
                ax.set_xlabel("eta (DM weight)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), title="DM mode")
    seeds = sorted(set(int(s) for s in table["seeds"]))
    hollow = f"; hollow: {ILLUSTRATION}, no interval" if 1 in seeds else ""
    fig.suptitle(f"DM minus mixup CE, paired per seed (mean ± 95 % interval over {'/'.join(map(str, seeds))} "
                 f"seeds{hollow})")
    return fig
