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

from typing import Any

import torch.nn as nn

from mixviz._validation import check_choice, check_positive
from mixviz.losses._common import REDUCTIONS
from mixviz.losses.dm import (
    DM_MODES,
    SINGLE_CLASS_TOL,
    DecoupledMixupLoss,
    decoupled_mixup_loss,
    dm_defaults,
    pairs_from_soft_targets,
    soft_target_decoupled_mixup_loss,
)
from mixviz.losses.midpoint import GLOBAL_SOURCES, GlobalLabelSource, MidpointLoss, OnlineClassLabels, SelfPrediction
from mixviz.losses.mixup_ce import (
    MixupCrossEntropyLoss,
    PlainCrossEntropyLoss,
    mixup_cross_entropy,
    soft_target_cross_entropy,
)

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
    "REDUCTIONS",
    "GLOBAL_SOURCES",
    "SINGLE_CLASS_TOL",
    "build",
    "dm_defaults",
]

LOSSES = ("ce", "mixup_ce", "dm", "midpoint")

_OPTIONS: dict[str, tuple[str, ...]] = {
    "ce": ("reduction",),
    "mixup_ce": ("reduction",),
    "dm": ("eta", "mode", "thr", "lam_power", "reduction", "compile"),
    "midpoint": ("beta", "source", "init", "reduction"),
}


def build(name: str, num_classes: int, **options: Any) -> nn.Module:
    """The training criterion ``name`` for ``num_classes`` classes.

    ``criterion(logits, mixed)`` returns a scalar (with the default reduction);
    criteria with state (``"midpoint"``) have ``epoch_end()`` and keep that
    state in buffers, so ``state_dict()`` restores them exactly.

    ============  ===================================  ================================================
    name          criterion                            options
    ============  ===================================  ================================================
    "ce"          :class:`PlainCrossEntropyLoss`       reduction (uses ``y_a`` only)
    "mixup_ce"    :class:`MixupCrossEntropyLoss`       reduction
    "dm"          :class:`DecoupledMixupLoss`          eta, mode, thr, lam_power, reduction, compile
    "midpoint"    :class:`MidpointLoss`                beta, source ("online"/"self"), init, reduction
    ============  ===================================  ================================================

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

