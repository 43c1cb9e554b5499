"""Midpoint soft labels (the "bypassing the random input mixing" reading):
the loss and its global-label sources."""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from mixviz._validation import check_choice, check_positive
from mixviz.losses._common import _as_lam, _check_pair, _Loss, _reduce
from mixviz.mixing.batch import MixedBatch

__all__ = ["GLOBAL_SOURCES", "GlobalLabelSource", "SelfPrediction", "OnlineClassLabels", "MidpointLoss"]

GLOBAL_SOURCES = ("online", "self")


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

