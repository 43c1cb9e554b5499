"""``mixviz bench``: speed figures for the machine it runs on.

- the training step of every method (policy + loss) on the same batches,
  timed in interleaved rounds, as seconds per step and relative to plain
  mixup with the mixup cross-entropy;
- on CUDA: an epoch of CIFAR-100-shaped data (50 000 images, 3x32x32, kept on
  the GPU) with PreAct-ResNet-18, bf16 autocast and channels_last, as seconds
  per epoch and images per second, with the GPU's name.  Timing does not
  depend on pixel values, so the images are random bytes: nothing is
  downloaded.  Without a GPU this part says so and measures nothing.

:func:`epoch_speed` (the epoch timing on any device, optionally through
``torch.compile``, or extrapolated from a few steps) and :func:`loss_speed`
(the DM loss against soft-target cross-entropy) also serve ``mixviz doctor``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from mixviz._extras import require

require("pandas")  # the 'analysis' extra: an ImportError here names the pip install line
import pandas as pd  # noqa: E402
import torch

from mixviz._validation import check_frame, check_positive
from mixviz.train import TrainConfig, _DeviceBatches, _build_optimizer, _build_scheduler, make_step, resolve_device

__all__ = ["time_methods", "gpu_epoch", "epoch_speed", "loss_speed", "DEFAULT_METHODS"]

DEFAULT_METHODS = (("none", "ce"), ("mixup", "mixup_ce"), ("mixup", "dm"), ("cutmix", "mixup_ce"), ("cutmix", "dm"),
                   ("fmix", "mixup_ce"), ("resizemix", "mixup_ce"), ("gridmix", "mixup_ce"),
                   ("average", "midpoint"), ("manifold", "mixup_ce"), ("saliencymix", "mixup_ce"),
                   ("puzzlemix", "mixup_ce"), ("puzzlemix_lite", "mixup_ce"), ("automix", "mixup_ce"))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _setup(config: TrainConfig, num_classes: int, in_shape: tuple[int, ...], device: torch.device,
           steps_per_epoch: int, channels_last: bool | None = None, compile: bool = False) -> Any:
    """``(model, step)`` for ``config``; ``channels_last`` None: on for CUDA
    images; ``compile``: the step trains ``torch.compile(model)`` (mixing and
    the loss stay eager)."""
    from mixviz import losses, mixing, models

    torch.manual_seed(config.seed)
    model = models.build(config.model, num_classes, in_shape, **config.model_options).to(device)
    if channels_last is None:
        channels_last = device.type == "cuda" and len(in_shape) == 3
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    options = dict(config.loss_options)
    if config.loss == "dm" and not options:
        options = losses.dm_defaults(config.policy)
    criterion = losses.build(config.loss, num_classes=num_classes, **options).to(device)
    state = mixing.build_state(config.policy, model, **config.policy_options)  # AutoMix's mixer; else None
    optimizer = _build_optimizer(config, model, state)
    scheduler = _build_scheduler(config, optimizer, steps_per_epoch)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    amp = device.type == "cuda" and config.amp != "off" or config.amp == "bf16"
    train_model = torch.compile(model) if compile else model
    step = make_step(config, model, train_model, criterion, optimizer, scheduler, gen, amp=amp,
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
    res = epoch_speed(batch_size=batch_size, n=n, num_classes=num_classes, epochs=epochs, policy=policy, loss=loss,
                      device=device)
    return {k: res[k] for k in ("gpu", "batch_size", "sec_per_epoch", "images_per_sec", "policy", "loss")}


def epoch_speed(*, batch_size: int = 128, n: int = 50_000, num_classes: int = 100, epochs: int = 2,
                steps: int | None = None, policy: str = "mixup", loss: str = "mixup_ce", device: str = "auto",
                model: str = "preact_resnet18", amp: bool | None = None, channels_last: bool | None = None,
                compile: bool = False) -> dict[str, Any]:
    """Seconds per epoch and images per second of ``model`` on ``n``
    CIFAR-100-shaped images (random bytes, 3x32x32, ``num_classes`` classes)
    kept on the device, with random crop + flip and ``policy`` on the device.

    ``amp`` (bf16 autocast) and ``channels_last`` default to on for CUDA and
    off elsewhere.  ``epochs`` epochs are timed; the first is warm-up and the
    median of the rest is reported (with one epoch, that one).  With
    ``steps``, each "epoch" is only its first ``steps`` steps and the epoch time
    is extrapolated from them (``extrapolated`` is then True): for CPUs, where
    a whole epoch takes many minutes.  ``compile=True`` trains
    ``torch.compile(model)``; its first call compiles, and ``compile_sec`` is
    that first step's time (compilation included).  A failing compile raises:
    the caller decides whether to fall back to eager.
    """
    check_positive("batch_size", batch_size, integer=True)
    check_positive("n", n, integer=True)
    check_positive("epochs", epochs, integer=True)
    if steps is not None:
        check_positive("steps", steps, integer=True)
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    g = torch.Generator().manual_seed(0)
    count = n if steps is None else min(n, steps * batch_size)
    images = torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, num_classes, (count,), generator=g)
    batches = _DeviceBatches(images, labels, batch_size, 0, dev)
    full_steps = n // batch_size
    config = TrainConfig(dataset="cifar100", model=model, policy=policy, loss=loss, epochs=epochs,
                         batch_size=batch_size, lr=0.1, weight_decay=1e-4, device=device, progress=False,
                         amp=("bf16" if (cuda if amp is None else amp) else "off"))
    net, step = _setup(config, num_classes, (3, 32, 32), dev, len(batches),
                       channels_last=cuda if channels_last is None else channels_last, compile=compile)
    import mixviz

    secs, compile_sec = [], None
    with mixviz.validation(False):
        for epoch in range(epochs):
            _sync(dev)
            t0 = time.perf_counter()
            for i, (xb, yb) in enumerate(batches.epoch(epoch)):
                step(xb, yb)
                if compile and compile_sec is None:
                    _sync(dev)
                    compile_sec = time.perf_counter() - t0
                    t0 = time.perf_counter()  # the compiling step is not part of the epoch's time
            _sync(dev)
            secs.append(time.perf_counter() - t0)
    timed = len(batches) - (1 if compile and epochs == 1 else 0)
    sec = statistics.median(secs[1:] if len(secs) > 1 else secs) * full_steps / max(timed, 1)
    return {"gpu": torch.cuda.get_device_name(dev) if cuda else None, "device": str(dev), "model": model,
            "batch_size": batch_size, "sec_per_epoch": sec, "images_per_sec": full_steps * batch_size / sec,
            "policy": policy, "loss": loss, "amp": config.amp == "bf16",
            "channels_last": cuda if channels_last is None else channels_last, "compile": compile,
            "compile_sec": compile_sec, "extrapolated": steps is not None, "steps_timed": timed,
            "epochs_timed": epochs}


def _interleaved(fns: dict[str, Callable[[], Any]], rounds: int, device: torch.device, calls: int) -> dict[str, list[float]]:
    """Seconds per call of each function, one value per round; each round
    calls every function ``calls`` times in turn (after one warm-up call),
    with the device synchronised around each block."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            _sync(device)
            times[name].append((time.perf_counter() - t0) / calls)
    return times


def loss_speed(*, batch: int = 256, num_classes: int = 100, device: str = "auto", rounds: int = 20,
               calls: int = 20, compile: bool = False) -> pd.DataFrame:
    """Forward + backward of the DM loss against the soft-target cross-entropy
    ``-(t * log_softmax(z)).sum(1).mean()`` on the same ``[batch, num_classes]``
    logits, timed in ``rounds`` interleaved rounds of ``calls`` calls on the
    device (value checks off).  Rows: soft-target CE, mixup CE, DM with the
    authors' CutMix setting (eta 0.1, "less", p 0.5) and, with ``compile``,
    the same DM through ``torch.compile`` (its first call compiles:
    ``compile_sec``).  ``vs_soft_ce`` is the median over rounds of the
    per-round ratio.  A failing compile raises."""
    import torch.nn.functional as F

    import mixviz
    from mixviz import losses
    from mixviz.mixing.batch import MixedBatch

    check_positive("batch", batch, integer=True)
    check_positive("num_classes", num_classes, integer=True)
    check_positive("rounds", rounds, integer=True)
    check_positive("calls", calls, integer=True)
    dev = resolve_device(device)
    g = torch.Generator().manual_seed(0)
    z0 = (torch.randn(batch, num_classes, generator=g) * 2).to(dev)
    y_a = torch.randint(0, num_classes, (batch,), generator=g)
    y_b = y_a[torch.randperm(batch, generator=g)]
    lam = torch.rand(batch, generator=g)
    mixed = MixedBatch(inputs=z0, y_a=y_a, y_b=y_b, index=torch.zeros_like(y_a), lam=lam, policy="mixup").to(dev)
    target = mixed.soft_targets(num_classes)
    options = dict(eta=0.1, mode="less", lam_power=0.5)
    criteria: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "soft-target CE": lambda z: -(target * F.log_softmax(z, 1)).sum(1).mean(),
        "mixup CE": lambda z: losses.mixup_cross_entropy(z, mixed.y_a, mixed.y_b, mixed.lam),
        "DM": lambda z, dm=losses.DecoupledMixupLoss(**options): dm(z, mixed),
    }
    compile_sec = None
    if compile:
        fused = losses.DecoupledMixupLoss(**options, compile=True)
        criteria["DM, compiled"] = lambda z: fused(z, mixed)
        import warnings

        from mixviz.losses import dm

        t0 = time.perf_counter()
        with mixviz.validation(False), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            z = z0.clone().requires_grad_()
            fused(z, mixed).backward()
        _sync(dev)
        compile_sec = time.perf_counter() - t0
        if dm._COMPILED.get("rows") is None:  # the compile failed and the loss fell back to eager
            reasons = [str(w.message) for w in caught if "compiled DM loss failed" in str(w.message)]
            raise RuntimeError(reasons[0] if reasons else "the compiled DM loss fell back to the eager one")

    def call(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            z = z0.clone().requires_grad_()
            fn(z).backward()
        return run

    with mixviz.validation(False):
        times = _interleaved({name: call(fn) for name, fn in criteria.items()}, rounds, dev, calls)
    base = times["soft-target CE"]
    rows = [{"loss": name, "us_per_call": 1e6 * statistics.median(t),
             "vs_soft_ce": statistics.median(a / b for a, b in zip(t, base))} for name, t in times.items()]
    table = pd.DataFrame(rows)
    table.attrs.update(batch=batch, num_classes=num_classes, device=str(dev), compile_sec=compile_sec)
    return table


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
