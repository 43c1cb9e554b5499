"""Argument checks and small helpers shared by the picture modules, and
:func:`save` (atomic PNG/PDF/SVG writes)."""

from __future__ import annotations

import io
import math
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mixviz._validation import check_frame, check_positive  # noqa: F401  (check_frame: re-exported)
from mixviz.ioutil import atomic_write_bytes

__all__ = ["save", "png_bytes", "inline_png", "DPI", "PNG_COLORS"]


def check_mapping(name: str, value: Any) -> Mapping[str, Any]:
    """A non-empty mapping with string keys (method or policy names)."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict mapping names to data, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} must not be empty")
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"{name} keys must be str (method or policy names), got {type(key).__name__}")
    return value


def check_same_keys(name: str, value: Mapping[str, Any], reference_name: str,
                    reference: Mapping[str, Any]) -> None:
    """``value`` must have the keys of ``reference`` (order free)."""
    missing = [k for k in reference if k not in value]
    if missing:
        raise ValueError(f"{name} must have an entry for every key of {reference_name}; missing {missing}")


def check_int(name: str, value: Any, low: int = 1) -> int:
    check_positive(name, value, allow_zero=low == 0, integer=True)
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return value


def check_fraction(name: str, value: Any) -> float:
    """A number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return float(value)


def check_fractions(name: str, values: np.ndarray) -> None:
    """Every finite entry of ``values`` lies in [0, 1] (NaN allowed: not measured)."""
    finite = values[np.isfinite(values)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        raise ValueError(f"{name} must be fractions in [0, 1] (NaN for missing), got values in "
                         f"[{finite.min():.4g}, {finite.max():.4g}]")


def to_numpy(name: str, value: Any, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """A tensor, array or sequence as a float64 NumPy array of rank ``ndim``."""
    if isinstance(value, torch.Tensor):
        array = value.detach().to("cpu", torch.float64).numpy()
    elif isinstance(value, (np.ndarray, list, tuple, pd.Series)):
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must hold numbers: {err}") from None
    else:
        raise TypeError(f"{name} must be a torch.Tensor or NumPy array, got {type(value).__name__}")
    if ndim is not None:
        dims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if array.ndim not in dims:
            want = " or ".join(f"{d}-D" for d in dims)
            raise ValueError(f"{name} must be {want}, got shape {array.shape}")
    return array


def image_array(name: str, value: Any) -> np.ndarray:
    """One image [C, H, W] (C = 1 or 3; or [H, W]) in [0, 1] (uint8 images
    are divided by 255) as what ``imshow`` takes: [H, W] for grey, [H, W, 3]
    for colour; values clipped to [0, 1] for display."""
    scale = 255.0 if getattr(value, "dtype", None) in (torch.uint8, np.uint8) else 1.0
    array = to_numpy(name, value, ndim=(2, 3)) / scale
    if array.ndim == 3:
        if array.shape[0] not in (1, 3):
            raise ValueError(f"{name} must have 1 or 3 channels first ([C, H, W]), got shape {array.shape}")
        array = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or inf")
    return np.clip(array, 0.0, 1.0)


def show_image(ax: Axes, image: np.ndarray, **kw: Any) -> None:
    """Draw an image from :func:`image_array` without grid, ticks or spines."""
    if image.ndim == 2:
        kw = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0, **kw}
    ax.imshow(image, **kw)
    clear_axis(ax)


def clear_axis(ax: Axes) -> None:
    ax.grid(False)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def grid_shape(n: int, ncols: int | None) -> tuple[int, int]:
    """(rows, cols) for ``n`` panels: ``ncols`` per row, or by default at
    most 4 per row with the rows as evenly filled as possible (5 -> 3 + 2)."""
    if ncols is None:
        cols = math.ceil(n / math.ceil(n / 4))
    else:
        cols = min(n, ncols)
    return math.ceil(n / cols), cols


def label_outer(axes: np.ndarray, used: int, xlabel: str, ylabel: str) -> None:
    """x labels (and tick labels) on the lowest used panel of each column,
    y labels on the first column, for a grid whose first ``used`` panels are used."""
    rows, cols = axes.shape
    for i in range(used):
        r, c = divmod(i, cols)
        ax = axes[r, c]
        if (r + 1) * cols + c >= used:
            ax.set_xlabel(xlabel)
            ax.tick_params(labelbottom=True)
        if c == 0:
            ax.set_ylabel(ylabel)


def class_name(label: int, class_names: Any = None) -> str:
    """The class's name; names that are numbers (digit classes) are quoted so
    that ``0.30 "4"`` does not read as two numbers."""
    name = str(label) if class_names is None else str(class_names[int(label)])
    return f'"{name}"' if name.replace(".", "", 1).isdigit() else name


def hide_unused(axes: np.ndarray, used: int) -> None:
    """Remove the panels past the first ``used`` from the figure."""
    for ax in axes.ravel()[used:]:
        ax.remove()


def percent(name: str, values: np.ndarray, metric: str) -> np.ndarray:
    """Fractions of the percentage metrics as percent (after a range check)."""
    from mixviz.viz.style import PERCENT_METRICS

    if metric in PERCENT_METRICS:
        check_fractions(name, values)
        return values * 100.0
    return values


#: Resolution (dots per inch) of the PNGs the project writes and shows in notebooks.
DPI = 110
#: Colours of their palette (see :func:`png_bytes`): plots look the same at about a third of the size.
PNG_COLORS = 256


def _check_colors(colors: int | None) -> None:
    if colors is not None:
        check_positive("colors", colors, integer=True)
        if colors > 256:
            raise ValueError(f"colors must be <= 256 (a PNG palette) or None, got {colors}")


def png_bytes(fig: Figure, dpi: int = DPI, colors: int | None = PNG_COLORS) -> bytes:
    """``fig`` as PNG bytes (tight bounding box).

    ``colors`` (at most 256) reduces the image to an adaptive palette of that
    many colours (Pillow's fast octree refined by k-means, no dithering):
    plots look the same at about a third of the size.  None keeps full RGBA.
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    check_positive("dpi", dpi, integer=True)
    _check_colors(colors)
    from mixviz.viz.style import DRAW_LOCK

    buffer = io.BytesIO()
    with DRAW_LOCK:  # never two threads rendering at once (one figure rendered twice at once comes out blank)
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    if colors is None:
        return buffer.getvalue()
    from PIL import Image

    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    image = image.quantize(colors=colors, method=Image.Quantize.FASTOCTREE, kmeans=3)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def save(fig: Figure, path: str | os.PathLike, dpi: int = 120, colors: int | None = None) -> Path:
    """Write ``fig`` to ``path`` atomically (a temporary file, then a rename).

    The format follows the suffix (``.png``, ``.pdf``, ``.svg``, ...); the
    parent folder is created.  Returns the path.  The figure stays open.
    ``colors`` (PNG only, at most 256) reduces the image to an adaptive
    palette of that many colours (:func:`png_bytes`), which keeps committed
    figures small; the project writes its PNGs with ``dpi=DPI,
    colors=PNG_COLORS``.
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    check_positive("dpi", dpi, integer=True)
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise ValueError(f"path must end in one of {', '.join('.' + s for s in sorted(supported))}; got {str(path)!r}")
    _check_colors(colors)
    if colors is not None and fmt != "png":
        raise ValueError(f"colors (a palette) needs a .png path, got {str(path)!r}")
    if fmt == "png":
        return atomic_write_bytes(path, png_bytes(fig, dpi, colors))
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi, bbox_inches="tight")
    return atomic_write_bytes(path, buffer.getvalue())


def inline_png(dpi: int = DPI, colors: int | None = PNG_COLORS) -> None:
    """Show the figures of a running notebook as palette PNGs (:func:`png_bytes`).

    Turns on matplotlib's inline mode (``%matplotlib inline``: every figure
    a cell makes is shown at its end) and registers a PNG formatter for
    matplotlib figures with the IPython shell, so that figures shown inline
    are stored in the notebook as small PNGs: the same settings as the files
    the project writes.  The end-of-cell drawing and display of the figures
    run in the kernel's main thread only (not after a widget message handled
    in a subshell's thread: :func:`_flush_in_main_thread_only`).  Does nothing
    outside IPython.
    """
    check_positive("dpi", dpi, integer=True)
    _check_colors(colors)
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    # %matplotlib inline: interactive mode and a display of every new figure at the end of its cell (a kernel
    # that only has MPLBACKEND set to the inline backend shows the figures of its first drawing cell only)
    try:
        shell.enable_matplotlib("inline")
    except NotImplementedError:  # a bare InteractiveShell has no GUI hooks: only the formatter below
        pass
    _flush_in_main_thread_only(shell)
    formatters = shell.display_formatter.formatters
    formatters["image/png"].for_type(Figure, lambda fig: png_bytes(fig, dpi, colors))
    for kind in ("image/svg+xml", "application/pdf", "image/jpeg"):  # one picture per figure: the PNG
        formatters[kind].pop(Figure, None)


#: The ``post_execute`` hooks that draw, show or close every open pyplot figure: the inline backend's
#: ``flush_figures`` (show them all, then close them all) and pyplot's ``_draw_all_if_interactive`` (draw every
#: stale one).
_FIGURE_HOOKS = ("flush_figures", "_draw_all_if_interactive")


def _flush_in_main_thread_only(shell: Any) -> None:
    """Let the end-of-execution hooks that draw, show and close *every*
    open pyplot figure (:data:`_FIGURE_HOOKS`) run in the kernel's main thread
    only, holding :data:`mixviz.viz.style.DRAW_LOCK`.

    The comm package fires ``post_execute`` after *every* widget message, and
    ipykernel 7 handles the widget messages of JupyterLab >= 4.4 in a
    subshell's thread: there these hooks would draw, show and close the
    figures a cell is drawing in the main thread at that moment (half drawn:
    blank, or with misplaced axes).  The main thread's cells run them as before.
    """
    from mixviz.viz.style import DRAW_LOCK

    callbacks = shell.events.callbacks.get("post_execute", [])
    guarded = {getattr(cb, "_mixviz_guards", None) for cb in callbacks} - {None}
    for hook in [cb for cb in callbacks if getattr(cb, "__name__", "") in _FIGURE_HOOKS]:
        shell.events.unregister("post_execute", hook)
        if hook.__name__ in guarded:  # inline_png ran before: the guarded one is registered already
            continue

        def main_thread_only(hook: Any = hook) -> None:
            if threading.current_thread() is threading.main_thread():
                with DRAW_LOCK:
                    hook()

        main_thread_only._mixviz_guards = hook.__name__  # type: ignore[attr-defined]
        shell.events.register("post_execute", main_thread_only)
        guarded.add(hook.__name__)


def integer_epochs(ax: Axes) -> None:
    """Epoch axis ticks at whole numbers only."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


#: Per thread: inside :func:`unmanaged_figures`, new pictures are plain Figures that pyplot does not list.
_FIGURES = threading.local()
#: Arguments of ``plt.subplots`` that go to ``Figure.subplots`` (the rest go to the Figure).
_SUBPLOTS_KW = ("sharex", "sharey", "width_ratios", "height_ratios", "subplot_kw", "gridspec_kw")


@contextmanager
def unmanaged_figures() -> Iterator[None]:
    """Inside the block, the pictures this thread makes are plain Figures
    with an Agg canvas that pyplot does not list: no ``plt.show()``,
    ``plt.close("all")`` or inline-backend flush (in this or another thread)
    shows or closes them.  Show one with :func:`mixviz.viz.show`
    (:func:`mixviz.viz.interact` does both)."""
    before = getattr(_FIGURES, "unmanaged", False)
    _FIGURES.unmanaged = True
    try:
        yield
    finally:
        _FIGURES.unmanaged = before


def new_plain_figure(**kw: Any) -> Figure:
    """``plt.figure(**kw)``, or inside :func:`unmanaged_figures` a Figure pyplot does not list."""
    if getattr(_FIGURES, "unmanaged", False):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        fig = Figure(**kw)
        FigureCanvasAgg(fig)
        return fig
    return plt.figure(**kw)


def new_figure(nrows: int, ncols: int, **kw: Any) -> tuple[Figure, np.ndarray]:
    """``plt.subplots`` with a 2-D array of axes always (a figure pyplot does
    not list inside :func:`unmanaged_figures`)."""
    sub = {key: kw.pop(key) for key in _SUBPLOTS_KW if key in kw}
    fig = new_plain_figure(**kw)
    axes = fig.subplots(nrows, ncols, squeeze=False, **sub)
    return fig, axes


def history_values(name: str, frame: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values) of one metric column of a run history, NaN rows
    dropped, percentage metrics in percent."""
    data = frame[["epoch", metric]].apply(pd.to_numeric, errors="coerce").dropna()
    values = percent(f"{name}[{metric!r}]", data[metric].to_numpy(dtype=float), metric)
    return data["epoch"].to_numpy(dtype=float), values


def method_labels(results: pd.DataFrame) -> pd.Series:
    """The method of each row: the ``method`` column, else ``f"{policy}+{loss}"``."""
    if "method" in results.columns:
        return results["method"].astype(str)
    if "policy" in results.columns and "loss" in results.columns:
        return results["policy"].astype(str) + "+" + results["loss"].astype(str)
    raise ValueError("results must have a 'method' column or the columns 'policy' and 'loss'")


def interval_half(std: Any, n: Any, confidence: float = 0.95) -> np.ndarray:
    """Half-width of the Student-t interval of a mean of ``n`` values with
    sample standard deviation ``std`` (element-wise; NaN where ``n < 2``)."""
    from scipy import stats

    std = np.asarray(std, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(n > 1, stats.t.ppf((1.0 + confidence) / 2.0, np.maximum(n - 1, 1)), np.nan)
        return t * std / np.sqrt(n)
