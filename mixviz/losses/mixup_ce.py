"""Cross-entropy on mixed batches: plain CE on the first label, mixup CE,
soft-target CE."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mixviz._validation import check_labels
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

__all__ = ["mixup_cross_entropy", "soft_target_cross_entropy", "PlainCrossEntropyLoss", "MixupCrossEntropyLoss"]


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
