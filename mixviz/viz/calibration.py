"""Reliability diagrams: accuracy against confidence per bin, one panel per method."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from mixviz.viz._common import (check_fraction, check_fractions, check_frame, check_int, check_mapping,
                                check_same_keys, grid_shape, new_plain_figure)
from mixviz.viz.style import themed

__all__ = ["reliability_diagrams", "display_bins"]

BIN_COLUMNS = ("bin_lower", "bin_upper", "confidence", "accuracy", "count")
ACC_COLOR = "#3b75af"
GAP_COLOR = "#d1495b"


def _tint(color: str, over: str, alpha: float = 0.3) -> str:
    """``color`` at ``alpha`` over ``over``, as one opaque colour (what the eye sees)."""
    top, bottom = np.array(to_rgb(color)), np.array(to_rgb(over))
    return to_hex(alpha * top + (1.0 - alpha) * bottom)


#: The gap between accuracy and confidence, drawn opaque so that the legend shows the colour of the bars: above the
#: accuracy bar (over-confident: confidence > accuracy) on white, inside it (under-confident) on the accuracy blue.
GAP_OVER = _tint(GAP_COLOR, "white")
GAP_UNDER = _tint(GAP_COLOR, ACC_COLOR)
GAP_HATCH = "//"


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
           facecolor=np.where((conf > acc)[:, None], to_rgb(GAP_OVER), to_rgb(GAP_UNDER)), edgecolor=GAP_COLOR,
           linewidth=0.8, hatch=GAP_HATCH)
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
                         ncols: int | None = None, counts: bool = True) -> Figure:
    """One reliability diagram per method, with its ECE.

    Each method gets a diagram (blue bars: accuracy of the predictions whose
    confidence falls in the bin; red hatched: the gap between that accuracy
    and the bin's mean confidence, light red above the bar where the model is
    over-confident, dark red inside it where it is under-confident; dashed
    diagonal: perfect calibration) and,
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
        counts: draw the share of samples per bin under each diagram (False:
            the diagrams only, e.g. for a slide).

    Returns:
        The figure: two axes per method (diagram, then counts), one without counts.
    """
    check_mapping("bins", bins)
    check_mapping("ece", ece)
    check_same_keys("ece", ece, "bins", bins)
    checked = {key: _check_bins(key, frame) for key, frame in bins.items()}
    values = {key: check_fraction(f"ece[{key!r}]", ece[key]) for key in bins}
    if ncols is not None:
        check_int("ncols", ncols)
    if not isinstance(counts, bool):
        raise TypeError(f"counts must be True or False, got {type(counts).__name__}")
    n = len(checked)
    rows, cols = grid_shape(n, ncols)
    fig = new_plain_figure(figsize=(3.3 * cols + 0.4, (4.4 if counts else 3.6) * rows + 0.8), layout="constrained")
    per = 2 if counts else 1
    grid = fig.add_gridspec(per * rows, cols, height_ratios=[3, 1] * rows if counts else None)
    for i, (key, frame) in enumerate(checked.items()):
        r, c = divmod(i, cols)
        top = fig.add_subplot(grid[per * r, c])
        _draw_diagram(top, frame)
        top.set_title(f"{key}\nECE = {100 * values[key]:.2f} %")
        bottom = top
        if counts:
            bottom = fig.add_subplot(grid[2 * r + 1, c], sharex=top)
            _draw_counts(bottom, frame)
            top.tick_params(labelbottom=False)
        bottom.set_xlabel("confidence (top class probability)")
        if c == 0:
            top.set_ylabel("accuracy in bin")
            if counts:
                bottom.set_ylabel("% of samples")
    handles = [Patch(facecolor=ACC_COLOR, edgecolor="white", label="accuracy"),
               Patch(facecolor=GAP_OVER, edgecolor=GAP_COLOR, hatch=GAP_HATCH,
                     label="gap: confidence above accuracy (over-confident)"),
               Patch(facecolor=GAP_UNDER, edgecolor=GAP_COLOR, hatch=GAP_HATCH,
                     label="gap: accuracy above confidence (under-confident)"),
               plt.Line2D([], [], linestyle="--", color="0.3", label="perfect calibration")]
    fig.legend(handles=handles, loc="outside lower center", ncols=2 if cols < 3 else 4, fontsize="small")
    fig.suptitle("Reliability diagrams (ECE = mean |accuracy - confidence| weighted by bin size)")
    return fig
