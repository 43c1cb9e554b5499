"""Attribution maps (captum) and their agreement with object masks.

Three captum methods, each reduced to one non-negative map per image
([B, 1, H, W]) so that maps of different methods can be compared and drawn:

* ``"saliency"``: captum ``Saliency`` (the input gradient ``|d z_t / d x|``),
  maximum over the colour channels (Simonyan et al. 2014).
* ``"integrated_gradients"``: captum ``IntegratedGradients`` from a black
  (all-zero) baseline, ``(x - 0) * mean_alpha grad z_t(alpha x)``, with
  ``|.|`` summed over the channels.
* ``"gradcam"``: captum ``LayerGradCam`` on ``model.last_conv``,
  ``sum_k (mean_ij d z_t / d A_kij) A_k``, upsampled bilinearly to the image
  size with ``LayerAttribution.interpolate`` and passed through a ReLU.

Agreement with an object mask: :func:`mask_agreement` (share of the
attribution mass inside the mask) and :func:`pointing_game` (is the map's
maximum on the object; Zhang et al. 2016).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mixviz._extras import require
from mixviz._validation import check_choice, check_labels, check_positive, check_tensor, value_checks_enabled
from mixviz.models import with_logits_fn

__all__ = [
    "METHODS",
    "attribute",
    "top2_attributions",
    "mask_agreement",
    "pointing_game",
    "saliency_agreement",
]

METHODS = ("saliency", "integrated_gradients", "gradcam")

_METHOD_OPTIONS = {
    "saliency": set(),
    "integrated_gradients": {"n_steps", "internal_batch_size"},
    "gradcam": {"interpolate_mode"},
}


# --------------------------------------------------------------------------- checks


def _check_model(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def _check_images(name: str, images: Any) -> torch.Tensor:
    """4-D uint8 (divided by 255) or float images -> float images."""
    check_tensor(name, images, ndim=4)
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(f"{name} must be uint8 or floating point, got {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one image")
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    return images


def _check_target(target: Any, batch: int, device: torch.device) -> torch.Tensor:
    """An int (the same class for every image) or an int tensor [B] -> LongTensor [B]."""
    if isinstance(target, bool):
        raise TypeError("target must be an int or an integer tensor of shape [B], got bool")
    if isinstance(target, int):
        if target < 0:
            raise ValueError(f"target must be >= 0, got {target}")
        return torch.full((batch,), target, dtype=torch.long, device=device)
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be an int or an integer tensor of shape [B], got {type(target).__name__}")
    check_labels("target", target, batch=batch)
    return target.to(device=device, dtype=torch.long)


def _check_map(name: str, value: Any) -> torch.Tensor:
    check_tensor(name, value, ndim=4)
    if value.shape[1] != 1:
        raise ValueError(f"{name} must have shape [B, 1, H, W], got {tuple(value.shape)}")
    return value


def _check_map_and_mask(attr: Any, object_mask: Any) -> None:
    _check_map("attr", attr)
    _check_map("object_mask", object_mask)
    if attr.shape != object_mask.shape:
        raise ValueError(f"object_mask must have the shape of attr {tuple(attr.shape)}, "
                         f"got {tuple(object_mask.shape)}")
    if value_checks_enabled() and attr.is_floating_point() and bool((attr < 0).any()):
        raise ValueError("attr must be non-negative (use the maps of attribute())")


# --------------------------------------------------------------------------- attribution


def _saliency(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    require("captum", "captum attributions")
    from captum.attr import Saliency

    grad = Saliency(model).attribute(x, target=target, abs=True)
    return grad.amax(dim=1, keepdim=True)


def _integrated_gradients(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                          n_steps: int = 50, internal_batch_size: int | None = None) -> torch.Tensor:
    require("captum", "captum attributions")
    from captum.attr import IntegratedGradients

    check_positive("n_steps", n_steps, integer=True)
    if internal_batch_size is not None:
        check_positive("internal_batch_size", internal_batch_size, integer=True)
    attr = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=target,
                                                n_steps=n_steps, internal_batch_size=internal_batch_size)
    return attr.abs().sum(dim=1, keepdim=True)


def _gradcam(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
             interpolate_mode: str = "bilinear") -> torch.Tensor:
    require("captum", "captum attributions")
    from captum.attr import LayerAttribution, LayerGradCam

    check_choice("interpolate_mode", interpolate_mode, ("bilinear", "bicubic", "nearest", "area"))
    layer = getattr(model, "last_conv", None)
    if not isinstance(layer, nn.Module):
        raise ValueError(f"model must expose a `last_conv` layer for method 'gradcam'; "
                         f"{type(model).__name__} has none")
    cam = LayerGradCam(model, layer).attribute(x, target=target)
    if cam.dim() != 4:
        raise ValueError(f"model.last_conv must output [B, K, h, w] feature maps, got {cam.dim()}-D attributions")
    cam = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode=interpolate_mode)
    return F.relu(cam)


_METHOD_FUNCS = {"saliency": _saliency, "integrated_gradients": _integrated_gradients, "gradcam": _gradcam}


def attribute(model: nn.Module, images: torch.Tensor, target: int | torch.Tensor,
              method: str = "saliency", *, logits_fn: Any = None, **kw: Any) -> torch.Tensor:
    """Attribution maps of ``model`` for class ``target``, one per image.

    Args:
        model: a classifier returning [B, C] logits; for ``"gradcam"`` it must
            have a ``last_conv`` attribute (every image model of
            :func:`mixviz.models.build` has one).  It is put in eval mode for
            the attribution and its mode restored afterwards.
        images: [B, C, H, W] float in [0, 1] or uint8 (divided by 255), on the
            model's device.
        target: the class to explain, an int or an int tensor [B].
        method: ``"saliency"``, ``"integrated_gradients"`` or ``"gradcam"``
            (see the module docstring).
        logits_fn: for a model that returns a tuple, a dict or an object:
            its output -> the [B, C] logits (e.g. ``lambda out: out[0]``).
        **kw: ``n_steps`` (default 50) and ``internal_batch_size`` for
            integrated gradients; ``interpolate_mode`` (default
            ``"bilinear"``) for Grad-CAM.

    Returns:
        A detached non-negative float tensor [B, 1, H, W].
    """
    _check_model(model)
    model = with_logits_fn(model, logits_fn)
    x = _check_images("images", images)
    check_choice("method", method, METHODS)
    unknown = set(kw) - _METHOD_OPTIONS[method]
    if unknown:
        allowed = ", ".join(sorted(_METHOD_OPTIONS[method])) or "none"
        raise TypeError(f"unexpected option(s) {', '.join(sorted(unknown))} for method {method!r}; "
                        f"allowed: {allowed}")
    y = _check_target(target, x.shape[0], x.device)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            attr = _METHOD_FUNCS[method](model, x.detach().requires_grad_(True), y, **kw)
    finally:
        model.train(was_training)
    return attr.detach()


def top2_attributions(model: nn.Module, mixed_images: torch.Tensor, method: str = "gradcam", *,
                      logits_fn: Any = None, **kw: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Attributions of mixed images for their two most probable classes.

    The Decoupled Mixup paper's Figure 1 idea: a model that has learned both
    mixed classes should point at each class's object when asked for it.

    Returns:
        ``(attr_top1, attr_top2, top2_classes)``: two [B, 1, H, W] maps (see
        :func:`attribute`) for the classes with the largest and second-largest
        logit, and those classes, a LongTensor [B, 2].
    """
    _check_model(model)
    model = with_logits_fn(model, logits_fn)  # a model returning a tuple / dict: see attribute()
    x = _check_images("mixed_images", mixed_images)
    check_choice("method", method, METHODS)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        model.train(was_training)
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f"model must return [B, C] logits with C >= 2, got shape {tuple(logits.shape)}")
    top2 = logits.topk(2, dim=1).indices
    first = attribute(model, x, top2[:, 0], method=method, **kw)
    second = attribute(model, x, top2[:, 1], method=method, **kw)
    return first, second, top2


# --------------------------------------------------------------------------- agreement with masks


def mask_agreement(attr: torch.Tensor, object_mask: torch.Tensor) -> torch.Tensor:
    """Share of the attribution mass inside the object:
    ``sum(attr * mask) / sum(attr)`` per image.

    Args:
        attr: non-negative [B, 1, H, W] maps.
        object_mask: [B, 1, H, W] in [0, 1] (bool or numbers; soft masks weigh pixels).

    Returns:
        float tensor [B] in [0, 1]; NaN for an all-zero map.
    """
    _check_map_and_mask(attr, object_mask)
    a = attr.to(torch.float32)
    m = object_mask.to(device=a.device, dtype=torch.float32)
    return (a * m).sum(dim=(1, 2, 3)) / a.sum(dim=(1, 2, 3))


def _disc(radius: int, device: torch.device) -> torch.Tensor:
    r = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    return ((r.view(-1, 1) ** 2 + r.view(1, -1) ** 2) <= radius ** 2).to(torch.float32)


def pointing_game(attr: torch.Tensor, object_mask: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """Pointing game: is the maximum of each map on the object?

    A hit when the mask is ``> 0.5`` at the pixel of the map's maximum (the
    first one in row-major order on ties), or, with ``tolerance`` r > 0,
    anywhere within Euclidean distance r of it (Zhang et al. use 15 px at
    ImageNet size).  An all-zero map points nowhere and is a miss.

    Returns:
        bool tensor [B].
    """
    _check_map_and_mask(attr, object_mask)
    check_positive("tolerance", tolerance, allow_zero=True, integer=True)
    a = attr.to(torch.float32).flatten(1)
    hit_area = object_mask.to(device=a.device, dtype=torch.float32) > 0.5
    if tolerance > 0:
        kernel = _disc(tolerance, a.device).view(1, 1, 2 * tolerance + 1, 2 * tolerance + 1)
        hit_area = F.conv2d(hit_area.to(torch.float32), kernel, padding=tolerance) > 0.5
    peak = a.argmax(dim=1, keepdim=True)
    hit = hit_area.flatten(1).gather(1, peak).squeeze(1)
    return hit & (a.amax(dim=1) > 0)


def saliency_agreement(model: nn.Module, images: torch.Tensor, object_masks: torch.Tensor,
                       labels: torch.Tensor, method: str = "gradcam", batch_size: int = 256,
                       tolerance: int = 0, *, logits_fn: Any = None, **kw: Any) -> dict[str, float]:
    """Mean agreement of the attributions for the true class with the object masks.

    Attributions (:func:`attribute` with ``target=labels``) are computed in
    batches of ``batch_size``.

    Returns:
        ``{"mask_share": mean of mask_agreement (NaN maps left out),
        "pointing": fraction of pointing_game hits}``.
    """
    _check_model(model)
    model = with_logits_fn(model, logits_fn)  # a model returning a tuple / dict: see attribute()
    x = _check_images("images", images)
    _check_map("object_masks", object_masks)
    if object_masks.shape[0] != x.shape[0] or object_masks.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"object_masks must have shape [{x.shape[0]}, 1, {x.shape[2]}, {x.shape[3]}] "
                         f"(one mask per image), got {tuple(object_masks.shape)}")
    check_labels("labels", labels, batch=x.shape[0])
    check_choice("method", method, METHODS)
    check_positive("batch_size", batch_size, integer=True)
    check_positive("tolerance", tolerance, allow_zero=True, integer=True)
    shares, hits = [], []
    for start in range(0, x.shape[0], batch_size):
        part = slice(start, start + batch_size)
        attr = attribute(model, x[part], labels[part], method=method, **kw)
        mask = object_masks[part].to(attr.device)
        shares.append(mask_agreement(attr, mask))
        hits.append(pointing_game(attr, mask, tolerance=tolerance))
    share = torch.cat(shares)
    hit = torch.cat(hits).to(torch.float32)
    valid = ~torch.isnan(share)
    mean_share = float(share[valid].mean()) if bool(valid.any()) else math.nan
    return {"mask_share": mean_share, "pointing": float(hit.mean())}
