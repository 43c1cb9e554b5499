"""Calibration after temperature scaling, for every run of a finished grid.

Mixing raises the test ECE of the clutter runs by 10 to 30 points
(``results/full``).  Temperature scaling (one scalar per model, fitted on
held-out labels) removes any error that is only a matter of over- or
under-confidence, so the ECE left after it is the part that a post-hoc fix
cannot remove.  :func:`temperature_table` loads each run of a
``results.csv`` from the run store and cross-fits the temperature on its test
split (:func:`mixviz.analysis.temperature_scaling`);
:func:`calibration_markdown` writes the means with 95 % intervals and the
paired per-seed differences against ``none+ce``.

    python scripts/calibration_table.py        # results/full -> calibration.csv/.md
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from mixviz import stats
from mixviz._validation import check_frame
from mixviz.experiments.tables import BASELINE, _cell, _diff_cell

__all__ = ["CALIBRATION_COLUMNS", "temperature_table", "calibration_markdown"]

CALIBRATION_COLUMNS = ["regime", "method", "policy", "loss", "seed", "run_id", "temperature", "accuracy", "ece",
                       "ece_scaled", "nll", "nll_scaled"]


def temperature_table(results: pd.DataFrame, runs_root: str | os.PathLike, *, folds: int = 2,
                      log: Callable[[str], Any] | None = print) -> pd.DataFrame:
    """One row per run of ``results`` (a ``results.csv`` of ``mixviz compare``,
    supervised or semi-supervised): its regime (where the table has none, the
    data set and the labels per class), method, policy and loss, seed and run
    id, with the columns of
    :func:`mixviz.analysis.temperature_scaling` on the run's own test split.

    Raises FileNotFoundError naming the run when a run of the table is not in
    ``runs_root``."""
    from mixviz import analysis, data
    from mixviz.runs import load_run

    check_frame("results", results, ["method", "seed", "run_id"])
    root = Path(runs_root)
    test_sets: dict[str, Any] = {}
    rows = []
    for i, r in enumerate(results.to_dict("records")):
        path = root / str(r["run_id"])
        if not (path / "metrics.json").exists():
            raise FileNotFoundError(f"run {r['run_id']} ({r['method']}, seed {r['seed']}) is not in "
                                    f"{root}: train it with `mixviz compare` into that run store first")
        run = load_run(path)
        c = run.config
        key = json.dumps([c.dataset, c.data_root, c.dataset_options], sort_keys=True, default=str)
        if key not in test_sets:
            test_sets[key] = data.load(c.dataset, "test", root=c.data_root, download=False, **c.dataset_options)
        test = test_sets[key]
        scaled = analysis.temperature_scaling(run.model, test.images, test.labels, folds=folds).iloc[0]
        regime = r.get("regime", r.get("dataset", c.dataset))
        if "regime" not in r and not pd.isna(r.get("labels_per_class", float("nan"))):  # the semi comparison
            regime = f"{regime}, {int(r['labels_per_class'])} labels per class"
        rows.append({"regime": regime, "method": r["method"], "policy": c.policy, "loss": c.loss, "seed": r["seed"],
                     "run_id": r["run_id"], **{k: float(scaled[k]) for k in CALIBRATION_COLUMNS[6:]}})
        if log is not None:
            log(f"[{i + 1}/{len(results)}] {regime} {r['method']} seed {r['seed']}: ECE "
                f"{scaled['ece']:.3f} -> {scaled['ece_scaled']:.3f} at T = {scaled['temperature']:.2f}")
    return pd.DataFrame(rows, columns=CALIBRATION_COLUMNS)


def calibration_markdown(table: pd.DataFrame) -> str:
    """The Markdown report of :func:`temperature_table`: per regime, each
    method's ECE and NLL before and after temperature scaling and its
    temperature (mean ± 95 % interval over seeds), then the paired per-seed
    differences of the ECE (before and after scaling) and of the scaled NLL
    against ``none+ce`` (``*``: the interval excludes 0)."""
    check_frame("table", table, CALIBRATION_COLUMNS)
    if table.empty:
        raise ValueError("table is empty: nothing to report")
    metrics = ["temperature", "ece", "ece_scaled", "nll", "nll_scaled"]
    lines = ["# Calibration after temperature scaling", "",
             "Temperature scaling divides a model's logits by one number T, fitted to minimise the NLL on held-out "
             "labels (T > 1: the model was over-confident; T < 1: under-confident). It does not change any "
             "prediction, only the confidence. Here T is cross-fitted on each run's test split (two halves, each "
             "scaled by the T fitted on the other), so ECE after scaling is the calibration error that a post-hoc "
             "fix cannot remove. Mean ± 95 % interval over seeds; the differences are paired by seed, and `*` marks "
             "an interval that excludes 0."]
    for regime, group in table.groupby("regime", sort=False):
        summary = stats.summarize_groups(group, ["method"], metrics)
        lines += ["", f"## {regime}", "",
                  "| method | seeds | T | ECE % | ECE after scaling % | NLL | NLL after scaling |",
                  "|---|---|---|---|---|---|---|"]
        for r in summary.to_dict("records"):
            lines.append(f"| {r['method']} | {r['seeds']} | {_cell(r, 'temperature', 1, 2)} | {_cell(r, 'ece')} | "
                         f"{_cell(r, 'ece_scaled')} | {_cell(r, 'nll', 1, 3)} | {_cell(r, 'nll_scaled', 1, 3)} |")
        methods = [m for m in dict.fromkeys(group["method"]) if m != BASELINE]
        if BASELINE not in set(group["method"]) or not methods:
            continue
        diff = stats.paired_table(group, [], ["method"], [((m,), (BASELINE,)) for m in methods],
                                  ["ece", "ece_scaled", "nll_scaled"])
        lines += ["", f"Against {BASELINE} ({regime}), paired by seed (ECE in points):", "",
                  "| method | seeds | ECE | ECE after scaling | NLL after scaling |", "|---|---|---|---|---|"]
        for r in diff.to_dict("records"):
            lines.append(f"| {r['treatment']} | {r['seeds']} | {_diff_cell(r, 'ece')} | "
                         f"{_diff_cell(r, 'ece_scaled')} | {_diff_cell(r, 'nll_scaled', 1, 3)} |")
    return "\n".join(lines) + "\n"
