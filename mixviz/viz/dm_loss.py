"""What the Decoupled Mixup loss does to one prediction: the loss over the
plane of predictions ``(p_a, p_b)``, its gradient on the logits, and the
predictions of a model trained on one mixed batch.  The numbers come from
:mod:`mixviz.analysis.dm`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from mixviz.viz._common import check_frame, new_figure
from mixviz.viz.style import themed

__all__ = ["loss_landscape", "gradient_bars", "sgd_trace_plot"]

#: Panels of :func:`loss_landscape`: grid key -> title.
LANDSCAPE_PANELS = {"mixup_ce": "mixup CE", "decoupled": "DM - mixup CE\n(the decoupled part)", "dm": "DM"}
#: Colours of the two losses in the line and bar plots.
LOSS_COLORS = {"mixup_ce": "#0173b2", "dm": "#d55e00"}
LOSS_LABELS = {"mixup_ce": "mixup CE", "dm": "DM"}


def _check_grid(grid: Any) -> None:
    if not isinstance(grid, Mapping):
        raise TypeError(f"grid must be the dict of mixviz.analysis.dm.loss_grid, got {type(grid).__name__}")
    missing = [k for k in ("p", "step", "lam", "argmin", *LANDSCAPE_PANELS) if k not in grid]
    if missing:
        raise ValueError(f"grid must be the dict of mixviz.analysis.dm.loss_grid; missing {', '.join(missing)}")


@themed
def loss_landscape(grid: Mapping[str, Any], *, gamma: float = 0.4) -> Figure:
    """Each loss over the predictions ``(p_a, p_b)`` (one panel each).

    The colour is the loss minus its smallest value on the grid (a power
    scale, ``gamma``, so the valley shows); white contour lines; the grey
    triangle ``p_a + p_b >= 1`` holds no prediction.  A star marks each
    panel's minimum, a cross the mixup target ``(lam, 1 - lam)``.  The
    decoupled panel is blank when that part is zero (``eta = 0``).

    Args:
        grid: :func:`mixviz.analysis.dm.loss_grid`.
        gamma: exponent of the colour scale (1: linear).
    """
    _check_grid(grid)
    p = np.asarray(grid["p"])
    lo, hi = p[0] - grid["step"] / 2, p[-1] + grid["step"] / 2
    lam = float(grid["lam"])
    fig, axes = new_figure(1, 3, figsize=(13.0, 4.6), layout="constrained", sharey=True)
    for ax, (key, title) in zip(axes[0], LANDSCAPE_PANELS.items()):
        values = np.asarray(grid[key], dtype=float)
        ax.fill([lo, hi, hi], [hi, lo, hi], color="0.85", zorder=0)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_title(title)
        ax.set_xlabel("$p_a$ (probability of class a)")
        ax.plot([lam], [1 - lam], marker="X", color="black", markersize=9, linestyle="none",
                label="target (λ, 1 − λ)", zorder=4)
        finite = values[np.isfinite(values)]
        spread = float(finite.max() - finite.min()) if finite.size else 0.0
        if spread <= 0:
            ax.text(0.5 * (lo + hi), 0.35 * (lo + hi), "zero everywhere", ha="center", va="center", color="0.3")
            continue
        shifted = values - finite.min()
        image = ax.imshow(shifted, origin="lower", extent=(lo, hi, lo, hi), cmap="viridis",
                          norm=PowerNorm(gamma, vmin=0.0, vmax=float(np.nanmax(shifted))), zorder=1)
        ax.contour(p, p, shifted, levels=8, colors="white", linewidths=0.6, alpha=0.7, zorder=2)
        best = grid["argmin"][key]
        if np.isfinite(best[0]):
            ax.plot([best[0]], [best[1]], marker="*", color="#d55e00", markeredgecolor="white", markersize=15,
                    linestyle="none", label="minimum on the grid", zorder=5)
        fig.colorbar(image, ax=ax, shrink=0.8, label="loss − its minimum (nats)")
    axes[0, 0].set_ylabel("$p_b$ (probability of class b)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2)
    fig.suptitle(f"Loss over the predictions: λ = {lam:.2f}, η = {grid.get('eta', float('nan')):g}, "
                 f"mode {grid.get('mode', '?')}, {grid.get('num_classes', '?')} classes "
                 f"(the other classes share 1 − p_a − p_b)")
    return fig


@themed
def gradient_bars(table: pd.DataFrame) -> Figure:
    """The gradient of each loss on the logits of class a, class b and one
    other class, side by side (:func:`mixviz.analysis.dm.loss_table`).

    Gradient descent moves a logit against its gradient: a bar below zero
    means the loss *raises* that logit, above zero *lowers* it.
    """
    check_frame("table", table, ["loss", "grad_z_a", "grad_z_b", "grad_z_rest", "p_a", "p_b", "p_rest"])
    rows = [r for r in ("mixup CE", "DM") if r in table.index]
    if not rows:
        raise ValueError("table must have the rows 'mixup CE' and/or 'DM' of loss_table")
    cols = ["grad_z_a", "grad_z_b", "grad_z_rest"]
    fig, axes = new_figure(1, 1, figsize=(6.4, 3.8), layout="constrained")
    ax = axes[0, 0]
    x = np.arange(len(cols))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        key = "mixup_ce" if row == "mixup CE" else "dm"
        values = table.loc[row, cols].to_numpy(dtype=float)
        bars = ax.bar(x + (i - (len(rows) - 1) / 2) * width, values, width, color=LOSS_COLORS[key],
                      label=f"{row} (loss {table.loc[row, 'loss']:.3f})")
        ax.bar_label(bars, fmt="%+.3f", fontsize="x-small", padding=2)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x, ["$z_a$", "$z_b$", "one other class"])
    ax.set_ylabel("d loss / d logit  (< 0: pushed up)")
    first = table.iloc[0]
    ax.set_title(f"Gradient on the logits at p_a = {first['p_a']:.2f}, p_b = {first['p_b']:.2f}, "
                 f"rest = {first['p_rest']:.2f}")
    ax.legend(loc="best", fontsize="small")
    ax.margins(y=0.2)
    return fig


@themed
def sgd_trace_plot(trace: pd.DataFrame) -> Figure:
    """Predictions over SGD steps under mixup CE and DM
    (:func:`mixviz.analysis.dm.sgd_trace`): the probability of the class with
    the larger and the smaller share (dotted: their mean targets), the mass
    left on the other classes, and the share of the batch whose two top
    classes are exactly the mixed pair."""
    check_frame("trace", trace, ["loss_name", "step", "p_major", "p_minor", "p_rest", "top2"])
    fig, axes = new_figure(1, 3, figsize=(13.0, 3.8), layout="constrained", sharex=True)
    share = trace.attrs.get("share_major")
    for name, frame in trace.groupby("loss_name", sort=False):
        color, label = LOSS_COLORS.get(name, "0.3"), LOSS_LABELS.get(name, name)
        axes[0, 0].plot(frame["step"], frame["p_major"], color=color, linewidth=2, label=f"{label}: larger share")
        axes[0, 0].plot(frame["step"], frame["p_minor"], color=color, linewidth=2, linestyle="--",
                        label=f"{label}: smaller share")
        axes[0, 1].plot(frame["step"], frame["p_rest"], color=color, linewidth=2, label=label)
        axes[0, 2].plot(frame["step"], 100 * frame["top2"], color=color, linewidth=2, label=label)
    if share is not None:
        for value in (share, 1 - share):
            axes[0, 0].axhline(value, color="0.4", linestyle=":", linewidth=1)
    axes[0, 0].set_title("probability of each mixed class")
    axes[0, 0].set_ylabel("mean probability")
    axes[0, 1].set_title("mass on the other classes")
    axes[0, 1].set_ylabel("mean 1 − p_a − p_b")
    axes[0, 2].set_title("top-2 = the mixed pair")
    axes[0, 2].set_ylabel("share of the batch (%)")
    for ax in axes[0]:
        ax.set_xlabel("SGD step")
    axes[0, 0].legend(fontsize="x-small", loc="best")
    axes[0, 2].legend(fontsize="small", loc="lower right")
    fig.suptitle("One fixed mixed batch, the same start, two losses")
    return fig
