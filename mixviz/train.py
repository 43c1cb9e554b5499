"""The training loop: one readable ``fit(config)``.

Every knob is a field of :class:`TrainConfig`.  What differs between kinds of
training (supervised, semi-supervised, a learned mixing policy) comes from one
object, the config's :class:`mixviz.steps.TrainingStep`
(:func:`mixviz.steps.for_config`): its batches, its step, its history columns,
checkpoint entries and final metrics.  The supervised step is::

    x, y  = next batch (on the device; augmented there)
    mixed = mixing.mix(policy, x, y, alpha, generator, model)   # -> MixedBatch
    loss  = criterion(mixing.forward(model, mixed), mixed)      # losses.build(...)
    loss  = loss + mixed.aux_loss                               # a policy's own signal, if any
    loss.backward(); optimizer.step(); scheduler.step()
    state.after_step(step, total_steps)                         # a learned policy (AutoMix) only

A policy with a learned state (AutoMix) gets it from
:func:`mixviz.mixing.build_state`; its parameters train with the model's in
the one optimizer and its ``state_dict`` is checkpointed with them.

In-memory datasets (everything but ``imagefolder``) are moved to the device
once and cut into batches there; folder datasets go through a DataLoader.
On CUDA the step runs under bf16 autocast with channels_last tensors.  A
checkpoint is written atomically at the end of every epoch; ``fit(config,
resume=True)`` continues from it and ends with exactly the weights of an
unbroken run (same seed, CPU): model, optimizer, scheduler, loss state and
every random state are restored.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from mixviz._extras import require

require("pandas")  # the 'analysis' extra: an ImportError here names the pip install line
import pandas as pd  # noqa: E402
import torch
import torch.distributed as dist
from torch import nn

import mixviz
from mixviz.batches import _as_float, _DeviceBatches, _LoaderBatches, _maybe_channels_last  # noqa: F401 (re-exported)
from mixviz.config import AMP_MODES, LOSSES, OPTIMIZERS, SCHEDULERS, Run, TrainConfig  # noqa: F401 (re-exported)
from mixviz.ioutil import atomic_write_json, atomic_write_text, load_checkpoint, save_checkpoint
from mixviz.machine import machine_info
from mixviz.steps import StepContext, for_config, make_step  # noqa: F401 (make_step re-exported: the supervised step)

__all__ = ["TrainConfig", "Run", "fit", "make_step", "resolve_device", "evaluate"]

CHECKPOINT = "checkpoint.pt"


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> cuda if available, else mps, else cpu."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device is {device!r} but CUDA is not available here; use device='auto' or 'cpu'")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device is 'mps' but MPS is not available here; use device='auto' or 'cpu'")
    return torch.device(device)


def _eval_arrays(dataset: Any, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole evaluation set as (images, labels) tensors."""
    if hasattr(dataset, "images"):
        images, labels = dataset.images, dataset.labels
    else:
        loader = torch.utils.data.DataLoader(dataset, batch_size=256, shuffle=False)
        parts = [(x, y) for x, y in loader]
        images = torch.cat([p[0] for p in parts])
        labels = torch.cat([p[1] for p in parts])
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images, labels


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 512,
             device: torch.device | None = None, amp: bool = False) -> torch.Tensor:
    """Logits of ``model`` (in eval mode) on ``images``, float32, on the device."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(images), batch_size):
            x = _as_float(images[start:start + batch_size].to(device))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out.append(model(_maybe_channels_last(x, amp)).float())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, device=device)


# ----------------------------------------------------------------------------
# the pieces of a run


def _build_optimizer(config: TrainConfig, model: nn.Module, *extra: nn.Module | None) -> torch.optim.Optimizer:
    """One optimizer for the model and the trainable parameters of ``extra``
    modules (a policy's learned state), with the same learning rate."""
    decay, no_decay = [], []
    params = [*model.parameters(), *(p for m in extra if m is not None for p in m.parameters() if p.requires_grad)]
    for p in params:
        (no_decay if p.dim() <= 1 else decay).append(p)  # no weight decay on BN and biases
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    return torch.optim.AdamW(groups, lr=config.lr)


def _build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer,
                     steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    total = config.epochs * steps_per_epoch
    warm = config.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if config.scheduler == "none":
            return 1.0
        progress = (step - warm) / max(1, total - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _eval_policy(config: TrainConfig, points: bool) -> str:
    if config.eval_policy != "auto":
        return config.eval_policy
    return "mixup" if points else "cutmix"


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _rng_state(gen: torch.Generator) -> dict[str, Any]:
    """Every random state a resumed run needs, in types a checkpoint may hold
    (:func:`mixviz.ioutil.check_checkpoint_types`): the run's generator,
    torch's CPU and CUDA generators (byte tensors), and the global numpy and
    Python ``random`` states (lists of ints), so that a user's callback or data
    code drawing from those resumes exactly too."""
    np_state = np.random.get_state(legacy=False)  # {'bit_generator', 'state': {'key': uint32 array, ...}, ...}
    np_state["state"] = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in np_state["state"].items()}
    version, internal, gauss_next = random.getstate()
    state = {"gen": gen.get_state(), "torch": torch.get_rng_state(), "numpy": np_state,
             "python": [version, list(internal), gauss_next]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(gen: torch.Generator, state: dict[str, Any]) -> None:
    """Restore what :func:`_rng_state` saved (checkpoints written before the
    numpy and Python states were kept restore the torch states only)."""
    gen.set_state(state["gen"].cpu())  # generator states are CPU byte tensors, whatever the device
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if "numpy" in state:
        np.random.set_state(state["numpy"])
    if "python" in state:
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))


# ----------------------------------------------------------------------------
# fit


def fit(config: TrainConfig, resume: bool = False, *,
        on_step: Callable[[int, int], None] | None = None) -> Run:
    """Train ``config`` and return the :class:`Run`.

    ``resume=True`` continues from ``<out_dir>/checkpoint.pt`` when it exists
    (and starts afresh when it does not).  ``on_step(epoch, step)`` is called
    after every optimizer step (progress hooks, fault-injection in tests).
    Under ``torch.distributed`` (``torchrun``) the model is wrapped in
    DistributedDataParallel, each rank trains on its own shard of every epoch
    and only rank 0 writes files.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    config.validate()
    if resume and config.out_dir is None:
        raise ValueError("resume=True needs config.out_dir (where the checkpoint lives)")
    from mixviz import data, losses, metrics, models

    rank, world = _dist_info()
    device = resolve_device(config.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    amp = device.type == "cuda" and config.amp != "off" or config.amp == "bf16"
    torch.manual_seed(config.seed)

    train_set = data.load(config.dataset, "train", root=config.data_root, download=config.download,
                          **config.dataset_options)
    test_set = data.load(config.dataset, "test", root=config.data_root, download=config.download,
                         **config.dataset_options)
    in_shape = tuple(train_set.in_shape)
    points = len(in_shape) == 1
    augment = (train_set.augment == "crop_flip") if config.augment is None else config.augment
    if augment and points:
        raise ValueError("augment=True needs image data; the dataset holds points")
    channels_last = device.type == "cuda" and not points

    model = models.build(config.model, train_set.num_classes, in_shape, mean=train_set.mean,
                         std=train_set.std, **config.model_options).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    criterion = losses.build(config.loss, num_classes=train_set.num_classes, **config.loss_options).to(device)
    kind = for_config(config, train_set, model, device, rank, world)  # what this kind of training does
    batches = kind.batches
    optimizer = _build_optimizer(config, model, kind.policy_state)
    scheduler = _build_scheduler(config, optimizer, len(batches))
    gen = torch.Generator(device=device).manual_seed(config.seed * 7919 + rank)
    train_model: nn.Module = model
    if world > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    out_dir = Path(config.out_dir) if config.out_dir is not None else None
    writer = out_dir is not None and rank == 0
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if resume and out_dir is not None and (out_dir / CHECKPOINT).exists():
        ckpt = load_checkpoint(out_dir / CHECKPOINT)  # weights_only: refuses files that would run code
        saved = TrainConfig.from_dict(ckpt["config"]).identity()
        if saved != config.identity():
            changed = sorted(k for k in saved if saved[k] != config.identity().get(k))
            raise ValueError(f"the checkpoint in {out_dir} was made with another config (differs in: "
                             f"{', '.join(changed)}); use a new out_dir or resume=False")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        criterion.load_state_dict(ckpt["criterion"])
        kind.restore(ckpt)
        _set_rng_state(gen, ckpt["rng"][rank] if isinstance(ckpt["rng"], list) else ckpt["rng"])
        history = ckpt["history"]
        start_epoch = ckpt["epoch"] + 1
    if writer:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out_dir / "config.json", config.to_dict())

    eval_images, eval_labels = _eval_arrays(test_set)
    eval_images, eval_labels = eval_images.to(device), eval_labels.to(device)
    eval_masks = test_set.masks.to(device) if getattr(test_set, "masks", None) is not None else None
    eval_policy = _eval_policy(config, points)
    probe = _memorisation_probe(train_set, device)

    step = kind.bind(StepContext(train_model, criterion, optimizer, scheduler, gen, amp=amp,
                                 channels_last=channels_last, augment=augment,
                                 total_steps=config.epochs * len(batches)))

    progress = None
    if config.progress and rank == 0:
        from tqdm.auto import tqdm

        progress = tqdm(total=config.epochs * len(batches), initial=start_epoch * len(batches),
                        desc=f"{config.policy}/{config.loss}", unit="step", leave=False,
                        disable=None)  # disable=None: off when not a TTY
    # no terminal for the bar (a log file, a pipe, CI): one plain line per epoch on stderr instead
    plain_log = bool(config.progress and rank == 0 and (progress is None or progress.disable))

    previous_checks = mixviz.validation()
    try:
        for epoch in range(start_epoch, config.epochs):
            train_model.train()
            loss_sum = torch.zeros((), device=device)
            steps = 0
            t0 = time.perf_counter()
            for x, y in batches.epoch(epoch):
                loss = step(x, y)
                loss_sum += loss.detach()
                steps += 1
                if steps == 1 and epoch == start_epoch:
                    mixviz.validation(False)  # value checks passed once: no more host syncs
                if progress is not None:
                    progress.update(1)
                if on_step is not None:
                    on_step(epoch, steps)
            if hasattr(criterion, "epoch_end"):
                criterion.epoch_end()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            train_sec = time.perf_counter() - t0
            if world > 1:
                dist.all_reduce(loss_sum)
                loss_sum /= world
            row = {}
            if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
                row = _evaluate_epoch(model, eval_images, eval_labels, eval_policy, config, amp, metrics, eval_masks)
                if probe is not None:
                    row.update(metrics.memorisation(evaluate(model, probe[0], probe[1], amp=amp), probe[1], probe[2]))
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                   "train_loss": float(loss_sum) / max(1, steps), **row,
                   "epoch_sec": train_sec, "images_per_sec": steps * config.batch_size / train_sec,
                   **kind.epoch_end()}
            history.append(row)
            if plain_log:
                print(_epoch_line(config, row), file=sys.stderr, flush=True)
            if writer:
                save_checkpoint({
                    "config": config.to_dict(), "epoch": epoch, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "criterion": criterion.state_dict(), "rng": _gather_rng(gen, world),
                    "history": history, **kind.checkpoint_entries(),
                }, out_dir / CHECKPOINT)
                atomic_write_text(out_dir / "history.csv", pd.DataFrame(history).to_csv(index=False))
            elif world > 1:
                _gather_rng(gen, world)
    finally:
        mixviz.validation(bool(previous_checks))
        if progress is not None:
            progress.close()

    hist = pd.DataFrame(history)
    final = _final_metrics(model, eval_images, eval_labels, config, amp, metrics, hist, eval_policy, eval_masks)
    final.update(device=str(device), world_size=world,
                 params=sum(p.numel() for p in model.parameters()),
                 machine=machine_info(device))  # where it ran (not in the config: the run's id stays)
    final.update(kind.finish(hist))  # a learned policy state goes to eval mode: as load_run gives it
    if writer:
        atomic_write_json(out_dir / "metrics.json", final)
    return Run(config=config, model=model, history=hist, metrics=final, path=out_dir, criterion=criterion,
               policy_state=kind.policy_state)


def _gather_rng(gen: torch.Generator, world: int) -> Any:
    """Every rank's random state (a list under torch.distributed)."""
    state = _rng_state(gen)
    if world == 1:
        return state
    states: list[Any] = [None] * world
    dist.all_gather_object(states, state)
    return states


#: Training images whose predictions are checked each epoch for memorisation of noisy labels (the first ones).
MEMORISATION_PROBE = 1024


def _memorisation_probe(train_set: Any, device: torch.device) -> tuple[torch.Tensor, ...] | None:
    """(images, noisy labels, clean labels) of the first training samples when
    the training labels are noisy (:mod:`mixviz.data.noise`), else None."""
    noisy = getattr(train_set, "noisy", None)
    if noisy is None or not bool(noisy.any()):
        return None
    n = MEMORISATION_PROBE
    return (train_set.images[:n].to(device), train_set.labels[:n].to(device), train_set.clean_labels[:n].to(device))


def _evaluate_epoch(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eval_policy: str,
                    config: TrainConfig, amp: bool, metrics: Any,
                    masks: torch.Tensor | None = None) -> dict[str, float]:
    logits = evaluate(model, images, labels, amp=amp)
    row = metrics.summary(logits, labels)
    mixed = metrics.mixed_evaluation(model, images, labels, policy=eval_policy, alpha=config.eval_alpha,
                                     seed=config.seed, object_masks=masks)
    return {"test_acc": row["test_acc"], "test_nll": row["nll"], "test_ece": row["ece"], **mixed}


#: Policies whose mixed test sets are scored at the end of a run on data with object masks (the visible-pair split).
FINAL_MIXED_POLICIES = ("cutmix", "mixup")


def _epoch_line(config: TrainConfig, row: dict[str, Any]) -> str:
    """``cutmix/dm epoch 3/10: train_loss 1.234, test_acc 0.812, 2.1 s``: the
    progress line when no terminal shows a bar."""
    shown = [f"{k} {row[k]:.4g}" for k in ("train_loss", "test_acc", "test_nll", "test_ece") if k in row]
    return (f"{config.policy}/{config.loss} epoch {row['epoch']}/{config.epochs}: {', '.join(shown)}, "
            f"{row['epoch_sec']:.1f} s")


def _final_metrics(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: TrainConfig,
                   amp: bool, metrics: Any, hist: pd.DataFrame, eval_policy: str,
                   masks: torch.Tensor | None = None) -> dict[str, Any]:
    logits = evaluate(model, images, labels, amp=amp)
    final: dict[str, Any] = dict(metrics.summary(logits, labels))
    last = hist.iloc[-1]
    if masks is not None:  # Top-1/Top-2 on CutMix- and mixup-mixed test sets, split by what each image shows
        for policy in FINAL_MIXED_POLICIES:
            scores = metrics.mixed_evaluation(model, images, labels, policy=policy, alpha=config.eval_alpha,
                                              seed=config.seed, object_masks=masks)
            final.update({f"{policy}_{k.removeprefix('mixed_')}": v for k, v in scores.items()})
    for key in ("memorised", "still_right", "clean_fit", "noisy_share"):
        if key in last:
            final[key] = float(last[key])
    final.update(mixed_top1=float(last["mixed_top1"]), mixed_top2=float(last["mixed_top2"]),
                 eval_policy=eval_policy, epochs=int(len(hist)),
                 sec_per_epoch=float(hist["epoch_sec"].median()),
                 images_per_sec=float(hist["images_per_sec"].median()),
                 dataset=config.dataset, model=config.model, policy=config.policy, loss=config.loss,
                 seed=config.seed)
    return final
