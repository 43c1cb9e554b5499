"""The semi-supervised part of :func:`mixviz.train.fit`: batches of labelled
and unlabelled images, the training step (FixMatch, + mixup, + DM) and the
per-epoch pseudo-label measures.  See :mod:`mixviz.semi` for the method."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mixviz.augment import crop_padding, random_crop_flip, strong_augment
from mixviz.batches import _as_float, _maybe_channels_last
from mixviz.data.subsets import labelled_subset
from mixviz.mixing.batch import MixedBatch
from mixviz.mixing.static import _draw_pairs, _take
from mixviz.semi.core import consistency_loss, labelled_dominant, pseudo_labels, ramp_up

__all__ = ["SemiBatches", "PseudoLabelMonitor", "SemiTraining", "HISTORY_COLUMNS"]

HISTORY_COLUMNS = ("mask_rate", "pseudo_acc", "pseudo_acc_all", "unsup_weight")
# The labelled x unlabelled term is left out while its ramp is below this (the authors' 1e-5).
_RAMP_FLOOR = 1e-5


def _order(n: int, seed: int, stream: int, draw: int) -> torch.Tensor:
    """A permutation of ``n`` from a CPU generator seeded by ``(seed, stream, draw)`` (NumPy's SeedSequence
    mixes them): a pure function, so no state is saved for exact resume."""
    g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, stream, draw]).generate_state(1)[0]))
    return torch.randperm(n, generator=g)


class SemiBatches:
    """Steps of ``B`` labelled images with their labels and ``mu * B``
    unlabelled images *without* labels, kept on the device.

    An epoch is one pass over the unlabelled images in a random order
    (``n_unlabelled // (mu B)`` steps; the last partial batch is dropped).
    The labelled images come from an endless stream of random permutations
    of the labelled subset, so a subset smaller than ``B`` simply repeats
    inside a batch.  Both orders are functions of ``(seed, epoch)``.  With
    ``unlabelled=False`` (supervised-only training on the subset) the
    unlabelled images are not handed out, but the epoch keeps the same number
    of steps and the same labelled batches, so it sees exactly the labelled
    data of the semi-supervised runs; when there are too few unlabelled
    images for one step, an epoch is one pass over the labelled subset.

    ``epoch(e)`` yields ``((x_l, x_u), y_l)`` (``x_u`` is None without
    unlabelled images).  The true labels of the unlabelled images (``truth``,
    default ``labels``; the clean labels of a set with label noise) live in
    :attr:`truth` for the pseudo-label accuracy of
    :class:`PseudoLabelMonitor` only; :attr:`current_truth` holds those of
    the step being served.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, labelled: torch.Tensor,
                 unlabelled: torch.Tensor, batch_size: int, mu: int, seed: int, device: torch.device,
                 use_unlabelled: bool = True, truth: torch.Tensor | None = None) -> None:
        self.batch_size, self.mu, self.seed, self.device = batch_size, mu, seed, device
        self.use_unlabelled = use_unlabelled
        self.x_l = images[labelled].to(device)
        self.y_l = labels[labelled].to(device)
        self.x_u = images[unlabelled].to(device)
        self.truth = (labels if truth is None else truth)[unlabelled].to(device)
        self.current_truth: torch.Tensor | None = None
        n_l, n_u = len(labelled), len(unlabelled)
        self.steps = n_u // (mu * batch_size)
        if self.steps == 0:
            if use_unlabelled:
                raise ValueError(f"mu * batch_size ({mu} * {batch_size}) is larger than the unlabelled part of "
                                 f"the training split ({n_u} images); lower mu or batch_size")
            self.steps = max(1, n_l // batch_size)

    def __len__(self) -> int:
        return self.steps

    def _labelled_order(self, epoch: int) -> torch.Tensor:
        """[steps, B] indices into the labelled subset for epoch ``epoch``."""
        n_l, b = len(self.y_l), self.batch_size
        first = epoch * self.steps * b
        pos = torch.arange(first, first + self.steps * b)
        cycles = range(first // n_l, (first + self.steps * b - 1) // n_l + 1)
        perms = torch.stack([_order(n_l, self.seed, 1, c) for c in cycles])
        return perms[pos // n_l - cycles.start, pos % n_l].view(self.steps, b)

    def epoch(self, epoch: int) -> Iterator[tuple[tuple[torch.Tensor, torch.Tensor | None], torch.Tensor]]:
        lab = self._labelled_order(epoch).to(self.device)
        unl = None
        if self.use_unlabelled:
            per_step = self.mu * self.batch_size
            unl = _order(len(self.truth), self.seed, 2, epoch)[: self.steps * per_step]
            unl = unl.view(self.steps, per_step).to(self.device)
        for s in range(self.steps):
            x_u = None
            if unl is not None:
                x_u = self.x_u[unl[s]]
                self.current_truth = self.truth[unl[s]]
            yield (self.x_l[lab[s]], x_u), self.y_l[lab[s]]


class PseudoLabelMonitor:
    """Per-epoch measures of the pseudo-labels, accumulated on the device (no
    host sync per step):

    * ``mask_rate``: the share of unlabelled samples whose confidence reaches
      the threshold;
    * ``pseudo_acc``: the accuracy of those kept pseudo-labels against the
      true labels (NaN when none was kept);
    * ``pseudo_acc_all``: the accuracy of every pseudo-label.

    The true labels come from :attr:`SemiBatches.truth`, never from the
    training step, and nothing here feeds back into training.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.sums = torch.zeros(3, device=self.device, dtype=torch.float64)  # kept, kept & right, right
        self.count = 0

    def update(self, label: torch.Tensor, mask: torch.Tensor, truth: torch.Tensor) -> None:
        right = (label == truth).to(torch.float64)
        kept = mask.to(torch.float64)
        self.sums += torch.stack((kept.sum(), (kept * right).sum(), right.sum()))
        self.count += label.shape[0]

    def result(self) -> dict[str, float]:
        """The epoch's measures (one host sync) and a reset."""
        kept, kept_right, right = self.sums.tolist()
        n = self.count
        out = {"mask_rate": kept / n if n else float("nan"),
               "pseudo_acc": kept_right / kept if kept else float("nan"),
               "pseudo_acc_all": right / n if n else float("nan")}
        self.reset()
        return out


class SemiTraining:
    """Semi-supervised training for :func:`mixviz.train.fit` (see :mod:`mixviz.semi`), a
    :class:`mixviz.steps.TrainingStep` (registered there for the configs of
    :func:`mixviz.config.is_semi`).

    ``fit`` takes :attr:`batches`, the step of :meth:`make_step` (through
    :meth:`bind`), adds :meth:`epoch_end` to each history row, :meth:`state_dict`
    to each checkpoint (as its ``"semi"`` entry) and :meth:`final_metrics` to
    the run's metrics.
    """

    policy_state = None  # no mixing policy here learns (semi-supervised training mixes with mixup or not at all)

    def __init__(self, config: Any, train_set: Any, model: nn.Module, device: torch.device, world: int = 1) -> None:
        from mixviz import losses

        if world > 1:
            raise ValueError("semi-supervised training (semi / labels_per_class) runs in one process; "
                             "start it without torchrun")
        images = getattr(train_set, "images", None)
        if images is None or images.dim() != 4:
            raise ValueError(f"semi-supervised training (semi={config.semi!r}) needs an in-memory image training "
                             f"split; dataset {config.dataset!r} has none (folder sets and 2-D points are not "
                             f"supported)")
        self.config = config
        self.fixmatch = config.semi == "fixmatch"
        self.mixing = config.policy == "mixup"
        labelled, unlabelled = labelled_subset(train_set.labels, config.labels_per_class, seed=config.seed,
                                               num_classes=train_set.num_classes, classes=train_set.classes)
        self.labelled, self.unlabelled = labelled, unlabelled
        self.batches = SemiBatches(images, train_set.labels, labelled, unlabelled, config.batch_size, config.mu,
                                   config.seed, device, use_unlabelled=self.fixmatch,
                                   truth=getattr(train_set, "clean_labels", None))
        self.monitor = PseudoLabelMonitor(device)
        self.model = model
        self.teacher: nn.Module | None = None
        if self.fixmatch and config.teacher == "ema":
            self.teacher = copy.deepcopy(model)
            for p in self.teacher.parameters():
                p.requires_grad_(False)
        self.rows: nn.Module | None = None
        if self.mixing:
            options = dict(config.loss_options, reduction="none")
            self.rows = losses.build(config.loss, num_classes=train_set.num_classes, **options).to(device)
        self.total_steps = config.epochs * len(self.batches)
        self.step_count = 0
        self.size = int(images.shape[-1])

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        return {"teacher": None if self.teacher is None else self.teacher.state_dict(),
                "step_count": self.step_count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.teacher is not None:
            self.teacher.load_state_dict(state["teacher"])
        self.step_count = int(state["step_count"])

    def unsup_weight(self) -> float:
        """The weight of the labelled x unlabelled mixed term at the current step."""
        return ramp_up(self.step_count, self.total_steps) if self.fixmatch and self.mixing else 0.0

    def epoch_end(self) -> dict[str, float]:
        """The history columns of the epoch that just ended (:data:`HISTORY_COLUMNS`)."""
        row = self.monitor.result() if self.fixmatch else dict.fromkeys(HISTORY_COLUMNS[:3], float("nan"))
        return {**row, "unsup_weight": self.unsup_weight()}

    def final_metrics(self, history: Any) -> dict[str, Any]:
        last = history.iloc[-1]
        return {"semi": self.config.semi, "labels_per_class": self.config.labels_per_class,
                "n_labelled": len(self.labelled), "n_unlabelled": len(self.unlabelled),
                **{c: float(last[c]) for c in HISTORY_COLUMNS[:3]}}

    @torch.no_grad()
    def _update_teacher(self) -> None:
        """EMA of the parameters: ``t <- m t + (1 - m) s``.  Buffers are not averaged: the teacher runs in
        train mode and keeps its own BatchNorm statistics (as in the authors' code)."""
        if self.teacher is None:
            return
        torch._foreach_lerp_(list(self.teacher.parameters()), list(self.model.parameters()),
                             1.0 - self.config.ema_momentum)

    # ------------------------------------------------------------------ the seam (mixviz.steps.TrainingStep)

    def checkpoint_entries(self) -> dict[str, Any]:
        return {"semi": self.state_dict()}

    def restore(self, checkpoint: dict[str, Any]) -> None:
        self.load_state_dict(checkpoint["semi"])

    def finish(self, history: Any) -> dict[str, Any]:
        return self.final_metrics(history)

    def bind(self, context: Any) -> Callable[[Any, torch.Tensor], torch.Tensor]:
        """:meth:`make_step` on the loop's pieces (a :class:`mixviz.steps.StepContext`)."""
        c = context
        return self.make_step(c.train_model, c.optimizer, c.scheduler, c.generator, amp=c.amp,
                              channels_last=c.channels_last, augment=c.augment)

    # ------------------------------------------------------------------ the step

    def make_step(self, train_model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                  gen: torch.Generator, *, amp: bool, channels_last: bool,
                  augment: bool) -> Callable[[Any, torch.Tensor], torch.Tensor]:
        """``step((x_l, x_u), y_l) -> loss`` (detached, no host sync)."""
        config, device_type = self.config, next(self.model.parameters()).device.type
        padding = crop_padding(self.size)

        def weak(x: torch.Tensor) -> torch.Tensor:
            return random_crop_flip(x, gen, padding=padding) if augment else x

        def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
                return model(_maybe_channels_last(x, channels_last)).float()

        def step(x: tuple[torch.Tensor, torch.Tensor | None], y_l: torch.Tensor) -> torch.Tensor:
            x_l = weak(_as_float(x[0]))
            b = x_l.shape[0]
            parts = [x_l]
            if self.fixmatch:
                x_u = _as_float(x[1])
                x_w = weak(x_u)
                parts.append(strong_augment(weak(x_u), gen))
                if self.teacher is None:
                    parts.append(x_w)
            w_lu = self.unsup_weight()
            lu = self.fixmatch and self.mixing and w_lu > _RAMP_FLOOR
            if self.mixing:
                index, lam_ll = _draw_pairs(x_l, config.alpha, gen, per_sample=False)
                lam_ll = labelled_dominant(lam_ll)
                parts.append(_take(x_l, index).lerp_(x_l, lam_ll.view(1, 1, 1, 1)))
                if lu:  # same-index pairs: labelled image i with weak unlabelled view i
                    _, lam_lu = _draw_pairs(x_l, config.alpha, gen, per_sample=False)
                    lam_lu = labelled_dominant(lam_lu)
                    parts.append(x_w[:b].lerp(x_l, lam_lu.view(1, 1, 1, 1)))
            if self.teacher is not None:
                with torch.no_grad():
                    teacher_logits = forward(self.teacher, x_w)
            logits = forward(train_model, torch.cat(parts))
            sizes = [len(p) for p in parts]
            pieces = list(logits.split(sizes))
            loss = F.cross_entropy(pieces.pop(0), y_l)
            if self.fixmatch:
                z_strong = pieces.pop(0)
                if self.teacher is None:
                    teacher_logits = pieces.pop(0).detach()
                label, mask, _ = pseudo_labels(teacher_logits, config.tau)
                loss = loss + config.lambda_u * consistency_loss(z_strong, label, mask)
            if self.mixing:
                ll = MixedBatch(inputs=parts[-2 if lu else -1], y_a=y_l, y_b=y_l[index], index=index,
                                lam=lam_ll.expand(b), policy="mixup")
                loss = loss + self.rows(pieces.pop(0), ll).mean()
                if lu:
                    same = torch.arange(b, device=y_l.device)
                    pairs = MixedBatch(inputs=parts[-1], y_a=y_l, y_b=label[:b], index=same, lam=lam_lu.expand(b),
                                       policy="mixup")
                    loss = loss + w_lu * (self.rows(pieces.pop(0), pairs) * mask[:b]).sum() / b
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            self._update_teacher()
            self.step_count += 1
            if self.fixmatch:  # measures only: after the update, from the labels this step already used
                self.monitor.update(label, mask, self.batches.current_truth)
            return loss.detach()

        return step
