"""``mixviz bench``: speed figures for the machine it runs on.

- the training step of every method (policy + loss) on the same batches,
  timed in interleaved rounds, as seconds per step and relative to plain
  mixup with the mixup cross-entropy;
- on CUDA: an epoch of CIFAR-100-shaped data (50 000 images, 3x32x32, kept on
  the GPU) with PreAct-ResNet-18, bf16 autocast and channels_last, as seconds
  per epoch and images per second, with the GPU's name.  Timing does not
  depend on pixel values, so the images are random bytes: nothing is
  downloaded.  Without a GPU this part says so and measures nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import pandas as pd
import torch

from mixviz._validation import check_frame
from mixviz.train import TrainConfig, _DeviceBatches, _build_optimizer, _build_scheduler, make_step, resolve_device

__all__ = ["time_methods", "gpu_epoch", "DEFAULT_METHODS"]

DEFAULT_METHODS = (("none", "ce"), ("mixup", "mixup_ce"), ("mixup", "dm"), ("cutmix", "mixup_ce"), ("cutmix", "dm"),
                   ("fmix", "mixup_ce"), ("resizemix", "mixup_ce"), ("gridmix", "mixup_ce"),
                   ("average", "midpoint"), ("manifold", "mixup_ce"), ("saliencymix", "mixup_ce"),
                   ("puzzlemix", "mixup_ce"), ("automix", "mixup_ce"))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _setup(config: TrainConfig, num_classes: int, in_shape: tuple[int, ...], device: torch.device,
           steps_per_epoch: int) -> Any:
    from mixviz import losses, mixing, models

    torch.manual_seed(config.seed)
    model = models.build(config.model, num_classes, in_shape, **config.model_options).to(device)
    channels_last = device.type == "cuda" and len(in_shape) == 3
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    options = dict(config.loss_options)
    if config.loss == "dm" and not options:
        options = {k: v for k, v in losses.dm_defaults(config.policy).items() if k != "alpha"}
    criterion = losses.build(config.loss, num_classes=num_classes, **options).to(device)
    state = mixing.build_state(config.policy, model, **config.policy_options)  # AutoMix's mixer; else None
    optimizer = _build_optimizer(config, model, state)
    scheduler = _build_scheduler(config, optimizer, steps_per_epoch)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    amp = device.type == "cuda" and config.amp != "off" or config.amp == "bf16"
    step = make_step(config, model, model, criterion, optimizer, scheduler, gen, amp=amp,
                     channels_last=channels_last, augment=len(in_shape) == 3, state=state,
                     total_steps=steps_per_epoch * config.epochs)
    return model, step


def time_methods(methods: tuple[tuple[str, str], ...] = DEFAULT_METHODS, *, model: str = "smallcnn",
                 in_shape: tuple[int, int, int] = (3, 32, 32), num_classes: int = 10, batch_size: int = 128,
                 steps: int = 10, rounds: int = 3, device: str = "auto",
                 model_options: dict[str, Any] | None = None) -> pd.DataFrame:
    """Median seconds per training step of each (policy, loss), on the same
    random batches, timed in ``rounds`` interleaved rounds of ``steps`` steps
    (so drift in machine load hits every method alike)."""
    if steps < 1 or rounds < 1:
        raise ValueError(f"steps and rounds must be >= 1, got {steps} and {rounds}")
    dev = resolve_device(device)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, *in_shape, generator=g).to(dev)
    y = torch.randint(0, num_classes, (batch_size,), generator=g).to(dev)
    steppers = {}
    for policy, loss in methods:
        config = TrainConfig(dataset="clutter", model=model, policy=policy, loss=loss, epochs=1, batch_size=batch_size,
                             device=device, progress=False, model_options=dict(model_options or {}))
        _, step = _setup(config, num_classes, in_shape, dev, steps * (rounds + 1))
        step(x, y)  # warm-up (and the value checks of the first step)
        steppers[(policy, loss)] = step
    times: dict[tuple[str, str], list[float]] = {m: [] for m in methods}
    import mixviz

    with mixviz.validation(False):
        for _ in range(rounds):
            for m, step in steppers.items():
                _sync(dev)
                t0 = time.perf_counter()
                for _ in range(steps):
                    step(x, y)
                _sync(dev)
                times[m].append((time.perf_counter() - t0) / steps)
    rows = [{"policy": p, "loss": l, "sec_per_step": statistics.median(times[(p, l)])} for p, l in methods]
    table = pd.DataFrame(rows)
    ref = table[(table.policy == "mixup") & (table.loss == "mixup_ce")]["sec_per_step"]
    table["vs_mixup"] = table["sec_per_step"] / float(ref.iloc[0]) if len(ref) else float("nan")
    table["images_per_sec"] = batch_size / table["sec_per_step"]
    return table


def gpu_epoch(*, batch_size: int = 100, n: int = 50_000, num_classes: int = 100, epochs: int = 2,
              policy: str = "mixup", loss: str = "mixup_ce", device: str = "cuda") -> dict[str, Any]:
    """Seconds per epoch of PreAct-ResNet-18 on CIFAR-100-shaped data kept on
    the GPU (bf16 autocast, channels_last, random crop + flip and mixing on the
    device).  The first epoch is warm-up; the median of the rest is reported."""
    dev = resolve_device(device)
    if dev.type != "cuda":
        raise ValueError("gpu_epoch needs a CUDA device; none is available here")
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    batches = _DeviceBatches(images, labels, batch_size, 0, dev)
    config = TrainConfig(dataset="cifar100", model="preact_resnet18", policy=policy, loss=loss, epochs=epochs,
                         batch_size=batch_size, lr=0.1, weight_decay=1e-4, device=device, progress=False)
    _, step = _setup(config, num_classes, (3, 32, 32), dev, len(batches))
    import mixviz

    secs = []
    with mixviz.validation(False):
        for epoch in range(epochs):
            _sync(dev)
            t0 = time.perf_counter()
            for xb, yb in batches.epoch(epoch):
                step(xb, yb)
            _sync(dev)
            secs.append(time.perf_counter() - t0)
    sec = statistics.median(secs[1:] if len(secs) > 1 else secs)
    return {"gpu": torch.cuda.get_device_name(dev), "batch_size": batch_size, "sec_per_epoch": sec,
            "images_per_sec": len(batches) * batch_size / sec, "policy": policy, "loss": loss}


def _cmd_bench(args: argparse.Namespace) -> int:
    dev = resolve_device(args.device)
    parts = [f"device: {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU'}), "
             f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"]
    print(parts[-1])
    table = time_methods(steps=args.steps, rounds=args.rounds, batch_size=args.batch_size, device=args.device)
    parts.append("\nTraining step per method (smallcnn, 3x32x32, batch %d; median of %d rounds):\n" %
                 (args.batch_size, args.rounds))
    parts.append(markdown_table(table))
    if dev.type == "cuda":
        res = gpu_epoch(batch_size=args.gpu_batch_size, epochs=args.gpu_epochs, device=args.device)
        parts.append(f"\nCIFAR-100 PreAct-ResNet-18 on {res['gpu']}, batch {res['batch_size']}, bf16 + "
                     f"channels_last, data on the GPU: {res['sec_per_epoch']:.2f} s per epoch, "
                     f"{res['images_per_sec']:.0f} images/s")
    else:
        parts.append("\nNo GPU here: the CIFAR-100 epoch-time measurement needs one and was not run.")
    for part in parts[1:]:
        print(part)
    if args.out is not None:
        from mixviz.ioutil import atomic_write_text

        atomic_write_text(args.out, "\n".join(["# mixviz bench", "", *parts, ""]))
        print(f"\nwritten to {args.out}")
    return 0


def markdown_table(table: pd.DataFrame) -> str:
    """``table`` as a Markdown table (numbers to 4 significant digits, right
    aligned), without the optional ``tabulate`` package."""
    check_frame("table", table, [])

    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    numeric = [pd.api.types.is_numeric_dtype(table[c]) for c in table.columns]
    lines = ["| " + " | ".join(map(str, table.columns)) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def register_command(sub: Any) -> None:
    p = sub.add_parser("bench", help="time the training step of every method on this machine",
                       description="Time the training step of every method (policy + loss) on the same batches, "
                                   "relative to mixup, and on a GPU the CIFAR-100 PreAct-ResNet-18 epoch time.")
    p.add_argument("--steps", type=int, default=10, help="steps per round. Default: %(default)s")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds. Default: %(default)s")
    p.add_argument("--batch-size", type=int, default=128, help="batch of the step timing. Default: %(default)s")
    p.add_argument("--gpu-batch-size", type=int, default=100,
                   help="batch of the CIFAR-100 epoch timing (the authors' 100). Default: %(default)s")
    p.add_argument("--gpu-epochs", type=int, default=3, help="epochs timed on the GPU (first is warm-up)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N. Default: %(default)s")
    p.add_argument("--out", default=None,
                   help="also write the report to this Markdown file (e.g. benchmarks/results/methods.md, "
                        "which scripts/update_readme.py puts in the README)")
    p.set_defaults(func=_cmd_bench)
