"""What every loss shares: argument checks, the reduction, the module base."""

from __future__ import annotations

import numbers
from typing import Any

import torch
import torch.nn as nn

from mixviz._validation import (
    as_labels,
    check_choice,
    check_finite,
    check_labels,
    check_positive,
    check_tensor,
    value_checks_enabled,
)
from mixviz.mixing.batch import MixedBatch

REDUCTIONS = ("mean", "sum", "none")


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


def _labels_of(target: Any, name: str = "target") -> torch.Tensor:
    if isinstance(target, MixedBatch):
        return target.y_a
    if isinstance(target, torch.Tensor) and target.dim() == 1:
        return as_labels(name, target)  # any integer dtype (uint8 too) as int64
    raise TypeError(f"{name} must be a MixedBatch or a [B] label tensor, got "
                    f"{type(target).__name__ if not isinstance(target, torch.Tensor) else tuple(target.shape)}")


def _check_forwarded(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Forward pre-hook of every loss: a batch mixed inside the network
    (Manifold Mixup) must have gone through :func:`mixviz.mixing.forward`
    (:meth:`MixedBatch.check_forwarded`), else the logits are of unmixed inputs."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, MixedBatch):
            value.check_forwarded()


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
        self.register_forward_pre_hook(_check_forwarded, with_kwargs=True)

    def _logits(self, logits: Any) -> torch.Tensor:
        return _check_logits(logits, self.num_classes)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, reduction={self.reduction!r}"
