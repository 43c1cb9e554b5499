"""Decision boundaries of 2-D classifiers (the mixup paper's Figure 1 style),
and :func:`probability_grid`, which evaluates a model on a grid of points."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap, to_rgb
from matplotlib.figure import Figure
from torch import nn

from mixviz._validation import check_positive
from mixviz.viz._common import check_int, check_mapping, grid_shape, hide_unused, label_outer, new_figure, to_numpy
from mixviz.viz.style import themed

__all__ = ["probability_grid", "decision_boundaries"]

BINARY_CMAP = "RdBu_r"
SHADE_ALPHA = 0.7  # the background is lighter than the points drawn on top


# --------------------------------------------------------------------------- evaluating a model


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def probability_grid(model: nn.Module, X: Any, resolution: int = 200, margin: float = 0.5,
                     batch_size: int = 65536) -> dict[str, np.ndarray]:
    """Class probabilities of a 2-D classifier on a regular grid around ``X``.

    The grid spans ``[min(X[:, d]) - margin, max(X[:, d]) + margin]`` in each
    of the two input dimensions with ``resolution`` points per side.  The
    model is run forward only (eval mode, ``torch.no_grad``, its mode restored
    afterwards) on the grid points in chunks of ``batch_size``, and
    ``softmax(logits)`` is returned.  Nothing is trained.

    Args:
        model: a classifier mapping [N, 2] points to [N, C] logits (C >= 2).
        X: the data points [N, 2] (tensor or array) that set the grid's extent.
        resolution: grid points per side (>= 2).
        margin: how far the grid reaches beyond the data, in input units.
        batch_size: grid points per forward pass.

    Returns:
        ``{"xx": [R, R], "yy": [R, R], "probs": [R, R, C]}`` NumPy arrays, with
        ``xx, yy = np.meshgrid(xs, ys)`` (``xx`` varies along columns).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    points = to_numpy("X", X, ndim=2)
    if points.shape[1] != 2 or points.shape[0] == 0:
        raise ValueError(f"X must have shape [N, 2] with N >= 1, got {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("X contains NaN or inf")
    check_int("resolution", resolution, low=2)
    check_positive("margin", margin, allow_zero=True)
    check_int("batch_size", batch_size)
    lo, hi = points.min(axis=0) - margin, points.max(axis=0) + margin
    xs, ys = np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution)
    xx, yy = np.meshgrid(xs, ys)
    device, dtype = _model_device_dtype(model)
    grid = torch.from_numpy(np.stack([xx.ravel(), yy.ravel()], axis=1)).to(device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = torch.cat([model(chunk) for chunk in grid.split(batch_size)])
    finally:
        model.train(was_training)
    if logits.dim() != 2 or logits.shape[0] != grid.shape[0] or logits.shape[1] < 2:
        raise ValueError(f"model must return [N, C] logits with C >= 2, got shape {tuple(logits.shape)}")
    probs = logits.float().softmax(dim=1).cpu().numpy().reshape(resolution, resolution, -1)
    return {"xx": xx, "yy": yy, "probs": probs}


# --------------------------------------------------------------------------- checks


def _check_grid(key: str, grid: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The grid as (x centres, y centres, probs [H, W, C]) with x along columns
    and y increasing along rows."""
    name = f"grids[{key!r}]"
    if not isinstance(grid, Mapping):
        raise TypeError(f"{name} must be a dict with xx, yy and probs, got {type(grid).__name__}")
    missing = [k for k in ("xx", "yy", "probs") if k not in grid]
    if missing:
        raise ValueError(f"{name} must have the keys xx, yy, probs; missing {', '.join(missing)}")
    xx, yy = to_numpy(f"{name}['xx']", grid["xx"], ndim=2), to_numpy(f"{name}['yy']", grid["yy"], ndim=2)
    probs = to_numpy(f"{name}['probs']", grid["probs"], ndim=3)
    if xx.shape != yy.shape or probs.shape[:2] != xx.shape:
        raise ValueError(f"{name}: xx, yy must have the same shape [H, W] and probs [H, W, C]; got "
                         f"{xx.shape}, {yy.shape}, {probs.shape}")
    if probs.shape[2] < 2 or min(xx.shape) < 2:
        raise ValueError(f"{name}['probs'] must be [H, W, C] with H, W >= 2 and C >= 2, got {probs.shape}")
    if not np.isfinite(probs).all() or probs.min() < 0 or probs.max() > 1:
        raise ValueError(f"{name}['probs'] must be probabilities in [0, 1] (no NaN)")
    if xx[0, 0] != xx[0, 1] and np.allclose(xx, xx[:1]) and np.allclose(yy, yy[:, :1]):
        xs, ys = xx[0], yy[:, 0]                              # np.meshgrid(xs, ys), indexing="xy"
    elif np.allclose(xx, xx[:, :1]) and np.allclose(yy, yy[:1]):
        xs, ys, probs = xx[:, 0], yy[0], probs.transpose(1, 0, 2)  # indexing="ij"
    else:
        raise ValueError(f"{name}: xx and yy must be a regular grid from np.meshgrid")
    if xs[1] < xs[0]:
        xs, probs = xs[::-1], probs[:, ::-1]
    if ys[1] < ys[0]:
        ys, probs = ys[::-1], probs[::-1]
    return xs, ys, probs


def _check_points(points: Any) -> tuple[np.ndarray, np.ndarray] | None:
    if points is None:
        return None
    if not isinstance(points, (tuple, list)) or len(points) != 2:
        raise TypeError("points must be a pair (X, y) of [N, 2] points and [N] labels, or None")
    X = to_numpy("points[0] (X)", points[0], ndim=2)
    y = to_numpy("points[1] (y)", points[1], ndim=1)
    if X.shape[1] != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"points must be X [N, 2] and y [N]; got {X.shape} and {y.shape}")
    if not np.array_equal(y, np.round(y)) or (y.size and y.min() < 0):
        raise ValueError("points[1] (y) must hold class ids (non-negative integers)")
    return X, y.astype(np.int64)


def _extent(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float, float, float]:
    dx, dy = (xs[-1] - xs[0]) / (len(xs) - 1), (ys[-1] - ys[0]) / (len(ys) - 1)
    return xs[0] - dx / 2, xs[-1] + dx / 2, ys[0] - dy / 2, ys[-1] + dy / 2


# --------------------------------------------------------------------------- drawing


def _class_colors(num_classes: int) -> list[tuple[float, float, float]]:
    if num_classes == 2:
        cmap = plt.get_cmap(BINARY_CMAP)
        return [tuple(to_rgb(cmap(0.1))), tuple(to_rgb(cmap(0.9)))]
    import seaborn as sns

    return [tuple(c) for c in sns.color_palette("colorblind" if num_classes <= 10 else "husl", num_classes)]


def _shade_multiclass(probs: np.ndarray, colors: list[tuple[float, float, float]]) -> np.ndarray:
    """RGB image: the predicted class's colour, faded to white as the
    confidence falls from 1 to chance (1 / C)."""
    c = probs.shape[2]
    confidence = probs.max(axis=2)
    strength = np.clip((confidence - 1.0 / c) / (1.0 - 1.0 / c), 0.0, 1.0)[..., None]
    hue = np.asarray(colors)[probs.argmax(axis=2)]
    return 1.0 - SHADE_ALPHA * strength * (1.0 - hue)


def _class_margin(probs: np.ndarray, k: int) -> np.ndarray:
    """``p_k - max_{j != k} p_j``: positive where class k is predicted; its
    zero contour is the smooth boundary of class k's region."""
    others = np.delete(probs, k, axis=2).max(axis=2)
    return probs[:, :, k] - others


@themed
def decision_boundaries(grids: Mapping[str, Mapping[str, Any]], points: tuple[Any, Any] | None = None,
                        class_names: Sequence[str] | None = None, notes: Mapping[str, str] | None = None,
                        ncols: int | None = None) -> Figure:
    """One panel per method: the model's confidence over the input plane, its
    decision boundary and the data.

    Two classes: the shading is ``p(class 1)`` on a diverging colour map
    (blue = class 0, white = 0.5, red = class 1) and the black line is the
    ``p = 0.5`` contour.  More classes: the hue is the predicted class, faded
    to white as the top probability falls to chance, and black lines separate
    the predicted classes.  ``points`` are drawn on top, coloured by class.

    Args:
        grids: ``{method: {"xx", "yy", "probs"}}`` as made by
            :func:`probability_grid` (any regular ``np.meshgrid``); every grid
            must have the same number of classes.
        points: ``(X [N, 2], y [N])`` data to draw on top, or None.
        class_names: names of the classes for the legend and colour bar.
        notes: optional ``{method: text}`` shown under the method's title
            (e.g. test accuracy).
        ncols: panels per row (default: all in one row up to 5 methods, else 4).

    Returns:
        The figure: one axes per method plus one colour-bar axes.
    """
    check_mapping("grids", grids)
    checked = {key: _check_grid(key, grid) for key, grid in grids.items()}
    num_classes = {probs.shape[2] for _, _, probs in checked.values()}
    if len(num_classes) != 1:
        raise ValueError(f"grids must all have the same number of classes, got {sorted(num_classes)}")
    c = num_classes.pop()
    data = _check_points(points)
    if data is not None and data[1].size and data[1].max() >= c:
        raise ValueError(f"points[1] (y) must lie in [0, {c}) (the grids' classes), got max {data[1].max()}")
    if class_names is not None and len(class_names) < c:
        raise ValueError(f"class_names must have {c} names (one per class), got {len(class_names)}")
    if notes is not None:
        check_mapping("notes", notes)
    if ncols is not None:
        check_int("ncols", ncols)
    names = [str(k) for k in range(c)] if class_names is None else [str(n) for n in class_names[:c]]
    colors = _class_colors(c)
    n = len(checked)
    rows, cols = grid_shape(n, ncols if ncols is not None else (n if n <= 5 else 4))
    fig, axes = new_figure(rows, cols, figsize=(3.6 * cols + 1.0, 3.6 * rows + 0.6), layout="constrained",
                           sharex=True, sharey=True)
    shading = None
    for ax, (key, (xs, ys, probs)) in zip(axes.ravel(), checked.items()):
        extent = _extent(xs, ys)
        if c == 2:
            shading = ax.imshow(probs[:, :, 1], origin="lower", extent=extent, cmap=BINARY_CMAP, vmin=0.0,
                                vmax=1.0, aspect="auto", interpolation="bilinear", alpha=SHADE_ALPHA)
            ax.contour(xs, ys, probs[:, :, 1], levels=[0.5], colors="black", linewidths=1.5)
        else:
            ax.imshow(_shade_multiclass(probs, colors), origin="lower", extent=extent, aspect="auto",
                      interpolation="bilinear")
            for k in range(c):
                margin = _class_margin(probs, k)
                if margin.min() < 0 < margin.max():
                    ax.contour(xs, ys, margin, levels=[0.0], colors="black", linewidths=1.5)
        if data is not None:
            X, y = data
            for k in range(c):
                sel = y == k
                ax.scatter(X[sel, 0], X[sel, 1], s=14, color=colors[k], edgecolors="black", linewidths=0.5,
                           label=f"class {names[k]}")
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        ax.grid(False)
        title = key if notes is None or key not in notes else f"{key}\n{notes[key]}"
        ax.set_title(title)
    label_outer(axes, n, "input $x_1$", "input $x_2$")
    hide_unused(axes, n)
    if c == 2:
        bar = fig.colorbar(shading, ax=axes, shrink=0.9, aspect=30)
        bar.set_label(f"model probability of class {names[1]}   (0.5 = boundary)")
    else:
        ramp = ListedColormap(np.linspace(1.0, 1.0 - SHADE_ALPHA * 0.75, 256)[:, None].repeat(3, axis=1))
        mappable = plt.cm.ScalarMappable(cmap=ramp, norm=plt.Normalize(1.0 / c, 1.0))
        bar = fig.colorbar(mappable, ax=axes, shrink=0.9, aspect=30)
        bar.set_label("confidence (top class probability)")
    if data is not None:
        axes.ravel()[0].legend(loc="best", fontsize="small", markerscale=1.5)
    what = "p(class 1)" if c == 2 else "hue = predicted class, depth = confidence"
    fig.suptitle(f"Decision boundaries: shading = {what}, black line = decision boundary")
    return fig
