"""The Decoupled Mixup (DM) loss (Liu, Li et al., arXiv 2203.10761) on pairs
and on soft targets, and the authors' per-policy settings."""

from __future__ import annotations

import numbers
from typing import Any

import torch
import torch.nn.functional as F

from mixviz._validation import check_choice, check_positive, check_tensor
from mixviz.losses._common import (
    _as_lam,
    _check_logits,
    _check_pair,
    _check_reduction,
    _check_soft_targets,
    _labels_of,
    _Loss,
    _reduce,
)
from mixviz.mixing.batch import MixedBatch

__all__ = ["DM_MODES", "WEIGHT_ORDERS", "UNMIXED_SHARE", "decoupled_mixup_loss", "soft_target_decoupled_mixup_loss",
           "pairs_from_soft_targets", "DecoupledMixupLoss", "dm_defaults"]

DM_MODES = ("both", "less", "more")
#: How the two decoupled weights are attached to the classes of a row: ``"per-sample"`` (each row's weight of
#: class a goes to a) or ``"openmixup"`` (the authors' code: by the class order of the batch's first mixed row).
WEIGHT_ORDERS = ("per-sample", "openmixup")
#: A row whose smaller share is at most this is an unmixed sample: plain (mixup) cross-entropy, no decoupled
#: term on either class, whatever eta, mode, thr and lam_power are.  The threshold of the authors'
#: ``soft_mix_cross_entropy`` (OpenMixup, ``_eps = 1e-3``: a class counts as mixed in when its share is above it).
UNMIXED_SHARE = 1e-3
# A soft-target row whose second-largest share (above the floor) is at most
# this fraction of the largest is read as a single class.
SINGLE_CLASS_TOL = 1e-6
# A logit that stands for "not a class" (exp() of it is 0; 0 * it is 0, unlike -inf).
_NEG = -1e30


def _check_dm_options(eta: float, mode: str, thr: float, lam_power: float, compile: bool = False,
                      weight_order: str = "per-sample") -> None:
    check_positive("eta", eta, allow_zero=True)
    check_choice("mode", mode, DM_MODES)
    check_choice("weight_order", weight_order, WEIGHT_ORDERS)
    if isinstance(thr, bool) or not isinstance(thr, numbers.Real):
        raise TypeError(f"thr must be a number, got {type(thr).__name__}")
    if not 0.0 < thr < 1.0:
        raise ValueError(f"thr must lie in the open interval (0, 1), got {thr!r}")
    check_positive("lam_power", lam_power, allow_zero=True)
    if not isinstance(compile, bool):
        raise TypeError(f"compile must be True or False, got {compile!r}")


def _dm_weights(shares: torch.Tensor, plain: torch.Tensor, eta: float, mode: str, thr: float,
                lam_power: float) -> torch.Tensor:
    """``[B, 2]`` weights ``eta * share**p`` of the decoupled terms of classes
    (a, b), zeroed by the mode's threshold and on ``plain`` rows (``[B, 1]``:
    ``a == b``, or the smaller share at most :data:`UNMIXED_SHARE`).  ``0**0 = 1``,
    so ``p = 0`` gives a constant ``eta``; the ``plain`` mask is what keeps that
    constant off a class that is not in the image.  In-place fills instead of
    boolean products (a broadcast boolean ``&`` or a multiply by a boolean are
    slow paths on CPUs)."""
    if lam_power == 0:
        weights = torch.full_like(shares, eta)
    elif lam_power == 1:
        weights = shares * eta
    else:
        weights = shares.pow(lam_power).mul_(eta)
    if mode == "less":
        weights.masked_fill_(shares >= thr, 0.0)
    elif mode == "more":
        weights.masked_fill_(shares < thr, 0.0)
    return weights.masked_fill_(plain, 0.0)


def _openmixup_weights(shares: torch.Tensor, plain: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor,
                       eta: float, mode: str, thr: float, lam_power: float) -> torch.Tensor:
    """The decoupled weights ``[B, 2]`` as the authors' code attaches them
    (OpenMixup's ``ClsMixupHead`` and ``soft_mix_cross_entropy``), for one lam
    per batch as its policies draw it:

    * the head picks the weighted class from a's share: ``"less"`` weights a
      when ``lam < thr`` and b otherwise, ``"more"`` the reverse, ``"both"``
      both; a weight is ``eta * share**p``;
    * the loss attaches the two weights to the classes by the class order of
      the first mixed row: when that row has ``y_a > y_b`` every row's weight
      of a goes to b and the reverse;
    * when that row's two shares are equal (lam = 0.5) no row gets a
      decoupled term;
    * unmixed rows (``plain``) get none, as in the per-sample order.

    With one lam per batch and ``thr = 0.5`` this differs from the per-sample
    order only by the swap (and at lam = 0.5)."""
    weights = _dm_weights(shares, plain, eta, "both", thr, lam_power)
    if mode != "both":
        below = shares[:, :1] < thr  # a's share
        weights[:, :1].masked_fill_(below if mode == "more" else ~below, 0.0)
        weights[:, 1:].masked_fill_(~below if mode == "more" else below, 0.0)
    mixed = ~plain.squeeze(1)
    first = mixed.to(torch.uint8).argmax()  # the first mixed row (argmax returns the first maximum)
    swap = mixed.any() & (y_a[first] > y_b[first])
    equal = shares[first, 0] == shares[first, 1]
    return torch.where(swap, weights.flip(1), weights).masked_fill_(equal, 0.0)


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
                         reduction: str = "mean", compile: bool = False,
                         weight_order: str = "per-sample") -> torch.Tensor:
    """Decoupled Mixup loss ``MCE + w_a * dec_a + w_b * dec_b``.

    ``dec_i = -log(exp(z_i) / (exp(z_i) + sum_{c not in {a, b}} exp(z_c)))`` is
    the cross-entropy of class ``i`` in the softmax without its partner;
    ``w_a = eta * lam**p``, ``w_b = eta * (1 - lam)**p`` with ``p = lam_power``.
    ``mode="less"`` keeps the weight only for a class whose share is ``< thr``,
    ``"more"`` only for shares ``>= thr``, ``"both"`` always.  Rows with
    ``a == b`` are exactly plain cross-entropy (no decoupled term: the pair
    has no partner to remove), and so are unmixed rows, whose smaller share is
    at most :data:`UNMIXED_SHARE` (1e-3, the authors' threshold): there the
    loss is the mixup CE, with no decoupled term on either class whatever
    ``lam_power`` is (``0**0 = 1`` would otherwise put ``eta`` on a class that
    is not in the image).

    At ``lam = 0.5`` the decoupled terms are kept (per-sample order): the
    formula is well defined there and each class holds half of the image.  The
    authors' code drops them at ``lam = 0.5``, because it finds the two classes
    by their share values and cannot tell two equal shares apart;
    ``weight_order="openmixup"`` does the same.

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
        compile: run the loss and its gradient through ``torch.compile`` (one
            fused kernel instead of about 40 small PyTorch calls; the same
            formulas, so the same values to float rounding).  The first call of
            each batch shape compiles (half a minute on a small CPU, seconds
            once the compile cache is warm); a failed compile warns once and
            falls back to the eager loss.  Off by default.
        weight_order: ``"per-sample"`` (default: each row's weight of class a
            goes to a) or ``"openmixup"``: the authors' code, which attaches
            the two weights by the class order of the batch's first mixed row,
            so that on about half of the batches they are swapped; it also
            weights by a's share against ``thr`` and drops the decoupled terms
            when that row has lam = 0.5 (see :func:`_openmixup_weights`).  For
            checking numbers against the authors' behaviour.
    """
    _check_reduction(reduction)
    _check_dm_options(eta, mode, thr, lam_power, compile, weight_order)
    return _dm_on_pairs(_check_logits(logits), y_a, y_b, lam, eta, mode, thr, lam_power, reduction, compile,
                        weight_order)


def _dm_on_pairs(z: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: torch.Tensor | float, eta: float,
                 mode: str, thr: float, lam_power: float, reduction: str, compile: bool = False,
                 weight_order: str = "per-sample") -> torch.Tensor:
    """:func:`decoupled_mixup_loss` on checked logits and options."""
    batch, num_classes = z.shape
    _check_pair(y_a, y_b, num_classes, batch)
    lam = _as_lam(lam, batch, z)
    return _dm(z, y_a, y_b, lam, eta, mode, thr, lam_power, reduction, compile=compile, weight_order=weight_order)


def _dm(z: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: torch.Tensor, eta: float, mode: str,
        thr: float, lam_power: float, reduction: str, with_mce: bool = True, compile: bool = False,
        weight_order: str = "per-sample") -> torch.Tensor:
    """The reduced DM loss on checked inputs (``lam`` is a constant); only the
    decoupled part ``w_a dec_a + w_b dec_b`` when ``with_mce`` is false."""
    scale = 1.0 / max(len(z), 1) if reduction == "mean" else 1.0 if reduction == "sum" else None
    options = (eta, mode, thr, lam_power, with_mce, weight_order == "openmixup")
    return _DecoupledMixupRows.apply(z, y_a, y_b, lam, options, scale, compile)


def _dm_rows(z: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: torch.Tensor, eta: float, mode: str,
             thr: float, lam_power: float, with_mce: bool, openmixup: bool,
             need_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The DM loss per row and class of the pair ``[B, 2]`` (a row's loss is
    the sum of its two entries) and, when ``need_grad``, the gradient ``[B, C]``
    of the total.  The formulas are in :class:`_DecoupledMixupRows`."""
    same = y_a == y_b
    lam = lam.masked_fill(same, 1.0)  # a == b: all of the target on a
    shares = torch.stack((lam, 1.0 - lam), 1)
    same = same.unsqueeze(1)
    plain = shares.amin(1, keepdim=True) <= UNMIXED_SHARE  # unmixed (a == b gave shares (1, 0))
    if openmixup:
        weights = _openmixup_weights(shares, plain, y_a, y_b, eta, mode, thr, lam_power)
    else:
        weights = _dm_weights(shares, plain, eta, mode, thr, lam_power)
    pair = torch.stack((y_a, y_b), 1)
    z_pair = z.gather(1, pair)
    z_pair[:, 1:].masked_fill_(same, _NEG)  # class b not counted twice when a == b (then w_b = 0)
    rest, prob_rest = _rest_logsumexp(z, pair)
    gap = rest - z_pair
    rows = weights * _softplus(gap)
    grad = None
    if need_grad:
        pulled = torch.sigmoid(gap).mul_(weights)
        coef = pulled.sum(1, keepdim=True)
    if with_mce:
        log_prob = torch.log_softmax(torch.cat((z_pair, rest), 1), dim=1)
        rows.addcmul_(shares, log_prob[:, :2], value=-1.0)
        if need_grad:
            prob = log_prob.exp_()
            coef += prob[:, 2:]
            grad_pair = (prob[:, :2] - shares).sub_(pulled)
    elif need_grad:
        grad_pair = pulled.neg_()
    if need_grad:
        grad = prob_rest.mul_(coef).scatter_add_(1, pair, grad_pair)
    return rows, grad


_COMPILED: dict[str, Any] = {}


def _compiled_rows() -> Any:
    """:func:`_dm_rows` through ``torch.compile`` (made once per process; the
    first call of each input shape and option set compiles, which takes seconds
    to a minute), or None when compiling failed before: then the eager
    function is used."""
    if "rows" not in _COMPILED:
        _COMPILED["rows"] = torch.compile(_dm_rows, fullgraph=True, dynamic=False)
    return _COMPILED["rows"]


def _run_rows(compile: bool, *args: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    fn = _compiled_rows() if compile else None
    if fn is not None:
        try:
            return fn(*args)
        except Exception as err:  # noqa: BLE001 -- no compiler, unsupported platform, ...: fall back
            import warnings

            warnings.warn(f"the compiled DM loss failed ({type(err).__name__}: {err}); using the eager one",
                          RuntimeWarning, stacklevel=3)
            _COMPILED["rows"] = None
    return _dm_rows(*args)


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
    Unmixed rows (smaller share at most :data:`UNMIXED_SHARE`) have ``w = 0``:
    the mixup CE.

    Gradient, with ``k = sum_i w_i sigmoid(gap_i)`` and ``q`` the softmax over
    the classes outside the pair:
    ``d/dz_c = q_c * (p_rest + k)`` for ``c`` outside the pair and
    ``d/dz_i = p_i - s_i - w_i sigmoid(gap_i)`` for ``i`` in the pair
    (scatter-added).  Without the mixup-CE part the ``p`` and ``s`` terms drop out.
    ``scale`` is ``1/B`` (mean), 1 (sum) or None (per row); the backward folds
    it into the incoming gradient.  The gradient is only computed when ``z``
    requires one.  ``compile`` runs the core through ``torch.compile``.
    """

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: torch.Tensor,
                options: tuple[float, str, float, float, bool, bool], scale: float | None,
                compile: bool) -> torch.Tensor:
        rows, grad = _run_rows(compile, z, y_a, y_b, lam, *options, ctx.needs_input_grad[0])
        ctx.scale = scale
        if grad is not None:
            ctx.save_for_backward(grad)
        if scale is None:
            return rows.sum(1)
        return rows.sum() if scale == 1.0 else rows.sum().mul_(scale)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        none = (None,) * 6
        if not ctx.needs_input_grad[0]:
            return (None, *none)
        (grad_z,) = ctx.saved_tensors
        if ctx.scale is None:
            return (grad_z * grad.unsqueeze(1), *none)
        return (grad_z * (grad * ctx.scale if ctx.scale != 1.0 else grad), *none)


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
                                     reduction: str = "mean", compile: bool = False,
                                     weight_order: str = "per-sample") -> torch.Tensor:
    """DM loss for soft targets ``[B, C]`` (torchvision v2 / timm mixup output).

    ``soft CE(z, target) + w_a * dec_a + w_b * dec_b``: the mixup-CE part is the
    soft-target cross-entropy on ``target`` as given (so label smoothing is
    kept, and ``eta = 0`` is exactly timm's ``SoftTargetCrossEntropy``); the
    two classes and ``lam`` of the decoupled part come from
    :func:`pairs_from_soft_targets` (the label-smoothing floor removed).  Rows
    with a single class get no decoupled term: plain (soft-target) CE.
    ``compile`` and ``weight_order`` as in :func:`decoupled_mixup_loss` (for the
    decoupled part).
    """
    _check_reduction(reduction)
    _check_dm_options(eta, mode, thr, lam_power, compile, weight_order)
    return _dm_on_soft_targets(_check_logits(logits), target, eta, mode, thr, lam_power, reduction, compile,
                               weight_order)


def _dm_on_soft_targets(z: torch.Tensor, target: torch.Tensor, eta: float, mode: str, thr: float,
                        lam_power: float, reduction: str, compile: bool = False,
                        weight_order: str = "per-sample") -> torch.Tensor:
    """:func:`soft_target_decoupled_mixup_loss` on checked logits and options."""
    t = _check_soft_targets(target, z)
    y_a, y_b, lam = pairs_from_soft_targets(t)
    decoupled = _dm(z, y_a, y_b, lam.to(z.dtype), eta, mode, thr, lam_power, "none", with_mce=False,
                    compile=compile, weight_order=weight_order)
    return _reduce(decoupled - (t * F.log_softmax(z, dim=1)).sum(1), reduction)


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
        compile: fuse the loss with ``torch.compile`` (see :func:`decoupled_mixup_loss`).
        weight_order: ``"per-sample"`` (default) or ``"openmixup"`` (the
            authors' class order; see :func:`decoupled_mixup_loss`).

    ``DecoupledMixupLoss(**dm_defaults(policy))`` gives the authors' settings
    for a policy.
    """

    def __init__(self, eta: float = 0.1, mode: str = "both", thr: float = 0.5, lam_power: float = 0.0,
                 reduction: str = "mean", num_classes: int | None = None, compile: bool = False,
                 weight_order: str = "per-sample") -> None:
        super().__init__(num_classes, reduction)
        _check_dm_options(eta, mode, thr, lam_power, compile, weight_order)
        self.eta, self.mode, self.thr, self.lam_power = float(eta), mode, float(thr), float(lam_power)
        self.compile, self.weight_order = compile, weight_order

    def forward(self, logits: torch.Tensor, target: MixedBatch | torch.Tensor) -> torch.Tensor:
        z = self._logits(logits)
        options = (self.eta, self.mode, self.thr, self.lam_power, self.reduction, self.compile, self.weight_order)
        if isinstance(target, MixedBatch):
            return _dm_on_pairs(z, target.y_a, target.y_b, target.lam, *options)
        if isinstance(target, torch.Tensor) and target.dim() == 2:
            return _dm_on_soft_targets(z, target, *options)
        y = _labels_of(target)
        return _dm_on_pairs(z, y, y, 1.0, *options)

    def extra_repr(self) -> str:
        return (f"eta={self.eta}, mode={self.mode!r}, thr={self.thr}, lam_power={self.lam_power}, "
                + super().extra_repr() + (", compile=True" if self.compile else "")
                + (f", weight_order={self.weight_order!r}" if self.weight_order != "per-sample" else ""))


# The authors' CIFAR-100 ResNet-18 DM settings (OpenMixup's configs/classification/cifar100/mixups/decouple/r18:
# eta_weight and lam_idx of each policy's head).  The mixing alpha of those runs is mixing.alpha_defaults(policy,
# with_dm=True).
_DM_CIFAR: dict[str, dict[str, Any]] = {
    "mixup": dict(eta=0.01, mode="more", lam_power=0.5),
    "cutmix": dict(eta=0.1, mode="less", lam_power=0.5),
    "fmix": dict(eta=0.01, mode="less", lam_power=0.0),
    "saliencymix": dict(eta=0.01, mode="less", lam_power=0.0),
    "resizemix": dict(eta=0.1, mode="less", lam_power=0.5),
    "manifold": dict(eta=0.01, mode="more", lam_power=0.0),
}
# Policies without a CIFAR DM config of the authors get their policy-agnostic ImageNet setting: eta 0.1 on both
# classes, weights proportional to the shares.
_DM_FALLBACK = dict(eta=0.1, mode="both", lam_power=1.0)
_DM_IMAGENET = dict(eta=0.1, mode="both", lam_power=1.0)


def dm_defaults(policy: str, dataset_kind: str = "cifar") -> dict[str, Any]:
    """The authors' DM loss settings for a mixing policy: ``dict(eta, mode, lam_power)``,
    the arguments of :class:`DecoupledMixupLoss` (``DecoupledMixupLoss(**dm_defaults(policy))``).

    ``dataset_kind="cifar"`` (small images; the authors' CIFAR-100 ResNet-18 configs):

    ===========  =====  ======  =========
    policy       eta    mode    lam_power
    ===========  =====  ======  =========
    mixup        0.01   more    0.5
    cutmix       0.1    less    0.5
    fmix         0.01   less    0
    saliencymix  0.01   less    0
    resizemix    0.1    less    0.5
    manifold     0.01   more    0
    other        0.1    both    1
    ===========  =====  ======  =========

    ``dataset_kind="imagenet"``: eta 0.1, mode "both", lam_power 1 for every
    policy.  A policy not in the table (gridmix, puzzlemix, average, ...) gets
    the fallback row, the authors' policy-agnostic ImageNet setting (both
    classes, weights proportional to their shares).  The mixing ratio the
    authors used with DM is :func:`mixviz.mixing.alpha_defaults` (``with_dm=True``).
    """
    if not isinstance(policy, str):
        raise TypeError(f"policy must be a str, got {type(policy).__name__}")
    check_choice("dataset_kind", dataset_kind, ("cifar", "imagenet"))
    if dataset_kind == "imagenet":
        return dict(_DM_IMAGENET)
    return dict(_DM_CIFAR.get(policy.lower(), _DM_FALLBACK))
