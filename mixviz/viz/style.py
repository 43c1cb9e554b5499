"""The one look of every mixviz picture: a seaborn theme applied inside each
plotting function (never globally), method colours that stay the same across
figures, and the labels and units of the run-history metrics."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import matplotlib
import matplotlib.pyplot as plt
import seaborn as sns

__all__ = ["theme", "themed", "method_colors", "KIND_MARKERS", "METRIC_LABELS", "PERCENT_METRICS",
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


#: The theme of a picture drawn outside any :func:`theme` block.
DEFAULT_CONTEXT, DEFAULT_FONT_SCALE = "notebook", 0.9
CONTEXTS = ("paper", "notebook", "talk", "poster")
#: Text sizes a caller's ``rc_context`` may set and a picture keeps (``font.size`` scales the theme's sizes).
FONT_KEYS = ("axes.labelsize", "axes.titlesize", "xtick.labelsize", "ytick.labelsize", "legend.fontsize",
             "legend.title_fontsize", "figure.titlesize")

_ACTIVE: ContextVar[tuple[str, float] | None] = ContextVar("mixviz_theme", default=None)


@contextmanager
def theme(context: str = DEFAULT_CONTEXT, font_scale: float = DEFAULT_FONT_SCALE) -> Iterator[None]:
    """Seaborn's ``whitegrid`` style and ``context`` sizes inside the block only.

    Every mixviz picture drawn inside uses this theme, so one line makes all
    of them bigger: ``with viz.theme("talk", font_scale=1.6): ...`` (a
    projector).  Matplotlib's global settings are restored on exit (it is a
    :func:`matplotlib.pyplot.rc_context`).

    Args:
        context: seaborn's sizes: ``"paper"``, ``"notebook"``, ``"talk"`` or ``"poster"``.
        font_scale: a factor on the text sizes of ``context`` (> 0).
    """
    from mixviz._validation import check_choice, check_positive

    check_choice("context", context, CONTEXTS)
    check_positive("font_scale", font_scale)
    token = _ACTIVE.set((context, float(font_scale)))
    try:
        with plt.rc_context(_rc(context, font_scale)):
            yield
    finally:
        _ACTIVE.reset(token)


def _enclosing_rc() -> dict[str, Any]:
    """The settings a picture is drawn with: the innermost :func:`theme`
    around it (the default theme when there is none), with the text sizes of
    a caller's ``rc_context`` kept.  A changed ``font.size`` scales every text
    size of the theme by ``font.size / the theme's font.size``; a changed
    size of :data:`FONT_KEYS` is kept as set."""
    active = _ACTIVE.get()
    context, font_scale = active or (DEFAULT_CONTEXT, DEFAULT_FONT_SCALE)
    reference = {**matplotlib.rcParamsDefault, **(_rc(context, font_scale) if active else {})}
    current = matplotlib.rcParams
    rc = _rc(context, font_scale * float(current["font.size"]) / float(reference["font.size"]))
    rc.update({key: current[key] for key in FONT_KEYS if current[key] != reference[key]})
    return rc


def themed(func: F) -> F:
    """Decorator: run a plotting function inside the enclosing :func:`theme`
    (the default one when there is none), keeping the text sizes of an
    enclosing ``rc_context`` (see :func:`_enclosing_rc`)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with plt.rc_context(_enclosing_rc()):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def method_colors(names: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """One colour per name, in the given order: seaborn's colour-blind
    palette for up to 10 names, evenly spaced ``husl`` hues beyond."""
    names = list(dict.fromkeys(names))
    palette = sns.color_palette("colorblind", len(names)) if len(names) <= 10 else \
        sns.color_palette("husl", len(names))
    return {name: tuple(colour) for name, colour in zip(names, palette)}
