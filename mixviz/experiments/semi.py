"""The semi-supervised comparison: presets (``mixviz compare --preset semi``,
``semi-quick``), the grid of methods x label counts x seeds, the results table
with paired intervals, and the figure.  The training itself is
:mod:`mixviz.semi`'s; this module only names configs and tabulates runs.

Methods (:data:`METHODS`), all on the same labelled subset per seed:

================  ============================================================
supervised        the labelled subset only (same labelled batches and steps)
fixmatch          + FixMatch's loss on the unlabelled images
fixmatch+mixup    + mixup of labelled pairs and of labelled x pseudo-labelled
                  pairs, with the mixup cross-entropy
fixmatch+dm       the same mixed pairs with the Decoupled Mixup loss (the
                  authors' DMixMatch: eta 1, both classes, weights lam / 1 - lam)
================  ============================================================

``fixmatch+dm`` and ``fixmatch+mixup`` differ only in the loss on the mixed
pairs, so their paired per-seed difference is the effect of the DM term.
Every comparison is a paired difference over seeds with its 95 % Student-t
interval (:mod:`mixviz.stats`); the text calls a difference real only when
that interval excludes zero.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mixviz._validation import check_choice, check_frame, check_positive
from mixviz.config import TrainConfig
from mixviz.experiments.compare import default_jobs, train_cells
from mixviz.experiments.presets import Cell
from mixviz.ioutil import atomic_write_text

__all__ = ["SemiPreset", "SEMI_PRESETS", "METHODS", "DM_SEMI", "PAIRS", "RESULT_COLUMNS", "semi_preset",
           "semi_methods", "semi_grid", "collect_semi", "compare_semi", "summarize_semi", "paired_semi",
           "semi_markdown", "write_semi_plot"]

# The DM setting of the authors' DMixMatch (openmixup configs/semisup/dmixmatch): eta 1, both classes,
# weights lam and 1 - lam.
DM_SEMI = dict(eta=1.0, mode="both", lam_power=1.0)
METHODS: dict[str, dict[str, Any]] = {
    "supervised": dict(semi="none", policy="none", loss="ce"),
    "fixmatch": dict(semi="fixmatch", policy="none", loss="ce"),
    "fixmatch+mixup": dict(semi="fixmatch", policy="mixup", loss="mixup_ce"),
    "fixmatch+dm": dict(semi="fixmatch", policy="mixup", loss="dm", loss_options=DM_SEMI),
}
# (treatment, reference) pairs of the summary; the first is the DM term's effect.
PAIRS = (("fixmatch+dm", "fixmatch+mixup"), ("fixmatch+mixup", "fixmatch"), ("fixmatch+dm", "fixmatch"),
         ("fixmatch", "supervised"))
METRICS = ("test_acc", "ece", "mask_rate", "pseudo_acc", "pseudo_acc_all")
RESULT_COLUMNS = ["dataset", "method", "labels_per_class", "seed", "test_acc", "ece", "nll", "mask_rate",
                  "pseudo_acc", "pseudo_acc_all", "n_labelled", "sec_per_epoch", "epochs", "run_id"]


@dataclass(frozen=True)
class SemiPreset:
    """A semi-supervised experiment: the shared config fields, the label
    counts, the seeds and the methods."""

    name: str
    description: str
    base: dict[str, Any]
    labels_per_class: tuple[int, ...]
    seeds: tuple[int, ...]
    methods: tuple[str, ...] = tuple(METHODS)
    notes: tuple[str, ...] = field(default_factory=tuple)


# Clutter with shapes at 16 px, a width-16 small CNN: the unlabelled pool of 2960 images (3000 minus the
# labelled ones) gives 30 steps of 32 labelled + 3 x 32 unlabelled images per epoch.  See results/semi/ for
# the budget measured on the 2-core CPU.
_SEMI_BASE = dict(dataset="clutter", model="smallcnn", epochs=40, batch_size=32, mu=3, lr=0.03, momentum=0.9,
                  weight_decay=5e-4, optimizer="sgd", scheduler="cosine", alpha=1.0, tau=0.95, lambda_u=1.0,
                  teacher="ema", ema_momentum=0.99,
                  dataset_options=dict(n_train=3000, n_test=1000, size=16, objects="shapes"),
                  model_options=dict(width=16))
_QUICK_BASE = dict(_SEMI_BASE, epochs=12, dataset_options=dict(n_train=1000, n_test=500, size=16, objects="shapes"))

SEMI_PRESETS: dict[str, SemiPreset] = {
    "semi": SemiPreset(
        "semi", "clutter shapes at 16 px (3000 train / 1000 test), smallcnn width 16, 4 and 25 labels per class, "
                "32 labelled + 3 x 32 unlabelled per step, 40 epochs, 3 seeds: about an hour on a 2-core CPU",
        base=_SEMI_BASE, labels_per_class=(4, 25), seeds=(0, 1, 2)),
    "semi-quick": SemiPreset(
        "semi-quick", "clutter shapes at 16 px (1000 train / 500 test), smallcnn width 16, 4 and 25 labels per "
                      "class, 12 epochs, 1 seed: about two minutes on a CPU",
        base=_QUICK_BASE, labels_per_class=(4, 25), seeds=(0,)),
}


def semi_preset(name: str) -> SemiPreset:
    check_choice("preset", name, SEMI_PRESETS)
    return SEMI_PRESETS[name]


def _config(p: SemiPreset, method: str, labels_per_class: int, seed: int, **overrides: Any) -> TrainConfig:
    check_choice("method", method, METHODS)
    fields = dict(p.base, **METHODS[method], labels_per_class=labels_per_class, seed=seed, progress=False)
    fields.update(overrides)
    return TrainConfig(**fields)


def semi_methods(p: SemiPreset | str, labels_per_class: int | None = None, seed: int | None = None,
                 **overrides: Any) -> dict[str, TrainConfig]:
    """``{method: config}`` of one cell of the preset (first label count and seed by default)."""
    p = semi_preset(p) if isinstance(p, str) else p
    k = p.labels_per_class[0] if labels_per_class is None else labels_per_class
    s = p.seeds[0] if seed is None else seed
    return {m: _config(p, m, k, s, **overrides) for m in p.methods}


def semi_grid(p: SemiPreset | str, *, seeds: tuple[int, ...] | None = None,
              labels_per_class: tuple[int, ...] | None = None, methods: tuple[str, ...] | None = None,
              **overrides: Any) -> list[tuple[str, TrainConfig]]:
    """Every ``(method, config)`` of the preset, seed by seed (so an
    interrupted grid has whole seeds), then label count, then method."""
    p = semi_preset(p) if isinstance(p, str) else p
    for m in methods or ():
        check_choice("methods", m, p.methods)
    out = []
    for seed in p.seeds if seeds is None else seeds:
        for k in labels_per_class or p.labels_per_class:
            for method in methods or p.methods:
                out.append((method, _config(p, method, k, seed, **overrides)))
    return out


def _row(method: str, run: Any, run_id: str) -> dict[str, Any]:
    m, c = run.metrics, run.config
    return {"dataset": c.dataset, "method": method, "labels_per_class": c.labels_per_class, "seed": c.seed,
            "test_acc": m["test_acc"], "ece": m["ece"], "nll": m["nll"], "mask_rate": m.get("mask_rate"),
            "pseudo_acc": m.get("pseudo_acc"), "pseudo_acc_all": m.get("pseudo_acc_all"),
            "n_labelled": m.get("n_labelled"), "sec_per_epoch": m["sec_per_epoch"], "epochs": m["epochs"],
            "run_id": run_id}


def _history(method: str, run: Any) -> pd.DataFrame:
    from mixviz.semi.training import HISTORY_COLUMNS

    h = run.history[["epoch", "train_loss", "test_acc", *HISTORY_COLUMNS]].copy()
    h.insert(0, "seed", run.config.seed)
    h.insert(0, "labels_per_class", run.config.labels_per_class)
    h.insert(0, "method", method)
    return h


def collect_semi(p: SemiPreset | str, runs_root: str | os.PathLike | None = None, *,
                 seeds: tuple[int, ...] | None = None, labels_per_class: tuple[int, ...] | None = None,
                 methods: tuple[str, ...] | None = None, log: Any = None, jobs: int | None = None,
                 **overrides: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(results, histories)`` of the grid from the run store, training what
    is missing (what notebooks call; writes no result files).  ``jobs``:
    worker processes for the missing runs (None: 2 on a CPU-only machine with
    two or more cores, :func:`mixviz.experiments.default_jobs`)."""
    from mixviz.runs import config_id, is_finished, load_or_train, run_dir

    rows, histories = [], []
    grid = semi_grid(p, seeds=seeds, labels_per_class=labels_per_class, methods=methods, **overrides)
    jobs = default_jobs() if jobs is None else jobs
    check_positive("jobs", jobs, integer=True)
    missing = [(m, c) for m, c in grid if not is_finished(run_dir(c, runs_root))]
    if jobs > 1 and len(missing) > 1:
        train_cells([Cell(f"{c.labels_per_class} labels per class", m, c) for m, c in missing], runs_root, jobs,
                    lambda cell, run, seconds: None)
    for i, (method, config) in enumerate(grid, 1):
        run = load_or_train(config, runs_root)
        rows.append(_row(method, run, config_id(config)))
        histories.append(_history(method, run))
        if log is not None:
            log(f"[{i}/{len(grid)}] {method} {config.labels_per_class} labels/class seed {config.seed}: "
                f"acc {run.metrics['test_acc']:.3f}")
    return pd.DataFrame(rows, columns=RESULT_COLUMNS), pd.concat(histories, ignore_index=True)


def compare_semi(p: SemiPreset | str, out: str | os.PathLike, *, resume: bool = False,
                 runs_root: str | os.PathLike | None = None, seeds: tuple[int, ...] | None = None,
                 labels_per_class: tuple[int, ...] | None = None, methods: tuple[str, ...] | None = None,
                 log: Any = print, plots: bool = True, jobs: int = 1, **overrides: Any) -> pd.DataFrame:
    """Train the grid through the run store and write, in ``out``:
    ``results.csv`` (one row per run, rewritten atomically after each run),
    ``histories.csv`` (every run's per-epoch rows), ``summary.csv`` (mean and
    95 % interval per method and label count), ``paired.csv`` (the paired
    differences of :data:`PAIRS`), ``summary.md`` and, with ``plots``,
    ``semi_curves.png``.  ``resume=True`` continues a grid whose
    ``results.csv`` exists (without it that is an error).  ``jobs > 1``
    first trains the missing runs in that many worker processes
    (:func:`mixviz.experiments.train_cells`; on a 2-core CPU two processes of
    one thread beat one process with two threads: the step is many small
    operations)."""
    from mixviz.runs import config_id, load_or_train

    check_positive("jobs", jobs, integer=True)

    p = semi_preset(p) if isinstance(p, str) else p
    out = Path(out)
    results_path, histories_path = out / "results.csv", out / "histories.csv"
    rows: list[dict[str, Any]] = []
    histories: list[pd.DataFrame] = []
    if results_path.exists():
        if not resume:
            raise ValueError(f"{results_path} exists; pass resume=True (--resume) to continue that grid or "
                             f"choose another out directory")
        rows = pd.read_csv(results_path).to_dict("records")
        if histories_path.exists():
            histories = [pd.read_csv(histories_path)]
    done = {(r["method"], int(r["labels_per_class"]), int(r["seed"])) for r in rows}
    grid = semi_grid(p, seeds=seeds, labels_per_class=labels_per_class, methods=methods, **overrides)
    if jobs > 1:
        missing = [Cell(f"{c.labels_per_class} labels per class", m, c) for m, c in grid
                   if (m, c.labels_per_class, c.seed) not in done]

        def trained(cell: Any, run: Any, seconds: float) -> None:
            if log is not None:
                log(f"trained {cell.method} {cell.regime} seed {cell.config.seed} in {seconds:.0f} s")

        train_cells(missing, runs_root, jobs, trained)
    for i, (method, config) in enumerate(grid, 1):
        key = (method, config.labels_per_class, config.seed)
        if key in done:
            continue
        t0 = time.perf_counter()
        run = load_or_train(config, runs_root)
        rows.append(_row(method, run, config_id(config)))
        histories.append(_history(method, run))
        done.add(key)
        atomic_write_text(histories_path, pd.concat(histories, ignore_index=True).to_csv(index=False))
        atomic_write_text(results_path, pd.DataFrame(rows, columns=RESULT_COLUMNS).to_csv(index=False))
        log(f"[{i}/{len(grid)}] {method} {config.labels_per_class} labels/class seed {config.seed}: "
            f"acc {run.metrics['test_acc']:.3f}, {time.perf_counter() - t0:.0f} s")
    results = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    wanted = {(m, c.labels_per_class, c.seed) for m, c in grid}
    results = results[[(r.method, int(r.labels_per_class), int(r.seed)) in wanted
                       for r in results.itertuples()]].reset_index(drop=True)
    if results.empty:
        return results
    summary, paired = summarize_semi(results), paired_semi(results)
    atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
    atomic_write_text(out / "paired.csv", paired.to_csv(index=False))
    atomic_write_text(out / "summary.md", semi_markdown(summary, paired, p))
    if plots and histories:
        write_semi_plot(pd.concat(histories, ignore_index=True), out / "semi_curves.png")
    return results


def summarize_semi(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, 95 % interval half-width and std over seeds per (label count, method)."""
    from mixviz.stats import summarize_groups

    check_frame("results", results, ["labels_per_class", "method", "seed", *METRICS, "sec_per_epoch"])
    if results.empty:
        raise ValueError("results is empty: nothing to summarise")
    return summarize_groups(results, ("labels_per_class", "method"), (*METRICS, "sec_per_epoch"))


def paired_semi(results: pd.DataFrame) -> pd.DataFrame:
    """The paired per-seed differences of :data:`PAIRS` per label count (mean, interval)."""
    from mixviz.stats import paired_table

    check_frame("results", results, ["labels_per_class", "method", "seed", *METRICS])
    pairs = [((a,), (b,)) for a, b in PAIRS]
    return paired_table(results, ("labels_per_class",), ("method",), pairs, ("test_acc", "ece", "mask_rate",
                                                                              "pseudo_acc"))


def _cell(mean: float, half: float, scale: float = 100.0) -> str:
    from mixviz.stats import Interval, format_ci

    if pd.isna(mean):
        return "–"
    return format_ci(Interval(float(mean), float(half), 2), scale=scale)


def semi_markdown(summary: pd.DataFrame, paired: pd.DataFrame, p: SemiPreset | None = None) -> str:
    """The summary as Markdown: per label count a table of methods (accuracies
    in %, mean ± 95 % interval half-width over seeds), then the paired
    differences with their intervals and what each interval says.  Seconds
    per epoch stay in ``summary.csv`` only: measured on a shared machine they
    are noise; ``benchmarks/bench_semi.py`` measures the cost as interleaved
    ratios."""
    from mixviz.stats import Interval, format_ci, verdict

    parts = []
    if p is not None:
        parts.append(f"Preset `{p.name}`: {p.description}.\n")
    for k, table in summary.groupby("labels_per_class", sort=False):
        seeds = int(table["seeds"].max())
        spread = f"mean ± 95 % interval over {seeds} seeds" if seeds > 1 else "one seed: no interval"
        parts.append(f"**{int(k)} labels per class** ({spread})\n")
        parts.append("| method | test acc % | ECE % | pseudo-labels kept % | kept pseudo-labels right % | "
                     "all pseudo-labels right % |")
        parts.append("|---|---|---|---|---|---|")
        for r in table.itertuples():
            parts.append(f"| {r.method} | {_cell(r.test_acc_mean, r.test_acc_ci)} | {_cell(r.ece_mean, r.ece_ci)} | "
                         f"{_cell(r.mask_rate_mean, r.mask_rate_ci)} | {_cell(r.pseudo_acc_mean, r.pseudo_acc_ci)} | "
                         f"{_cell(r.pseudo_acc_all_mean, r.pseudo_acc_all_ci)} |")
        parts.append("")
        mine = paired[paired["labels_per_class"] == k] if len(paired) else paired
        if len(mine):
            parts.append("Paired per-seed differences (points; ± 95 % interval; * = the interval excludes 0):\n")
            parts.append("| difference | test acc | ECE | pseudo-labels kept | kept pseudo-labels right | "
                         "test acc: what the interval says |")
            parts.append("|---|---|---|---|---|---|")
            for r in mine.itertuples():
                cells = []
                for m in ("test_acc", "ece", "mask_rate", "pseudo_acc"):
                    mean, half = getattr(r, m), getattr(r, f"{m}_ci")
                    cells.append("–" if pd.isna(mean) else format_ci(Interval(mean, half, int(r.seeds)), 100,
                                                                     signed=True))
                acc = Interval(r.test_acc, r.test_acc_ci, int(r.seeds))
                says = verdict(acc, higher=f"{r.treatment} higher", lower=f"{r.treatment} lower")
                parts.append(f"| {r.treatment} − {r.reference} | {' | '.join(cells)} | {says} |")
            parts.append("")
    return "\n".join(parts)


def method_colors() -> dict[str, Any]:
    """Fixed colours of the methods (colour-blind palette): supervised grey, fixmatch blue, + mixup green,
    + DM vermilion."""
    import seaborn as sns

    palette = sns.color_palette("colorblind")
    return {"supervised": palette[7], "fixmatch": palette[0], "fixmatch+mixup": palette[2],
            "fixmatch+dm": palette[3]}


def write_semi_plot(histories: pd.DataFrame, path: str | os.PathLike) -> Path:
    """:func:`mixviz.viz.semi_curves` of the stacked histories (rows = label
    counts), written atomically as a palette PNG."""
    import matplotlib.pyplot as plt

    from mixviz import viz

    methods = [m for m in METHODS if m in set(histories["method"])]
    fig = viz.semi_curves(histories, facet="labels_per_class", methods=methods, colors=method_colors())
    try:
        return viz.save(fig, path, dpi=viz.DPI, colors=viz.PNG_COLORS)
    finally:
        plt.close(fig)
