"""Argument checks shared by the package, and the switch for value checks.

Shape and type checks are cheap and always on.  *Value* checks (labels in range,
``lam`` inside [0, 1], no NaN in the logits) need the tensor's values on the host,
which costs a device synchronisation on a GPU.  They are on by default; turn them
off with :func:`mixviz.validation` once the first steps have passed, as
:func:`mixviz.train.fit` does after its first step.

>>> import mixviz
>>> mixviz.validation(False)      # returns the previous setting
True
>>> with mixviz.validation(True):
...     pass                       # value checks on inside the block only
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from typing import Any

import torch

_VALUE_CHECKS = True


class _Switch:
    """Returned by :func:`validation`; truthy like the previous setting and a
    context manager that restores it on exit."""

    def __init__(self, previous: bool) -> None:
        self.previous = previous

    def __bool__(self) -> bool:
        return self.previous

    def __repr__(self) -> str:
        return repr(self.previous)

    def __eq__(self, other: object) -> bool:
        return bool(self) == other

    def __hash__(self) -> int:
        return hash(self.previous)

    def __enter__(self) -> "_Switch":
        return self

    def __exit__(self, *exc: Any) -> None:
        global _VALUE_CHECKS
        _VALUE_CHECKS = self.previous


def validation(enabled: bool | None = None) -> _Switch:
    """Turn value checks on or off; return the previous setting.

    ``validation()`` with no argument only reports the current setting.  The
    returned object is also a context manager that restores the previous
    setting when the ``with`` block ends.
    """
    global _VALUE_CHECKS
    previous = _VALUE_CHECKS
    if enabled is not None:
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled must be a bool or None, got {type(enabled).__name__}")
        _VALUE_CHECKS = enabled
    return _Switch(previous)


def value_checks_enabled() -> bool:
    """True when value checks (which need a host sync) are on."""
    return _VALUE_CHECKS


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def check_positive(name: str, value: Any, *, allow_zero: bool = False, integer: bool = False) -> None:
    """Raise ``ValueError``/``TypeError`` naming ``name`` unless ``value`` is a
    finite positive number (or non-negative with ``allow_zero``)."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an int" if integer else "a number"
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")


def check_tensor(name: str, value: Any, *, ndim: int | tuple[int, ...] | None = None,
                 floating: bool | None = None) -> torch.Tensor:
    """Raise ``TypeError``/``ValueError`` naming ``name`` unless ``value`` is a
    tensor of the given rank (and float or integer dtype when asked)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None:
        dims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.dim() not in dims:
            want = " or ".join(f"{d}-D" for d in dims)
            raise ValueError(f"{name} must be {want}, got shape {tuple(value.shape)}")
    if floating is True and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
    if floating is False and (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool):
        raise TypeError(f"{name} must be an integer tensor, got {value.dtype}")
    return value


def check_finite(name: str, value: torch.Tensor) -> None:
    """Raise ``ValueError`` naming ``name`` if ``value`` has NaN or inf.
    A value check: skipped when :func:`validation` is off."""
    if not (_VALUE_CHECKS and value.is_floating_point() and value.numel()):
        return
    # min and max carry NaN and +-inf through: 2 values to test instead of a full boolean mask
    lo, hi = torch.aminmax(value.detach().reshape(-1))
    if not bool(torch.isfinite(torch.stack((lo, hi))).all()):
        raise ValueError(f"{name} contains NaN or inf")


def check_labels(name: str, labels: torch.Tensor, num_classes: int | None = None,
                 batch: int | None = None) -> None:
    """Labels must be a 1-D integer tensor of length ``batch`` with values in
    [0, num_classes).  The range check is a value check."""
    check_tensor(name, labels, ndim=1, floating=False)
    if batch is not None and labels.shape[0] != batch:
        raise ValueError(f"{name} must have length {batch} (the batch size), got {labels.shape[0]}")
    if _VALUE_CHECKS and num_classes is not None and labels.numel():
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"{name} must lie in [0, {num_classes}), got values in [{lo}, {hi}]")


# --------------------------------------------------------------------------- input conversion
#
# Every policy (through mixing.mix / mixing.Mix), the dynamic policies' saliency pass and every loss
# convert their inputs here, so a dtype that works for one works for all:
#
# * images: float tensors are used as they are (float16 / bfloat16 / float32 / float64, any memory
#   format); uint8 images (torchvision's decoded images) are converted to float32 *scaled to [0, 1]*
#   (divided by 255, as torchvision's ``v2.ToDtype(torch.float32, scale=True)`` does), the scale every
#   other part of mixviz uses: the dynamic policies' saliency pass runs the model on them, and
#   :func:`mixviz.saliency.attribute` divides uint8 by 255 too.  torchvision's v2 CutMix keeps uint8
#   (rounding the blend); mixviz returns float32, so mixup's blends are not rounded.
# * labels: any integer dtype (uint8, int8, int16, int32, int64) becomes int64; the range is checked
#   against the number of classes where one is known (a value check).


def as_images(name: str, x: Any) -> torch.Tensor:
    """``x`` as a float tensor: float dtypes unchanged, uint8 to float32
    divided by 255 (values in [0, 1]), memory format kept; ``TypeError``
    naming ``name`` for any other dtype."""
    check_tensor(name, x)
    if x.is_floating_point():
        return x
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0)  # preserve_format: a channels-last batch stays channels-last
    raise TypeError(f"{name} must be a floating-point tensor or uint8 images, got {x.dtype}")


def as_labels(name: str, labels: Any, num_classes: int | None = None, batch: int | None = None) -> torch.Tensor:
    """``labels`` as int64 [B] (any integer dtype is accepted), in
    ``[0, num_classes)`` when ``num_classes`` is given (a value check);
    ``TypeError`` / ``ValueError`` naming ``name`` otherwise."""
    check_labels(name, labels, num_classes, batch)
    return labels if labels.dtype == torch.int64 else labels.long()


def autocast_like(x: torch.Tensor) -> Any:
    """A context that runs a model in ``x``'s dtype: ``torch.autocast`` with
    that dtype for float16 / bfloat16 inputs (so a float32 model accepts
    them), nothing for float32 / float64."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return torch.autocast(x.device.type, dtype=x.dtype)
    return contextlib.nullcontext()


def check_frame(name: str, value: Any, columns: Iterable[str]) -> Any:
    """A pandas DataFrame with at least ``columns``; TypeError / ValueError
    naming ``name`` otherwise."""
    import pandas as pd

    if not isinstance(value, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(value).__name__}")
    missing = [c for c in columns if c not in value.columns]
    if missing:
        raise ValueError(f"{name} must have the column(s) {', '.join(missing)}; "
                         f"has {', '.join(map(str, value.columns))}")
    return value
