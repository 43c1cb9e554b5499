"""Time per batch of every mixing policy, CutMix against timm and torchvision,
the cost of the dynamic policies in a full training step, PuzzleMix's
cost per training step against a mixup step (published defaults, the reduced
variant, each part, the adversarial and clean-loss options) with its parts,
and the training step of AutoMix and Manifold Mixup against the mixup step
(with a breakdown of AutoMix's step).

One CPU thread, a batch of 256 x 3 x 32 x 32 floats in [0, 1], 10 classes,
value checks off (as inside ``fit`` after its first step).  Candidates are
timed in interleaved rounds (a, b, c, a, b, c, ...) after a warm-up, each
round timing a block of calls with ``time.perf_counter``; the tables give
the median per call over rounds, and ratios are medians of the per-round
ratios, which keeps them fair when other processes share the CPU; the CutMix
comparison also gives the best (least disturbed) round of each.

    python benchmarks/bench_mixing.py [--rounds 15] [--threads 1] [--only puzzlemix|automix]

Prints Markdown tables and writes them to benchmarks/results/mixing.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import mixviz
from mixviz.ioutil import atomic_write_text
from _timing import best_ratio, interleaved, median_ms, ratio  # benchmarks/_timing.py
from mixviz import mixing

BATCH, CHANNELS, SIZE, CLASSES = 256, 3, 32, 10
RESULTS = Path(__file__).resolve().parent / "results" / "mixing.md"


def small_cnn() -> nn.Module:
    """mixviz.models' small CNN when it is there, else a stand-in of the same kind."""
    try:
        from mixviz import models

        return models.build("smallcnn", CLASSES, (CHANNELS, SIZE, SIZE))
    except (ImportError, AttributeError, ValueError):
        return nn.Sequential(
            nn.Conv2d(CHANNELS, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, CLASSES))


def policy_table(x: torch.Tensor, y: torch.Tensor, model: nn.Module, rounds: int) -> tuple[list[str], dict]:
    gen = torch.Generator().manual_seed(0)
    # a policy that learns (AutoMix) mixes with its state, in train mode: its call includes its own losses
    mixers = {name: mixing.build_state(name, model) or model for name in mixing.available()}
    cands = {name: (lambda name=name: mixing.mix(name, x, y, generator=gen, model=mixers[name]))
             for name in mixing.available()}
    static = [n for n, kind in mixing.available().items() if kind == "static"]
    dynamic = [n for n in cands if n not in static]
    fast = interleaved({n: cands[n] for n in static}, rounds)
    # each dynamic call runs a forward/backward pass: fewer rounds, with CutMix timed beside them
    slow = interleaved({n: cands[n] for n in ("cutmix", *dynamic)}, max(3, rounds // 5), block_s=0.0, warmup=0)
    lines = ["| policy | kind | ms / batch | x CutMix |", "|---|---|---:|---:|"]
    for name, kind in mixing.available().items():
        ref = fast if name in static else slow
        lines.append(f"| {name} | {kind} | {median_ms(ref[name]):.2f} | {ratio(ref, name, 'cutmix'):.2f} |")
    return lines, {**slow, **fast}


def cutmix_table(x: torch.Tensor, y: torch.Tensor, rounds: int) -> tuple[list[str], dict]:
    import timm.data
    from torchvision.transforms import v2

    gen = torch.Generator().manual_seed(0)
    ours = mixing.Mix("cutmix", alpha=1.0, num_classes=CLASSES, generator=gen)
    ours_batch = mixing.Mix("cutmix", alpha=1.0, num_classes=CLASSES, generator=gen, per_sample=False)
    tv = v2.CutMix(alpha=1.0, num_classes=CLASSES)
    tm = timm.data.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem", num_classes=CLASSES)
    cands = {
        "mixviz Mix('cutmix'), per sample": lambda: ours(x, y),
        "mixviz Mix('cutmix', per_sample=False)": lambda: ours_batch(x, y),
        "torchvision v2.CutMix (one box per batch)": lambda: tv(x, y),
        "timm Mixup(cutmix_alpha=1, mode='elem')": lambda: tm(x, y),
    }
    times = interleaved(cands, rounds)
    ours_name, tv_name, timm_name = list(cands)[0], list(cands)[2], list(cands)[3]
    lines = ["| CutMix, images + soft targets | ms / batch (median) | ms / batch (best) "
             "| mixviz per-sample / this (median of paired ratios) | (best / best) |",
             "|---|---:|---:|---:|---:|"]
    for name in cands:
        lines.append(f"| {name} | {median_ms(times[name]):.2f} | {1e3 * min(times[name]):.2f} "
                     f"| {ratio(times, ours_name, name):.2f} | {best_ratio(times, ours_name, name):.2f} |")
    for label, other, target in (("timm elem", timm_name, 0.2), ("torchvision", tv_name, 2.0)):
        med, best = ratio(times, ours_name, other), best_ratio(times, ours_name, other)
        verdict = "met" if max(med, best) <= target else ("met on best times only" if best <= target else "NOT met")
        lines.append(f"\nTarget per-sample CutMix <= {target}x {label}: **{med:.2f}x** (paired median), "
                     f"**{best:.2f}x** (best times): {verdict}.")
    return lines, times


def step_table(x: torch.Tensor, y: torch.Tensor, rounds: int) -> tuple[list[str], dict]:
    """mix + forward + soft-target cross-entropy + backward + SGD step."""
    torch.manual_seed(0)
    model = small_cnn().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(0)

    def step(policy: str) -> None:
        mixed = mixing.mix(policy, x, y, generator=gen, model=model)
        logits = model(mixed.inputs)
        loss = torch.sum(-mixed.soft_targets(CLASSES) * F.log_softmax(logits, 1), 1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    policies = ["none", "cutmix", "saliencymix", "puzzlemix"]
    times = interleaved({p: (lambda p=p: step(p)) for p in policies}, max(3, rounds // 5), block_s=0.0, warmup=0)
    lines = ["| training step (small CNN) | ms / step | x CutMix step |", "|---|---:|---:|"]
    for p in policies:
        lines.append(f"| {p} | {median_ms(times[p]):.1f} | {ratio(times, p, 'cutmix'):.2f} |")
    return lines, times


PUZZLE_BATCH = 128
PUZZLE_VARIANTS = {  # name in the table: (policy, options)
    "mixup": ("mixup", {}),
    "puzzlemix_lite (2 labels, no transport)": ("puzzlemix_lite", {}),
    "puzzlemix, 3 labels, no transport": ("puzzlemix", {"transport": False}),
    "puzzlemix, 2 labels + transport": ("puzzlemix", {"n_labels": 2}),
    "puzzlemix (published defaults)": ("puzzlemix", {}),
    "puzzlemix + adv_p=0.1": ("puzzlemix", {"adv_p": 0.1}),
    "puzzlemix + clean_lam=1": ("puzzlemix", {"clean_lam": 1.0}),
}


def puzzlemix_tables(rounds: int, device: str = "cpu") -> tuple[list[str], dict]:
    """Training steps (mix + forward + soft-target cross-entropy + aux_loss +
    backward + SGD) of a small CNN on a 128 x 3 x 32 x 32 batch on ``device``.
    The i-th call of every variant uses a generator seeded with i and the
    block grid n = (2, 4, 8, 16)[i % 4], so every round compares the variants
    on the same n and the rounds cover the four grids the policy draws from
    equally often.  On a GPU every timed call ends with a synchronize."""
    puzzle = sys.modules["mixviz.mixing.puzzlemix"]  # the module (mixing.puzzlemix is the policy function)
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(PUZZLE_BATCH, CHANNELS, SIZE, SIZE, generator=gen).to(dev)
    y = torch.randint(0, CLASSES, (PUZZLE_BATCH,), generator=gen).to(dev)
    torch.manual_seed(0)
    model = small_cnn().to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    calls = dict.fromkeys(PUZZLE_VARIANTS, 0)

    def synced(fn):
        def call() -> None:
            fn()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
        return call

    def step(name: str) -> None:
        policy, options = PUZZLE_VARIANTS[name]
        seed, calls[name] = calls[name], calls[name] + 1
        gen_i = torch.Generator(device=dev).manual_seed(seed)
        if policy.startswith("puzzlemix"):
            options = {**options, "block_num": (2, 4, 8, 16)[seed % 4]}
        mixed = mixing.mix(policy, x, y, generator=gen_i, model=model, **options)
        logits = model(mixed.inputs)
        loss = torch.sum(-mixed.soft_targets(CLASSES) * F.log_softmax(logits, 1), 1).mean()
        if mixed.aux_loss is not None:
            loss = loss + mixed.aux_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    times = interleaved({n: synced(lambda n=n: step(n)) for n in PUZZLE_VARIANTS}, rounds, block_s=0.0, warmup=1)
    lines = [f"| training step, small CNN, batch {PUZZLE_BATCH} | ms / step (mean) | x mixup step (mean) "
             "| x mixup step (median of rounds) |", "|---|---:|---:|---:|"]
    for name in PUZZLE_VARIANTS:
        mean = sum(times[name]) / len(times[name])
        lines.append(f"| {name} | {1e3 * mean:.0f} | {sum(times[name]) / sum(times['mixup']):.2f} "
                     f"| {ratio(times, name, 'mixup'):.2f} |")

    # the parts of one call, per block grid n (transport grid G = 8, or 16 for n = 16)
    sal = mixing.input_gradient_saliency(model, x, y)
    index = torch.randperm(PUZZLE_BATCH, generator=gen).to(dev)
    lam = torch.rand(PUZZLE_BATCH, generator=gen).to(dev)
    parts: dict = {"saliency pass (forward + input backward)": lambda: mixing.input_gradient_saliency(model, x, y)}
    for n in (2, 4, 8, 16):
        unary, down, right = (t.double().cpu().numpy() for t in puzzle._energy(
            x, sal, index, lam, n, beta=1.2, gamma=0.5, eta=0.2, neigh_size=4, n_labels=3))
        labels = torch.from_numpy(puzzle.graph_cut_labels(unary, down, right)).to(dev)
        g = puzzle._transport_grid(n, SIZE, SIZE, 4)
        cells = (1 - labels.float() / 2).repeat_interleave(g // n, 1).repeat_interleave(g // n, 2)
        u = F.adaptive_avg_pool2d(sal.unsqueeze(1), (g, g)).squeeze(1)
        u = u / u.sum((1, 2), keepdim=True)
        parts[f"energy + min cut, n = {n}"] = lambda n=n: puzzle.graph_cut_labels(*(t.double().cpu().numpy() for t in (
            puzzle._energy(x, sal, index, lam, n, beta=1.2, gamma=0.5, eta=0.2, neigh_size=4, n_labels=3))))
        parts[f"transport, G = {g} (n = {n}): 2 plans + 2 moves"] = lambda cells=cells, u=u: [
            puzzle.move_cells(x, puzzle.transport_plan(c, v)) for c, v in ((cells, u), (1 - cells, u[index]))]
    parts = {name: synced(fn) for name, fn in parts.items()}
    part_times = interleaved(parts, max(3, rounds // 2), block_s=0.0, warmup=1)
    part_lines = ["| part of one PuzzleMix call (3 labels, batch 128) | ms (median) |", "|---|---:|"]
    part_lines += [f"| {name} | {median_ms(part_times[name]):.1f} |" for name in parts]
    return lines + ["", *part_lines], {**times, **part_times}


LEARNED_BATCH = 128


def learned_table(rounds: int) -> tuple[list[str], dict]:
    """The training step of ``mixviz.train.make_step`` (augment, mix, forward,
    mixup CE + the policy's own losses, backward, SGD, AutoMix's EMA update)
    for mixup, Manifold Mixup and AutoMix, and the parts of AutoMix's step, all
    in one interleaved run; small CNN, batch 128 x 3 x 32 x 32."""
    from mixviz.bench import _setup
    from mixviz.train import TrainConfig

    gen = torch.Generator().manual_seed(1)
    x = torch.rand(LEARNED_BATCH, CHANNELS, SIZE, SIZE, generator=gen)
    y = torch.randint(0, CLASSES, (LEARNED_BATCH,), generator=gen)
    steps = {}
    for policy in ("mixup", "manifold", "automix"):
        config = TrainConfig(dataset="clutter", model="smallcnn", policy=policy, loss="mixup_ce", alpha=2.0,
                             epochs=1, batch_size=LEARNED_BATCH, device="cpu", progress=False)
        steps[policy] = _setup(config, CLASSES, (CHANNELS, SIZE, SIZE), torch.device("cpu"), 10_000)[1]

    # AutoMix's step taken apart (the same computations as inside mixing.automix)
    torch.manual_seed(0)
    model = small_cnn().train()
    state = mixing.build_state("automix", model)
    index = torch.randperm(LEARNED_BATCH, generator=gen)
    lam = mixing.sample_beta(2.0, LEARNED_BATCH, generator=gen)
    feat = state.features(x)

    def masks() -> torch.Tensor:
        both = state.mix_block(torch.cat([feat, feat]), torch.cat([feat[index], feat[index.flip(0)]]),
                               torch.cat([lam, lam]), (SIZE, SIZE))
        both.mean().backward()
        return both

    mask = masks()[:LEARNED_BATCH].detach()

    def generation() -> None:
        m = mask.clone().requires_grad_(True)
        F.cross_entropy(state.ema(torch.lerp(x[index], x, m)), y).backward()

    def clean() -> None:
        F.cross_entropy(model(x), y).backward()

    parts = {
        "EMA features of the clean batch (no grad)": lambda: state.features(x),
        "MixBlock, both branches (forward + backward)": masks,
        "generation loss: EMA network on the mixer's images, forward + input backward": generation,
        "clean-image CE of the classifier, forward + backward": clean,
        "EMA update": lambda: state.after_step(5000, 10_000),
    }
    cands = {**{f"step: {p}": (lambda p=p: steps[p](x, y)) for p in steps}, **parts}
    times = interleaved(cands, rounds, block_s=0.0, warmup=2)
    ref = "step: mixup"
    lines = [f"| training step, small CNN, batch {LEARNED_BATCH} | ms | x mixup step |", "|---|---:|---:|"]
    for name in cands:
        lines.append(f"| {name} | {median_ms(times[name]):.1f} | {ratio(times, name, ref):.2f} |")
    auto = ratio(times, "step: automix", ref)
    top = max(parts, key=lambda n: ratio(times, n, ref))
    lines.append(f"\nAutoMix step / mixup step: **{auto:.2f}x** (paired median; target <= 2x: "
                 f"{'met' if auto <= 2.0 else 'NOT met'}); Manifold Mixup: "
                 f"**{ratio(times, 'step: manifold', ref):.2f}x**.  The mixup step itself is AutoMix's "
                 f"backbone loss; the largest part of AutoMix's extra work is the {top.split(',')[0]} "
                 f"({ratio(times, top, ref):.2f}x a mixup step).")
    return lines, times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--only", choices=["puzzlemix", "automix"], default=None,
                    help="run only this section and print it (the results file is left alone)")
    ap.add_argument("--device", default="cpu",
                    help="device of the PuzzleMix section with --only puzzlemix (e.g. cuda); default: %(default)s")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    mixviz.validation(False)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(BATCH, CHANNELS, SIZE, SIZE, generator=gen)
    y = torch.randint(0, CLASSES, (BATCH,), generator=gen)
    model = small_cnn().train()

    header = [
        "# Mixing policies: time per batch",
        "",
        f"CPU `{platform.processor() or platform.machine()}`, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), batch {BATCH}x{CHANNELS}x{SIZE}x{SIZE}, {CLASSES} classes, "
        f"value checks off. Medians over {args.rounds} interleaved rounds; the machine is shared, so "
        "absolute times are noisy (the ratios less so). Regenerate with `python benchmarks/bench_mixing.py`.",
        "",
    ]
    puzzle_rounds = 4 * max(2, args.rounds // 6)  # a multiple of 4: each block grid n equally often
    puzzle_intro = ["## PuzzleMix: cost per training step", "",
                    f"Each variant's training step against a mixup step in the same round ({puzzle_rounds} "
                    "interleaved rounds; round i of every variant uses the block grid n = 2, 4, 8, 16 in turn, "
                    "so the mean is the average over the grids the policy draws from). The min cut "
                    "runs on the CPU (one host sync per batch); the transport is tensor code on the batch's "
                    "device, O(B G^4) work per round and G rounds, which dominates the n = 16 batches on a CPU. "
                    "The saliency pass is one forward and an input-only backward of the network; adv_p adds no "
                    "pass, clean_lam back-propagates that pass into the weights. `--only puzzlemix --device "
                    "cuda` prints this section for a GPU.", ""]
    learned_intro = ["## AutoMix and Manifold Mixup against the mixup step", "",
                     "The training step of `mixviz.train.make_step` (random crop + flip, mix, forward, mixup CE "
                     "plus the policy's own losses, backward, SGD step, AutoMix's EMA update), alpha 2, and the "
                     "parts of AutoMix's step timed alone, all in one interleaved run.", ""]
    if args.only == "automix":  # also kept in benchmarks/results/learned.md
        lines, _ = learned_table(args.rounds)
        text = "\n".join(["# AutoMix and Manifold Mixup: cost per training step", "",
                          f"CPU `{platform.processor() or platform.machine()}`, torch {torch.__version__}, "
                          f"{torch.get_num_threads()} thread(s), {args.rounds} interleaved rounds. Regenerate with "
                          f"`python benchmarks/bench_mixing.py --only automix`.", "", *learned_intro[2:], *lines, ""])
        print(text)
        atomic_write_text(args.out.parent / "learned.md", text)
        return
    if args.only == "puzzlemix":
        lines, _ = puzzlemix_tables(puzzle_rounds, args.device)
        print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s)\n")
        print("\n".join(puzzle_intro + lines))
        return
    sections = []
    lines, _ = cutmix_table(x, y, 2 * args.rounds)
    sections += ["## Per-sample CutMix against timm and torchvision", "", *lines, ""]
    lines, _ = policy_table(x, y, model, args.rounds)
    sections += ["## Every policy (`mixviz.mixing.mix`)", "",
                 "Dynamic policies include their extra forward/backward pass through the small CNN "
                 "(saliency); PuzzleMix also its graph cut on the CPU.", "", *lines, ""]
    lines, _ = step_table(x, y, args.rounds)
    sections += ["## Cost in a training step", "",
                 "mix + forward + soft-target cross-entropy + backward + SGD step, small CNN.", "", *lines, ""]
    lines, _ = puzzlemix_tables(puzzle_rounds)
    sections += [*puzzle_intro, *lines, ""]
    lines, _ = learned_table(args.rounds)
    sections += [*learned_intro, *lines, ""]
    text = "\n".join(header + sections)
    print(text)
    atomic_write_text(args.out, text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
