"""Reliability diagrams: accuracy against confidence per bin, one panel per method."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from mixviz.viz._common import (check_fraction, check_fractions, check_frame, check_int, check_mapping,
                                check_same_keys, grid_shape, new_plain_figure)
from mixviz.viz.style import themed

__all__ = ["reliability_diagrams", "display_bins"]

BIN_COLUMNS = ("bin_lower", "bin_upper", "confidence", "accuracy", "count")
ACC_COLOR = "#3b75af"
GAP_COLOR = "#d1495b"


def display_bins(bins: pd.DataFrame) -> pd.DataFrame:
    """The bins of :func:`mixviz.metrics.reliability_bins` ready to draw.

    A zero-width row (``bin_lower == bin_upper``, the predictions with
    confidence exactly 1.0 that torchmetrics counts on their own) is merged
    into the bin that ends at its edge: counts add up, confidence and accuracy
    are count-weighted means.  Empty bins keep NaN confidence and accuracy.
    """
    frame = bins.loc[:, list(BIN_COLUMNS)].astype(float).reset_index(drop=True)
    zero = frame.index[frame["bin_upper"] <= frame["bin_lower"]]
    keep = frame.drop(index=zero).reset_index(drop=True)
    for i in zero:
        row = frame.loc[i]
        if row["count"] == 0:
            continue
        target = keep.index[np.isclose(keep["bin_upper"], row["bin_lower"])]
        if len(target) == 0:
            raise ValueError(f"bins: the zero-width bin at {row['bin_lower']} has no bin ending at its edge")
        t = target[0]
        n_old, n_new = keep.at[t, "count"], row["count"]
        total = n_old + n_new
        for col in ("confidence", "accuracy"):
            old = keep.at[t, col] if n_old > 0 else 0.0
            keep.at[t, col] = (old * n_old + row[col] * n_new) / total
        keep.at[t, "count"] = total
    return keep


def _check_bins(key: str, frame: object) -> pd.DataFrame:
    name = f"bins[{key!r}]"
    frame = check_frame(name, frame, BIN_COLUMNS)
    if len(frame) == 0:
        raise ValueError(f"{name} must have at least one row")
    for col in ("bin_lower", "bin_upper", "confidence", "accuracy"):
        check_fractions(f"{name}[{col!r}]", frame[col].to_numpy(dtype=float))
    counts = frame["count"].to_numpy(dtype=float)
    if not np.isfinite(counts).all() or counts.min() < 0:
        raise ValueError(f"{name}['count'] must be non-negative numbers")
    if (frame["bin_upper"] < frame["bin_lower"]).any():
        raise ValueError(f"{name} must have bin_upper >= bin_lower in every row")
    return display_bins(frame)


def _draw_diagram(ax: plt.Axes, bins: pd.DataFrame) -> None:
    full = bins[bins["count"] > 0]
    lower, width = full["bin_lower"].to_numpy(), (full["bin_upper"] - full["bin_lower"]).to_numpy()
    acc, conf = full["accuracy"].to_numpy(), full["confidence"].to_numpy()
    ax.bar(lower, acc, width=width, align="edge", color=ACC_COLOR, edgecolor="white", linewidth=0.8)
    ax.bar(lower, np.abs(conf - acc), bottom=np.minimum(acc, conf), width=width, align="edge",
           facecolor=to_rgba(GAP_COLOR, 0.3), edgecolor=GAP_COLOR, linewidth=0.8, hatch="//")  # opaque hatch
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.3", linewidth=1.2)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("auto")


def _draw_counts(ax: plt.Axes, bins: pd.DataFrame) -> None:
    counts = bins["count"].to_numpy(dtype=float)
    share = 100.0 * counts / max(counts.sum(), 1.0)
    width = (bins["bin_upper"] - bins["bin_lower"]).to_numpy()
    ax.bar(bins["bin_lower"].to_numpy(), share, width=width, align="edge", color="0.55", edgecolor="white",
           linewidth=0.5)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, max(share.max() * 1.15, 1.0))


@themed
def reliability_diagrams(bins: Mapping[str, pd.DataFrame], ece: Mapping[str, float],
                         ncols: int | None = None) -> Figure:
    """One reliability diagram per method, with its ECE.

    Each method gets a diagram (blue bars: accuracy of the predictions whose
    confidence falls in the bin; red hatched: the gap between that accuracy
    and the bin's mean confidence; dashed diagonal: perfect calibration) and,
    below it, the share of the test predictions in each bin.  The expected
    calibration error ``ECE = sum_bins (count / N) |accuracy - confidence|``
    is printed in the title as a percentage.

    Args:
        bins: ``{method: DataFrame}`` with the columns of
            :func:`mixviz.metrics.reliability_bins` (``bin_lower``,
            ``bin_upper``, ``confidence``, ``accuracy``, ``count``; NaN in empty
            bins).  A zero-width last bin (confidence exactly 1) is merged into
            the bin below it (see :func:`display_bins`).
        ece: ``{method: ECE}`` as a fraction in [0, 1], for every method of ``bins``.
        ncols: methods per row (default: up to 4).

    Returns:
        The figure: two axes per method (diagram, then counts).
    """
    check_mapping("bins", bins)
    check_mapping("ece", ece)
    check_same_keys("ece", ece, "bins", bins)
    checked = {key: _check_bins(key, frame) for key, frame in bins.items()}
    values = {key: check_fraction(f"ece[{key!r}]", ece[key]) for key in bins}
    if ncols is not None:
        check_int("ncols", ncols)
    n = len(checked)
    rows, cols = grid_shape(n, ncols)
    fig = new_plain_figure(figsize=(3.3 * cols + 0.4, 4.4 * rows + 0.8), layout="constrained")
    grid = fig.add_gridspec(2 * rows, cols, height_ratios=[3, 1] * rows)
    for i, (key, frame) in enumerate(checked.items()):
        r, c = divmod(i, cols)
        top = fig.add_subplot(grid[2 * r, c])
        bottom = fig.add_subplot(grid[2 * r + 1, c], sharex=top)
        _draw_diagram(top, frame)
        _draw_counts(bottom, frame)
        top.set_title(f"{key}\nECE = {100 * values[key]:.2f} %")
        top.tick_params(labelbottom=False)
        bottom.set_xlabel("confidence (top class probability)")
        if c == 0:
            top.set_ylabel("accuracy in bin")
            bottom.set_ylabel("% of samples")
    handles = [Patch(color=ACC_COLOR, label="accuracy"),
               Patch(facecolor=to_rgba(GAP_COLOR, 0.3), edgecolor=GAP_COLOR, hatch="//",
                     label="gap to confidence"),
               plt.Line2D([], [], linestyle="--", color="0.3", label="perfect calibration")]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize="small")
    fig.suptitle("Reliability diagrams (ECE = mean |accuracy - confidence| weighted by bin size)")
    return fig
