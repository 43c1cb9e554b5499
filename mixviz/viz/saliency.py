"""Saliency grids: where models trained in different ways look on a mixed
image, for their two most probable classes (the Decoupled Mixup paper's
Figure 1 idea)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from mixviz.viz._common import (check_int, check_mapping, check_same_keys, class_name, clear_axis, image_array,
                                new_figure, show_image, to_numpy)
from mixviz.viz.style import themed

__all__ = ["saliency_grid", "normalized_map", "grey", "display_scale", "upsample_nearest", "upsample_bilinear"]

HEAT_CMAP = "inferno"
COLUMNS = ("image a", "image b", "mixed image", "top-1 class", "top-2 class")
#: Smallest side in pixels of an image as drawn (small inputs are upsampled by a whole factor up to it).
DISPLAY_PX = 128
#: Text size (points) of the grid: read from the back of a room when the figure fills a projected slide.
FONT_PT = 15


def display_scale(side: int, display_px: int = DISPLAY_PX) -> int:
    """The whole factor ``k = ceil(display_px / side)`` (at least 1) by which
    an image of ``side`` pixels is upsampled for display."""
    check_int("side", side)
    check_int("display_px", display_px)
    return max(1, -(-display_px // side))


def upsample_nearest(image: np.ndarray, k: int) -> np.ndarray:
    """An image [H, W] or [H, W, 3] with every pixel repeated ``k x k`` times
    (nearest neighbour): the pixels stay sharp squares."""
    check_int("k", k)
    return np.repeat(np.repeat(image, k, axis=0), k, axis=1)


def upsample_bilinear(attr: np.ndarray, height: int, width: int) -> np.ndarray:
    """An attribution map [h, w] resampled bilinearly to [height, width]
    (``torch.nn.functional.interpolate``, ``align_corners=False``): a smooth
    overlay on the display grid of the image."""
    import torch
    import torch.nn.functional as F

    check_int("height", height)
    check_int("width", width)
    x = torch.from_numpy(np.ascontiguousarray(attr, dtype=np.float64))[None, None]
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy()


def _pick(name: str, value: Any, sample: int, image_ndim: int) -> Any:
    """``value[sample]`` when ``value`` has a batch dimension (rank ``image_ndim + 1``)."""
    ndim = value.dim() if hasattr(value, "dim") else np.ndim(value)
    if ndim == image_ndim + 1:
        if sample >= len(value):
            raise ValueError(f"sample must be < the batch size of {name} ({len(value)}), got {sample}")
        return value[sample]
    return value


def normalized_map(name: str, attr: Any) -> np.ndarray:
    """An attribution map [H, W] (or [1, H, W]) divided by its maximum, so it
    lies in [0, 1]; an all-zero map stays zero.  Negative values must not occur
    (use ``abs`` or ReLU'd maps such as :func:`mixviz.saliency.attribute` returns)."""
    array = to_numpy(name, attr, ndim=(2, 3))
    if array.ndim == 3:
        if array.shape[0] != 1:
            raise ValueError(f"{name} must be one map [H, W] or [1, H, W], got shape {array.shape}")
        array = array[0]
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or inf")
    if array.min() < 0:
        raise ValueError(f"{name} must be non-negative (take abs() of signed attributions)")
    top = array.max()
    return array / top if top > 0 else array


def grey(image: np.ndarray) -> np.ndarray:
    """Luminance (ITU-R BT.601) of an [H, W, 3] image; [H, W] images unchanged."""
    if image.ndim == 2:
        return image
    return image @ np.array([0.299, 0.587, 0.114])


def _check_attributions(attributions: Mapping[str, Any], sample: int) -> dict[str, tuple]:
    check_mapping("attributions", attributions)
    out = {}
    for key, value in attributions.items():
        name = f"attributions[{key!r}]"
        if not isinstance(value, (tuple, list)) or len(value) not in (2, 3):
            raise TypeError(f"{name} must be (attr_top1, attr_top2) or (attr_top1, attr_top2, top2_classes), "
                            f"as returned by mixviz.saliency.top2_attributions")
        first = normalized_map(f"{name}[0]", _pick(f"{name}[0]", value[0], sample, 3))
        second = normalized_map(f"{name}[1]", _pick(f"{name}[1]", value[1], sample, 3))
        classes = None
        if len(value) == 3:
            classes = to_numpy(f"{name}[2]", _pick(f"{name}[2]", value[2], sample, 1), ndim=1)
            if classes.shape != (2,):
                raise ValueError(f"{name}[2] must hold the two top classes ([2] or [B, 2]), got {classes.shape}")
            classes = classes.astype(np.int64)
        out[key] = (first, second, classes)
    return out


def _name(label: int | None, class_names: Sequence[str] | None) -> str:
    return "" if label is None else class_name(int(label), class_names)


def _check_pair(name: str, value: Any) -> tuple[Any, Any] | None:
    if value is None:
        return None
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be a pair (for image a, for image b) or None")
    return value[0], value[1]


@themed
def saliency_grid(images: tuple[Any, Any], mixed: Any, attributions: Mapping[str, Sequence[Any]],
                  class_names: Sequence[str] | None = None, labels: tuple[int, int] | None = None,
                  lam: float | None = None, agreement: Mapping[str, tuple[float, float]] | None = None,
                  sample: int = 0, alpha: float = 0.6, scale: int | None = None) -> Figure:
    """Attribution maps of several models on one mixed image, for each model's
    two most probable classes, at a size a projected slide shows.

    One row per method (models trained with different policies / losses),
    titled with the method and its two classes (``"mixup+mixup_ce:\ndisk /
    square"``: the top-1 and top-2 class whose maps the row shows).  The
    columns are: image a, image b, the mixed image, and the attribution map
    for the model's top-1 and top-2 class drawn over the mixed image (in
    grey).  Each map is divided by its maximum (colour bar: share of the
    map's maximum).  A model that learned both mixed classes lights up object
    a for one class and object b for the other.

    Small inputs are drawn upsampled by a whole factor ``k`` (``scale``;
    default :func:`display_scale`, images of at least :data:`DISPLAY_PX`
    pixels): the images by nearest neighbour (:func:`upsample_nearest`,
    sharp pixels), each attribution map bilinearly to the same display grid
    (:func:`upsample_bilinear`), both then drawn pixel for pixel
    (``interpolation="nearest"``).  The title says the input size and ``k``.

    Args:
        images: ``(image_a, image_b)``, each [C, H, W] in [0, 1] (C = 1 or 3),
            or batches [B, C, H, W] from which ``sample`` is taken.
        mixed: the mixed image [C, H, W] (or a batch [B, C, H, W]) every model
            was asked about.
        attributions: ``{method: (attr_top1, attr_top2)}`` or
            ``{method: (attr_top1, attr_top2, top2_classes)}`` -- exactly what
            :func:`mixviz.saliency.top2_attributions` returns: maps [H, W],
            [1, H, W] or batches [B, 1, H, W] (non-negative), classes [2] or
            [B, 2].  Maps of another size are resampled to the display grid.
        class_names: names of the classes (index = label) for the titles.
        labels: ``(y_a, y_b)``, the true classes of image a and b.
        lam: the share of image a in the mixed label, printed over the mixed image.
        agreement: optional ``{method: (share1, share2)}``, e.g. the share of
            each map inside its object (:func:`mixviz.saliency.mask_agreement`),
            printed under the maps.
        sample: which sample of batched inputs to draw.
        alpha: opacity of the heat maps over the image.
        scale: the display factor ``k`` (None: :func:`display_scale` of the side).

    Returns:
        The figure: five axes per method plus one colour-bar axes.
    """
    check_int("sample", sample, low=0)
    pair = _check_pair("images", images)
    if pair is None:
        raise TypeError("images must be a pair (image_a, image_b)")
    image_a = image_array("images[0]", _pick("images[0]", pair[0], sample, 3))
    image_b = image_array("images[1]", _pick("images[1]", pair[1], sample, 3))
    mixed_image = image_array("mixed", _pick("mixed", mixed, sample, 3))
    if not image_a.shape == image_b.shape == mixed_image.shape:
        raise ValueError(f"images and mixed must have the same shape, got {image_a.shape}, {image_b.shape}, "
                         f"{mixed_image.shape} (as H, W[, 3])")
    maps = _check_attributions(attributions, sample)
    true = _check_pair("labels", labels)
    if lam is not None and (isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0 <= lam <= 1):
        raise ValueError(f"lam must be a number in [0, 1] or None, got {lam!r}")
    if agreement is not None:
        check_mapping("agreement", agreement)
        check_same_keys("agreement", agreement, "attributions", attributions)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 1:
        raise ValueError(f"alpha must be a number in (0, 1], got {alpha!r}")
    height, width = mixed_image.shape[:2]
    k = display_scale(min(height, width)) if scale is None else check_int("scale", scale)
    shown_a, shown_b, shown_mixed = (upsample_nearest(im, k) for im in (image_a, image_b, mixed_image))
    base = grey(shown_mixed)
    rows = len(maps)
    fig, axes = new_figure(rows, 5, figsize=(15.5, 2.75 * rows + 1.3), layout="constrained")
    heat = None
    for r, (key, (first, second, classes)) in enumerate(maps.items()):
        row = axes[r]
        for ax, im in zip(row[:3], (shown_a, shown_b, shown_mixed)):
            show_image(ax, im, interpolation="nearest")
        if r == 0:
            row[0].set_title(f"image a: {_name(true[0], class_names)}" if true else "image a", fontsize=FONT_PT)
            row[1].set_title(f"image b: {_name(true[1], class_names)}" if true else "image b", fontsize=FONT_PT)
            row[2].set_title("mixed image" + (f"\nλ = {lam:.2f}" if lam is not None else ""), fontsize=FONT_PT)
        top = [_name(c, class_names) for c in classes] if classes is not None else ["top-1", "top-2"]
        row[0].set_ylabel(f"{key}:\n{top[0]} / {top[1]}", fontsize=FONT_PT, fontweight="bold", rotation=0,
                          ha="right", va="center")
        for j, (ax, attr) in enumerate(((row[3], first), (row[4], second))):
            show_image(ax, base, interpolation="nearest")
            heat = ax.imshow(upsample_bilinear(attr, *base.shape[:2]), cmap=HEAT_CMAP, vmin=0.0, vmax=1.0,
                             alpha=alpha, interpolation="nearest")
            clear_axis(ax)
            cls = f":\n{top[j]}" if classes is not None else " class"
            ax.set_title(f"map for top-{j + 1}{cls}", fontsize=FONT_PT)
            if agreement is not None:
                ax.set_xlabel(f"{float(agreement[key][j]):.0%} inside the object", fontsize=FONT_PT - 2)
    bar = fig.colorbar(heat, ax=axes, shrink=0.8, aspect=30)
    bar.set_label("attribution (share of the map's maximum)", fontsize=FONT_PT - 2)
    bar.ax.tick_params(labelsize=FONT_PT - 3)
    fig.suptitle("Where each model looks on the mixed image, for its two most probable classes\n"
                 f"{height} px input, shown at {k} x (image: nearest neighbour; attribution: bilinear)",
                 fontsize=FONT_PT + 2)
    return fig
