"""``mixviz compare``: train every cell of a preset through the run store and
tabulate the results.

:func:`compare` trains each cell with :func:`mixviz.runs.load_or_train` (so
finished runs are reused), writes one row per run to ``results.csv``
(atomically, after each run) and the summary (means with 95 % intervals,
paired differences) as ``summary.csv``, ``effects.csv`` and ``summary.md``.
With ``jobs > 1`` the cells are trained by that many worker processes, each
with ``max(1, threads // jobs)`` threads: on a 2-core laptop two processes of
one thread each train small models faster than one process with two threads.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mixviz._validation import check_frame, check_positive
from mixviz.experiments.presets import PRESETS, Cell, Preset, cells, options_text, preset
from mixviz.experiments.tables import paired_effects, summarize, summary_markdown, sweep_markdown, sweep_table
from mixviz.ioutil import atomic_write_text
from mixviz.machine import machine_text

__all__ = ["RESULT_COLUMNS", "result_row", "compare", "default_jobs", "estimated_cost", "longest_first", "train_cells",
           "write_plots"]

RESULT_COLUMNS = ["regime", "dataset", "model", "method", "policy", "loss", "seed", "test_acc", "ece", "nll",
                  "mixed_top1", "mixed_top2", "cutmix_top2_both", "cutmix_top2_one", "mixup_top2_both",
                  "mixup_top2_one", "memorised", "still_right", "sec_per_epoch", "epochs", "alpha", "loss_options",
                  "label_noise", "eval_policy", "run_id", "machine"]


def result_row(run: Any, run_id: str, regime: str | None = None, method: str | None = None) -> dict[str, Any]:
    """One row of ``results.csv`` from a finished run (its config and metrics);
    metrics a run did not record are NaN.  ``machine`` is where it ran
    (:func:`mixviz.machine.machine_text`; empty for runs made before runs
    recorded it)."""
    m, c = run.metrics, run.config
    nan = float("nan")
    row = {"regime": regime or c.dataset, "dataset": c.dataset, "model": c.model,
           "method": method or f"{c.policy}+{c.loss}", "policy": c.policy, "loss": c.loss, "seed": c.seed}
    for key in ("test_acc", "ece", "nll", "mixed_top1", "mixed_top2", "cutmix_top2_both", "cutmix_top2_one",
                "mixup_top2_both", "mixup_top2_one", "memorised", "still_right", "sec_per_epoch", "epochs"):
        row[key] = m.get(key, nan)
    row.update(alpha=c.alpha, loss_options=options_text(c),
               label_noise=float(c.dataset_options.get("label_noise", 0.0)),
               eval_policy=m.get("eval_policy", ""), run_id=run_id, machine=machine_text(m.get("machine")))
    return row


def _key(row: dict[str, Any] | pd.Series) -> tuple:
    return (row["regime"], row["method"], int(row["seed"]))


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _train_one(job: tuple[int, Any, str | None]) -> tuple[int, Any]:
    from mixviz.runs import load_or_train

    i, config, root = job
    t0 = time.perf_counter()
    run = load_or_train(config, root)
    return i, (run.config, run.metrics, time.perf_counter() - t0)


class _Stored:
    """What a worker sends back: enough of a run for :func:`result_row`."""

    def __init__(self, config: Any, metrics: dict[str, Any]) -> None:
        self.config, self.metrics = config, metrics


def default_jobs() -> int:
    """Training processes for missing runs: 2 on a CPU-only machine with at
    least two cores (two one-thread processes train these small models
    faster than one two-thread process: a step is many small operations),
    else 1 (one GPU, one process)."""
    import torch

    return 2 if not torch.cuda.is_available() and (os.cpu_count() or 1) >= 2 else 1


def estimated_cost(config: Any) -> float:
    """A rough relative training cost of one run, for ordering only:
    epochs x training-set size (``dataset_options["n_train"]`` where given)
    x the policy's measured ``epoch_cost`` x (1 + mu) for semi-supervised
    runs, which also push mu unlabelled images per labelled one."""
    from mixviz.config import TrainConfig
    from mixviz.mixing import POLICIES

    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    info = POLICIES.get(config.policy)
    n_train = config.dataset_options.get("n_train")
    size = float(n_train) if isinstance(n_train, (int, float)) and not isinstance(n_train, bool) else 1.0
    semi = 1.0 + config.mu if config.semi != "none" else 1.0
    return config.epochs * size * (info.epoch_cost if info is not None else 1.0) * semi


def longest_first(configs: Sequence[Any]) -> list[int]:
    """Indices of ``configs``, the most expensive first (ties in grid order).
    In grid order a PuzzleMix or AutoMix run (3 to 5 mixup runs) can come
    last and run alone while the other worker idles; started first, the
    cheap runs fill in around it.  (The quick grid gains nothing measurable:
    its PuzzleMix run was 6th of 10, and 265 s stays 265 s; the gain is at
    the tail of long grids.)"""
    costs = [estimated_cost(c) for c in configs]
    return sorted(range(len(configs)), key=lambda i: (-costs[i], i))


def train_cells(todo: Sequence[Cell], runs_root: str | os.PathLike | None, jobs: int,
                on_done: Callable[[Cell, Any, float], None]) -> None:
    """Train (or load) every cell; call ``on_done(cell, run, seconds)`` in the
    calling process as each finishes.  Cells that share a config are trained
    once.  ``jobs > 1``: a pool of worker processes (spawned, so CUDA and
    threads start clean); ``run`` is then a light object with ``config`` and
    ``metrics``."""
    from mixviz.runs import config_id, load_or_train

    check_positive("jobs", jobs, integer=True)
    groups: dict[str, list[Cell]] = {}
    for cell in todo:
        groups.setdefault(config_id(cell.config), []).append(cell)
    unique = [members[0].config for members in groups.values()]
    members = list(groups.values())
    root = None if runs_root is None else str(runs_root)
    if jobs == 1 or len(unique) <= 1:
        for i, config in enumerate(unique):
            t0 = time.perf_counter()
            run = load_or_train(config, runs_root)
            for cell in members[i]:
                on_done(cell, run, time.perf_counter() - t0)
        return
    import multiprocessing

    import torch

    threads = max(1, torch.get_num_threads() // jobs)
    ctx = multiprocessing.get_context("spawn")
    order = longest_first(unique)
    with ctx.Pool(min(jobs, len(unique)), initializer=_worker_init, initargs=(threads,)) as pool:
        for i, (config, metrics, seconds) in pool.imap_unordered(_train_one, [(i, unique[i], root)
                                                                              for i in order]):
            for cell in members[i]:
                on_done(cell, _Stored(config, metrics), seconds)


def compare(p: Preset | str, out: str | os.PathLike, *, resume: bool = False,
            runs_root: str | os.PathLike | None = None, seeds: tuple[int, ...] | None = None,
            policies: tuple[str, ...] | None = None, datasets: tuple[str, ...] | None = None,
            regimes: tuple[str, ...] | None = None, jobs: int = 1, log: Any = print, plots: bool = True,
            **overrides: Any) -> pd.DataFrame:
    """Run the grid of preset ``p``; write ``results.csv``, ``summary.csv``,
    ``effects.csv`` and ``summary.md`` in ``out``; return the results table
    (one row per cell, in grid order).

    Rows are appended (atomically: the whole file is rewritten to a temp file
    and renamed) as runs finish, so a grid killed at any point loses no finished
    run and leaves no partial row.  ``resume=True`` keeps the rows already in
    ``out/results.csv`` and trains only what is missing; without it an existing
    results file is an error (so results of two grids never mix silently).
    ``jobs``: worker processes (see the module docstring).  With ``plots``
    (default) it also draws :func:`write_plots`.
    """
    from mixviz.runs import config_id

    p = preset(p) if isinstance(p, str) else p
    out = Path(out)
    results_path = out / "results.csv"
    rows: list[dict[str, Any]] = []
    if results_path.exists():
        if not resume:
            raise ValueError(f"{results_path} exists; pass resume=True (--resume) to continue that grid "
                             f"or choose another out directory")
        rows = pd.read_csv(results_path, keep_default_na=True).to_dict("records")
    done = {_key(r) for r in rows}
    grid_cells = cells(p, seeds=seeds, policies=policies, datasets=datasets, regimes=regimes, **overrides)
    todo = [c for c in grid_cells if (c.regime, c.method, c.config.seed) not in done]
    counter = [len(grid_cells) - len(todo)]

    def finished(cell: Cell, run: Any, seconds: float) -> None:
        rows.append(result_row(run, config_id(cell.config), cell.regime, cell.method))
        _write_table(pd.DataFrame(rows, columns=RESULT_COLUMNS), results_path)
        counter[0] += 1
        log(f"[{counter[0]}/{len(grid_cells)}] {cell.regime} {cell.method} seed {cell.config.seed}: "
            f"acc {run.metrics['test_acc']:.3f}, {seconds:.1f} s")

    train_cells(todo, runs_root, jobs, finished)
    table = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    if table.empty:
        return table
    # The file keeps every row (a narrower call must not drop the others), the cells of this grid first, in
    # grid order (workers finish out of order); the returned table is this grid's cells only.
    order = {(c.regime, c.method, c.config.seed): i for i, c in enumerate(grid_cells)}
    position = [order.get(_key(r), len(order) + i) for i, (_, r) in enumerate(table.iterrows())]
    table = table.iloc[sorted(range(len(table)), key=position.__getitem__)].reset_index(drop=True)
    _write_table(table, results_path)
    results = table[[_key(r) in order for _, r in table.iterrows()]].reset_index(drop=True)
    write_summary(results, out)
    if plots:
        write_plots(results, out)
    return results


def _has_sweep(results: pd.DataFrame) -> bool:
    return "method" in results and bool(results["method"].astype(str).str.contains(" eta=", regex=False).any())


def write_summary(results: pd.DataFrame, out: str | os.PathLike) -> pd.DataFrame:
    """``summary.csv``, ``effects.csv`` and ``summary.md`` of ``results`` in
    ``out``; with DM sweep rows (the ``dm-sweep`` preset) also ``sweep.csv``
    and ``sweep.md`` (:func:`mixviz.experiments.sweep_table`)."""
    out = Path(out)
    summary = summarize(results)
    effects = paired_effects(results)
    _write_table(summary, out / "summary.csv")
    _write_table(effects, out / "effects.csv")
    atomic_write_text(out / "summary.md", summary_markdown(summary, effects))
    if _has_sweep(results):
        sweep = sweep_table(results)
        _write_table(sweep, out / "sweep.csv")
        atomic_write_text(out / "sweep.md", sweep_markdown(sweep))
    return summary


def write_plots(results: pd.DataFrame, out: str | os.PathLike) -> list[Path]:
    """``<out>/accuracy_vs_time_<regime>.png`` for each regime of ``results``:
    test accuracy against seconds per epoch, one point per method (mean ±
    95 % interval over seeds; static, dynamic and DM in different marks), drawn
    by :func:`mixviz.viz.method_comparison` and written atomically."""
    import matplotlib.pyplot as plt

    from mixviz import viz

    check_frame("results", results, ["regime", "dataset", "policy", "loss", "sec_per_epoch", "test_acc"])
    paths = []
    for regime, table in results.groupby("regime", sort=False):
        table = table[~table["method"].str.contains(" ")] if "method" in table else table  # no sweep variants
        fig = viz.method_comparison(table.reset_index(drop=True))
        try:
            paths.append(viz.save(fig, Path(out) / f"accuracy_vs_time_{regime}.png", dpi=110, colors=256))
        finally:
            plt.close(fig)
    if _has_sweep(results):
        sweep = sweep_table(results)
        fig = viz.dm_sweep(sweep, [m for m in ("test_acc", "ece", "memorised", "mixed_top2", "cutmix_top2_both")
                                   if m in sweep and sweep[m].notna().any()])
        try:
            paths.append(viz.save(fig, Path(out) / "dm_sweep.png", dpi=110, colors=256))
        finally:
            plt.close(fig)
    return paths


def _write_table(table: pd.DataFrame, path: Path) -> None:
    atomic_write_text(path, table.to_csv(index=False))
