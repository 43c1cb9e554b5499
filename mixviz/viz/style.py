"""The one look of every mixviz picture: a seaborn theme applied inside each
plotting function (never globally; an enclosing :func:`theme` sets it for
all), the one map of method styles (:func:`method_style`: the baseline grey,
the static and dynamic families, DM marked by a hatch or a dashed line) that
stays the same across figures, and the labels and units of the run-history
metrics."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import matplotlib
import matplotlib.pyplot as plt
import seaborn as sns

__all__ = ["theme", "themed", "DRAW_LOCK", "method_colors", "method_style", "line_styles", "markevery", "MethodStyle",
           "FAMILY_TONES", "FAMILY_LABELS", "DM_HATCH", "KIND_MARKERS", "METRIC_LABELS", "PERCENT_METRICS",
           "metric_label"]

F = TypeVar("F", bound=Callable[..., Any])

#: Marker of each training kind in the comparison plots.
KIND_MARKERS = {"baseline": "P", "static": "o", "dynamic": "s", "DM loss": "^", "midpoint loss": "D", "other": "X"}

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

#: Held while a picture is built (:func:`theme`) or rendered (:func:`mixviz.viz.png_bytes`). matplotlib is not
#: thread-safe and pyplot's figure list and ``rcParams`` (which :func:`theme` changes for the block) are global, yet
#: a kernel runs code in more than one thread: JupyterLab >= 4.4 sends widget messages to a kernel *subshell*
#: (setting ``commsOverSubshells``, default ``perCommTarget``) and ipykernel 7 runs each subshell in its own
#: thread, so a slider's callback draws while a cell draws in the main thread.  Re-entrant: a picture may call
#: another.
DRAW_LOCK = threading.RLock()


@contextmanager
def theme(context: str = DEFAULT_CONTEXT, font_scale: float = DEFAULT_FONT_SCALE) -> Iterator[None]:
    """Seaborn's ``whitegrid`` style and ``context`` sizes inside the block only.

    Every mixviz picture drawn inside uses this theme, so one line makes all
    of them bigger: ``with viz.theme("talk", font_scale=1.6): ...`` (a
    projector).  Matplotlib's global settings are restored on exit (it is a
    :func:`matplotlib.pyplot.rc_context`).  The block holds :data:`DRAW_LOCK`:
    another thread that draws waits, instead of drawing with settings that
    are about to be restored under it.

    Args:
        context: seaborn's sizes: ``"paper"``, ``"notebook"``, ``"talk"`` or ``"poster"``.
        font_scale: a factor on the text sizes of ``context`` (> 0).
    """
    from mixviz._validation import check_choice, check_positive

    check_choice("context", context, CONTEXTS)
    check_positive("font_scale", font_scale)
    token = _ACTIVE.set((context, float(font_scale)))
    try:
        with DRAW_LOCK, plt.rc_context(_rc(context, font_scale)):
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
    enclosing ``rc_context`` (see :func:`_enclosing_rc`).  It holds
    :data:`DRAW_LOCK` while it reads the settings and draws."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with DRAW_LOCK:
            with plt.rc_context(_enclosing_rc()):
                return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# --------------------------------------------------------------------------- the one map of method styles

#: Colours of each family of methods, first the family's own: plain training grey, static mixing cool (blues and
#: greens), dynamic mixing warm (vermilion, orange), the midpoint loss purple.  A policy of a family takes the
#: tone of its place among the family's policies in the mixing registry, so it has one colour in every picture.
FAMILY_TONES: dict[str, tuple[str, ...]] = {
    "baseline": ("#7f7f7f",),
    "static": ("#0072b2", "#56b4e9", "#009e73", "#1f3d7a", "#4daf9f", "#8fb1d9", "#2b6e4f", "#5c6fa8"),
    "dynamic": ("#d55e00", "#e69f00", "#cc79a7", "#8c510a"),
    "midpoint": ("#7b4f9e",),
    "other": ("#3d3d3d",),
}
#: What each family is called in legends.
FAMILY_LABELS = {"baseline": "no mixing", "static": "static mixing", "dynamic": "dynamic mixing",
                 "midpoint": "midpoint loss", "other": "other"}
#: The Decoupled Mixup loss is a mark on its policy's colour, never a colour of its own: a hatch on bars, a
#: dashed line on curves.
DM_HATCH = "//"
LOSS_LINESTYLES = {"dm": "--", "midpoint": "-."}
#: Markers of the policies, in registry order (curves: grayscale-safe with the line styles).
POLICY_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "h", "<", ">", "p", "d", "*")


@dataclass(frozen=True)
class MethodStyle:
    """How a method ``"<policy>+<loss>"`` is drawn: its ``family``, its
    ``color`` (the policy's tone), ``family_color`` (bars coloured by family),
    ``marker`` (the policy's), ``linestyle`` (dashed for DM, dash-dot for the
    midpoint loss, else solid) and ``hatch`` (:data:`DM_HATCH` for DM)."""

    family: str
    color: str
    family_color: str
    marker: str
    linestyle: str
    hatch: str | None

    @property
    def dm(self) -> bool:
        return self.hatch is not None

    def line(self) -> dict[str, Any]:
        """Keyword arguments of ``ax.plot`` for this method's curve (with
        ``markevery=markevery(len(x))``: markers on a long curve would hide it)."""
        return {"color": self.color, "linestyle": self.linestyle, "marker": self.marker, "markersize": 5.5,
                "linewidth": 1.8}

    def legend_label(self) -> str:
        """The family's name, with '+ DM loss' for DM: the legend entry of a bar drawn in this style."""
        return FAMILY_LABELS[self.family] + (" + DM loss" if self.dm else "")


def _registry() -> dict[str, str]:
    try:
        from mixviz.mixing import available
    except ImportError:  # the plots work without torch's mixing registry: every method is 'other'
        return {}
    return dict(available())


def method_style(method: str, kinds: Mapping[str, str] | None = None) -> MethodStyle:
    """The style of ``method`` (``"<policy>+<loss>"``; a bare name is a
    policy).  ``kinds``: ``{policy: "static" | "dynamic"}`` (default: the
    mixing registry); a policy it does not know is of the family 'other'."""
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, got {type(method).__name__}")
    policy, _, loss = method.partition("+")
    registry = _registry()
    kindmap = {**registry, **(kinds or {})}
    order = list(registry) + [p for p in kindmap if p not in registry]  # registry order: stable across figures
    if loss == "midpoint":
        family = "midpoint"
    elif policy == "none":
        family = "baseline"
    else:
        family = kindmap.get(policy, "other")
    family = family if family in FAMILY_TONES else "other"
    peers = [p for p in order if kindmap[p] == family and p != "none"]
    tones = FAMILY_TONES[family]
    tone = tones[peers.index(policy) % len(tones)] if policy in peers and family in ("static", "dynamic") else tones[0]
    marker = POLICY_MARKERS[order.index(policy) % len(POLICY_MARKERS)] if policy in order else POLICY_MARKERS[-1]
    return MethodStyle(family=family, color=tone, family_color=tones[0], marker=marker,
                       linestyle=LOSS_LINESTYLES.get(loss, "-"), hatch=DM_HATCH if loss == "dm" else None)


def markevery(points: int) -> int:
    """A marker on every k-th of ``points`` points: about eight along a curve, every point on a short one."""
    return max(1, round(points / 8))


def line_styles(names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``ax.plot`` keyword arguments per curve name: :meth:`MethodStyle.line`
    for a method the registry knows, else a colour of :func:`method_colors`
    and a marker of its own (so a name that is not a method still differs in
    grayscale)."""
    names = list(dict.fromkeys(names))
    colors = method_colors(names)
    out = {}
    for i, name in enumerate(names):
        style = method_style(name)
        if style.family == "other":
            out[name] = {**style.line(), "color": colors[name], "marker": POLICY_MARKERS[i % len(POLICY_MARKERS)]}
        else:
            out[name] = style.line()
    return out


def method_colors(names: Sequence[str],
                  kinds: Mapping[str, str] | None = None) -> dict[str, tuple[float, float, float]]:
    """One colour per name: a method the mixing registry (or ``kinds``,
    ``{policy: "static" | "dynamic"}``) knows (``"<policy>+<loss>"`` or a
    bare policy) gets its policy's colour (:func:`method_style`; with DM the
    same colour), any other name a colour of seaborn's colour-blind palette
    (evenly spaced ``husl`` hues beyond 10 names)."""
    from matplotlib.colors import to_rgb

    names = list(dict.fromkeys(names))
    styles = {name: method_style(name, kinds) for name in names}
    others = [n for n in names if styles[n].family == "other"]
    palette = sns.color_palette("colorblind", len(others)) if len(others) <= 10 else \
        sns.color_palette("husl", len(others))
    fallback = dict(zip(others, palette))
    return {name: tuple(fallback[name]) if name in fallback else to_rgb(styles[name].color) for name in names}
