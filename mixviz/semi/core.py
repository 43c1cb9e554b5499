"""The pieces of the semi-supervised objective, as plain functions on tensors:
hard pseudo-labels with a confidence threshold, FixMatch's consistency loss,
the labelled-dominant mixing ratio and the (1 - cos)/2 ramp; and the checks of
the semi-supervised fields of :class:`mixviz.train.TrainConfig`."""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
import torch.nn.functional as F

from mixviz._validation import check_choice, check_positive, check_tensor

__all__ = ["SEMI_MODES", "TEACHERS", "SEMI_FIELDS", "pseudo_labels", "consistency_loss", "ramp_up",
           "labelled_dominant", "is_semi", "check_config"]

SEMI_MODES = ("none", "fixmatch")
TEACHERS = ("ema", "student")
# TrainConfig fields that only matter on the semi-supervised path.
SEMI_FIELDS = ("semi", "labels_per_class", "mu", "tau", "lambda_u", "teacher", "ema_momentum")
# Mixed terms need a policy that mixes a labelled batch with a second batch (L x U); mixup does.
SEMI_POLICIES = ("none", "mixup")
# Data sets with an in-memory image training split (the others hold points or read folders lazily).
IMAGE_SETS = ("digits", "clutter", "cifar10", "cifar100", "stl10")


def pseudo_labels(logits: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FixMatch's hard pseudo-labels.

    ``q = softmax(logits)`` (float32, no gradient), ``label = argmax q``,
    ``confidence = max q`` and ``mask = [confidence >= tau]``.

    Returns:
        ``(label [N] int64, mask [N] float32 in {0, 1}, confidence [N] float32)``.
    """
    check_tensor("logits", logits, ndim=2, floating=True)
    _check_tau(tau)
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


def is_semi(config: Any) -> bool:
    """True when ``config`` trains on a labelled subset (``labels_per_class``) or with ``semi`` set."""
    return config.semi != "none" or config.labels_per_class is not None


def _check_tau(tau: Any) -> None:
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real):
        raise TypeError(f"tau must be a number in (0, 1], got {type(tau).__name__}")
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"tau must lie in (0, 1] (the confidence a pseudo-label needs), got {tau!r}")


def check_config(config: Any) -> None:
    """Check the semi-supervised fields of a TrainConfig; ``ValueError``/``TypeError`` naming the field."""
    check_choice("semi", config.semi, SEMI_MODES)
    k = config.labels_per_class
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(f"labels_per_class must be an int >= 1 or None, got {type(k).__name__}")
        if k < 1:
            raise ValueError(f"labels_per_class must be >= 1 (or None: every label), got {k}")
    if isinstance(config.mu, bool) or not isinstance(config.mu, int):
        raise TypeError(f"mu must be an int >= 1 (unlabelled images per labelled image), got {config.mu!r}")
    if config.mu < 1:
        raise ValueError(f"mu must be >= 1 (unlabelled images per labelled image), got {config.mu}")
    _check_tau(config.tau)
    check_positive("lambda_u", config.lambda_u, allow_zero=True)
    check_choice("teacher", config.teacher, TEACHERS)
    m = config.ema_momentum
    if isinstance(m, bool) or not isinstance(m, numbers.Real):
        raise TypeError(f"ema_momentum must be a number in [0, 1), got {type(m).__name__}")
    if not 0.0 <= m < 1.0:
        raise ValueError(f"ema_momentum must lie in [0, 1), got {m!r}")
    if config.semi == "fixmatch" and k is None:
        raise ValueError("semi='fixmatch' needs labels_per_class (the labels kept per class; the rest of the "
                         "training split is used without its labels)")
    if not is_semi(config):
        return
    if config.policy not in SEMI_POLICIES:
        raise ValueError(f"policy must be one of {', '.join(map(repr, SEMI_POLICIES))} for semi-supervised "
                         f"training (mixup mixes labelled images with each other and with unlabelled ones); "
                         f"got {config.policy!r}")
    allowed = ("ce",) if config.policy == "none" else ("mixup_ce", "dm")
    if config.loss not in allowed:
        raise ValueError(f"loss must be one of {', '.join(map(repr, allowed))} with policy {config.policy!r} "
                         f"in semi-supervised training; got {config.loss!r}")
    if config.dataset not in IMAGE_SETS:
        raise ValueError(f"semi-supervised training (semi / labels_per_class) needs a data set whose training "
                         f"split is held in memory as images ({', '.join(IMAGE_SETS)}); dataset "
                         f"{config.dataset!r} has none (2-D points, or pictures read from folders)")
