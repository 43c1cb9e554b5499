"""Cost of the Decoupled Mixup (DM) loss: alone, and inside a training step.

1. Loss only: forward + backward on the same [B, C] logits (B = 256, C = 100,
   and C = 1000 for scale) of the soft-target cross-entropy
   ``-(t * log_softmax(z)).sum(1).mean()`` (t given), mixviz's mixup CE, the
   DM loss (mixviz, hand-written gradient), the DM loss on timm/torchvision
   style soft targets, a plain-autograd DM for comparison, and the DM loss
   fused by ``torch.compile`` (``compile=True``; its compile time is reported,
   with a fresh compile cache, i.e. what a user's first run pays).
   Goal: DM <= 2x soft-target CE at C = 100.
2. A real training step on a small CNN (3x32x32 inputs, batch 128, 10
   classes): mix + forward + loss + backward + SGD step, DM against mixup CE.
   Goal: DM step <= 1.05x the mixup-CE step.

One CPU thread (OMP_NUM_THREADS=1 is set before torch is imported), value
checks off (as inside ``fit`` after its first step).  Candidates are timed in
interleaved rounds (A, B, C, A, B, C, ...) after a warm-up, each round timing
a block of calls; the tables give the median time per call over rounds and
the median of the per-round ratios, which cancels most drift when other
processes share the CPU.

    python benchmarks/bench_losses.py [--rounds 30] [--threads 1]

Prints Markdown tables and writes them to benchmarks/results/losses.md.
"""

from __future__ import annotations

import argparse
import os
import sys

if __name__ == "__main__" and "OMP_NUM_THREADS" not in os.environ:  # before torch starts its thread pool
    threads = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "1"
    os.environ["OMP_NUM_THREADS"] = threads
if __name__ == "__main__" and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:  # a cold compile, as on a first run
    import tempfile

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="mixviz-inductor-")

import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import mixviz  # noqa: E402
from _timing import interleaved, median_us, ratio  # noqa: E402  (benchmarks/_timing.py)
from mixviz import losses  # noqa: E402
from mixviz.mixing.batch import MixedBatch  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "losses.md"
FUSED_KEY = "mixviz `DecoupledMixupLoss(..., compile=True)` on a MixedBatch (fused, less, p 0.5)"
DM_OPTIONS = dict(eta=0.1, mode="less", lam_power=0.5)  # the authors' CutMix row: the busiest weight path


# ----------------------------------------------------------------------------- 1. loss only


def autograd_dm(z: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: torch.Tensor, eta: float,
                mode: str, thr: float, lam_power: float) -> torch.Tensor:
    """DM written the obvious vectorized way, autograd doing the backward (for comparison)."""
    pair = torch.stack((y_a, y_b), 1)
    logp = F.log_softmax(z, 1).gather(1, pair)
    shares = torch.stack((lam, 1 - lam), 1)
    rest = torch.logsumexp(z.scatter(1, pair, float("-inf")), 1, keepdim=True)
    dec = F.softplus(rest - z.gather(1, pair))
    keep = (y_a != y_b).unsqueeze(1)
    cond = keep & (shares < thr) if mode == "less" else keep & (shares >= thr) if mode == "more" else keep
    weights = eta * shares.pow(lam_power) * cond
    return (weights * dec - shares * logp).sum(1).mean()


def loss_table(batch: int, num_classes: int, rounds: int
               ) -> tuple[list[str], dict[str, list[float]], dict[str, int], float]:
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(batch, num_classes, generator=g) * 2
    y_a = torch.randint(0, num_classes, (batch,), generator=g)
    y_b = y_a[torch.randperm(batch, generator=g)]
    lam = torch.rand(batch, generator=g)
    t = lam[:, None] * F.one_hot(y_a, num_classes) + (1 - lam[:, None]) * F.one_hot(y_b, num_classes)

    mixed = MixedBatch(inputs=z0, y_a=y_a, y_b=y_b, index=torch.zeros_like(y_a), lam=lam, policy="mixup")
    criterion = losses.DecoupledMixupLoss(**DM_OPTIONS)
    fused = losses.DecoupledMixupLoss(**DM_OPTIONS, compile=True)

    def run(loss_fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def call() -> None:
            z = z0.clone().requires_grad_()
            loss_fn(z).backward()
        return call

    cands = {
        "soft-target CE `-(t * log_softmax(z)).sum(1).mean()`": run(lambda z: -(t * F.log_softmax(z, 1)).sum(1).mean()),
        "mixviz `mixup_cross_entropy`": run(lambda z: losses.mixup_cross_entropy(z, y_a, y_b, lam)),
        "mixviz `decoupled_mixup_loss` (eta 0.1, both, p 0)":
            run(lambda z: losses.decoupled_mixup_loss(z, y_a, y_b, lam)),
        "mixviz `DecoupledMixupLoss(eta=0.1, mode='less', lam_power=0.5)` on a MixedBatch":
            run(lambda z: criterion(z, mixed)),
        "mixviz `DecoupledMixupLoss` on soft targets t (less, p 0.5)":
            run(lambda z: losses.soft_target_decoupled_mixup_loss(z, t, **DM_OPTIONS)),
        "plain-autograd DM (less, p 0.5), for comparison":
            run(lambda z: autograd_dm(z, y_a, y_b, lam, thr=0.5, **DM_OPTIONS)),
        "mixviz `DecoupledMixupLoss(..., compile=True)` on a MixedBatch (fused, less, p 0.5)":
            run(lambda z: fused(z, mixed)),
    }
    t0 = time.perf_counter()
    cands[FUSED_KEY]()  # the first call compiles
    compile_s = time.perf_counter() - t0
    times = interleaved(cands, rounds, block_s=0.002)
    calls = {name: aten_calls(fn) for name, fn in cands.items()}
    base = next(iter(cands))
    lines = [f"| B={batch}, C={num_classes}: forward + backward | us / call | x soft-target CE | PyTorch ops |",
             "|---|---:|---:|---:|"]
    for name in cands:
        lines.append(f"| {name} | {median_us(times[name]):.0f} | {ratio(times, name, base):.2f} | {calls[name]} |")
    return lines, times, calls, compile_s


def aten_calls(fn: Callable[[], None]) -> int:
    """Top-level PyTorch operator calls (``aten::`` ops not called by another
    one) of one call of ``fn``, forward and backward, from the profiler."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = [e for e in prof.events() if e.name.startswith("aten::")]
    return sum(1 for e in events if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))


# ----------------------------------------------------------------------------- 2. training step


def small_cnn(num_classes: int) -> nn.Module:
    """mixviz.models' small CNN when it is there, else a stand-in of the same kind."""
    try:
        from mixviz import models

        return models.build("smallcnn", num_classes, (3, 32, 32))
    except (ImportError, AttributeError, ValueError):
        return nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))


def mixer(generator: torch.Generator) -> Callable[[torch.Tensor, torch.Tensor], object]:
    """``mixviz.mixing.mix("mixup", ...)`` when it is there, else lerp with a fixed permutation."""
    try:
        from mixviz import mixing

        return lambda x, y: mixing.mix("mixup", x, y, alpha=1.0, generator=generator)
    except (ImportError, AttributeError):
        index = torch.randperm(128, generator=generator)

        def mix(x: torch.Tensor, y: torch.Tensor) -> MixedBatch:
            lam = torch.rand(len(x), generator=generator)
            inputs = torch.lerp(x[index], x, lam.view(-1, 1, 1, 1))
            return MixedBatch(inputs=inputs, y_a=y, y_b=y[index], index=index, lam=lam, policy="mixup")
        return mix


def step_table(rounds: int, batch: int = 128, num_classes: int = 10) -> tuple[list[str], dict[str, list[float]]]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, 32, 32, generator=g)
    y = torch.randint(0, num_classes, (batch,), generator=g)
    criteria = {"mixup CE": losses.build("mixup_ce", num_classes),
                "DM (eta 0.1, less, p 0.5)": losses.build("dm", num_classes, **DM_OPTIONS),
                "DM (mixup preset: eta 0.01, more, p 0.5)":
                    losses.build("dm", num_classes, eta=0.01, mode="more", lam_power=0.5)}

    def stepper(criterion: nn.Module) -> Callable[[], None]:
        torch.manual_seed(0)
        model = small_cnn(num_classes).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        mix = mixer(torch.Generator().manual_seed(1))

        def step() -> None:
            mixed = mix(x, y)
            loss = criterion(model(mixed.inputs), mixed)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    cands = {name: stepper(c) for name, c in criteria.items()}
    times = interleaved(cands, rounds, block_s=0.0, warmup=3)
    # the criteria alone on logits of the step's size: what DM adds, without the model's noise
    mixed = mixer(torch.Generator().manual_seed(2))(x, y)
    z0 = torch.randn(batch, num_classes, generator=g)

    def loss_only(criterion: nn.Module) -> Callable[[], None]:
        def call() -> None:
            z = z0.clone().requires_grad_()
            criterion(z, mixed).backward()
        return call
    alone = interleaved({name: loss_only(c) for name, c in criteria.items()}, 300, block_s=0.002)
    lines = [f"| training step, small CNN, batch {batch}x3x32x32, {num_classes} classes "
             "| ms / step | x mixup-CE step |",
             "|---|---:|---:|"]
    step_us = median_us(times["mixup CE"])
    for name in cands:
        lines.append(f"| {name} | {median_us(times[name]) / 1e3:.2f} | {ratio(times, name, 'mixup CE'):.3f} |")
    lines += ["", "| the loss alone (forward + backward) on the step's logits | us / call | extra share of the step |",
              "|---|---:|---:|"]
    for name in cands:
        extra = median_us(alone[name]) - median_us(alone["mixup CE"])
        lines.append(f"| {name} | {median_us(alone[name]):.0f} | {100 * extra / step_us:+.3f} % |")
    return lines, times


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mixviz.validation(False)

    loss100, t100, calls100, compile100 = loss_table(256, 100, 10 * args.rounds)
    loss1000, _, _, compile1000 = loss_table(256, 1000, 3 * args.rounds)
    step, ts = step_table(max(5, args.rounds // 2))
    names = list(t100)
    r_loss = ratio(t100, names[3], names[0])
    r_loss_default = ratio(t100, names[2], names[0])
    r_fused = ratio(t100, FUSED_KEY, names[0])
    r_step = ratio(ts, "DM (eta 0.1, less, p 0.5)", "mixup CE")
    r_step_mixup = ratio(ts, "DM (mixup preset: eta 0.01, more, p 0.5)", "mixup CE")
    text = "\n".join([
        "# Losses: cost of the Decoupled Mixup loss",
        "",
        f"CPU `{platform.processor() or platform.machine()}`, torch {torch.__version__}, "
        f"{args.threads} thread(s), value checks off. Medians over interleaved rounds (losses alone: "
        f"{10 * args.rounds} rounds of about 2 ms at C = 100, {3 * args.rounds} at C = 1000; training step: "
        f"{max(5, args.rounds // 2)} rounds of one step); the machine is shared, so absolute times are "
        "noisy (the ratios less so). Regenerate with `python benchmarks/bench_losses.py`.",
        "",
        "## The loss alone",
        "",
        *loss100,
        "",
        *loss1000,
        "",
        f"Goal: DM forward + backward <= 2x soft-target CE at B=256, C=100: got **{r_loss:.2f}x** "
        f"(the module on a MixedBatch, less, p 0.5) and **{r_loss_default:.2f}x** (the function, defaults), "
        f"{'met' if max(r_loss, r_loss_default) <= 2 else 'NOT met'} by the eager loss; the fused loss "
        f"(`compile=True`) gets **{r_fused:.2f}x**, {'met' if r_fused <= 2 else 'NOT met'}, after compiling for "
        f"{compile100:.0f} s at C = 100 and {compile1000:.0f} s at C = 1000 (first calls, with an empty compile "
        "cache; later processes reuse the cache). At this size the losses are a few dozen microseconds of "
        "arithmetic; the rest is the fixed cost per PyTorch call (the last column: the eager DM makes "
        f"{calls100[names[3]]} calls, the soft-target CE {calls100[names[0]]}, counting the backward), which is "
        "why the ratio falls towards 1 as C grows and why fusing the ~40 calls into one compiled kernel pays. "
        "DM's [B, C] work is one masked softmax, like the CE's one log-softmax.",
        "",
        "## A training step",
        "",
        *step,
        "",
        f"Goal: DM step <= 1.05x the mixup-CE step: got **{r_step:.3f}x** (less, p 0.5) and "
        f"**{r_step_mixup:.3f}x** (mixup preset), {'met' if max(r_step, r_step_mixup) <= 1.05 else 'NOT met'}. "
        "The step-to-step noise of a shared CPU is a few per cent; the second table times the losses alone, "
        "which is what DM really adds to the step.",
        "",
    ])
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        from mixviz.ioutil import atomic_write_text

        atomic_write_text(args.out, text)
    except ImportError:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
