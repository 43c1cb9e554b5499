"""Evaluation metrics: accuracy, calibration, mixed Top-1/Top-2 accuracy and
true label mismatch.

Every function here is batched tensor code (no Python loop over samples).  They
run at evaluation time, so they may synchronise with the host and return Python
floats.

Calibration follows torchmetrics' ``MulticlassCalibrationError`` exactly (it is
called for ECE and MCE): the confidence of a prediction is its top
probability, the bins are ``[k/n, (k+1)/n)`` for ``k = 0 .. n-1``, and a
confidence of exactly 1.0 falls into a bin of its own (torchmetrics'
``bucketize(..., right=True)`` puts it there).  :func:`reliability_bins`
reports that extra bin as its last row so that its rows add up to the ECE.

>>> import torch
>>> logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
>>> accuracy(logits, torch.tensor([0, 2]), topk=(1, 2))
(0.5, 1.0)
>>> mixed_topk_accuracy(logits, torch.tensor([1, 1]), torch.tensor([0, 0]))
(1.0, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from mixviz._validation import (
    check_finite,
    check_labels,
    check_positive,
    check_tensor,
    value_checks_enabled,
)
from mixviz.mixing.batch import MixedBatch

__all__ = [
    "accuracy",
    "nll",
    "brier_score",
    "expected_calibration_error",
    "maximum_calibration_error",
    "reliability_bins",
    "mixed_topk_accuracy",
    "summary",
    "mixed_evaluation",
    "object_visibility",
    "label_mismatch",
    "memorisation",
    "mixed_topk_by_visibility",
    "VISIBLE_SHARE",
    "MIN_PIXEL_WEIGHT",
]


# --------------------------------------------------------------------------- checks


def _check_scores(name: str, scores: Any) -> torch.Tensor:
    """``scores`` must be a float [N, C] tensor with N >= 1 and C >= 1."""
    check_tensor(name, scores, ndim=2, floating=True)
    if scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one sample and one class, got shape {tuple(scores.shape)}")
    return scores


def _check_logits(logits: Any, labels: Any, labels_name: str = "labels") -> None:
    _check_scores("logits", logits)
    check_labels(labels_name, labels, num_classes=logits.shape[1], batch=logits.shape[0])
    check_finite("logits", logits)


def _check_probs(probs: Any, labels: Any) -> None:
    """``probs`` must be [N, C] with values in [0, 1] (a value check)."""
    _check_scores("probs", probs)
    check_labels("labels", labels, num_classes=probs.shape[1], batch=probs.shape[0])
    check_finite("probs", probs)
    if value_checks_enabled():
        lo, hi = float(probs.min()), float(probs.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"probs must be probabilities in [0, 1] (softmax the logits first), "
                             f"got values in [{lo:.4g}, {hi:.4g}]")


def _check_n_bins(n_bins: Any) -> None:
    check_positive("n_bins", n_bins, integer=True)


# --------------------------------------------------------------------------- accuracy and scores


def accuracy(logits: torch.Tensor, labels: torch.Tensor, topk: int | Sequence[int] = (1, 5)) -> tuple[float, ...]:
    """Top-k accuracy for each k in ``topk``, as fractions in [0, 1].

    A sample is top-k correct when its label is among the k largest logits.  A
    k larger than the number of classes C is clamped to C (as timm's
    ``accuracy`` does), so top-5 on a 3-class problem is 1.0.  An int ``topk``
    gives a 1-tuple.

    Args:
        logits: float [N, C] scores (logits or probabilities: only the order counts).
        labels: int [N] class ids in [0, C).
        topk: the k values, each a positive int.
    """
    _check_logits(logits, labels)
    ks = (topk,) if isinstance(topk, int) else tuple(topk)
    if not ks:
        raise ValueError("topk must name at least one k")
    for k in ks:
        check_positive("topk", k, integer=True)
    num_classes = logits.shape[1]
    ks = tuple(min(k, num_classes) for k in ks)
    pred = logits.topk(max(ks), dim=1).indices                        # [N, maxk]
    hit = pred.eq(labels.unsqueeze(1))                                  # [N, maxk]
    cumulative = hit.cumsum(dim=1).clamp_(max=1).to(torch.float32)      # hit within the first j+1
    per_k = cumulative.mean(dim=0)                                      # [maxk]
    values = per_k[torch.tensor(ks, device=per_k.device) - 1].tolist()
    return tuple(float(v) for v in values)


def nll(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood ``-mean_i log softmax(z_i)[y_i]`` (natural
    log, computed in float32)."""
    _check_logits(logits, labels)
    return float(F.cross_entropy(logits.float(), labels))


def brier_score(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Multiclass Brier score ``mean_i sum_c (p_ic - onehot(y_i)_c)^2``.

    The squared error is *summed* over the classes and averaged over the
    samples (Brier's original definition), so it lies in [0, 2].
    """
    _check_probs(probs, labels)
    target = F.one_hot(labels, probs.shape[1]).to(torch.float32)
    return float((probs.float() - target).pow(2).sum(dim=1).mean())


# --------------------------------------------------------------------------- calibration


def _calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int, norm: str) -> float:
    from torchmetrics.functional.classification import multiclass_calibration_error

    _check_probs(probs, labels)
    _check_n_bins(n_bins)
    value = multiclass_calibration_error(probs, labels, num_classes=probs.shape[1], n_bins=n_bins,
                                         norm=norm, validate_args=False)
    return float(value)


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """Expected calibration error with equal-width confidence bins, L1 norm:

        ECE = sum_b (n_b / N) * |acc_b - conf_b|

    where ``conf_b`` is the mean top probability and ``acc_b`` the top-1
    accuracy of the ``n_b`` samples whose top probability falls in bin b.
    Computed by torchmetrics' ``multiclass_calibration_error(norm="l1")``,
    whose binning is described in the module docstring.
    """
    return _calibration_error(probs, labels, n_bins, "l1")


def maximum_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """Maximum calibration error ``max_b |acc_b - conf_b|`` over the non-empty
    bins (torchmetrics' ``norm="max"``; same bins as the ECE)."""
    return _calibration_error(probs, labels, n_bins, "max")


def reliability_bins(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> pd.DataFrame:
    """Per-bin confidence, accuracy and count for a reliability diagram.

    Returns a DataFrame with ``n_bins + 1`` rows and the columns ``bin_lower``,
    ``bin_upper``, ``confidence`` (mean top probability in the bin),
    ``accuracy`` (top-1 accuracy in the bin) and ``count``.  Row k covers
    confidences in ``[k/n_bins, (k+1)/n_bins)``; the last row
    (``bin_lower == bin_upper == 1``) holds the predictions whose confidence
    is exactly 1.0, which torchmetrics bins on their own.  Empty bins have
    count 0 and NaN confidence and accuracy.  With this binning
    ``sum(count / N * |accuracy - confidence|)`` over the non-empty rows is
    :func:`expected_calibration_error`.
    """
    _check_probs(probs, labels)
    _check_n_bins(n_bins)
    confidence, prediction = probs.float().max(dim=1)
    correct = prediction.eq(labels).to(torch.float32)
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float32, device=probs.device)
    index = torch.bucketize(confidence, edges, right=True) - 1           # in [0, n_bins]
    count = torch.zeros(n_bins + 1, dtype=torch.float32, device=probs.device)
    count.scatter_add_(0, index, torch.ones_like(confidence))
    conf_sum = torch.zeros_like(count).scatter_add_(0, index, confidence)
    acc_sum = torch.zeros_like(count).scatter_add_(0, index, correct)
    lower = edges.double().cpu().numpy()
    upper = np.append(lower[1:], 1.0)
    n = count.double().cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.where(n > 0, conf_sum.double().cpu().numpy() / n, np.nan)
        acc = np.where(n > 0, acc_sum.double().cpu().numpy() / n, np.nan)
    return pd.DataFrame({"bin_lower": lower, "bin_upper": upper, "confidence": conf,
                         "accuracy": acc, "count": n.astype(np.int64)})


# --------------------------------------------------------------------------- mixed accuracy


def mixed_topk_accuracy(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor) -> tuple[float, float]:
    """Top-1 and Top-2 accuracy on mixed samples, as in the Decoupled Mixup paper.

    * Top-1: the largest logit is one of ``{y_a, y_b}``; over all samples.
    * Top-2: the two largest logits are exactly ``{y_a, y_b}`` (in either
      order); over the pairs with ``y_a != y_b`` only (a pair of one class
      has no second class to find).  NaN when every pair has ``y_a == y_b``.

    Needs at least 2 classes.
    """
    _check_logits(logits, y_a, "y_a")
    check_labels("y_b", y_b, num_classes=logits.shape[1], batch=logits.shape[0])
    if logits.shape[1] < 2:
        raise ValueError(f"logits must have at least 2 classes for Top-2 accuracy, got {logits.shape[1]}")
    top = logits.topk(2, dim=1).indices
    first, second = top[:, 0], top[:, 1]
    top1 = (first.eq(y_a) | first.eq(y_b)).to(torch.float32).mean()
    exact = (first.eq(y_a) & second.eq(y_b)) | (first.eq(y_b) & second.eq(y_a))
    distinct = y_a.ne(y_b)
    n_distinct = distinct.sum()
    top2 = (exact & distinct).sum().to(torch.float32) / n_distinct.to(torch.float32)  # 0/0 -> NaN
    return float(top1), float(top2)


def summary(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> dict[str, float]:
    """The evaluation numbers stored in ``metrics.json``.

    Keys: ``test_acc`` (top-1), ``top5`` (k clamped to C, so 1.0 when C <= 5),
    ``nll``, ``ece``, ``mce`` (``n_bins`` equal-width bins) and ``brier``;
    probabilities are ``softmax(logits)`` in float32.
    """
    _check_logits(logits, labels)
    _check_n_bins(n_bins)
    with torch.no_grad():
        probs = logits.detach().float().softmax(dim=1)
        top1, top5 = accuracy(logits.detach(), labels, topk=(1, 5))
        return {
            "test_acc": top1,
            "top5": top5,
            "nll": nll(logits.detach(), labels),
            "ece": expected_calibration_error(probs, labels, n_bins),
            "mce": maximum_calibration_error(probs, labels, n_bins),
            "brier": brier_score(probs, labels),
        }


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
                     **mix_options: Any) -> dict[str, float]:
    """Mixed Top-1/Top-2 accuracy of ``model`` on mixed copies of an evaluation set.

    The set is cut into batches of ``batch_size`` in order; each batch is mixed
    with ``mixviz.mixing.mix(policy, x, y, alpha=alpha, generator=g,
    model=model, **mix_options)`` where ``g`` is one generator on the images'
    device seeded with ``seed`` and shared by all batches.  For static
    policies the same seed therefore gives the same mixed set for every
    model; dynamic policies (saliency-guided) also depend on the model.  The
    scores are :func:`mixed_topk_accuracy` over the whole set.

    The model is put in eval mode and restored afterwards.  The forward pass
    runs under ``torch.no_grad``; the mixing step runs with gradients enabled
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

    Returns:
        ``{"mixed_top1": float, "mixed_top2": float}``.
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

    from mixviz.mixing import mix

    generator = torch.Generator(device=images.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    logits, y_a, y_b = [], [], []
    try:
        for start in range(0, images.shape[0], batch_size):
            x = _as_unit_float(images[start:start + batch_size])
            y = labels[start:start + batch_size]
            with torch.enable_grad():  # dynamic policies take the input gradient
                mixed = mix(policy, x, y, alpha=alpha, generator=generator, model=model, **mix_options)
            with torch.no_grad():
                logits.append(model(mixed.inputs.detach()).float())
            y_a.append(mixed.y_a)
            y_b.append(mixed.y_b)
    finally:
        model.train(was_training)
    top1, top2 = mixed_topk_accuracy(torch.cat(logits), torch.cat(y_a), torch.cat(y_b))
    return {"mixed_top1": top1, "mixed_top2": top2}


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


def _partner_in_place(policy: str) -> bool:
    """False for policies that paste a rescaled partner (ResizeMix)."""
    from mixviz.mixing import POLICIES

    info = POLICIES.get(policy)
    return True if info is None else info.exact_lerp


def object_visibility(mixed: MixedBatch, object_masks: torch.Tensor,
                      min_weight: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The fraction of each mixed sample's two objects that is visible.

    With the mixing mask ``m`` (the share of each pixel taken from sample a)
    and the object masks ``o_a = object_masks[i]``, ``o_b =
    object_masks[index[i]]``:

        vis_a = sum(m * o_a) / sum(o_a),    vis_b = sum((1 - m) * o_b) / sum(o_b)

    Policies without a mask (mixup, input averaging, none) keep both objects
    whole but faded, and their visibility is defined as ``lam`` and ``1 - lam``.
    An empty object mask gives NaN.

    The formula assumes the partner's pixels stay in place (every policy
    whose ``policy_info(...).exact_lerp`` is true: CutMix, FMix, GridMix,
    SmoothMix, SaliencyMix, PuzzleMix without transport).  ResizeMix pastes a
    shrunk copy of the *whole* partner image, so its partner object is whole
    (only smaller): ``vis_b`` is 1 when any pixel comes from the partner and 0
    otherwise; ``vis_a`` uses the formula above.  Batches whose ``policy`` is
    not a registered name are treated as in-place.

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
    obj_a = object_masks.to(torch.float32)
    obj_b = obj_a[mixed.index]
    m = mixed.mask.to(device=obj_a.device, dtype=torch.float32)
    own_a, own_b = m, 1.0 - m                      # the weight of each image in each pixel
    if min_weight is not None:
        own_a, own_b = (own_a >= min_weight).to(torch.float32), (own_b >= min_weight).to(torch.float32)
    vis_a = (own_a * obj_a).sum(dim=(1, 2, 3)) / obj_a.sum(dim=(1, 2, 3))
    if _partner_in_place(mixed.policy):
        vis_b = (own_b * obj_b).sum(dim=(1, 2, 3)) / obj_b.sum(dim=(1, 2, 3))
    else:
        vis_b = (own_b.sum(dim=(1, 2, 3)) > 0).to(torch.float32)
        vis_b = torch.where(obj_b.sum(dim=(1, 2, 3)) > 0, vis_b, torch.nan)
    return vis_a, vis_b
    vis_a = (m * obj_a).sum(dim=(1, 2, 3)) / obj_a.sum(dim=(1, 2, 3))
    if _partner_in_place(mixed.policy):
        vis_b = ((1.0 - m) * obj_b).sum(dim=(1, 2, 3)) / obj_b.sum(dim=(1, 2, 3))
    else:
        vis_b = ((1.0 - m).sum(dim=(1, 2, 3)) > 0).to(torch.float32)
        vis_b = torch.where(obj_b.sum(dim=(1, 2, 3)) > 0, vis_b, torch.nan)
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
    device = logits.device
    seen_a, seen_b = vis_a.to(device).nan_to_num(0.0) >= visible, vis_b.to(device).nan_to_num(0.0) >= visible
    pair = mixed.y_a.to(device).ne(mixed.y_b.to(device))
    out: dict[str, float] = {}
    for group, keep in (("both", pair & seen_a & seen_b), ("one", pair & (seen_a ^ seen_b))):
        n = int(keep.sum())
        if n:
            top1, top2 = mixed_topk_accuracy(logits[keep], mixed.y_a.to(device)[keep], mixed.y_b.to(device)[keep])
        else:
            top1 = top2 = math.nan
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
