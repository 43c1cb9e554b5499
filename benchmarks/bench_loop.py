"""Training-loop overhead: `fit` for one epoch against the bare
forward/backward/step of the same batches.

`fit`'s own epoch time (history["epoch_sec"]) covers only the training steps
(evaluation is timed apart), so the two are compared like for like: the same
model, data, batches, optimizer and schedule; policy "none", loss "ce".
Measured with augmentation off (pure loop overhead) and on (adds the
device-side random crop + flip).  Runs alternate (fit, bare, fit, bare, ...)
and medians are reported.

    python benchmarks/bench_loop.py [--threads 1] [--repeats 5]

Writes benchmarks/results/loop.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mixviz import data, models
from mixviz.train import TrainConfig, _build_optimizer, _build_scheduler, _DeviceBatches, fit


def bare_epoch(config: TrainConfig) -> float:
    """Forward + backward + optimizer/scheduler step over fit's batches, nothing else."""
    ds = data.load(config.dataset, "train", **config.dataset_options)
    torch.manual_seed(config.seed)
    model = models.build(config.model, ds.num_classes, ds.in_shape, mean=ds.mean, std=ds.std,
                         **config.model_options)
    batches = _DeviceBatches(ds.images, ds.labels, config.batch_size, config.seed, torch.device("cpu"))
    opt = _build_optimizer(config, model)
    sched = _build_scheduler(config, opt, len(batches))
    pairs = [(x.float(), y) for x, y in batches.epoch(0)]
    t0 = time.perf_counter()
    for x, y in pairs:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n-train", type=int, default=2048)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lines = ["| augmentation | fit epoch (s) | bare loop (s) | overhead |", "|---|---|---|---|"]
    for augment in (False, True):
        config = TrainConfig(dataset="clutter", model="smallcnn", epochs=1, batch_size=128, device="cpu",
                             progress=False, augment=augment, dataset_options=dict(n_train=args.n_train, n_test=256),
                             model_options=dict(width=16))
        fit_t, bare_t = [], []
        for _ in range(args.repeats):
            fit_t.append(float(fit(config).history["epoch_sec"].iloc[0]))
            bare_t.append(bare_epoch(config))
        f, b = statistics.median(fit_t), statistics.median(bare_t)
        lines.append(f"| {'crop + flip' if augment else 'off'} | {f:.3f} | {b:.3f} | {100 * (f / b - 1):+.1f} % |")
    text = (f"Training-loop overhead, clutter n_train={args.n_train}, smallcnn width 16, batch 128, "
            f"{args.threads} thread(s), median of {args.repeats}:\n\n" + "\n".join(lines) + "\n")
    print(text)
    out = Path(__file__).parent / "results" / "loop.md"
    out.write_text(text)


if __name__ == "__main__":
    main()
