"""Memorisation of noisy labels over training: the classic picture of why
mixup regularises (Zhang et al. 2018, figure 2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mixviz.viz._common import check_frame, check_mapping, history_values, integer_epochs, new_figure
from mixviz.viz.style import line_styles, markevery, metric_label, themed

__all__ = ["memorisation_curves", "seed_band"]

MEMORISATION_METRICS = ("memorised", "still_right", "test_acc")


def seed_band(histories: Sequence[pd.DataFrame], metric: str,
              confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Per epoch, the mean of ``metric`` over the runs in ``histories`` and the
    half-width of its Student-t interval (NaN with one run); epochs that not
    every run recorded are dropped.  Returns (epochs, mean, half-width, runs)."""
    from mixviz.stats import t_quantile

    frames = []
    for i, frame in enumerate(histories):
        epochs, values = history_values(f"histories[{i}]", frame, metric)
        frames.append(pd.Series(values, index=epochs))
    table = pd.concat(frames, axis=1).dropna()
    n = table.shape[1]
    mean = table.mean(axis=1).to_numpy()
    if n < 2:
        return table.index.to_numpy(), mean, np.full_like(mean, np.nan), n
    half = t_quantile(confidence, n - 1) * table.std(axis=1, ddof=1).to_numpy() / np.sqrt(n)
    return table.index.to_numpy(), mean, half, n


@themed
def memorisation_curves(histories: Mapping[str, Sequence[pd.DataFrame]],
                        metrics: Sequence[str] = MEMORISATION_METRICS) -> Figure:
    """One panel per metric against the epoch, one line per method: the mean
    over seeds with its 95 % interval as a band.

    With noisy labels (``mixviz.data.load(..., label_noise=p)``) the run
    histories hold, per epoch, on the training samples whose label was flipped:
    ``memorised`` (predicted as the wrong label they were shown) and
    ``still_right`` (predicted as their true label).  Plain training climbs
    the memorised curve late in training, as the learning rate falls; a
    regulariser such as mixup holds it down, and the test accuracy shows the
    cost of memorising.

    Args:
        histories: ``{method: [history of each seed]}`` (DataFrames with
            ``epoch`` and the metric columns; NaN rows are skipped).
        metrics: the columns to draw.

    Returns:
        The figure: one axes per metric.
    """
    check_mapping("histories", histories)
    if isinstance(metrics, str) or not metrics:
        raise ValueError("metrics must be a non-empty sequence of column names")
    for key, runs in histories.items():
        if isinstance(runs, pd.DataFrame) or not isinstance(runs, Sequence) or not runs:
            raise TypeError(f"histories[{key!r}] must be a non-empty list of run histories (one per seed)")
        for i, frame in enumerate(runs):
            check_frame(f"histories[{key!r}][{i}]", frame, ["epoch", *metrics])
    styles = line_styles(list(histories))  # colour by family, marker by policy, dashed for DM
    fig, axes = new_figure(1, len(metrics), figsize=(4.6 * len(metrics) + 0.4, 4.2), layout="constrained",
                           sharex=True)
    seeds = set()
    for ax, metric in zip(axes.ravel(), metrics):
        for key, runs in histories.items():
            epochs, mean, half, n = seed_band(runs, metric)
            seeds.add(n)
            ax.plot(epochs, mean, label=key, markevery=markevery(len(epochs)), **styles[key])
            if n > 1:
                ax.fill_between(epochs, mean - half, mean + half, color=styles[key]["color"], alpha=0.15,
                                linewidth=0)
        ax.set_title(metric_label(metric))
        ax.set_ylabel(metric_label(metric))
        ax.set_xlabel("epoch")
        integer_epochs(ax)
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5), title="method")
    if max(seeds) > 1:
        spread = f"mean and 95 % interval over {'/'.join(map(str, sorted(seeds)))} seeds"
    else:
        spread = "one seed per method, no interval shown"
    fig.suptitle(f"Memorising noisy labels ({spread})")
    return fig
