"""The one look of every mixviz picture: a seaborn theme applied inside each
plotting function (never globally), method colours that stay the same across
figures, and the labels and units of the run-history metrics."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import matplotlib.pyplot as plt
import seaborn as sns

__all__ = ["theme", "themed", "DRAW_LOCK", "method_colors", "KIND_MARKERS", "METRIC_LABELS", "PERCENT_METRICS",
           "metric_label"]

F = TypeVar("F", bound=Callable[..., Any])

#: Marker of each training kind in the comparison plots.
KIND_MARKERS = {"static": "o", "dynamic": "s", "DM loss": "^", "midpoint loss": "D", "other": "X"}

#: Metrics stored as fractions in [0, 1] and drawn as percentages.
PERCENT_METRICS = frozenset({"test_acc", "test_ece", "ece", "mixed_top1", "mixed_top2", "memorised", "still_right",
                             "clean_fit", "mixed_top1_both", "mixed_top2_both", "mixed_top1_one", "mixed_top2_one",
                             "cutmix_top2_both", "cutmix_top2_one", "mixup_top2_both", "mixup_top2_one"})

#: Axis labels (with units) of the run-history and results-table columns.
METRIC_LABELS = {
    "epoch": "epoch",
    "lr": "learning rate",
    "train_loss": "training loss (nats)",
    "test_acc": "test accuracy (%)",
    "test_nll": "test NLL (nats)",
    "nll": "test NLL (nats)",
    "test_ece": "test ECE (%)",
    "ece": "test ECE (%)",
    "mixed_top1": "mixed Top-1 accuracy (%)",
    "mixed_top2": "mixed Top-2 accuracy (%)",
    "epoch_sec": "time per epoch (s)",
    "sec_per_epoch": "time per epoch (s)",
    "images_per_sec": "throughput (images / s)",
    "epochs": "epochs",
    "memorised": "flipped labels memorised (%)",
    "still_right": "flipped samples still right (%)",
    "clean_fit": "unflipped samples fitted (%)",
    "mixed_top2_both": "mixed Top-2, both objects visible (%)",
    "mixed_top2_one": "mixed Top-2, one object visible (%)",
    "cutmix_top2_both": "Top-2 on CutMix pairs, both visible (%)",
    "cutmix_top2_one": "Top-2 on CutMix pairs, one visible (%)",
    "mixup_top2_both": "Top-2 on mixup pairs, both visible (%)",
    "mixup_top2_one": "Top-2 on mixup pairs, one visible (%)",
}


def metric_label(name: str) -> str:
    """The axis label of a metric column (the column name when unknown)."""
    return METRIC_LABELS.get(name, name)


def _rc(context: str, font_scale: float) -> dict[str, Any]:
    rc: dict[str, Any] = {}
    rc.update(sns.axes_style("whitegrid"))
    rc.update(sns.plotting_context(context, font_scale=font_scale))
    rc.update({
        "figure.dpi": 100,
        "figure.facecolor": "white",
        "savefig.facecolor": "white",
        "axes.titlesize": rc.get("axes.labelsize", 12),
        "legend.frameon": True,
        "legend.framealpha": 0.9,
        "image.interpolation": "nearest",
    })
    return rc


#: Held while a picture is built (:func:`theme`) or rendered (:func:`mixviz.viz.png_bytes`). matplotlib is not
#: thread-safe and pyplot's figure list and ``rcParams`` (which :func:`theme` changes for the block) are global, yet
#: a kernel runs code in more than one thread: JupyterLab >= 4.4 sends widget messages to a kernel *subshell*
#: (setting ``commsOverSubshells``, default ``perCommTarget``) and ipykernel 7 runs each subshell in its own
#: thread, so a slider's callback draws while a cell draws in the main thread.  Re-entrant: a picture may call
#: another.
DRAW_LOCK = threading.RLock()


@contextmanager
def theme(context: str = "notebook", font_scale: float = 0.9) -> Iterator[None]:
    """Seaborn's ``whitegrid`` style and ``context`` sizes inside the block only.

    Figures made inside keep the look; matplotlib's global settings are
    restored on exit (it is a :func:`matplotlib.pyplot.rc_context`).  The
    block holds :data:`DRAW_LOCK`: another thread that draws waits, instead
    of drawing with settings that are about to be restored under it.
    """
    with DRAW_LOCK, plt.rc_context(_rc(context, font_scale)):
        yield


def themed(func: F) -> F:
    """Decorator: run a plotting function inside :func:`theme`."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with theme():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def method_colors(names: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """One colour per name, in the given order: seaborn's colour-blind
    palette for up to 10 names, evenly spaced ``husl`` hues beyond."""
    names = list(dict.fromkeys(names))
    palette = sns.color_palette("colorblind", len(names)) if len(names) <= 10 else \
        sns.color_palette("husl", len(names))
    return {name: tuple(colour) for name, colour in zip(names, palette)}
