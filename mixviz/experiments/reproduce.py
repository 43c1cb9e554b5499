"""``mixviz reproduce``: train cells of a committed comparison again, on this
machine, in a fresh run store, and say whether its claims hold.

A claim is one paired difference of ``effects.csv`` (a regime, a comparison,
treatment minus reference, one metric).  The same code and seed can give a
single run several points apart on two machines of the same kind (float
summation order, thread count, library builds), so a claim is only as good
as it survives that.  :func:`reproduce`:

1. rebuilds the exact :class:`~mixviz.train.TrainConfig` of each chosen row of
   ``results.csv`` (:func:`row_configs`: from the preset named by the
   directory or ``preset``, else from the run's stored ``config.json``) and
   checks that its id is the row's ``run_id``;
2. trains them into a *fresh* run store (default
   ``RESULTS_DIR/reproduce/runs``; never the store the results came from, so
   nothing committed is merely loaded back) through the pool ``mixviz
   compare`` uses (:func:`mixviz.experiments.train_cells`, ``jobs``);
3. recomputes every claim whose treatment and reference were both re-run
   with the same statistics (:func:`mixviz.experiments.paired_effects`) and
   judges it (:func:`claim_status`):

   * a *starred* claim (committed interval excludes 0) **agrees** when the
     re-run's mean difference has the same sign -- the re-run interval need
     not exclude 0 too: then it says ``same sign`` (it agrees, more weakly:
     ``holds`` is the re-run starred as well).  An opposite sign is
     ``FLIPPED``: the command exits 1 and names the claim.
   * an *unstarred* claim agrees when the re-run interval includes 0.  One
     that the re-run stars is a ``new claim``: a disagreement, reported, but
     not a failure (the committed text claims nothing there, so nothing
     committed is wrong).
   * a committed row on one seed is ``1 seed: illustration`` -- no interval,
     no claim, not judged; a claim whose re-run covers fewer paired seeds than
     the committed one (``sample``) is ``partial`` and not judged either.

4. writes ``RESULTS_DIR/reproduce.md``: the machine (CPU model, cores, torch
   threads, torch version, device), each claim with its committed and
   re-run verdict, and the per-run deviation (re-run minus committed test
   accuracy per cell, with the mean and the largest absolute deviation).
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mixviz import stats
from mixviz._validation import check_frame, check_positive
from mixviz.experiments.presets import PRESETS, Cell, Preset, cells
from mixviz.ioutil import atomic_write_text

__all__ = ["Reproduction", "claim_status", "judge_claims", "select_rows", "row_configs", "run_deviations",
           "reproduce", "reproduce_markdown", "run_command", "REPORT", "JUDGED", "FAILED"]

REPORT = "reproduce.md"
#: Statuses that count as agreement / disagreement with the committed table.
JUDGED = {"holds": True, "same sign": True, "no claim": True, "FLIPPED": False, "new claim": False}
#: The statuses that make the command fail.
FAILED = ("FLIPPED",)
_KEY = ["regime", "comparison", "treatment", "reference"]
_ROW_KEY = ["regime", "method", "seed"]


def _interval(row: Any, metric: str) -> stats.Interval:
    half = row.get(f"{metric}_ci", math.nan)
    half = math.nan if half is None or pd.isna(half) else float(half)
    return stats.Interval(float(row[metric]), half, int(row["seeds"]))


def claim_status(committed: stats.Interval, rerun: stats.Interval) -> str:
    """How a re-run paired difference reads against the committed one (see
    the module docstring): ``"holds"``, ``"same sign"``, ``"FLIPPED"``,
    ``"no claim"``, ``"new claim"``, ``"1 seed: illustration"`` or
    ``"partial (k of n seeds)"``."""
    for name, iv in (("committed", committed), ("rerun", rerun)):
        if not isinstance(iv, stats.Interval):
            raise TypeError(f"{name} must be a stats.Interval, got {type(iv).__name__}")
    if committed.n < 2:
        return "1 seed: illustration"
    if rerun.n < committed.n:
        return f"partial ({rerun.n} of {committed.n} seeds)"
    if committed.excludes_zero:
        if np.sign(rerun.mean) != np.sign(committed.mean):
            return "FLIPPED"
        return "holds" if rerun.excludes_zero else "same sign"
    return "new claim" if rerun.excludes_zero else "no claim"


def judge_claims(committed: pd.DataFrame, rerun: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Every claim of ``committed`` (an ``effects.csv``) that ``rerun`` (the
    :func:`~mixviz.experiments.paired_effects` of the re-run rows) also has,
    one row per metric: ``regime``, ``comparison``, ``treatment``,
    ``reference``, ``metric``, ``committed`` / ``rerun`` (the difference as
    text, ``*`` where its interval excludes 0), ``committed_seeds`` /
    ``rerun_seeds``, the two verdicts, ``status`` (:func:`claim_status`) and
    ``agree`` (True / False; None where not judged).  ``metrics``: default
    every metric of :data:`~mixviz.experiments.EFFECT_METRICS` in both."""
    from mixviz.experiments.tables import EFFECT_METRICS

    check_frame("committed", committed, [*_KEY, "seeds"])
    check_frame("rerun", rerun, [*_KEY, "seeds"])
    if metrics is None:
        metrics = [m for m in EFFECT_METRICS if m in committed.columns and m in rerun.columns]
    elif isinstance(metrics, str):
        raise TypeError("metrics must be a sequence of metric names, not a str")
    for m in metrics:
        check_frame("committed", committed, [m])
        check_frame("rerun", rerun, [m])
    new = {tuple(r[k] for k in _KEY): r for r in rerun.to_dict("records")}
    rows = []
    for old in committed.to_dict("records"):
        again = new.get(tuple(old[k] for k in _KEY))
        if again is None:
            continue
        for m in metrics:
            if pd.isna(old[m]) or pd.isna(again[m]):
                continue
            a, b = _interval(old, m), _interval(again, m)
            status = claim_status(a, b)
            rows.append({**{k: old[k] for k in _KEY}, "metric": m,
                         "committed": stats.format_ci(a, 100, 1, signed=True), "committed_seeds": a.n,
                         "committed_verdict": _verdict(a), "rerun": stats.format_ci(b, 100, 1, signed=True),
                         "rerun_seeds": b.n, "rerun_verdict": _verdict(b), "status": status,
                         "agree": JUDGED.get(status)})
    columns = [*_KEY, "metric", "committed", "committed_seeds", "committed_verdict", "rerun", "rerun_seeds",
               "rerun_verdict", "status", "agree"]
    return pd.DataFrame(rows, columns=columns)


def _verdict(iv: stats.Interval) -> str:
    return "1 seed: illustration" if iv.n < 2 else stats.verdict(iv)


def select_rows(results: pd.DataFrame, *, sample: int | None = None, regimes: Sequence[str] | None = None,
                methods: Sequence[str] | None = None, seed: int = 0) -> pd.DataFrame:
    """The rows of ``results`` to train again: ``sample`` rows drawn without
    replacement by ``numpy.random.default_rng(seed)`` (kept in table order),
    or those of ``regimes`` x ``methods`` (each default: all); not both."""
    check_frame("results", results, [*_ROW_KEY, "run_id"])
    if sample is not None and (regimes or methods):
        raise ValueError("sample and regimes/methods exclude each other: draw a sample, or name the cells")
    if sample is not None:
        check_positive("sample", sample, integer=True)
        picked = np.random.default_rng(seed).choice(len(results), size=min(sample, len(results)), replace=False)
        return results.iloc[sorted(int(i) for i in picked)].reset_index(drop=True)
    keep = pd.Series(True, index=results.index)
    for name, chosen, column in (("regimes", regimes, "regime"), ("methods", methods, "method")):
        if chosen:
            if isinstance(chosen, str):
                raise TypeError(f"{name} must be a sequence of names, not a str")
            known = list(dict.fromkeys(results[column].astype(str)))
            unknown = [c for c in chosen if c not in known]
            if unknown:
                raise ValueError(f"{name} must be among {', '.join(known)}; got {', '.join(unknown)}")
            keep &= results[column].astype(str).isin(chosen)
    return results[keep].reset_index(drop=True)


def _preset_cells(p: Preset, rows: pd.DataFrame) -> dict[tuple, Cell]:
    seeds = sorted({int(s) for s in rows["seed"]})
    regimes = [r for r in dict.fromkeys(rows["regime"].astype(str)) if r in p.bases]
    out: dict[tuple, Cell] = {}
    if not regimes:
        return out
    for epochs in dict.fromkeys([None, *(int(e) for e in rows.get("epochs", pd.Series(dtype=int)).dropna())]):
        extra = {} if epochs is None else {"epochs": epochs}  # a grid run with --epochs
        try:
            found = cells(p, seeds=seeds, regimes=regimes, **extra)
        except ValueError:
            continue
        for c in found:
            out.setdefault((c.regime, c.method, c.config.seed, c.config.epochs), c)
    return out


def row_configs(rows: pd.DataFrame, p: Preset | None, stored_runs: str | os.PathLike | None = None) -> list[Cell]:
    """The cell (regime, method, exact config) of every row of ``rows``.

    The config is the one preset ``p`` builds for the row's regime, method,
    seed (and epochs); where ``p`` is None or builds another config (the
    preset changed since), the run's ``config.json`` in ``stored_runs`` (read
    only).  Each config's id must be the row's ``run_id``: a row whose
    config cannot be rebuilt raises ValueError naming it."""
    from mixviz.runs import config_id
    from mixviz.train import TrainConfig

    check_frame("rows", rows, [*_ROW_KEY, "run_id"])
    built = _preset_cells(p, rows) if p is not None else {}
    out = []
    for r in rows.to_dict("records"):
        epochs = int(r["epochs"]) if "epochs" in r and not pd.isna(r["epochs"]) else None
        cell = built.get((str(r["regime"]), str(r["method"]), int(r["seed"]), epochs))
        if cell is None or config_id(cell.config) != r["run_id"]:
            stored = Path(stored_runs) / str(r["run_id"]) / "config.json" if stored_runs is not None else None
            if stored is None or not stored.exists():
                why = (f"preset {p.name!r} builds {config_id(cell.config)}" if cell is not None else
                       f"preset {p.name!r} has no such cell" if p is not None else "no preset was given")
                raise ValueError(f"rows: cannot rebuild the config of {r['regime']} {r['method']} seed {r['seed']} "
                                 f"(run_id {r['run_id']}): {why}, and {stored or 'no stored run store'} holds no "
                                 f"config.json for it; the preset changed since these results were made?")
            import json

            config = TrainConfig.from_dict(json.loads(stored.read_text(encoding="utf-8")))
            cell = Cell(str(r["regime"]), str(r["method"]), config)
        if config_id(cell.config) != r["run_id"]:
            raise ValueError(f"rows: the rebuilt config of {r['regime']} {r['method']} seed {r['seed']} has id "
                             f"{config_id(cell.config)}, not the row's run_id {r['run_id']}")
        out.append(cell)
    return out


def run_deviations(committed: pd.DataFrame, rerun: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Per cell (regime, method, seed) in both tables: the committed and the
    re-run ``metric`` and ``deviation`` = re-run minus committed."""
    for name, frame in (("committed", committed), ("rerun", rerun)):
        check_frame(name, frame, [*_ROW_KEY, metric])
    a = committed[[*_ROW_KEY, metric]].rename(columns={metric: "committed"})
    b = rerun[[*_ROW_KEY, metric]].rename(columns={metric: "rerun"})
    for frame in (a, b):
        frame["seed"] = frame["seed"].astype(int)
    table = a.merge(b, on=_ROW_KEY, how="inner")
    table["deviation"] = table["rerun"] - table["committed"]
    return table


@dataclass
class Reproduction:
    """What :func:`reproduce` found: the re-run ``results`` rows, the judged
    ``claims`` (:func:`judge_claims`), the per-run ``deviations``, the
    ``flipped`` claims (one line each), the report ``text`` and its ``path``."""

    results: pd.DataFrame
    claims: pd.DataFrame
    deviations: pd.DataFrame
    flipped: list[str]
    text: str
    path: Path


def _claim_name(r: Any) -> str:
    return f"{r['regime']}: {r['treatment']} - {r['reference']}, {r['metric']} ({r['comparison']})"


def reproduce(results_dir: str | os.PathLike, *, sample: int | None = None, regimes: Sequence[str] | None = None,
              methods: Sequence[str] | None = None, seed: int = 0, jobs: int = 1,
              runs_root: str | os.PathLike | None = None, preset: str | Preset | None = None,
              stored_runs: str | os.PathLike | None = None, log: Any = print) -> Reproduction:
    """Train the chosen rows of ``results_dir/results.csv`` again in a fresh
    run store (``runs_root``; default ``results_dir/reproduce/runs``), judge
    the claims of ``results_dir/effects.csv`` on the re-run rows and write
    ``results_dir/reproduce.md`` (see the module docstring).  ``preset``:
    default the directory's name; ``stored_runs``: where to read a run's
    ``config.json`` when the preset no longer builds it (default the default
    run store; only read)."""
    from mixviz.experiments.compare import result_row, train_cells
    from mixviz.experiments.tables import paired_effects
    from mixviz.runs import config_id, default_root

    results_dir = Path(results_dir)
    for name in ("results.csv", "effects.csv"):
        if not (results_dir / name).exists():
            raise FileNotFoundError(f"results_dir must hold {name} (what mixviz compare writes); "
                                    f"{results_dir / name} is missing")
    committed = pd.read_csv(results_dir / "results.csv")
    effects = pd.read_csv(results_dir / "effects.csv")
    if isinstance(preset, str) or preset is None:
        name = preset or results_dir.resolve().name
        if preset is not None and name not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}; got {name!r}")
        preset = PRESETS.get(name)
    elif not isinstance(preset, Preset):
        raise TypeError(f"preset must be a preset name or a Preset, got {type(preset).__name__}")
    store = Path(runs_root) if runs_root is not None else results_dir / "reproduce" / "runs"
    if store.resolve() == default_root().resolve():
        raise ValueError(f"runs_root must be a fresh run store, not the default one ({default_root()}) that "
                         f"the results were most likely trained in: a re-run there would only load them")
    rows = select_rows(committed, sample=sample, regimes=regimes, methods=methods, seed=seed)
    if rows.empty:
        raise ValueError("no row of results.csv was chosen: nothing to re-run")
    todo = row_configs(rows, preset, stored_runs if stored_runs is not None else default_root())
    say = log or (lambda _: None)
    say(f"re-training {len(todo)} of {len(committed)} runs into {store} ({jobs} at a time)")
    done: list[dict[str, Any]] = []

    def finished(cell: Cell, run: Any, seconds: float) -> None:
        done.append(result_row(run, config_id(cell.config), cell.regime, cell.method))
        say(f"[{len(done)}/{len(todo)}] {cell.regime} {cell.method} seed {cell.config.seed}: "
            f"acc {run.metrics['test_acc']:.3f}, {seconds:.1f} s")

    train_cells(todo, store, jobs, finished)
    position = {(c.regime, c.method, c.config.seed): i for i, c in enumerate(todo)}
    done.sort(key=lambda r: position[(r["regime"], r["method"], int(r["seed"]))])  # workers finish out of order
    rerun = pd.DataFrame(done)
    claims = judge_claims(effects, paired_effects(rerun))
    deviations = run_deviations(committed, rerun)
    flipped = [_claim_name(r) + f": committed {r['committed']}, re-run {r['rerun']}"
               for r in claims.to_dict("records") if r["status"] in FAILED]
    text = reproduce_markdown(results_dir, committed, rerun, claims, deviations, store, preset)
    path = atomic_write_text(results_dir / REPORT, text)
    return Reproduction(rerun, claims, deviations, flipped, text, path)


def _machines(table: pd.DataFrame) -> list[str]:
    """Each machine of ``table``'s rows with its count of runs; rows without
    one are counted as "not recorded" (runs made before runs recorded it)."""
    if table.empty:
        return []
    cells = table["machine"].fillna("").astype(str) if "machine" in table else pd.Series([""] * len(table))
    counts = cells.value_counts(sort=False)
    return [f"{m or 'not recorded (runs made before runs recorded their machine)'} ({n} run{'s' * (n != 1)})"
            for m, n in counts.items()]


def _points(value: float) -> str:
    return f"{100 * value + 0.0:+.1f}".replace("-", "−")


def reproduce_markdown(results_dir: str | os.PathLike, committed: pd.DataFrame, rerun: pd.DataFrame,
                       claims: pd.DataFrame, deviations: pd.DataFrame, store: str | os.PathLike,
                       preset: Preset | None = None) -> str:
    """The report of :func:`reproduce` as Markdown: where it ran, the claims
    with both verdicts, the per-run deviation."""
    from mixviz.machine import machine_info, machine_text

    from mixviz.ioutil import shown_path

    here = [m for m in _machines(rerun) if not m.startswith("not recorded")] or [machine_text(machine_info())]
    keys = set(zip(rerun["regime"], rerun["method"], rerun["seed"].astype(int)))
    chosen_rows = committed[[(r, m, int(s)) in keys for r, m, s in zip(committed["regime"], committed["method"],
                                                                       committed["seed"])]]
    there = _machines(chosen_rows)
    chosen = ", ".join(f"{k}: {', '.join(map(str, dict.fromkeys(rerun[k].astype(str))))}"
                       for k in ("regime", "method"))
    lines = [f"# Reproduction of `{shown_path(results_dir)}`", "",
             f"Re-trained {len(rerun)} of {len(committed)} runs"
             f"{f' of preset `{preset.name}`' if preset is not None else ''} ({chosen}; seeds "
             f"{', '.join(map(str, sorted({int(s) for s in rerun['seed']})))}) from the same configs (each "
             f"config's id checked against the row's run_id) into a fresh run store, `{shown_path(store)}`.",
             "", "- re-run on: " + "; ".join(here), "- the committed runs of those cells made on: " + "; ".join(there), "",
             "## Claims", "",
             "Each paired difference of effects.csv whose two methods were re-run, recomputed from the re-run "
             "rows with the same code (points; ± 95 % interval; * the interval excludes 0). A starred claim "
             "agrees when the re-run difference has the same sign (`holds`: starred again; `same sign`: its "
             "interval now includes 0) and `FLIPPED` otherwise, which fails the command; an unstarred one agrees "
             "when the re-run interval includes 0 (`no claim`) and is a `new claim` (a disagreement, not a "
             "failure) when it excludes 0. Rows on one seed are `1 seed: illustration` and re-runs on fewer "
             "seeds `partial`: neither is judged.", ""]
    if claims.empty:
        lines += ["No claim of effects.csv has both its methods among the re-run cells.", ""]
    else:
        lines += ["| regime | treatment − reference | metric | committed | re-run | status |",
                  "|---|---|---|---|---|---|"]
        for r in claims.to_dict("records"):
            lines.append(f"| {r['regime']} | {r['treatment']} − {r['reference']} | {r['metric']} | "
                         f"{r['committed']} ({r['committed_verdict']}) | {r['rerun']} ({r['rerun_verdict']}) | "
                         f"{r['status']} |")
        judged = claims[claims["agree"].notna()]
        counts = judged["status"].value_counts()
        lines += ["", f"{len(judged)} of {len(claims)} claims judged: "
                  + ", ".join(f"{int(counts.get(s, 0))} {s}" for s in JUDGED) + "; "
                  f"{int(judged['agree'].astype(bool).sum())} agree.", ""]
    lines += ["## Per-run deviation", "", "Re-run minus committed test accuracy of the same cell (same config "
              "and seed), in points.", "", "| regime | method | seed | committed | re-run | deviation |",
              "|---|---|---|---|---|---|"]
    for r in deviations.to_dict("records"):
        lines.append(f"| {r['regime']} | {r['method']} | {r['seed']} | {100 * r['committed']:.1f} | "
                     f"{100 * r['rerun']:.1f} | {_points(r['deviation'])} |")
    if len(deviations):
        dev = deviations["deviation"].abs()
        worst = deviations.loc[dev.idxmax()]
        lines += ["", f"Mean absolute deviation {100 * dev.mean():.1f} points over {len(dev)} runs; largest "
                  f"{100 * dev.max():.1f} points ({worst['regime']} {worst['method']} seed {worst['seed']}: "
                  f"{100 * worst['committed']:.1f} committed, {100 * worst['rerun']:.1f} re-run)."]
    failed = claims[claims["status"].isin(FAILED)] if len(claims) else claims
    lines += ["", "**Outcome:** " + ("every starred claim re-run keeps its sign." if failed.empty else
                                     "starred claims flipped: " + "; ".join(_claim_name(r) for r in
                                                                            failed.to_dict("records")) + ".")]
    return "\n".join(lines) + "\n"

def _names(values: Sequence[str] | None) -> list[str] | None:
    """``a,b c`` -> ``[a, b, c]`` (commas or spaces)."""
    if not values:
        return None
    return [v for text in values for v in text.split(",") if v]


def run_command(args: argparse.Namespace) -> int:
    """``mixviz reproduce``: exit 0 when no starred claim flipped, 1 naming
    those that did."""
    import sys

    result = reproduce(args.results_dir, sample=args.sample, regimes=_names(args.regimes),
                       methods=_names(args.methods), seed=args.seed, jobs=args.jobs, runs_root=args.runs,
                       preset=args.preset, stored_runs=args.stored_runs)
    print(result.text)
    print(f"report written to {result.path}")
    if result.flipped:
        for line in result.flipped:
            print(f"mixviz reproduce: a starred claim flipped: {line}", file=sys.stderr)
        return 1
    return 0
