"""Measures on mixed batches and noisy labels: a model's mixed Top-1/Top-2
on a mixed test set, the visible share of each object, true label mismatch,
Top-2 split by object visibility, and memorisation of flipped labels."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from mixviz._validation import (
    check_labels,
    check_positive,
    check_tensor,
    value_checks_enabled,
)
from mixviz.mixing.batch import MixedBatch

from mixviz.metrics.scores import _check_logits, mixed_topk_accuracy
# --------------------------------------------------------------------------- mixed evaluation


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def _as_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 / 255; float images unchanged."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    return images


def mixed_evaluation(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, policy: str = "cutmix",
                     alpha: float = 1.0, seed: int = 0, batch_size: int = 512,
                     object_masks: torch.Tensor | None = None, **mix_options: Any) -> dict[str, float]:
    """Mixed Top-1/Top-2 accuracy of ``model`` on mixed copies of an evaluation set.

    The set is cut into batches of ``batch_size`` in order; each batch is mixed
    with ``mixviz.mixing.mix(policy, x, y, alpha=alpha, generator=g,
    model=model, **mix_options)`` where ``g`` is one generator on the images'
    device seeded with ``seed`` and shared by all batches.  For static
    policies the same seed therefore gives the same mixed set for every
    model; dynamic policies (saliency-guided) also depend on the model.  The
    scores are :func:`mixed_topk_accuracy` over the whole set.

    The model is put in eval mode and restored afterwards.  The forward pass
    (:func:`mixviz.mixing.forward`, so policies that mix inside the network,
    Manifold Mixup, work too) runs under ``torch.no_grad``; the mixing step runs with gradients enabled
    (even inside a caller's ``no_grad``), since dynamic policies need the
    gradient of the input.

    Args:
        model: a classifier returning [B, C] logits.
        images: [N, C, H, W] uint8 (divided by 255) or float in [0, 1], or
            [N, D] float points (policies that take any shape), on the model's device.
        labels: int [N] class ids.
        policy, alpha, **mix_options: passed to :func:`mixviz.mixing.mix`.
        seed: seed of the mixing generator.
        batch_size: images per mixed batch (pairs are drawn inside a batch).
        object_masks: None, or [N, 1, H, W] object masks of ``images``
            (clutter): then the scores are also split by what each mixed image
            shows (:func:`mixed_topk_by_visibility`).

    Returns:
        ``{"mixed_top1": float, "mixed_top2": float}``, and with
        ``object_masks`` also ``mixed_top1_both``, ``mixed_top2_both``,
        ``mixed_n_both``, ``mixed_top1_one``, ``mixed_top2_one``,
        ``mixed_n_one``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_tensor("images", images, ndim=(2, 4))
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(f"images must be uint8 or floating point, got {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError("images must hold at least one image")
    check_labels("labels", labels, batch=images.shape[0])
    if labels.device != images.device:
        raise ValueError(f"labels must be on the images' device {images.device}, got {labels.device}")
    if not isinstance(policy, str):
        raise TypeError(f"policy must be a str, got {type(policy).__name__}")
    check_positive("alpha", alpha)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    check_positive("batch_size", batch_size, integer=True)
    device = _model_device(model)
    if images.device != device:
        raise ValueError(f"images must be on the model's device {device}, got {images.device}")
    if object_masks is not None:
        check_tensor("object_masks", object_masks, ndim=4)
        if object_masks.shape[0] != images.shape[0]:
            raise ValueError(f"object_masks must hold one mask per image ({images.shape[0]}), "
                             f"got {object_masks.shape[0]}")

    from mixviz.mixing import forward, mix

    generator = torch.Generator(device=images.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    logits, y_a, y_b, vis_a, vis_b = [], [], [], [], []
    try:
        for start in range(0, images.shape[0], batch_size):
            x = _as_unit_float(images[start:start + batch_size])
            y = labels[start:start + batch_size]
            with torch.enable_grad():  # dynamic policies take the input gradient
                mixed = mix(policy, x, y, alpha=alpha, generator=generator, model=model, **mix_options)
            with torch.no_grad():
                logits.append(forward(model, mixed).float())
            y_a.append(mixed.y_a)
            y_b.append(mixed.y_b)
            if object_masks is not None:
                va, vb = object_visibility(mixed, object_masks[start:start + batch_size], MIN_PIXEL_WEIGHT)
                vis_a.append(va)
                vis_b.append(vb)
    finally:
        model.train(was_training)
    logits_, y_a_, y_b_ = torch.cat(logits), torch.cat(y_a), torch.cat(y_b)
    top1, top2 = mixed_topk_accuracy(logits_, y_a_, y_b_)
    out = {"mixed_top1": top1, "mixed_top2": top2}
    if object_masks is not None:
        split = _split_by_visibility(logits_, y_a_, y_b_, torch.cat(vis_a), torch.cat(vis_b), VISIBLE_SHARE)
        out.update({f"mixed_{k}": v for k, v in split.items()})
    return out


# --------------------------------------------------------------------------- true label mismatch


def _check_mixed(mixed: Any, object_masks: Any) -> None:
    if not isinstance(mixed, MixedBatch):
        raise TypeError(f"mixed must be a MixedBatch, got {type(mixed).__name__}")
    check_tensor("object_masks", object_masks, ndim=4)
    b = len(mixed)
    if object_masks.shape[0] != b or object_masks.shape[1] != 1:
        raise ValueError(f"object_masks must have shape [{b}, 1, H, W] (one mask per mixed sample), "
                         f"got {tuple(object_masks.shape)}")
    if mixed.mask is not None and mixed.mask.shape[-2:] != object_masks.shape[-2:]:
        raise ValueError(f"object_masks must have the mixing mask's size {tuple(mixed.mask.shape[-2:])}, "
                         f"got {tuple(object_masks.shape[-2:])}")
    if value_checks_enabled() and object_masks.numel():
        lo, hi = float(object_masks.min()), float(object_masks.max())
        if lo < 0 or hi > 1:
            raise ValueError(f"object_masks must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")


def _partner_in_place(mixed: MixedBatch) -> bool:
    """False for policies that paste a rescaled partner (ResizeMix).  Pixels
    moved by a transport the batch records (PuzzleMix) are followed by
    :meth:`MixedBatch.carry`; PuzzleMix without transport is an exact lerp."""
    from mixviz.mixing import POLICIES

    info = POLICIES.get(mixed.policy)
    return info is None or info.exact_lerp or mixed.transport is not None or mixed.policy == "puzzlemix"


def object_visibility(mixed: MixedBatch, object_masks: torch.Tensor,
                      min_weight: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The fraction of each mixed sample's two objects that is visible.

    With the mixing mask ``m`` (the share of each pixel taken from sample a)
    and the object masks ``o_a = object_masks[i]``, ``o_b =
    object_masks[index[i]]``, each moved as the batch moved its pixels
    (``T_a``, ``T_b``: PuzzleMix's transport, :meth:`MixedBatch.carry`; the
    identity for every other policy):

        vis_a = sum(m * T_a(o_a)) / sum(o_a),    vis_b = sum((1 - m) * T_b(o_b)) / sum(o_b)

    so an object part that the transport dropped counts as hidden.
    Policies without a mask (mixup, input averaging, none) keep both objects
    whole but faded, and their visibility is defined as ``lam`` and ``1 - lam``.
    An empty object mask gives NaN.

    The formula assumes the partner's pixels stay in place or are moved by
    the recorded transport (CutMix, FMix, GridMix, SmoothMix, SaliencyMix,
    PuzzleMix: the policies whose ``policy_info(...).exact_lerp`` is true,
    and PuzzleMix with or without transport).  ResizeMix pastes a shrunk copy of the *whole* partner image, so its
    partner object is whole (only smaller): ``vis_b`` is 1 when any pixel
    comes from the partner and 0 otherwise; ``vis_a`` uses the formula above.
    Batches whose ``policy`` is not a registered name are treated as in-place.

    With ``min_weight`` the share of each pixel is thresholded first: a pixel
    of object a counts as visible when ``m >= min_weight`` (of b: ``1 - m >=
    min_weight``), and for the mask-free policies an object counts as wholly
    visible when its share is ``>= min_weight`` (``lam`` for a, ``1 - lam``
    for b) and as gone otherwise.  That is the reading "the object is there
    at a contrast of at least ``min_weight``"; for hard masks (CutMix, FMix,
    ...) it changes nothing for ``0 < min_weight <= 1``.

    Args:
        mixed: the :class:`~mixviz.mixing.MixedBatch` made from the batch whose
            object masks are given.
        object_masks: [B, 1, H, W] in [0, 1] (1 = object pixel), for the
            batch *before* mixing (sample i's own object).
        min_weight: None (the share itself weighs each pixel) or a threshold
            in (0, 1].

    Returns:
        ``(vis_a, vis_b)``, float32 tensors of shape [B].
    """
    _check_mixed(mixed, object_masks)
    if min_weight is not None:
        check_positive("min_weight", min_weight)
        if min_weight > 1:
            raise ValueError(f"min_weight must lie in (0, 1], got {min_weight!r}")
    lam = mixed.lam.to(torch.float32)
    if mixed.mask is None:
        if min_weight is not None:
            return (lam >= min_weight).to(torch.float32), (1.0 - lam >= min_weight).to(torch.float32)
        return lam.clone(), 1.0 - lam
    obj = object_masks.to(torch.float32)
    moved_a, moved_b = mixed.carry(obj)
    area_a = obj.sum(dim=(1, 2, 3))
    area_b = area_a[mixed.index.to(obj.device)]
    m = mixed.mask.to(device=obj.device, dtype=torch.float32)
    own_a, own_b = m, 1.0 - m                      # the weight of each image in each pixel
    if min_weight is not None:
        own_a, own_b = (own_a >= min_weight).to(torch.float32), (own_b >= min_weight).to(torch.float32)
    vis_a = (own_a * moved_a).sum(dim=(1, 2, 3)) / area_a
    if _partner_in_place(mixed):
        vis_b = (own_b * moved_b).sum(dim=(1, 2, 3)) / area_b
    else:
        vis_b = (own_b.sum(dim=(1, 2, 3)) > 0).to(torch.float32)
        vis_b = torch.where(area_b > 0, vis_b, torch.nan)
    return vis_a, vis_b


def label_mismatch(mixed: MixedBatch, object_masks: torch.Tensor, share_threshold: float = 0.3,
                   visible_threshold: float = 0.05) -> dict[str, Any]:
    """How often a mixed label names a class whose object was cut away.

    Each mixed sample carries two labels: ``y_a`` with share ``lam`` and
    ``y_b`` with share ``1 - lam``; their objects have the visibility of
    :func:`object_visibility`.  A label is *mismatched* when its share is
    ``>= share_threshold`` while its object is ``< visible_threshold``
    visible.  When ``y_a == y_b`` the soft label gives the class share 1 and
    the class is as visible as the better visible of the two objects, so both
    entries get share 1 and visibility ``max(vis_a, vis_b)``.

    Returns:
        A dict with ``rate`` (fraction of the mixed samples with at least one
        mismatched label), ``n_mismatched`` and ``n_samples`` (ints), and the
        per-sample NumPy arrays (length B) for a scatter plot of label share
        against visibility: ``share_a``, ``share_b``, ``visibility_a``,
        ``visibility_b``, ``mismatch_a``, ``mismatch_b`` (bool).  Samples
        whose object mask is empty (NaN visibility) never count as mismatched.
        Also ``n_pairs`` (samples with ``y_a != y_b``), ``n_unmixed`` (those
        of them whose label is all one class, ``lam`` 0 or 1: the policy kept
        one image whole, as a graph cut with a trivial solution does) and
        ``unmixed_rate = n_unmixed / n_pairs``.
    """
    _check_mixed(mixed, object_masks)
    for name, value in (("share_threshold", share_threshold), ("visible_threshold", visible_threshold)):
        check_positive(name, value, allow_zero=True)
        if value > 1:
            raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    vis_a, vis_b = object_visibility(mixed, object_masks)
    lam = mixed.lam.to(device=vis_a.device, dtype=torch.float32)
    share_a, share_b = lam, 1.0 - lam
    same = mixed.y_a.to(vis_a.device).eq(mixed.y_b.to(vis_a.device))
    if bool(same.any()):
        best = torch.fmax(vis_a, vis_b)
        one = torch.ones_like(lam)
        share_a, share_b = torch.where(same, one, share_a), torch.where(same, one, share_b)
        vis_a, vis_b = torch.where(same, best, vis_a), torch.where(same, best, vis_b)
    mismatch_a = (share_a >= share_threshold) & (vis_a < visible_threshold)
    mismatch_b = (share_b >= share_threshold) & (vis_b < visible_threshold)
    any_mismatch = mismatch_a | mismatch_b
    n = len(mixed)
    n_bad = int(any_mismatch.sum())
    pairs = ~same
    n_pairs = int(pairs.sum())
    n_unmixed = int((pairs & ((lam == 0) | (lam == 1))).sum())
    return {
        "rate": n_bad / n if n else math.nan,
        "n_mismatched": n_bad,
        "n_samples": n,
        "n_pairs": n_pairs,
        "n_unmixed": n_unmixed,
        "unmixed_rate": n_unmixed / n_pairs if n_pairs else math.nan,
        "share_a": share_a.cpu().numpy(),
        "share_b": share_b.cpu().numpy(),
        "visibility_a": vis_a.cpu().numpy(),
        "visibility_b": vis_b.cpu().numpy(),
        "mismatch_a": mismatch_a.cpu().numpy(),
        "mismatch_b": mismatch_b.cpu().numpy(),
    }


# --------------------------------------------------------------------------- Top-2 where both objects are there

#: An object counts as "there" when at least this share of its pixels is visible (:func:`mixed_topk_by_visibility`).
VISIBLE_SHARE = 0.5
#: ... where a pixel is visible when its own image contributes at least this weight to it.
MIN_PIXEL_WEIGHT = 0.25


def mixed_topk_by_visibility(logits: torch.Tensor, mixed: MixedBatch, object_masks: torch.Tensor, *,
                             visible: float = VISIBLE_SHARE,
                             min_weight: float = MIN_PIXEL_WEIGHT) -> dict[str, float]:
    """Mixed Top-1 / Top-2 accuracy, split by what the mixed image really shows.

    The DM paper's Top-2 asks a model to name both mixed classes, but a cut
    can remove one of the two objects; then no model *should* name it.  With
    the object masks the two cases separate.  For each pair of two different
    classes (``y_a != y_b``), :func:`object_visibility` with ``min_weight``
    gives the share of each object that is visible (a pixel counts when its
    own image weighs ``>= min_weight`` in it; a faded mixup object counts
    as wholly visible when its share is ``>= min_weight``):

    * ``both``: both objects at least ``visible`` visible -- Top-2 is fair;
    * ``one``: exactly one of them at least ``visible`` visible -- the image
      shows one object, Top-2 asks for a class that is not there.

    Pairs with neither object visible and pairs of one class are in neither
    group.  Top-1 / Top-2 are :func:`mixed_topk_accuracy` on each group.

    Returns:
        ``{"top1_both", "top2_both", "n_both", "top1_one", "top2_one",
        "n_one"}``; accuracies are NaN for an empty group.
    """
    _check_logits(logits, mixed.y_a, "mixed.y_a")
    for name, value in (("visible", visible), ("min_weight", min_weight)):
        check_positive(name, value)
        if value > 1:
            raise ValueError(f"{name} must lie in (0, 1], got {value!r}")
    vis_a, vis_b = object_visibility(mixed, object_masks, min_weight=min_weight)
    return _split_by_visibility(logits, mixed.y_a, mixed.y_b, vis_a, vis_b, visible)


def _split_by_visibility(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, vis_a: torch.Tensor,
                         vis_b: torch.Tensor, visible: float) -> dict[str, float]:
    device = logits.device
    y_a, y_b = y_a.to(device), y_b.to(device)
    seen_a, seen_b = vis_a.to(device).nan_to_num(0.0) >= visible, vis_b.to(device).nan_to_num(0.0) >= visible
    pair = y_a.ne(y_b)
    out: dict[str, float] = {}
    for group, keep in (("both", pair & seen_a & seen_b), ("one", pair & (seen_a ^ seen_b))):
        n = int(keep.sum())
        top1, top2 = mixed_topk_accuracy(logits[keep], y_a[keep], y_b[keep]) if n else (math.nan, math.nan)
        out.update({f"top1_{group}": top1, f"top2_{group}": top2, f"n_{group}": n})
    return out


# --------------------------------------------------------------------------- memorisation of noisy labels


def memorisation(logits: torch.Tensor, labels: torch.Tensor, clean_labels: torch.Tensor) -> dict[str, float]:
    """How far a model has fitted the wrong labels of a noisy training set.

    On the training samples whose label was flipped (``labels != clean_labels``):

    * ``memorised``: the share predicted as the *noisy* label (the model learnt
      the wrong answer it was shown);
    * ``still_right``: the share predicted as the *true* label (it resisted).

    And on the others, ``clean_fit``: the share predicted as their (correct)
    label.  ``noisy_share`` is the fraction of flipped samples.  Accuracies are
    NaN when their group is empty.  ``logits`` come from the model in eval
    mode on the un-augmented training images.
    """
    _check_logits(logits, labels)
    check_labels("clean_labels", clean_labels, num_classes=logits.shape[1], batch=logits.shape[0])
    pred = logits.argmax(dim=1)
    flipped = labels.ne(clean_labels)
    n_flipped = flipped.sum()
    n_kept = (~flipped).sum()
    with torch.no_grad():
        memorised = (pred.eq(labels) & flipped).sum() / n_flipped        # 0/0 -> NaN
        right = (pred.eq(clean_labels) & flipped).sum() / n_flipped
        clean_fit = (pred.eq(labels) & ~flipped).sum() / n_kept
    n = max(1, logits.shape[0])
    return {"memorised": float(memorised), "still_right": float(right), "clean_fit": float(clean_fit),
            "noisy_share": float(n_flipped) / n}
