"""Top-1 / Top-2 accuracy on mixed samples (the Decoupled Mixup paper's
diagnostic of label mismatch), over epochs and at the end of training."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from mixviz.viz._common import (check_frame, check_fractions, history_values, integer_epochs, interval_half,
                                method_labels, new_figure)
from mixviz.stats import ILLUSTRATION
from mixviz.viz.curves import check_histories
from mixviz.viz.style import line_styles, markevery, method_colors, themed

__all__ = ["mixed_accuracy_plot", "final_mixed_accuracy"]

TOPK = (("mixed_top1", "Top-1"), ("mixed_top2", "Top-2"))


def final_mixed_accuracy(final: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation of ``mixed_top1`` / ``mixed_top2`` per
    method (over seeds), in percent.  The method is the ``method`` column or
    ``policy+loss``.  Columns: ``method``, ``top1``, ``top1_std``, ``top1_ci``,
    ``top2``, ``top2_std``, ``top2_ci``, ``n`` (std is 0 and the 95 % interval
    half-width NaN for a single run)."""
    check_frame("final", final, ["mixed_top1", "mixed_top2"])
    for col, _ in TOPK:
        check_fractions(f"final[{col!r}]", final[col].to_numpy(dtype=float))
    frame = pd.DataFrame({"method": method_labels(final).to_numpy(),
                          "top1": 100.0 * final["mixed_top1"].to_numpy(dtype=float),
                          "top2": 100.0 * final["mixed_top2"].to_numpy(dtype=float)})
    grouped = frame.groupby("method", sort=False)
    out = grouped.agg(top1=("top1", "mean"), top1_std=("top1", "std"), top2=("top2", "mean"),
                      top2_std=("top2", "std"), n=("top1", "size")).reset_index()
    for key in ("top1", "top2"):
        out[f"{key}_ci"] = interval_half(out[f"{key}_std"], out["n"])
    return out.fillna({"top1_std": 0.0, "top2_std": 0.0})


def _final_title(counts: pd.Series) -> str:
    """"final (1 run per method ...)" or "final (mean ± 95 % interval over N
    seeds)", saying when some methods ran on one seed (hollow bars)."""
    hi = int(counts.max())
    if hi == 1:
        return f"final (1 run per method, no spread shown: {ILLUSTRATION})"
    lo = int(counts[counts > 1].min())
    seeds = f"{lo}" if lo == hi else f"{lo}-{hi}"
    hollow = f"; hollow: {ILLUSTRATION}" if (counts < 2).any() else ""
    return f"final (mean ± 95 % interval over {seeds} seeds{hollow})"


def _draw_final(ax, table: pd.DataFrame, colors: dict) -> None:
    x = np.arange(len(table))
    width = 0.38
    several = bool((table["n"] > 1).any())  # a single run has no spread: no error bar drawn
    single = (table["n"] < 2).to_numpy()  # and its bars are hollow: 1 seed is an illustration
    method_color = [colors.get(m, "0.5") for m in table["method"]]
    for offset, (col, label), hatch in ((-width / 2, TOPK[0], None), (width / 2, TOPK[1], "//")):
        key = "top1" if col == "mixed_top1" else "top2"
        yerr = table[f"{key}_ci"].where(table["n"] > 1) if several else None
        shade = 1.0 if hatch is None else 0.6  # in the face colour: an alpha argument would fill the hollow bars
        bars = ax.bar(x + offset, table[key], width=width, yerr=yerr, capsize=3,
                      color=["none" if one else to_rgba(c, shade) for one, c in zip(single, method_color)],
                      edgecolor=[c if one else "black" for one, c in zip(single, method_color)],
                      linewidth=[1.6 if one else 0.6 for one in single], hatch=hatch)
        ax.bar_label(bars, labels=[f"{v:.0f}" for v in table[key]], fontsize="x-small", padding=2)
    ax.set_xticks(x, [f"{m}\n({ILLUSTRATION})" if one else m for m, one in zip(table["method"], single)],
                  rotation=30, ha="right")
    ax.set_ylim(0, 118)
    ax.set_ylabel("accuracy on mixed samples (%)")
    ax.set_title(_final_title(table["n"]))
    ax.legend(handles=[Patch(facecolor="0.6", edgecolor="black", label="Top-1"),
                       Patch(facecolor="0.8", edgecolor="black", hatch="//", label="Top-2")],
              loc="upper center", ncols=2, fontsize="small")


@themed
def mixed_accuracy_plot(histories: Mapping[str, pd.DataFrame], final: pd.DataFrame | None = None) -> Figure:
    """Top-1 and Top-2 mixed accuracy per method over the epochs, and at the end.

    On mixed samples (pairs of classes ``y_a``, ``y_b``) a prediction is
    Top-1 correct when its top class is one of the two, and Top-2 correct
    when its two top classes are exactly the two (see
    :func:`mixviz.metrics.mixed_topk_accuracy`).  A model that finds only one
    object of each mixed pair has high Top-1 but low Top-2.

    Args:
        histories: ``{method: run history}`` with the columns ``epoch``,
            ``mixed_top1`` and ``mixed_top2`` (fractions in [0, 1]; NaN in
            epochs without evaluation).
        final: optional table with one row per run and the columns
            ``mixed_top1``, ``mixed_top2`` and ``method`` (or ``policy`` and
            ``loss``), e.g. the comparison harness's results table; drawn as
            bars of the mean ± 95 % interval over seeds in a third panel.

    Returns:
        The figure: two axes (Top-1, Top-2 over epochs), three with ``final``.
    """
    check_histories(histories, [col for col, _ in TOPK])
    table = None if final is None else final_mixed_accuracy(final)
    names = list(histories) + ([m for m in table["method"] if m not in histories] if table is not None else [])
    colors = method_colors(names)
    styles = line_styles(names)
    ncols = 2 if table is None else 3
    widths = [1, 1] if table is None else [1, 1, min(max(1.0, 0.22 * len(table)), 2.5)]
    legend_rows = -(-len(histories) // 6)
    fig, axes = new_figure(1, ncols, figsize=(4.4 * sum(widths) + 0.4, 4.6 + 0.3 * legend_rows), layout="constrained",
                           gridspec_kw={"width_ratios": widths})
    for ax, (col, label) in zip(axes[0], TOPK):
        for key, frame in histories.items():
            epochs, values = history_values(f"histories[{key!r}]", frame, col)
            ax.plot(epochs, values, label=key, markevery=markevery(len(epochs)), **styles[key])
        ax.set_ylim(0, 102)
        ax.set_xlabel("epoch")
        integer_epochs(ax)
        ax.set_ylabel(f"mixed {label} accuracy (%)")
    axes[0, 0].set_title("Top-1: top class is one of the two mixed classes")
    axes[0, 1].set_title("Top-2: two top classes are exactly the mixed pair")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6), title="method",
               fontsize="small")
    if table is not None:
        _draw_final(axes[0, 2], table, colors)
    fig.suptitle("Accuracy on mixed samples (DM paper's Top-1 / Top-2)")
    return fig
