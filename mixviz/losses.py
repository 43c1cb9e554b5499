"""Objectives for mixup training: mixup cross-entropy, the Decoupled Mixup (DM)
loss, and midpoint soft labels.

Notation: ``z`` are the logits ``[B, C]``; sample ``i`` mixes class ``a = y_a[i]``
(share ``lam[i]``) with class ``b = y_b[i]`` (share ``1 - lam[i]``).

* :func:`mixup_cross_entropy` --
  ``MCE = -(lam * log softmax(z)[a] + (1 - lam) * log softmax(z)[b])``.
* :func:`decoupled_mixup_loss` / :class:`DecoupledMixupLoss` (Liu, Li et al.,
  arXiv 2203.10761) --
  ``DM = MCE + w_a * dec_a + w_b * dec_b`` with the *decoupled* terms
  ``dec_i = -log(exp(z_i) / (exp(z_i) + sum_{c not in {a, b}} exp(z_c)))``:
  a softmax from which the *other* mixed class is removed, so each class is
  scored without competing with its partner.  ``w_a = eta * lam**p``,
  ``w_b = eta * (1 - lam)**p`` (``p = lam_power``; ``p = 0`` gives a constant
  ``eta`` since ``0**0 = 1``), kept for both classes (``mode="both"``), only for
  the class whose share is ``< thr`` (``"less"``) or ``>= thr`` (``"more"``).
  Rows with ``a == b`` are exactly plain cross-entropy (their decoupled terms
  are zero), so unmixed batches give plain CE.
* :class:`MidpointLoss` (the "bypassing the random input mixing" reading) --
  soft-target CE on ``(1 - beta) * local + beta * global`` where ``local`` is
  the batch's mixup target and ``global`` comes from a pluggable
  :class:`GlobalLabelSource` (:class:`OnlineClassLabels` or
  :class:`SelfPrediction`).

All losses compute in float32 (float64 when the logits are float64), so float16
/ bfloat16 logits from autocast are safe, and work in log space: logits of
magnitude ``1e4`` give finite values and gradients.

Shape and type checks are always on.  Value checks (labels in range, ``lam`` in
[0, 1], finite logits) need a host sync and follow :func:`mixviz.validation`.

:func:`build` makes the criterion that :func:`mixviz.train.fit` uses;
:func:`dm_defaults` holds the authors' per-policy DM settings.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from mixviz._validation import (
    check_choice,
    check_finite,
    check_labels,
    check_positive,
    check_tensor,
    value_checks_enabled,
)
from mixviz.mixing.batch import MixedBatch

__all__ = [
    "LOSSES",
    "DM_MODES",
    "mixup_cross_entropy",
    "soft_target_cross_entropy",
    "decoupled_mixup_loss",
    "soft_target_decoupled_mixup_loss",
    "pairs_from_soft_targets",
    "PlainCrossEntropyLoss",
    "MixupCrossEntropyLoss",
    "DecoupledMixupLoss",
    "GlobalLabelSource",
    "OnlineClassLabels",
    "SelfPrediction",
    "MidpointLoss",
    "build",
    "dm_defaults",
]

LOSSES = ("ce", "mixup_ce", "dm", "midpoint")
DM_MODES = ("both", "less", "more")
REDUCTIONS = ("mean", "sum", "none")
GLOBAL_SOURCES = ("online", "self")

# A soft-target row whose second-largest share (above the floor) is at most
# this fraction of the largest is read as a single class.
SINGLE_CLASS_TOL = 1e-6
# A logit that stands for "not a class" (exp() of it is 0; 0 * it is 0, unlike -inf).
_NEG = -1e30


# --------------------------------------------------------------------------- checks


def _check_reduction(reduction: str) -> None:
    check_choice("reduction", reduction, REDUCTIONS)


def _check_logits(logits: Any, num_classes: int | None = None) -> torch.Tensor:
    """2-D float logits ``[B, C]`` (``C == num_classes`` when given), finite
    (value check).  Returns them in the compute dtype (float32 or float64)."""
    check_tensor("logits", logits, ndim=2, floating=True)
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(f"logits must have {num_classes} columns (num_classes), got shape {tuple(logits.shape)}")
    check_finite("logits", logits)
    return logits if logits.dtype == torch.float64 else logits.float()


def _check_pair(y_a: Any, y_b: Any, num_classes: int, batch: int) -> None:
    check_labels("y_a", y_a, num_classes, batch)
    check_labels("y_b", y_b, num_classes, batch)


def _as_lam(lam: Any, batch: int, like: torch.Tensor) -> torch.Tensor:
    """``lam`` as a ``[B]`` tensor with the dtype and device of ``like``.

    A Python number or a 0-D tensor is broadcast; a 1-D tensor must have
    length ``B``.  Values must lie in [0, 1] (value check)."""
    if isinstance(lam, numbers.Real) and not isinstance(lam, bool):
        lam = torch.full((batch,), float(lam), dtype=like.dtype, device=like.device)
    elif isinstance(lam, torch.Tensor):
        if not lam.is_floating_point():
            raise TypeError(f"lam must be a float tensor or a number, got {lam.dtype}")
        if lam.dim() == 0:
            lam = lam.expand(batch)
        elif lam.shape != (batch,):
            raise ValueError(f"lam must be a scalar or have shape [{batch}] (the batch size), got {tuple(lam.shape)}")
        lam = lam.to(device=like.device, dtype=like.dtype)
    else:
        raise TypeError(f"lam must be a float tensor or a number, got {type(lam).__name__}")
    if value_checks_enabled() and not bool(((lam >= 0) & (lam <= 1)).all()):
        raise ValueError("lam must lie in [0, 1]")
    return lam


def _check_dm_options(eta: float, mode: str, thr: float, lam_power: float) -> None:
    check_positive("eta", eta, allow_zero=True)
    check_choice("mode", mode, DM_MODES)
    if isinstance(thr, bool) or not isinstance(thr, numbers.Real):
        raise TypeError(f"thr must be a number, got {type(thr).__name__}")
    if not 0.0 < thr < 1.0:
        raise ValueError(f"thr must lie in the open interval (0, 1), got {thr!r}")
    check_positive("lam_power", lam_power, allow_zero=True)


def _check_soft_targets(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    check_tensor("target", target, ndim=2, floating=True)
    if target.shape != logits.shape:
        raise ValueError(f"target must have the shape of logits {tuple(logits.shape)}, got {tuple(target.shape)}")
    check_finite("target", target)
    if value_checks_enabled() and bool((target < 0).any()):
        raise ValueError("target must be non-negative (a soft-target distribution per row)")
    return target.to(device=logits.device, dtype=logits.dtype)


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


# --------------------------------------------------------------------------- functions


def mixup_cross_entropy(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor,
                        lam: torch.Tensor | float, reduction: str = "mean") -> torch.Tensor:
    """Mixup cross-entropy ``-(lam * log softmax(z)[a] + (1 - lam) * log softmax(z)[b])``.

    Equal to the soft-target CE with ``lam * onehot(a) + (1 - lam) * onehot(b)``.

    Args:
        logits: ``[B, C]`` float logits.
        y_a, y_b: ``[B]`` integer labels of the two mixed samples.
        lam: ``[B]`` float tensor of shares of ``y_a`` (a number or 0-D tensor is broadcast).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (``[B]``).
    """
    _check_reduction(reduction)
    z = _check_logits(logits)
    batch, num_classes = z.shape
    _check_pair(y_a, y_b, num_classes, batch)
    lam = _as_lam(lam, batch, z)
    logp = F.log_softmax(z, dim=1).gather(1, torch.stack((y_a, y_b), 1))
    loss = -(lam * logp[:, 0] + (1.0 - lam) * logp[:, 1])
    return _reduce(loss, reduction)


def soft_target_cross_entropy(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``-sum_c t[c] * log softmax(z)[c]`` per row (timm's ``SoftTargetCrossEntropy``)."""
    _check_reduction(reduction)
    z = _check_logits(logits)
    t = _check_soft_targets(target, z)
    return _reduce(-(t * F.log_softmax(z, dim=1)).sum(1), reduction)


def _dm_weights(shares: torch.Tensor, keep: torch.Tensor, eta: float, mode: str, thr: float,
                lam_power: float) -> torch.Tensor:
    """``[B, 2]`` weights ``eta * share**p`` of the decoupled terms of classes
    (a, b), zeroed by the mode's threshold and where ``keep`` (``[B, 1]``,
    ``a != b``) is false.  ``0**0 = 1``, so ``p = 0`` gives a constant ``eta``."""
    if mode == "less":
        keep = keep & (shares < thr)
    elif mode == "more":
        keep = keep & (shares >= thr)
    if lam_power == 0:
        return keep.to(shares.dtype).mul_(eta)
    return shares.pow(lam_power).mul_(keep).mul_(eta)


def _rest_logsumexp(z: torch.Tensor, pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``rest = logsumexp_{c not in {a, b}} z_c`` ``[B, 1]`` (``-inf`` when no
    class is left) and the softmax ``q`` over the classes outside the pair
    ``[B, C]`` (0 on the pair; all 0 when no class is left), from one masked
    softmax pass: ``rest = top - log(max q)`` with ``top`` the largest logit
    outside the pair (amax is much faster than max-with-index on CPUs)."""
    masked = z.scatter(1, pair, float("-inf"))
    if z.shape[1] > 2:  # some class lies outside every pair
        prob_rest = torch.softmax(masked, dim=1)
        return masked.amax(1, keepdim=True).sub_(prob_rest.amax(1, keepdim=True).log_()), prob_rest
    rest = torch.logsumexp(masked, dim=1, keepdim=True)
    return rest, torch.exp(masked - rest.nan_to_num(neginf=0.0))


def _softplus(x: torch.Tensor) -> torch.Tensor:
    """``log(1 + exp(x))``; the linear branch starts where it is exact in float64."""
    return F.softplus(x, threshold=40.0)


def decoupled_mixup_loss(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: torch.Tensor | float, *,
                         eta: float = 0.1, mode: str = "both", thr: float = 0.5, lam_power: float = 0.0,
                         reduction: str = "mean") -> torch.Tensor:
    """Decoupled Mixup loss ``MCE + w_a * dec_a + w_b * dec_b``.

    ``dec_i = -log(exp(z_i) / (exp(z_i) + sum_{c not in {a, b}} exp(z_c)))`` is
    the cross-entropy of class ``i`` in the softmax without its partner;
    ``w_a = eta * lam**p``, ``w_b = eta * (1 - lam)**p`` with ``p = lam_power``.
    ``mode="less"`` keeps the weight only for a class whose share is ``< thr``,
    ``"more"`` only for shares ``>= thr``, ``"both"`` always.  Rows with
    ``a == b`` are exactly plain cross-entropy (no decoupled term: the pair
    has no partner to remove).

    Computed in log space: ``dec_i = softplus(logsumexp_{c not in {a,b}} z_c - z_i)``
    and the mixup CE from a 3-way log-softmax over ``(z_a, z_b, rest)``; one
    softmax over the classes outside the pair is the only ``[B, C]`` pass that
    needs ``exp``, and the gradient is written by hand (computed in the forward
    pass when ``logits`` require one).  ``lam`` gets no gradient.

    Args:
        logits: ``[B, C]`` float logits (any float dtype; computed in float32).
        y_a, y_b: ``[B]`` integer labels.
        lam: ``[B]`` float shares of ``y_a`` (a number or 0-D tensor is broadcast).
        eta: weight of the decoupled terms, ``>= 0`` (0 gives mixup CE).
        mode: ``"both"``, ``"less"`` or ``"more"``.
        thr: share threshold in (0, 1) for ``"less"``/``"more"``.
        lam_power: ``p >= 0``.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (``[B]``).
    """
    _check_reduction(reduction)
    _check_dm_options(eta, mode, thr, lam_power)
    return _dm_on_pairs(_check_logits(logits), y_a, y_b, lam, eta, mode, thr, lam_power, reduction)


def _dm_on_pairs(z: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: torch.Tensor | float, eta: float,
                 mode: str, thr: float, lam_power: float, reduction: str) -> torch.Tensor:
    """:func:`decoupled_mixup_loss` on checked logits and options."""
    batch, num_classes = z.shape
    _check_pair(y_a, y_b, num_classes, batch)
    lam = _as_lam(lam, batch, z)
    return _dm(z, y_a, y_b, lam, eta, mode, thr, lam_power, reduction)


def _dm(z: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: torch.Tensor, eta: float, mode: str,
        thr: float, lam_power: float, reduction: str, with_mce: bool = True) -> torch.Tensor:
    """The reduced DM loss on checked inputs (``lam`` is a constant); only the
    decoupled part ``w_a dec_a + w_b dec_b`` when ``with_mce`` is false."""
    same = y_a == y_b
    lam = lam.masked_fill(same, 1.0)  # a == b: all of the target on a
    shares = torch.stack((lam, 1.0 - lam), 1)
    same = same.unsqueeze(1)
    weights = _dm_weights(shares, ~same, eta, mode, thr, lam_power)
    scale = {"mean": 1.0 / max(len(z), 1), "sum": 1.0, "none": None}[reduction]
    return _DecoupledMixupRows.apply(z, torch.stack((y_a, y_b), 1), same, shares, weights, with_mce, scale)


class _DecoupledMixupRows(torch.autograd.Function):
    """Per-row DM loss whose gradient is computed in the forward pass: one
    softmax over the classes outside the pair is the only ``[B, C]`` pass that
    needs ``exp``, and the gradient reuses the forward's intermediates instead
    of saving them for a second pass (plain autograd over the same formulas
    costs about 1.4x as much on a CPU).  The backward only scales the stored
    gradient by the incoming one, so the loss is once differentiable.

    Forward, with ``rest = logsumexp_{c not in {a,b}} z_c`` and ``gap_i = rest - z_i``:
    ``dec_i = softplus(gap_i)``; ``log p_a, log p_b, log p_rest`` (``p_rest`` the
    softmax mass outside the pair) from a 3-way log-softmax of ``(z_a, z_b, rest)``;
    ``loss = -(s_a log p_a + s_b log p_b) + w_a dec_a + w_b dec_b`` with shares
    ``s = (lam, 1 - lam)``.  Rows with ``a == b`` come in with ``s = (1, 0)``,
    ``w = 0`` and ``z_b`` replaced by ``_NEG`` (probability 0): plain CE.

    Gradient, with ``k = sum_i w_i sigmoid(gap_i)`` and ``q`` the softmax over
    the classes outside the pair:
    ``d/dz_c = q_c * (p_rest + k)`` for ``c`` outside the pair and
    ``d/dz_i = p_i - s_i - w_i sigmoid(gap_i)`` for ``i`` in the pair
    (scatter-added).  Without the mixup-CE part the ``p`` and ``s`` terms drop out.
    The reduction is folded in: ``scale`` is ``1/B`` (mean), 1 (sum) or None (per row).
    It is only computed when ``z`` requires a gradient.
    """

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, pair: torch.Tensor, same: torch.Tensor, shares: torch.Tensor,
                weights: torch.Tensor, with_mce: bool, scale: float | None) -> torch.Tensor:
        need = ctx.needs_input_grad[0]
        z_pair = z.gather(1, pair)
        rest, prob_rest = _rest_logsumexp(z, pair)
        gap = rest - z_pair
        rows = weights * _softplus(gap)
        if need:
            pulled = torch.sigmoid(gap).mul_(weights)
            coef = pulled.sum(1, keepdim=True)
        if with_mce:
            logits3 = torch.cat((z_pair, rest), 1)
            logits3[:, 1:2].masked_fill_(same, _NEG)  # class b not counted twice when a == b
            log_prob = torch.log_softmax(logits3, dim=1)
            rows = torch.addcmul(rows, shares, log_prob[:, :2], value=-1.0)
            if need:
                prob = log_prob.exp_()
                coef += prob[:, 2:]
                grad_pair = (prob[:, :2] - shares).sub_(pulled)
        elif need:
            grad_pair = pulled.neg_()
        ctx.scale = scale
        if need:
            if scale is not None:
                coef.mul_(scale)
                grad_pair.mul_(scale)
            ctx.save_for_backward(prob_rest.mul_(coef).scatter_add_(1, pair, grad_pair))
        return rows.sum(1) if scale is None else rows.sum() * scale

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None, None
        (grad_z,) = ctx.saved_tensors
        grad_z = grad_z * (grad.unsqueeze(1) if ctx.scale is None else grad)
        return grad_z, None, None, None, None, None, None


def pairs_from_soft_targets(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Recover ``(y_a, y_b, lam)`` from mixup soft targets ``[B, C]``.

    Works for torchvision v2 ``MixUp``/``CutMix`` and timm ``Mixup``/``mixup_target``
    outputs, including timm's label smoothing: a row there is
    ``off + (on - off) * (lam * onehot(a) + (1 - lam) * onehot(b))`` with a
    constant floor ``off = smoothing / C``.  The floor is estimated as the
    row minimum (when ``C >= 3``; with ``C == 2`` no class is outside the pair
    and the floor is taken as 0), subtracted, and the two largest remaining
    entries give ``a`` (the larger, so ``lam >= 0.5``), ``b`` and
    ``lam = t'_a / (t'_a + t'_b)``.  A row whose second share is at most
    ``SINGLE_CLASS_TOL`` of the first (unmixed samples, ``lam = 1``) gives
    ``b = a`` and ``lam = 1``.  Mass on a third class (targets that are not
    two-hot plus a floor) is ignored.
    """
    check_tensor("target", target, ndim=2, floating=True)
    if target.shape[1] < 2:
        raise ValueError(f"target must have at least 2 classes, got shape {tuple(target.shape)}")
    t = target.detach()
    t = t if t.dtype == torch.float64 else t.float()
    top, idx = t.topk(2, dim=1)
    if t.shape[1] >= 3:
        top = (top - t.amin(1, keepdim=True)).clamp_min(0.0)
    single = top[:, 1] <= SINGLE_CLASS_TOL * top[:, 0]
    lam = torch.where(single, torch.ones_like(top[:, 0]), top[:, 0] / (top[:, 0] + top[:, 1]).clamp_min(1e-30))
    y_a = idx[:, 0]
    y_b = torch.where(single, y_a, idx[:, 1])
    return y_a, y_b, lam


def soft_target_decoupled_mixup_loss(logits: torch.Tensor, target: torch.Tensor, *, eta: float = 0.1,
                                     mode: str = "both", thr: float = 0.5, lam_power: float = 0.0,
                                     reduction: str = "mean") -> torch.Tensor:
    """DM loss for soft targets ``[B, C]`` (torchvision v2 / timm mixup output).

    ``soft CE(z, target) + w_a * dec_a + w_b * dec_b``: the mixup-CE part is the
    soft-target cross-entropy on ``target`` as given (so label smoothing is
    kept, and ``eta = 0`` is exactly timm's ``SoftTargetCrossEntropy``); the
    two classes and ``lam`` of the decoupled part come from
    :func:`pairs_from_soft_targets` (the label-smoothing floor removed).  Rows
    with a single class get no decoupled term: plain (soft-target) CE.
    """
    _check_reduction(reduction)
    _check_dm_options(eta, mode, thr, lam_power)
    return _dm_on_soft_targets(_check_logits(logits), target, eta, mode, thr, lam_power, reduction)


def _dm_on_soft_targets(z: torch.Tensor, target: torch.Tensor, eta: float, mode: str, thr: float,
                        lam_power: float, reduction: str) -> torch.Tensor:
    """:func:`soft_target_decoupled_mixup_loss` on checked logits and options."""
    t = _check_soft_targets(target, z)
    y_a, y_b, lam = pairs_from_soft_targets(t)
    decoupled = _dm(z, y_a, y_b, lam.to(z.dtype), eta, mode, thr, lam_power, "none", with_mce=False)
    return _reduce(decoupled - (t * F.log_softmax(z, dim=1)).sum(1), reduction)


# --------------------------------------------------------------------------- modules


def _labels_of(target: Any, name: str = "target") -> torch.Tensor:
    if isinstance(target, MixedBatch):
        return target.y_a
    if isinstance(target, torch.Tensor) and target.dim() == 1:
        return target
    raise TypeError(f"{name} must be a MixedBatch or a [B] label tensor, got "
                    f"{type(target).__name__ if not isinstance(target, torch.Tensor) else tuple(target.shape)}")


class _Loss(nn.Module):
    """Common arguments: the reduction and an optional class count checked
    against the logits' width."""

    def __init__(self, num_classes: int | None = None, reduction: str = "mean") -> None:
        super().__init__()
        _check_reduction(reduction)
        if num_classes is not None:
            check_positive("num_classes", num_classes, integer=True)
        self.num_classes = num_classes
        self.reduction = reduction

    def _logits(self, logits: Any) -> torch.Tensor:
        return _check_logits(logits, self.num_classes)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, reduction={self.reduction!r}"


class PlainCrossEntropyLoss(_Loss):
    """Plain cross-entropy on the first labels: ``-log softmax(z)[y_a]``.

    ``target`` is a :class:`MixedBatch` or ``[B]`` labels.  For a mixed batch
    only ``y_a`` is used (the partner and ``lam`` are ignored), which is the
    right loss for unmixed batches (``MixedBatch.unmixed``) and a deliberate
    "ignore the mixing" baseline otherwise.
    """

    def forward(self, logits: torch.Tensor, target: MixedBatch | torch.Tensor) -> torch.Tensor:
        z = self._logits(logits)
        y = _labels_of(target)
        check_labels("y_a" if isinstance(target, MixedBatch) else "target", y, z.shape[1], z.shape[0])
        return F.cross_entropy(z, y, reduction=self.reduction)


class MixupCrossEntropyLoss(_Loss):
    """Mixup cross-entropy (:func:`mixup_cross_entropy`).

    ``target`` is a :class:`MixedBatch`, ``[B, C]`` soft targets (then it is
    :func:`soft_target_cross_entropy`) or ``[B]`` labels (plain CE).
    """

    def forward(self, logits: torch.Tensor, target: MixedBatch | torch.Tensor) -> torch.Tensor:
        z = self._logits(logits)
        if isinstance(target, MixedBatch):
            return mixup_cross_entropy(z, target.y_a, target.y_b, target.lam, self.reduction)
        if isinstance(target, torch.Tensor) and target.dim() == 2:
            return soft_target_cross_entropy(z, target, self.reduction)
        y = _labels_of(target)
        return mixup_cross_entropy(z, y, y, 1.0, self.reduction)


class DecoupledMixupLoss(_Loss):
    """The Decoupled Mixup loss as a module (:func:`decoupled_mixup_loss`).

    ``forward(logits, target)`` takes a :class:`MixedBatch`, or ``[B, C]`` soft
    targets from torchvision v2 ``MixUp``/``CutMix`` or timm ``Mixup`` (any
    label smoothing; see :func:`soft_target_decoupled_mixup_loss`), so it can
    replace timm's ``SoftTargetCrossEntropy``; or ``[B]`` labels (plain CE).

    Args:
        eta: weight of the decoupled terms (``>= 0``).
        mode: ``"both"``, ``"less"`` or ``"more"``.
        thr: share threshold in (0, 1) for the ``"less"``/``"more"`` modes.
        lam_power: ``p`` in ``w = eta * share**p``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        num_classes: when given, the logits must have this many columns.
    """

    def __init__(self, eta: float = 0.1, mode: str = "both", thr: float = 0.5, lam_power: float = 0.0,
                 reduction: str = "mean", num_classes: int | None = None) -> None:
        super().__init__(num_classes, reduction)
        _check_dm_options(eta, mode, thr, lam_power)
        self.eta, self.mode, self.thr, self.lam_power = float(eta), mode, float(thr), float(lam_power)

    def forward(self, logits: torch.Tensor, target: MixedBatch | torch.Tensor) -> torch.Tensor:
        z = self._logits(logits)
        options = (self.eta, self.mode, self.thr, self.lam_power, self.reduction)
        if isinstance(target, MixedBatch):
            return _dm_on_pairs(z, target.y_a, target.y_b, target.lam, *options)
        if isinstance(target, torch.Tensor) and target.dim() == 2:
            return _dm_on_soft_targets(z, target, *options)
        y = _labels_of(target)
        return _dm_on_pairs(z, y, y, 1.0, *options)

    def extra_repr(self) -> str:
        return (f"eta={self.eta}, mode={self.mode!r}, thr={self.thr}, lam_power={self.lam_power}, "
                + super().extra_repr())


# --------------------------------------------------------------------------- midpoint soft labels


class GlobalLabelSource(nn.Module, ABC):
    """Where the *global* soft label of :class:`MidpointLoss` comes from.

    ``targets(logits, mixed)`` returns ``[B, C]`` rows that are distributions
    (never back-propagated: the caller detaches them); ``update(logits, mixed)``
    is called once per training step with detached logits; ``epoch_end()`` once
    per epoch.  State that must survive a checkpoint lives in buffers.
    """

    @abstractmethod
    def targets(self, logits: torch.Tensor, mixed: MixedBatch) -> torch.Tensor:
        """``[B, C]`` global soft labels for the batch."""

    def update(self, logits: torch.Tensor, mixed: MixedBatch) -> None:
        """Accumulate what the step teaches (default: nothing)."""

    def epoch_end(self) -> None:
        """Publish what the epoch taught (default: nothing)."""


class SelfPrediction(GlobalLabelSource):
    """Reading ``"self"``: the global label is the model's own detached
    prediction ``softmax(z)`` on the midpoint (self-distillation)."""

    def targets(self, logits: torch.Tensor, mixed: MixedBatch) -> torch.Tensor:
        return F.softmax(logits.detach(), dim=1)


class OnlineClassLabels(GlobalLabelSource):
    """Reading ``"online"``: a class-by-class soft-label table learnt from the
    model's own predictions during the previous epoch (online label smoothing,
    Zhang et al. 2021).

    Global label of a sample mixing ``a`` and ``b``:
    ``lam * table[a] + (1 - lam) * table[b]`` (``table[a]`` when ``a == b``).

    Which predictions count (the inputs are midpoints, not clean images):

    * an unmixed sample (``a == b``) counts for class ``a`` when its top-1
      prediction is ``a`` (plain online label smoothing);
    * a mixed sample (``a != b``) counts when its top-2 predictions are exactly
      ``{a, b}`` (the paper's Top-2 mixup accuracy), and then for *both*
      classes: class ``a`` receives the prediction with the partner's entry
      ``b`` removed and the rest renormalised, class ``b`` likewise.  Removing
      the partner keeps the random pairing out of the class-similarity rows.

    Each step adds these distributions to ``sums[class]`` and 1 to
    ``counts[class]``; :meth:`epoch_end` sets ``table[k] = sums[k] / counts[k]``
    (renormalised) for every class with ``counts[k] > 0`` (other rows keep their
    previous value) and clears the accumulators.  So the table changes only at
    epoch ends and every row is a distribution.  Under ``torch.distributed`` the
    accumulators are summed over the ranks first, so every rank gets the same table.

    Args:
        num_classes: ``C``.
        init: the table before the first epoch end: ``"onehot"`` (default, as in
            online label smoothing: the first epoch trains on the local target
            alone) or ``"uniform"``.
    """

    def __init__(self, num_classes: int, init: str = "onehot") -> None:
        super().__init__()
        check_positive("num_classes", num_classes, integer=True)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 for the online soft-label table, got {num_classes}")
        check_choice("init", init, ("onehot", "uniform"))
        self.num_classes = num_classes
        self.init = init
        uniform = torch.full((num_classes, num_classes), 1.0 / num_classes)
        table = torch.eye(num_classes) if init == "onehot" else uniform
        self.register_buffer("table", table)
        self.register_buffer("sums", torch.zeros(num_classes, num_classes))
        self.register_buffer("counts", torch.zeros(num_classes))

    def targets(self, logits: torch.Tensor, mixed: MixedBatch) -> torch.Tensor:
        lam = mixed.lam.to(self.table.dtype).unsqueeze(1)
        return lam * self.table[mixed.y_a] + (1.0 - lam) * self.table[mixed.y_b]

    @torch.no_grad()
    def update(self, logits: torch.Tensor, mixed: MixedBatch) -> None:
        prob = F.softmax(logits.detach().to(self.table.dtype), dim=1)
        y_a, y_b = mixed.y_a, mixed.y_b
        same = y_a == y_b
        top2 = prob.topk(2, dim=1).indices
        hit_pair = ((top2[:, 0] == y_a) & (top2[:, 1] == y_b)) | ((top2[:, 0] == y_b) & (top2[:, 1] == y_a))
        hit = torch.where(same, top2[:, 0] == y_a, hit_pair)
        for cls, partner, weight in ((y_a, y_b, hit), (y_b, y_a, hit & ~same)):
            q = torch.where(same.unsqueeze(1), prob, prob.scatter(1, partner.unsqueeze(1), 0.0))
            q = q / q.sum(1, keepdim=True).clamp_min(1e-30)
            rows = F.one_hot(cls, self.num_classes).to(prob.dtype) * weight.unsqueeze(1)
            self.sums += rows.T @ q  # a matmul, not index_add_: deterministic on GPUs
            self.counts += rows.sum(0)

    @torch.no_grad()
    def epoch_end(self) -> None:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(self.sums)  # every rank saw its own shard: pool them, so the tables agree
            dist.all_reduce(self.counts)
        seen = (self.counts > 0).unsqueeze(1)
        rows = self.sums / self.counts.clamp_min(1.0).unsqueeze(1)
        rows = rows / rows.sum(1, keepdim=True).clamp_min(1e-30)
        self.table.copy_(torch.where(seen, rows, self.table))
        self.sums.zero_()
        self.counts.zero_()

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, init={self.init!r}"


class MidpointLoss(_Loss):
    """Midpoint soft labels (the "bypassing the random input mixing" paper).

    ``loss = -sum_c t[c] log softmax(z)[c]`` with
    ``t = (1 - beta) * local + beta * global``: ``local`` is the batch's mixup
    target ``mixed.soft_targets(C)`` (for the ``average`` policy, ``lam = 0.5``:
    the average of the two one-hots) and ``global`` comes from ``source``
    (detached: no gradient flows through it).  ``beta = 0`` is mixup CE.

    ``source.update`` is called with each batch only while the module is in
    training mode and gradients are enabled, so evaluating under
    ``torch.no_grad()`` or after ``.eval()`` leaves the online table alone.
    Call :meth:`epoch_end` once per epoch.  Move the module to the model's
    device (``.to(device)``): the online table is a buffer.

    Args:
        num_classes: ``C``.
        beta: weight of the global label, in [0, 1].
        source: ``"online"`` (:class:`OnlineClassLabels`), ``"self"``
            (:class:`SelfPrediction`) or a :class:`GlobalLabelSource`.
        init: table initialisation for ``"online"`` (``"onehot"`` or ``"uniform"``).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    def __init__(self, num_classes: int, beta: float = 0.5, source: str | GlobalLabelSource = "online",
                 init: str | None = None, reduction: str = "mean") -> None:
        super().__init__(num_classes, reduction)
        if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
            raise TypeError(f"beta must be a number, got {type(beta).__name__}")
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must lie in [0, 1], got {beta!r}")
        self.beta = float(beta)
        self.source = self._make_source(source, num_classes, init)

    @staticmethod
    def _make_source(source: str | GlobalLabelSource, num_classes: int, init: str | None) -> GlobalLabelSource:
        if isinstance(source, GlobalLabelSource):
            if init is not None:
                raise ValueError("init applies only to source='online', not to a GlobalLabelSource instance")
            return source
        if not isinstance(source, str):
            raise TypeError(f"source must be 'online', 'self' or a GlobalLabelSource, got {type(source).__name__}")
        check_choice("source", source, GLOBAL_SOURCES)
        if source == "self":
            if init is not None:
                raise ValueError("init applies only to source='online', not to source='self'")
            return SelfPrediction()
        return OnlineClassLabels(num_classes, init="onehot" if init is None else init)

    def forward(self, logits: torch.Tensor, target: MixedBatch) -> torch.Tensor:
        if not isinstance(target, MixedBatch):
            raise TypeError(f"target must be a MixedBatch, got {type(target).__name__}")
        z = self._logits(logits)
        batch, num_classes = z.shape
        _check_pair(target.y_a, target.y_b, num_classes, batch)
        _as_lam(target.lam, batch, z)  # shape and value checks
        local = target.soft_targets(num_classes).to(z.dtype)
        glob = self.source.targets(z.detach(), target).detach().to(z.dtype)
        soft = (1.0 - self.beta) * local + self.beta * glob
        loss = -(soft * F.log_softmax(z, dim=1)).sum(1)
        if self.training and torch.is_grad_enabled():
            self.source.update(z.detach(), target)
        return _reduce(loss, self.reduction)

    def epoch_end(self) -> None:
        """Let the global-label source publish what this epoch taught."""
        self.source.epoch_end()

    def extra_repr(self) -> str:
        return f"beta={self.beta}, " + super().extra_repr()


# --------------------------------------------------------------------------- factory and presets

_OPTIONS: dict[str, tuple[str, ...]] = {
    "ce": ("reduction",),
    "mixup_ce": ("reduction",),
    "dm": ("eta", "mode", "thr", "lam_power", "reduction"),
    "midpoint": ("beta", "source", "init", "reduction"),
}


def build(name: str, num_classes: int, **options: Any) -> nn.Module:
    """The training criterion ``name`` for ``num_classes`` classes.

    ``criterion(logits, mixed)`` returns a scalar (with the default reduction);
    criteria with state (``"midpoint"``) have ``epoch_end()`` and keep that
    state in buffers, so ``state_dict()`` restores them exactly.

    ============  ===================================  ===========================================
    name          criterion                            options
    ============  ===================================  ===========================================
    "ce"          :class:`PlainCrossEntropyLoss`       reduction (uses ``y_a`` only)
    "mixup_ce"    :class:`MixupCrossEntropyLoss`       reduction
    "dm"          :class:`DecoupledMixupLoss`          eta, mode, thr, lam_power, reduction
    "midpoint"    :class:`MidpointLoss`                beta, source ("online"/"self"), init, reduction
    ============  ===================================  ===========================================

    Raises ``ValueError`` naming the loss and the option on an unknown name,
    an unknown option or a bad value.
    """
    check_choice("name", name, LOSSES)
    check_positive("num_classes", num_classes, integer=True)
    allowed = _OPTIONS[name]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        hint = " (alpha is a mixing option: pass it to the mixing policy)" if "alpha" in unknown else ""
        raise ValueError(f"loss {name!r} got unknown option(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(allowed)}{hint}")
    try:
        if name == "ce":
            return PlainCrossEntropyLoss(num_classes, **options)
        if name == "mixup_ce":
            return MixupCrossEntropyLoss(num_classes, **options)
        if name == "dm":
            return DecoupledMixupLoss(num_classes=num_classes, **options)
        return MidpointLoss(num_classes, **options)
    except (TypeError, ValueError) as err:
        raise type(err)(f"loss {name!r} with options {options!r}: {err}") from err


# The authors' CIFAR-100 ResNet-18 settings (arXiv 2203.10761); alpha is the
# Beta(alpha, alpha) parameter of the mixing policy used with DM in those runs.
_DM_CIFAR: dict[str, dict[str, Any]] = {
    "mixup": dict(eta=0.01, mode="more", lam_power=0.5, alpha=0.2),
    "cutmix": dict(eta=0.1, mode="less", lam_power=0.5, alpha=0.2),
    "fmix": dict(eta=0.01, mode="less", lam_power=0.0, alpha=0.2),
    "saliencymix": dict(eta=0.01, mode="less", lam_power=0.0, alpha=0.2),
    "resizemix": dict(eta=0.1, mode="less", lam_power=0.5, alpha=0.2),
}
_DM_CIFAR_FALLBACK = dict(eta=0.1, mode="both", lam_power=1.0, alpha=0.2)
# ImageNet: one setting for every policy (eta 0.1, both classes, weights
# proportional to the shares); alpha 1 as in the authors' ImageNet DM configs.
_DM_IMAGENET = dict(eta=0.1, mode="both", lam_power=1.0, alpha=1.0)


def dm_defaults(policy: str, dataset_kind: str = "cifar") -> dict[str, Any]:
    """The authors' DM settings for a mixing policy: ``dict(eta, mode, lam_power, alpha)``.

    ``dataset_kind="cifar"`` (small images; the CIFAR-100 ResNet-18 table):

    ===========  =====  ======  =========  =====
    policy       eta    mode    lam_power  alpha
    ===========  =====  ======  =========  =====
    mixup        0.01   more    0.5        0.2
    cutmix       0.1    less    0.5        0.2
    fmix         0.01   less    0           0.2
    saliencymix  0.01   less    0           0.2
    resizemix    0.1    less    0.5        0.2
    other        0.1    both    1          0.2
    ===========  =====  ======  =========  =====

    ``dataset_kind="imagenet"``: eta 0.1, mode "both", lam_power 1, alpha 1 for
    every policy.  A policy not in the table (gridmix, puzzlemix, average, ...)
    gets the fallback row, which is the authors' policy-agnostic ImageNet
    setting (both classes, weights proportional to their shares) with the
    CIFAR alpha.  ``alpha`` is for the mixing policy, not for :func:`build`.
    """
    if not isinstance(policy, str):
        raise TypeError(f"policy must be a str, got {type(policy).__name__}")
    check_choice("dataset_kind", dataset_kind, ("cifar", "imagenet"))
    if dataset_kind == "imagenet":
        return dict(_DM_IMAGENET)
    return dict(_DM_CIFAR.get(policy.lower(), _DM_CIFAR_FALLBACK))
