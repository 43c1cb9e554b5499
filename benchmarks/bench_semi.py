"""Per-iteration cost of the semi-supervised methods, as ratios to
supervised-only training on the labelled subset.

Each method's training step (the step `fit` runs: augmentation, mixing,
teacher, forward, backward, optimizer, EMA) is built for the same data and
model and timed in interleaved rounds (benchmarks/_timing.py), so drift in a
shared machine's load hits every method alike; the ratio is the median of the
per-round ratios.

    python benchmarks/bench_semi.py [--preset semi] [--threads 1] [--rounds 15]

Writes results/<preset>/cost.md (or --out).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import interleaved, median_ms, ratio  # noqa: E402

from mixviz import data, losses, models  # noqa: E402
from mixviz.semi import SemiTraining  # noqa: E402
from mixviz.train import TrainConfig, _build_optimizer, _build_scheduler  # noqa: E402


def build_step(config: TrainConfig):
    """``fit``'s step for ``config`` and a function that feeds it the next batch."""
    device = torch.device("cpu")
    torch.manual_seed(config.seed)
    ds = data.load(config.dataset, "train", **config.dataset_options)
    model = models.build(config.model, ds.num_classes, ds.in_shape, mean=ds.mean, std=ds.std,
                         **config.model_options)
    run = SemiTraining(config, ds, model, device)
    run.step_count = run.total_steps // 2  # mid-run: every term is on (the L x U ramp starts at 0)
    optimizer = _build_optimizer(config, model)
    scheduler = _build_scheduler(config, optimizer, len(run.batches))
    gen = torch.Generator().manual_seed(config.seed)
    step = run.make_step(model, optimizer, scheduler, gen, amp=False, channels_last=False, augment=True)
    batches = [b for b in run.batches.epoch(0)]
    state = {"i": 0}

    def one() -> None:
        x, y = batches[state["i"] % len(batches)]
        state["i"] += 1
        step(x, y)

    return one


def forwarded(c: TrainConfig) -> tuple[int, int]:
    """Images per step through the student (with gradient) and through the EMA teacher (without)."""
    b, u = c.batch_size, c.mu * c.batch_size
    fixmatch, mixing = c.semi == "fixmatch", c.policy == "mixup"
    student = b + (u if fixmatch else 0) + (u if fixmatch and c.teacher == "student" else 0)
    student += (b if mixing else 0) + (b if mixing and fixmatch else 0)
    return student, (u if fixmatch and c.teacher == "ema" else 0)


def measure(configs: dict[str, TrainConfig], rounds: int, block_s: float = 0.3) -> tuple[str, dict]:
    """Markdown table of ms per step and the ratio to the first method."""
    steps = {name: build_step(c) for name, c in configs.items()}
    times = interleaved(steps, rounds=rounds, block_s=block_s)
    first = next(iter(configs))
    lines = ["| method | ms per step | images through the student (forward + backward) | images through the "
             "EMA teacher (forward) | cost vs " + first + " |", "|---|---|---|---|---|"]
    out = {}
    for name, c in configs.items():
        student, teacher = forwarded(c)
        out[name] = ratio(times, name, first)
        lines.append(f"| {name} | {median_ms(times[name]):.1f} | {student} | {teacher} | {out[name]:.2f}x |")
    return "\n".join(lines) + "\n", out


def main() -> None:
    from mixviz.experiments.semi import SEMI_PRESETS, semi_methods

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="semi", choices=list(SEMI_PRESETS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    p = SEMI_PRESETS[args.preset]
    k = p.labels_per_class[0]
    configs = {name: replace(c, labels_per_class=k) for name, c in semi_methods(p).items()}
    table, _ = measure(configs, args.rounds)
    c = next(iter(configs.values()))
    text = (f"Per-step cost of each method, {c.dataset} {c.dataset_options}, {c.model} {c.model_options}, "
            f"{c.batch_size} labelled (+ {c.mu} x {c.batch_size} unlabelled) images per step, {args.threads} "
            f"thread(s), median over {args.rounds} interleaved rounds (a shared machine: ratios, not absolute "
            f"times, are the result):\n\n{table}")
    print(text)
    out = Path(args.out) if args.out else Path("results") / p.name / "cost.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
