"""Semi-supervised training over the epochs: how many pseudo-labels pass the
threshold, how many of those are right, and the test accuracy -- per method,
with the spread over seeds (the confirmation-bias picture)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mixviz.viz._common import (check_frame, check_mapping, class_name, image_array, integer_epochs, new_figure,
                                show_image)
from mixviz.viz.style import method_colors, themed

__all__ = ["semi_curves", "augmentation_views", "SEMI_CURVE_METRICS"]

SEMI_CURVE_METRICS = ("mask_rate", "pseudo_acc", "test_acc")
_TITLES = {
    "mask_rate": "pseudo-labels kept (%)",
    "pseudo_acc": "accuracy of kept pseudo-labels (%)",
    "pseudo_acc_all": "accuracy of all pseudo-labels (%)",
    "test_acc": "test accuracy (%)",
    "train_loss": "training loss (nats)",
    "unsup_weight": "weight of the L x U mixed term",
}
_PERCENT = {"mask_rate", "pseudo_acc", "pseudo_acc_all", "test_acc"}


def _band(values: pd.DataFrame, metric: str, confidence: float) -> pd.DataFrame:
    """Per epoch: mean, interval low/high (Student t over seeds; none with one seed), seeds."""
    from mixviz.stats import mean_ci

    rows = []
    for epoch, group in values.groupby("epoch", sort=True):
        x = pd.to_numeric(group[metric], errors="coerce").dropna()
        if x.empty:
            continue
        iv = mean_ci(x, confidence)
        rows.append({"epoch": epoch, "mean": iv.mean, "low": iv.low, "high": iv.high, "n": iv.n})
    return pd.DataFrame(rows, columns=["epoch", "mean", "low", "high", "n"])


@themed
def semi_curves(histories: pd.DataFrame, metrics: Sequence[str] = SEMI_CURVE_METRICS, *, facet: str | None = None,
                methods: Sequence[str] | None = None, colors: Mapping[str, Any] | None = None,
                confidence: float = 0.95) -> Figure:
    """One panel per metric (columns) and per value of ``facet`` (rows); one
    line per method: the mean over seeds per epoch, with a band for its
    Student-t interval (``confidence``; no band with one seed; shares are
    clipped to [0, 100] %: with two seeds the interval of a share can reach
    far outside it).

    Args:
        histories: the run histories stacked in one long table with the
            columns ``method``, ``seed``, ``epoch``, ``metrics`` (fractions
            for the accuracies and the kept share; NaN where a method has no
            such measure, e.g. no pseudo-labels without unlabelled data) and
            ``facet`` when given (e.g. ``labels_per_class``).
        metrics: the columns to draw.
        facet: a column whose values get one row of panels each.
        methods: the methods to draw, in this order (default: order of appearance).
        colors: ``{method: colour}`` (default :func:`~mixviz.viz.style.method_colors` in ``methods`` order).
        confidence: of the bands.

    Returns:
        The figure (rows = facet values, columns = metrics).
    """
    if isinstance(metrics, str) or not metrics:
        raise TypeError("metrics must be a non-empty sequence of column names")
    check_frame("histories", histories, ["method", "seed", "epoch", *metrics, *([facet] if facet else [])])
    if histories.empty:
        raise ValueError("histories is empty: nothing to draw")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    order = list(dict.fromkeys(histories["method"])) if methods is None else list(methods)
    unknown = [m for m in order if m not in set(histories["method"])]
    if unknown:
        raise ValueError(f"methods {unknown} are not in histories (has {sorted(set(histories['method']))})")
    if colors is None:
        colors = method_colors(order)
    else:
        check_mapping("colors", colors)
        missing = [m for m in order if m not in colors]
        if missing:
            raise ValueError(f"colors must give a colour to every method drawn; missing {missing}")
    facets = list(dict.fromkeys(histories[facet])) if facet else [None]
    fig, axes = new_figure(len(facets), len(metrics), figsize=(4.2 * len(metrics) + 0.4, 3.3 * len(facets) + 1.0),
                           layout="constrained", sharex=True)
    seeds = histories.groupby("method")["seed"].nunique()
    for r, value in enumerate(facets):
        part = histories if facet is None else histories[histories[facet] == value]
        for c, metric in enumerate(metrics):
            ax = axes[r, c]
            scale = 100.0 if metric in _PERCENT else 1.0
            for method in order:
                rows = part[part["method"] == method]
                band = _band(rows, metric, confidence)
                if band.empty:
                    continue
                ax.plot(band["epoch"], band["mean"] * scale, color=colors[method], label=method, linewidth=1.8)
                spread = band[np.isfinite(band["low"])]
                if len(spread):
                    low, high = spread["low"] * scale, spread["high"] * scale
                    if metric in _PERCENT:
                        low, high = low.clip(0.0, 100.0), high.clip(0.0, 100.0)
                    ax.fill_between(spread["epoch"], low, high, color=colors[method], alpha=0.18, linewidth=0)
            title = _TITLES.get(metric, metric)
            if facet is not None:
                title += f"\n{value} labels per class" if facet == "labels_per_class" else f"\n{facet} = {value}"
            ax.set_title(title)
            ax.set_xlabel("epoch")
            integer_epochs(ax)
    from matplotlib.lines import Line2D

    labels = [m for m in order if any(m in ax.get_legend_handles_labels()[1] for ax in axes.ravel())]
    handles = [Line2D([], [], color=colors[m], linewidth=1.8) for m in labels]
    n = int(seeds.max())
    band_text = f"bands: {int(confidence * 100)} % interval over {n} seeds" if n > 1 else "one seed: no band"
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4),
               title=f"method (mean; {band_text})")
    fig.suptitle("Semi-supervised training: pseudo-labels and test accuracy per epoch")
    return fig


@themed
def augmentation_views(views: Mapping[str, Any], labels: Any = None, class_names: Sequence[str] | None = None,
                       n: int = 8) -> Figure:
    """The first ``n`` images under each view, one row per view (e.g.
    ``{"image": x, "weak": weak(x), "strong": strong(weak(x))}``).

    Args:
        views: ``{row title: images [B, C, H, W]}`` (tensors in [0, 1] or uint8),
            the same images in every view.
        labels: ``[B]`` class ids to write above the first row (optional).
        class_names: names of the classes in ``labels``.
        n: images per row.
    """
    check_mapping("views", views)
    sizes = {key: int(v.shape[0]) for key, v in views.items()}
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if n > min(sizes.values()):
        raise ValueError(f"n must be <= the number of images of every view, got n = {n} and sizes {sizes}")
    fig, axes = new_figure(len(views), n, figsize=(1.25 * n + 1.2, 1.35 * len(views) + 0.6), layout="constrained")
    for r, (key, images) in enumerate(views.items()):
        for c in range(n):
            ax = axes[r, c]
            show_image(ax, image_array(f"views[{key!r}][{c}]", images[c]))
            if c == 0:
                ax.set_ylabel(key, rotation=0, ha="right", va="center")
            if r == 0 and labels is not None:
                ax.set_title(class_name(int(labels[c]), class_names), fontsize="small")
    return fig
