"""The seam between the training loop and what differs between kinds of training.

:func:`mixviz.train.fit` runs one loop for every config: batches, one step per
batch, one history row and one checkpoint per epoch, final metrics.  What
differs between supervised training, semi-supervised training
(:mod:`mixviz.semi`) and training with a learned mixing policy (AutoMix,
:mod:`mixviz.mixing.automix`) is one object, a :class:`TrainingStep`, that
``fit`` gets from :func:`for_config` and knows nothing else of:

* ``batches``: what the step consumes: ``batches.epoch(e)`` yields the
  ``(x, y)`` of each step of epoch ``e``, ``len(batches)`` steps per epoch;
* ``policy_state``: a mixing policy's learned state (AutoMix's mixer) or
  None; ``fit`` trains its parameters in the model's optimizer and returns it
  as ``Run.policy_state``;
* ``bind(context)``: the step ``step(x, y) -> loss`` (detached, on the device:
  no host sync) on the loop's pieces (:class:`StepContext`);
* ``epoch_end()``: the columns it adds to the epoch's history row;
* ``checkpoint_entries()`` / ``restore(checkpoint)``: its entries of the
  checkpoint, written each epoch and read on resume;
* ``finish(history)``: the final metrics it adds once training is over.

A kind of training is registered with :func:`register` (a name, which configs
it trains, how to build it); :func:`for_config` builds the first that claims a
config, else a :class:`SupervisedStep`.  The semi-supervised kind is registered
below.  The supervised step carries a policy's learned state when the policy
has one (:func:`mixviz.mixing.build_state`): AutoMix plugs in through the
mixing registry (``PolicyInfo.state``) and its ``after_step``, not here.

Arrows point one way: ``train -> steps -> semi, mixing``; nothing here or in
:mod:`mixviz.semi` imports :mod:`mixviz.train`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from mixviz.augment import random_crop_flip
from mixviz.batches import _as_float, _DeviceBatches, _LoaderBatches, _maybe_channels_last
from mixviz.config import TrainConfig, is_semi

__all__ = ["TrainingStep", "Batches", "StepContext", "SupervisedStep", "make_step", "register", "kinds",
           "for_config"]

Step = Callable[[Any, torch.Tensor], torch.Tensor]


class Batches(Protocol):
    """What a step consumes: ``epoch(e)`` yields ``(x, y)`` per step (both on the device); ``len`` steps."""

    def __len__(self) -> int: ...

    def epoch(self, epoch: int) -> Iterator[tuple[Any, torch.Tensor]]: ...


@dataclass(frozen=True)
class StepContext:
    """The loop's pieces a step works with.  ``train_model`` is what is trained (the model or its DDP
    wrapper); ``total_steps`` is the run's number of optimizer steps."""

    train_model: nn.Module
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    generator: torch.Generator
    amp: bool
    channels_last: bool
    augment: bool
    total_steps: int


@runtime_checkable
class TrainingStep(Protocol):
    """What one kind of training gives :func:`mixviz.train.fit` (see the module docstring)."""

    @property
    def batches(self) -> Batches: ...

    @property
    def policy_state(self) -> nn.Module | None: ...

    def bind(self, context: StepContext) -> Step: ...

    def epoch_end(self) -> dict[str, float]: ...

    def checkpoint_entries(self) -> dict[str, Any]: ...

    def restore(self, checkpoint: dict[str, Any]) -> None: ...

    def finish(self, history: Any) -> dict[str, Any]: ...


# ----------------------------------------------------------------------------
# supervised training (with a policy's learned state, when it has one)


def make_step(config: TrainConfig, model: nn.Module, train_model: nn.Module, criterion: nn.Module,
              optimizer: torch.optim.Optimizer, scheduler: Any, gen: torch.Generator, *,
              amp: bool, channels_last: bool, augment: bool, state: nn.Module | None = None,
              total_steps: int | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The supervised training step of ``config`` as a function ``step(x, y) -> loss``
    (the loss as a detached device tensor: no host sync).

    ``model`` is the bare network (dynamic policies look at it);
    ``train_model`` is what is trained (the same, or its DDP wrapper).
    ``state`` is the policy's learned state (:func:`mixviz.mixing.build_state`,
    required for ``automix``): it is the policy's ``model=`` and its
    ``after_step(step, total_steps)`` runs after each optimizer step.
    """
    from mixviz import mixing

    if mixing.policy_info(config.policy).state is not None and state is None:
        raise ValueError(f"state is required for the policy {config.policy!r}, which learns: "
                         f"build it with mixing.build_state({config.policy!r}, model, **policy_options)")
    dynamic = mixing.available()[config.policy] == "dynamic"
    mixer = state if state is not None else (model if dynamic else None)
    _, policy_options = mixing.split_options(config.policy, config.policy_options)
    device_type = next(model.parameters()).device.type

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = _as_float(x)
        if augment:
            x = random_crop_flip(x, gen)
        x = _maybe_channels_last(x, channels_last)
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
            mixed = mixing.mix(config.policy, x, y, alpha=config.alpha, generator=gen,
                               model=mixer, **policy_options)
            logits = mixing.forward(train_model, mixed)
        loss = criterion(logits.float(), mixed)
        if mixed.aux_loss is not None:  # the policy's own learning signal (see MixedBatch.aux_loss)
            loss = loss + mixed.aux_loss.float()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if state is not None:
            state.after_step(scheduler.last_epoch - 1, total_steps)
        return loss.detach()

    return step


class SupervisedStep:
    """Supervised training: every labelled batch of the training split (on the device, or through a
    DataLoader for folder sets), the step of :func:`make_step`, and the policy's learned state when it has
    one (checkpointed as ``policy_state``, in eval mode once training is over)."""

    def __init__(self, config: TrainConfig, train_set: Any, model: nn.Module, device: torch.device,
                 rank: int = 0, world: int = 1) -> None:
        from mixviz import mixing

        self.config, self.model = config, model
        self.policy_state = mixing.build_state(config.policy, model, **config.policy_options)  # None unless it learns
        self.batches: Batches
        if hasattr(train_set, "images"):
            self.batches = _DeviceBatches(train_set.images, train_set.labels, config.batch_size, config.seed,
                                          device, rank, world)
        else:
            self.batches = _LoaderBatches(train_set, config.batch_size, config.seed, device, config.num_workers,
                                          rank, world)

    def bind(self, context: StepContext) -> Step:
        c = context
        return make_step(self.config, self.model, c.train_model, c.criterion, c.optimizer, c.scheduler, c.generator,
                         amp=c.amp, channels_last=c.channels_last, augment=c.augment, state=self.policy_state,
                         total_steps=c.total_steps)

    def epoch_end(self) -> dict[str, float]:
        return {}

    def checkpoint_entries(self) -> dict[str, Any]:
        return {"policy_state": self.policy_state.state_dict() if self.policy_state is not None else None}

    def restore(self, checkpoint: dict[str, Any]) -> None:
        if self.policy_state is not None:
            self.policy_state.load_state_dict(checkpoint["policy_state"])

    def finish(self, history: Any) -> dict[str, Any]:
        if self.policy_state is not None:
            self.policy_state.eval()  # as load_run gives it: mixing with it afterwards predicts masks, it does not train
        return {}


# ----------------------------------------------------------------------------
# the kinds of training

#: ``(config, train_set, model, device, rank, world) -> TrainingStep``
Build = Callable[[TrainConfig, Any, nn.Module, torch.device, int, int], TrainingStep]

_KINDS: dict[str, tuple[Callable[[TrainConfig], bool], Build]] = {}


def register(name: str, applies: Callable[[TrainConfig], bool], build: Build) -> None:
    """Register a kind of training: ``applies(config)`` says whether it trains ``config``, ``build`` makes
    its :class:`TrainingStep`.  Kinds are asked in the order they were registered; registering a name again
    replaces it."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    for arg, value in (("applies", applies), ("build", build)):
        if not callable(value):
            raise TypeError(f"{arg} must be callable, got {type(value).__name__}")
    _KINDS[name] = (applies, build)


def kinds() -> tuple[str, ...]:
    """The names of the registered kinds, in the order they are asked."""
    return tuple(_KINDS)


def for_config(config: TrainConfig, train_set: Any, model: nn.Module, device: torch.device, rank: int = 0,
               world: int = 1) -> TrainingStep:
    """The :class:`TrainingStep` of ``config``: the first registered kind that claims it, else supervised."""
    for applies, build in _KINDS.values():
        if applies(config):
            return build(config, train_set, model, device, rank, world)
    return SupervisedStep(config, train_set, model, device, rank, world)


def _semi_training(config: TrainConfig, train_set: Any, model: nn.Module, device: torch.device, rank: int,
                   world: int) -> TrainingStep:
    """A labelled subset, FixMatch, + mixup / DM: :class:`mixviz.semi.SemiTraining`."""
    from mixviz.semi.training import SemiTraining

    return SemiTraining(config, train_set, model, device, world)


register("semi", is_semi, _semi_training)
