"""Where models look: agreement of attribution maps (captum, through
:mod:`mixviz.saliency`) with the object masks of the clutter set, on clean
and on mixed images, for any image classifier."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from mixviz._extras import require

require("pandas")  # the 'analysis' extra: an ImportError here names the pip install line
import pandas as pd  # noqa: E402
import torch
from torch import nn

from mixviz._validation import check_choice, check_positive, check_tensor
from mixviz.analysis._common import EVAL_ALPHA, EVAL_POLICY, EVAL_SEED, check_images, model_device, named_models
from mixviz.analysis.mixed import fixed_mixed_batch, pick_mixed_sample, visible_objects

#: Attribution methods of the saliency agreement table.
SALIENCY_METHODS = ("gradcam", "saliency")


class _WithLastConv(nn.Module):
    """``model`` unchanged, plus the ``last_conv`` attribute that Grad-CAM
    (:func:`mixviz.saliency.attribute`) reads."""

    def __init__(self, model: nn.Module, layer: nn.Module) -> None:
        super().__init__()
        self.model = model
        self._layer = [layer]  # a list: not registered twice as a submodule

    @property
    def last_conv(self) -> nn.Module:
        return self._layer[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def with_last_conv(model: nn.Module, layer: nn.Module | str) -> nn.Module:
    """``model`` with the layer Grad-CAM explains.

    mixviz's image models name their last convolution ``last_conv``; other
    networks (timm, torchvision) do not.  This returns a thin wrapper whose
    forward is ``model``'s and whose ``last_conv`` is ``layer``: a submodule
    or its dotted name (``"layer4"`` for a torchvision ResNet, whose output
    is the usual Grad-CAM layer).  Grad-CAM maps have the spatial size of that
    layer's output, upsampled: a ResNet's ``layer4`` on 32-pixel images is
    1 x 1 (one value per image), so pick an earlier layer (``"layer3"``) for
    small images.  The model itself is not changed.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(layer, str):
        names = dict(model.named_modules())
        if layer not in names or not layer:
            convs = [n for n, m in names.items() if isinstance(m, nn.Conv2d)][-3:]
            raise ValueError(f"layer must name a submodule of the model (e.g. {', '.join(map(repr, convs))}); "
                             f"got {layer!r}")
        layer = names[layer]
    if not isinstance(layer, nn.Module) or not any(m is layer for m in model.modules()):
        raise ValueError("layer must be a submodule of model (or its dotted name)")
    return _WithLastConv(model, layer).train(model.training)  # restoring the wrapper's mode restores the model's


def _check_attribution_model(name: str, model: nn.Module, methods: Sequence[str]) -> None:
    if "gradcam" in methods and not isinstance(getattr(model, "last_conv", None), nn.Module):
        raise ValueError(f"models[{name!r}] has no `last_conv` layer for Grad-CAM: wrap it with "
                         f"mixviz.analysis.with_last_conv(model, layer), or use attributions=('saliency',)")


def saliency_table(models: Any, images: torch.Tensor, labels: torch.Tensor,
                   object_masks: torch.Tensor, *, attributions: Sequence[str] = SALIENCY_METHODS,
                   limit: int | None = 256, policy: str = EVAL_POLICY, seed: int = EVAL_SEED,
                   alpha: float = EVAL_ALPHA, tolerance: int = 0, logits_fn: Any = None) -> pd.DataFrame:
    """Agreement of each model's attributions with the object masks.

    For each model and attribution method (captum, :func:`mixviz.saliency.attribute`):

    * ``mask_share``: mean share of the attribution for the true class inside
      the object, on the clean images (a uniform map scores the mean object
      area, ``chance``);
    * ``pointing``: fraction of clean images whose map peaks on the object;
    * ``mixed_share``: on the fixed mixed set (``policy``, ``seed``), the
      share of the map for ``y_a`` inside the visible part of object a and of
      the map for ``y_b`` inside the visible part of object b, averaged over
      both and over the pairs of two classes whose objects are both visible
      -- does the model find each mixed class where its object is?

    ``models``: a module, a Run or ``{name: module or Run}``; Grad-CAM needs a
    ``last_conv`` layer (see :func:`with_last_conv`).  ``limit`` takes the
    first images only (None: all).

    Returns:
        One row per (model, attribution): ``method`` and, for Runs, ``policy``,
        ``loss``, ``kind``, ``seed``; then ``attribution``, ``mask_share``,
        ``pointing``, ``mixed_share``, ``chance``.
    """
    from mixviz import saliency

    entries = named_models(models, allow_list=False, logits_fn=logits_fn)
    check_images(images, labels)
    check_tensor("object_masks", object_masks, ndim=4)
    if isinstance(attributions, str) or not attributions:
        raise ValueError(f"attributions must be a non-empty sequence of {', '.join(saliency.METHODS)}")
    for a in attributions:
        check_choice("attributions", a, saliency.METHODS)
    for m in entries:
        _check_attribution_model(m.name, m.module, attributions)
    if limit is not None:
        check_positive("limit", limit, integer=True)
        images, labels, object_masks = images[:limit], labels[:limit], object_masks[:limit]
    mixed = fixed_mixed_batch(policy, images, labels, seed=seed, alpha=alpha)
    vis_a, vis_b = visible_objects(mixed, object_masks)
    keep = mixed.y_a.ne(mixed.y_b) & (vis_a.sum((1, 2, 3)) > 0) & (vis_b.sum((1, 2, 3)) > 0)
    chance = float(object_masks.to(torch.float32).mean())
    rows = []
    for m in entries:
        model, device = m.module, model_device(m.module)
        for method in attributions:
            clean = saliency.saliency_agreement(model, images.to(device), object_masks.to(device),
                                                labels.to(device), method=method, tolerance=tolerance)
            x = mixed.inputs[keep].to(device)
            share_a = saliency.mask_agreement(saliency.attribute(model, x, mixed.y_a[keep].to(device), method),
                                              vis_a[keep].to(device))
            share_b = saliency.mask_agreement(saliency.attribute(model, x, mixed.y_b[keep].to(device), method),
                                              vis_b[keep].to(device))
            both = torch.cat([share_a, share_b])
            both = both[~torch.isnan(both)]
            rows.append({"method": m.name, **m.info, "attribution": method, **clean,
                         "mixed_share": float(both.mean()) if both.numel() else math.nan, "chance": chance})
    return pd.DataFrame(rows)


def saliency_by_kind(table: pd.DataFrame) -> pd.DataFrame:
    """Mean of ``mask_share``, ``pointing`` and ``mixed_share`` over the methods
    of each training kind (baseline / static / dynamic / DM), per attribution.
    Rows without a kind (plain modules, not Runs) are left out."""
    cols = ["mask_share", "pointing", "mixed_share"]
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in ("kind", "attribution", *cols) if c not in table.columns]
    if missing:
        raise ValueError(f"table must have the columns of saliency_table for Runs; missing {', '.join(missing)}")
    order = {"baseline": 0, "static": 1, "dynamic": 2, "DM": 3}
    table = table[table["kind"].notna()]
    groups = table.groupby(["attribution", "kind"], sort=False)
    out = groups[cols].mean().reset_index()
    out["methods"] = groups.size().to_numpy()
    out = out.sort_values(["attribution", "kind"], key=lambda s: s.map(order) if s.name == "kind" else s,
                          kind="stable")
    return out.reset_index(drop=True)


def saliency_example(models: Any, images: torch.Tensor, labels: torch.Tensor,
                     object_masks: torch.Tensor, *, method: str = "gradcam", policy: str = EVAL_POLICY,
                     seed: int = EVAL_SEED, alpha: float = EVAL_ALPHA, sample: int | None = None,
                     class_names: Sequence[str] | None = None, logits_fn: Any = None) -> dict[str, Any]:
    """The keyword arguments of :func:`mixviz.viz.saliency_grid` for one mixed image.

    The image is sample ``sample`` of the fixed mixed set (default
    :func:`pick_mixed_sample`); each model's attribution maps are for its two
    most probable classes (:func:`mixviz.saliency.top2_attributions`).  The
    ``agreement`` of a map is its share inside the visible part of the
    object of the class it explains, or inside both objects when that class
    is neither of the two mixed classes.
    """
    from mixviz import saliency

    entries = named_models(models, allow_list=False, logits_fn=logits_fn)
    check_images(images, labels)
    check_choice("method", method, saliency.METHODS)
    for m in entries:
        _check_attribution_model(m.name, m.module, (method,))
    mixed = fixed_mixed_batch(policy, images, labels, seed=seed, alpha=alpha)
    i = pick_mixed_sample(mixed, object_masks) if sample is None else sample
    check_positive("sample", i, allow_zero=True, integer=True)
    if i >= len(mixed):
        raise ValueError(f"sample must be < {len(mixed)} (the number of images), got {i}")
    vis_a, vis_b = visible_objects(mixed, object_masks)
    y_a, y_b = int(mixed.y_a[i]), int(mixed.y_b[i])
    objects = {y_a: vis_a[i:i + 1], y_b: vis_b[i:i + 1]}
    union = torch.clamp(vis_a[i:i + 1] + vis_b[i:i + 1], max=1.0)
    attrs, agreement = {}, {}
    for m in entries:
        device = model_device(m.module)
        first, second, top2 = saliency.top2_attributions(m.module, mixed.inputs[i:i + 1].to(device), method)
        attrs[m.name] = (first.cpu(), second.cpu(), top2.cpu())
        shares = []
        for attr, cls in ((first, int(top2[0, 0])), (second, int(top2[0, 1]))):
            region = objects.get(cls, union).to(device)
            shares.append(float(saliency.mask_agreement(attr, region)[0].nan_to_num(0.0)))
        agreement[m.name] = tuple(shares)
    return {"images": (images[i].cpu(), images[int(mixed.index[i])].cpu()), "mixed": mixed.inputs[i].cpu(),
            "attributions": attrs, "class_names": class_names, "labels": (y_a, y_b),
            "lam": float(mixed.lam[i]), "agreement": agreement}
