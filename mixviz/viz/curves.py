"""Training curves from run histories (one row per epoch)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
from matplotlib.figure import Figure

from mixviz.viz._common import (check_frame, check_int, check_mapping, grid_shape, hide_unused, history_values,
                                integer_epochs, new_figure)
from mixviz.viz.style import line_styles, markevery, metric_label, themed

__all__ = ["training_curves", "check_histories"]


def check_histories(histories: Mapping[str, pd.DataFrame], columns: Sequence[str]) -> None:
    """``{method: DataFrame}`` with an ``epoch`` column and ``columns``."""
    check_mapping("histories", histories)
    for key, frame in histories.items():
        check_frame(f"histories[{key!r}]", frame, ["epoch", *columns])


def _check_metrics(metrics: Sequence[str]) -> list[str]:
    if isinstance(metrics, str):
        return [metrics]
    if not isinstance(metrics, Sequence) or not metrics:
        raise TypeError("metrics must be a non-empty sequence of column names")
    for m in metrics:
        if not isinstance(m, str):
            raise TypeError(f"metrics must hold column names (str), got {type(m).__name__}")
    return list(metrics)


@themed
def training_curves(histories: Mapping[str, pd.DataFrame], metrics: Sequence[str] = ("train_loss", "test_acc"),
                    ncols: int | None = None) -> Figure:
    """One panel per metric, one line per method, against the epoch.

    Args:
        histories: ``{method: run history}``; each history is a DataFrame with
            one row per epoch and the columns ``epoch`` and ``metrics``
            (``mixviz`` writes ``lr``, ``train_loss``, ``test_acc``,
            ``test_nll``, ``test_ece``, ``mixed_top1``, ``mixed_top2``,
            ``epoch_sec``, ``images_per_sec``).  Accuracy and ECE columns are
            fractions in [0, 1] and drawn in percent; NaN entries (epochs
            without evaluation) are skipped.
        metrics: the columns to draw, one panel each.
        ncols: panels per row (default: up to 4).

    Returns:
        The figure: one axes per metric.
    """
    metrics = _check_metrics(metrics)
    check_histories(histories, metrics)
    if ncols is not None:
        check_int("ncols", ncols)
    styles = line_styles(list(histories))
    rows, cols = grid_shape(len(metrics), ncols)
    fig, axes = new_figure(rows, cols, figsize=(4.6 * cols + 0.4, 3.5 * rows + 1.0), layout="constrained",
                           sharex=True)
    for ax, metric in zip(axes.ravel(), metrics):
        for key, frame in histories.items():
            epochs, values = history_values(f"histories[{key!r}]", frame, metric)
            ax.plot(epochs, values, label=key, markevery=markevery(len(epochs)), **styles[key])
        ax.set_title(metric_label(metric))
        ax.set_ylabel(metric_label(metric))
        ax.set_xlabel("epoch")
        integer_epochs(ax)
        if metric == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    hide_unused(axes, len(metrics))
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5), title="method")
    fig.suptitle("Training curves")
    return fig
