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

from mixviz.metrics.mixed import (
    MIN_PIXEL_WEIGHT,
    VISIBLE_SHARE,
    _as_unit_float,
    _model_device,
    label_mismatch,
    memorisation,
    mixed_evaluation,
    mixed_topk_by_visibility,
    object_visibility,
)
from mixviz.metrics.scores import (
    accuracy,
    brier_score,
    expected_calibration_error,
    maximum_calibration_error,
    mixed_topk_accuracy,
    nll,
    reliability_bins,
    fit_temperature,
    TEMPERATURE_RANGE,
    summary,
)

__all__ = [
    "accuracy",
    "nll",
    "brier_score",
    "expected_calibration_error",
    "maximum_calibration_error",
    "fit_temperature",
    "TEMPERATURE_RANGE",
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
