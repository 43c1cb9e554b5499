"""The mixed-sample gallery: the same images mixed by every policy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from mixviz.mixing.batch import MixedBatch
from mixviz.viz._common import (check_int, check_mapping, class_name, clear_axis, image_array, new_plain_figure,
                                show_image)
from mixviz.viz.style import themed

__all__ = ["mixed_samples_gallery", "soft_label_text"]

MASK_CMAP = "viridis"
#: Width of the white strip between image a and its partner b, as a share of the image width.
PAIR_GAP = 0.08


def soft_label_text(lam: float, y_a: int, y_b: int, class_names: Sequence[str] | None = None) -> str:
    """The soft label ``lam * onehot(y_a) + (1 - lam) * onehot(y_b)`` as text,
    e.g. ``"0.63 cat / 0.37 dog"``; ``"1.00 cat"`` when both labels agree."""
    name_a, name_b = class_name(y_a, class_names), class_name(y_b, class_names)
    if y_a == y_b:
        return f"1.00 {name_a}"
    return f"{lam:.2f} {name_a} / {1.0 - lam:.2f} {name_b}"


def _check_batches(batches: Mapping[str, MixedBatch], n: int) -> None:
    check_mapping("batches", batches)
    for key, batch in batches.items():
        if not isinstance(batch, MixedBatch):
            raise TypeError(f"batches[{key!r}] must be a MixedBatch, got {type(batch).__name__}")
        if batch.inputs.dim() != 4 or batch.inputs.shape[1] not in (1, 3):
            raise ValueError(f"batches[{key!r}].inputs must be images [B, C, H, W] with C = 1 or 3, "
                             f"got shape {tuple(batch.inputs.shape)}")
        if len(batch) < n:
            raise ValueError(f"n must be <= the batch size; batches[{key!r}] has {len(batch)} samples, n = {n}")
    first_key, first = next(iter(batches.items()))
    for key, batch in batches.items():
        if not torch.equal(batch.y_a[:n].cpu(), first.y_a[:n].cpu()):
            raise ValueError(f"batches must all mix the same source batch (same y_a); batches[{key!r}] "
                             f"and batches[{first_key!r}] differ in their first {n} labels")


def _check_class_names(class_names: Sequence[str] | None, batches: Mapping[str, MixedBatch], n: int) -> None:
    if class_names is None:
        return
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise TypeError(f"class_names must be a sequence of str or None, got {type(class_names).__name__}")
    top = max(int(torch.maximum(b.y_a[:n], b.y_b[:n]).max()) for b in batches.values())
    if top >= len(class_names):
        raise ValueError(f"class_names must name every class shown: has {len(class_names)} names, "
                         f"labels go up to {top}")


#: A column whose shown masks give shares of a within this of each other mixes at one lam: its title says the share.
FIXED_SHARE_SPREAD = 0.02


def _column_title(key: str, batch: MixedBatch, n: int) -> str:
    """The column's name and, for a column mixed at one lam (its first ``n``
    masks give shares of a within :data:`FIXED_SHARE_SPREAD`), the share of
    a's pixels measured on those masks: a title that names a lam then shows
    the lam the pictures have."""
    if batch.mask is None:
        return key
    shares = batch.mask[:n].detach().to("cpu", torch.float64).mean((1, 2, 3))
    if float(shares.max() - shares.min()) > FIXED_SHARE_SPREAD:
        return key
    return f"{key}\npixels from a: {float(shares.mean()):.2f}"


def _hidden_layer(batch: MixedBatch) -> int | None:
    """The layer a batch is mixed at inside the network (-1 when a policy that
    mixes inside the network lost it), or None for a batch mixed in pixels."""
    if batch.layer is not None:
        return int(batch.layer)
    from mixviz.mixing import POLICIES

    info = POLICIES.get(batch.policy)
    return -1 if info is not None and info.hidden else None


def _pair_image(batch: MixedBatch, key: str, row: int) -> np.ndarray:
    """Image a and its partner b side by side, a white strip between them."""
    a = image_array(f"batches[{key!r}].inputs[{row}]", batch.inputs[row])
    b = image_array(f"batches[{key!r}].inputs[{int(batch.index[row])}]", batch.inputs[int(batch.index[row])])
    gap = np.ones((a.shape[0], max(1, round(PAIR_GAP * a.shape[1])), *a.shape[2:]))
    return np.concatenate([a, gap, b], axis=1)


def _hidden_panel(batch: MixedBatch, key: str, row: int, layer: int) -> tuple[np.ndarray, str]:
    """What to draw for a batch mixed inside the network, and the line that says so.

    At layer 0 (the input) the mix is a pixel mix, ``lam a + (1 - lam) b``,
    and is drawn; deeper, the image pair is drawn and the label says that the
    mixing happens at that layer, with no pixel mask."""
    if layer == 0:
        lam = batch.lam[row].detach().to(batch.inputs.dtype)
        mixed = torch.lerp(batch.inputs[int(batch.index[row])], batch.inputs[row], lam)
        return image_array(f"batches[{key!r}].inputs[{row}]", mixed), "mixed at the input (layer 0)"
    where = f"at hidden layer {layer}" if layer > 0 else "at a hidden layer"
    return _pair_image(batch, key, row), f"a | b, mixed inside the network\n{where}: no pixel mask"


@themed
def mixed_samples_gallery(batches: Mapping[str, MixedBatch], class_names: Sequence[str] | None = None,
                          n: int = 4, title: str | None = None) -> Figure:
    """The first ``n`` samples of a batch mixed by every policy, side by side.

    Row ``i`` shows mixed sample ``i`` (image a = sample ``i`` of the source
    batch, share ``lam``) under each policy; each policy has one column of
    mixed images and, when it has a mask, a narrow column with the mask
    (1 = pixel from image a, 0 = from its partner b; colour bar at the
    bottom).  A column mixed at one lam (:func:`mixviz.analysis.mix_at_lam`)
    has the share of a's pixels measured on its masks in its title.  Under
    every image: ``lam`` and the soft label
    ``lam * y_a + (1 - lam) * y_b`` as text.  Policies mixed with the same
    generator seed draw the same partners, so the rows compare like with like.

    A batch mixed *inside the network* (Manifold Mixup: ``batch.layer`` set)
    has no mixed image and no mask: its panels show image a and its partner b
    side by side and say at which layer the network mixes them (at layer 0,
    the input, the pixel mix ``lam a + (1 - lam) b`` is shown).

    Args:
        batches: ``{policy name: MixedBatch}``, all made from the same source
            batch (same ``y_a``); ``inputs`` are images [B, C, H, W] in [0, 1]
            with 1 or 3 channels.
        class_names: names of the classes (index = label), or None for the ids.
        n: how many samples (rows) to show, at most the batch size.
        title: the figure's title (None: a line saying what the rows and λ are).

    Returns:
        The figure: ``n`` rows of ``policies + masked policies`` axes, plus one
        colour-bar axes when any policy has a mask.
    """
    check_int("n", n)
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, got {type(title).__name__}")
    _check_batches(batches, n)
    _check_class_names(class_names, batches, n)
    hidden = {key: _hidden_layer(batch) for key, batch in batches.items()}
    columns: list[tuple[str, str]] = []  # (policy, "image" | "mask")
    for key, batch in batches.items():
        columns.append((key, "image"))
        if batch.mask is not None:
            columns.append((key, "mask"))
    pair = {key: layer is not None and layer != 0 for key, layer in hidden.items()}  # a | b: twice as wide
    widths = [(2.0 + PAIR_GAP if pair[key] else 1.0) if kind == "image" else 0.5 for key, kind in columns]
    has_mask = any(kind == "mask" for _, kind in columns)
    fig = new_plain_figure(figsize=(1.9 * sum(widths) + 0.8, 2.3 * n + (1.3 if has_mask else 0.8)),
                           layout="constrained")
    axes = fig.subplots(n, len(columns), squeeze=False, gridspec_kw={"width_ratios": widths})
    mask_image = None
    for col, (key, kind) in enumerate(columns):
        batch = batches[key]
        lam = batch.lam[:n].detach().float().cpu().tolist()
        y_a, y_b = batch.y_a[:n].cpu().tolist(), batch.y_b[:n].cpu().tolist()
        for row in range(n):
            ax = axes[row, col]
            if kind == "image":
                label = f"λ = {lam[row]:.2f}\n{soft_label_text(lam[row], y_a[row], y_b[row], class_names)}"
                if hidden[key] is None:
                    show_image(ax, image_array(f"batches[{key!r}].inputs[{row}]", batch.inputs[row]))
                else:
                    image, note = _hidden_panel(batch, key, row, hidden[key])
                    show_image(ax, image)
                    label = f"{label}\n{note}"
                ax.set_xlabel(label, fontsize="small")
                if row == 0:
                    ax.set_title(_column_title(key, batch, n), fontweight="bold")
            else:
                mask = batch.mask[row, 0].detach().to("cpu", torch.float64).numpy()
                mask_image = ax.imshow(mask, cmap=MASK_CMAP, vmin=0.0, vmax=1.0)
                clear_axis(ax)
                ax.set_xlabel(f"{mask.mean():.0%} from a", fontsize="small")
                if row == 0:
                    ax.set_title("mask", fontsize="small")
        if col == 0:
            for row in range(n):
                axes[row, 0].set_ylabel(f"sample {row}\na = {class_name(y_a[row], class_names)}")
    if mask_image is not None:
        bar = fig.colorbar(mask_image, ax=axes, location="bottom", shrink=0.5, aspect=40)
        bar.set_label("mask: share of the pixel taken from image a (1 = a, 0 = partner b)")
    fig.suptitle(title if title is not None else
                 "Mixed samples: the same image a under each policy  (λ = share of image a in the label)")
    return fig
