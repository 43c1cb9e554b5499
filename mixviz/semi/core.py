"""The pieces of the semi-supervised objective, as plain functions on tensors:
hard pseudo-labels with a confidence threshold, FixMatch's consistency loss,
and the labelled-dominant mixing ratio and the (1 - cos)/2 ramp.  The checks of
the semi-supervised fields of :class:`mixviz.config.TrainConfig` live with the
config (:func:`mixviz.config.check_semi_fields`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mixviz._validation import check_positive, check_tensor
from mixviz.config import check_tau

__all__ = ["pseudo_labels", "consistency_loss", "ramp_up", "labelled_dominant"]


def pseudo_labels(logits: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FixMatch's hard pseudo-labels.

    ``q = softmax(logits)`` (float32, no gradient), ``label = argmax q``,
    ``confidence = max q`` and ``mask = [confidence >= tau]``.

    Returns:
        ``(label [N] int64, mask [N] float32 in {0, 1}, confidence [N] float32)``.
    """
    check_tensor("logits", logits, ndim=2, floating=True)
    check_tau(tau)
    with torch.no_grad():
        confidence, label = torch.softmax(logits.detach().float(), dim=1).max(dim=1)
        return label, (confidence >= tau).float(), confidence


def consistency_loss(logits_strong: torch.Tensor, label: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """FixMatch's unlabelled loss ``mean_i mask_i * CE(logits_strong_i, label_i)``: the mean runs over
    *all* unlabelled samples (masked ones count as 0), as in FixMatch and the authors' code."""
    check_tensor("logits_strong", logits_strong, ndim=2, floating=True)
    rows = F.cross_entropy(logits_strong.float(), label, reduction="none")
    return (rows * mask).mean()


def ramp_up(step: int, total: int) -> float:
    """``(1 - cos(pi t / T)) / 2``: 0 at the first step, 1/2 half-way, 1 at the end (t clipped to T)."""
    check_positive("step", step, allow_zero=True, integer=True)
    check_positive("total", total, integer=True)
    return 0.5 * (1.0 - math.cos(math.pi * min(step, total) / total))


def labelled_dominant(lam: torch.Tensor) -> torch.Tensor:
    """``max(lam, 1 - lam)``: the share of the labelled image is at least 1/2 (the authors' ``lam_bias``)."""
    return torch.maximum(lam, 1.0 - lam)
