"""Scores of plain predictions: accuracy, NLL, Brier, calibration (ECE, MCE,
reliability bins) and the mixed Top-1/Top-2 accuracy of logits against two
labels.  The argument checks shared by :mod:`mixviz.metrics.mixed`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from mixviz._extras import require

require("pandas")  # the 'analysis' extra: an ImportError here names the pip install line
import pandas as pd  # noqa: E402
import torch
import torch.nn.functional as F

from mixviz._validation import (
    check_finite,
    check_labels,
    check_positive,
    check_tensor,
    value_checks_enabled,
)



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
    require("torchmetrics", "the expected calibration error")
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


TEMPERATURE_RANGE = (0.05, 20.0)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, *,
                    bounds: tuple[float, float] = TEMPERATURE_RANGE, steps: int = 60) -> float:
    """The temperature T that minimises the NLL of ``softmax(logits / T)``
    against ``labels`` (temperature scaling, Guo et al. 2017).  T > 1 softens
    an over-confident model, T < 1 sharpens an under-confident one; the
    argmax, so the accuracy, does not change.

    With beta = 1 / T the NLL is convex in beta, and its derivative
    ``mean_i (E_softmax(beta z_i)[z_i] - z_iy)`` grows with beta, so the
    optimum is found by ``steps`` bisections of that derivative over
    ``1 / bounds`` (float64, no host sync): exact to about
    ``(beta range) / 2**steps``.  Where the optimum lies outside ``bounds``
    (e.g. every sample right with a margin, where the NLL falls towards
    T = 0), the nearer bound is returned.
    """
    _check_logits(logits, labels)
    if not (isinstance(bounds, (tuple, list)) and len(bounds) == 2 and 0 < bounds[0] < bounds[1]):
        raise ValueError(f"bounds must be (low, high) with 0 < low < high, got {bounds!r}")
    low, high = float(bounds[0]), float(bounds[1])
    check_positive("steps", steps, integer=True)
    z = logits.detach().to(torch.float64)
    target = z.gather(1, labels.view(-1, 1)).squeeze(1)

    def slope(beta: torch.Tensor) -> torch.Tensor:
        return ((z * beta).softmax(1) * z).sum(1).sub(target).mean()

    lo = torch.tensor(1.0 / high, dtype=torch.float64, device=z.device)
    hi = torch.tensor(1.0 / low, dtype=torch.float64, device=z.device)
    for _ in range(steps):
        mid = (lo + hi) / 2
        rising = slope(mid) > 0  # past the optimum: it lies at a smaller beta
        lo, hi = torch.where(rising, lo, mid), torch.where(rising, mid, hi)
    return float(2.0 / (lo + hi))


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
