"""The ``mixviz compare`` command: its options, and which comparison a preset
runs: the supervised grid of :func:`mixviz.experiments.compare.compare` or the
semi-supervised one of :func:`mixviz.experiments.semi.compare_semi`.  It sits
above both, so neither imports the other."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import pandas as pd

from mixviz.experiments.compare import compare
from mixviz.experiments.presets import PRESETS, preset
from mixviz.experiments.semi import SEMI_PRESETS, compare_semi, semi_preset

__all__ = ["register_command", "command_settings", "report_outcome"]


def command_settings(args: argparse.Namespace, name: str) -> tuple[dict[str, Any], tuple[int, ...] | None, str]:
    """What every ``mixviz compare`` takes from its options, whatever the
    preset: the config overrides (``--epochs``, ``--device``), the seeds
    (``--seeds N``: 0..N-1) and the output folder (default results/<name>)."""
    overrides: dict[str, Any] = {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.device is not None:
        overrides["device"] = args.device
    seeds = tuple(range(args.seeds)) if args.seeds is not None else None
    return overrides, seeds, args.out or f"results/{name}"


def report_outcome(results: pd.DataFrame, out: str | os.PathLike, empty: str) -> int:
    """Print the summary a comparison wrote in ``out`` (or ``empty`` when it ran nothing)."""
    if results.empty:
        print(f"the grid is empty ({empty}): nothing was run or written")
        return 0
    print((Path(out) / "summary.md").read_text())
    print(f"results in {out}/results.csv, summary in {out}/summary.md")
    return 0


def _cmd_semi(args: argparse.Namespace) -> int:
    """``mixviz compare --preset semi|semi-quick``: the semi grid with the
    command's ``--out``, ``--resume``, ``--runs``, ``--seeds``, ``--epochs``,
    ``--device`` and ``--jobs``."""
    p = semi_preset(args.preset)
    if getattr(args, "policies", None) or getattr(args, "datasets", None) or getattr(args, "regimes", None):
        raise ValueError(f"--policies, --datasets and --regimes do not apply to the semi-supervised preset "
                         f"{p.name!r} (its methods: {', '.join(p.methods)})")
    overrides, seeds, out = command_settings(args, p.name)
    results = compare_semi(p, out, resume=args.resume, runs_root=args.runs, seeds=seeds,
                           jobs=getattr(args, "jobs", 1), **overrides)
    return report_outcome(results, out, "no seeds selected")


def _cmd_compare(args: argparse.Namespace) -> int:
    if args.preset in SEMI_PRESETS:  # semi-supervised presets: methods x label counts x seeds
        return _cmd_semi(args)
    p = preset(args.preset)
    overrides, seeds, out = command_settings(args, p.name)
    results = compare(p, out, resume=args.resume, runs_root=args.runs, seeds=seeds,
                      policies=tuple(args.policies) if args.policies else None,
                      datasets=tuple(args.datasets) if args.datasets else None,
                      regimes=tuple(args.regimes) if args.regimes else None, jobs=args.jobs, **overrides)
    return report_outcome(results, out, "no seeds, policies, data sets or regimes selected")


def register_command(sub: Any) -> None:
    p = sub.add_parser(
        "compare", help="train a grid of regimes x methods x seeds and tabulate the results",
        description="Train every method of a preset (policies with the mixup cross-entropy and with the "
                    "Decoupled Mixup loss, the average policy with the midpoint loss, and the preset's extra rows) "
                    "in each of its regimes through the run store, so finished runs are reused, and write "
                    "results.csv (one row per run), summary.csv, effects.csv and summary.md (mean ± 95 %% interval "
                    "over seeds, and paired per-seed differences).")
    presets: dict[str, Any] = {**PRESETS, **SEMI_PRESETS}  # both kinds have a description
    p.add_argument("--preset", default="quick", choices=list(presets),
                   help="; ".join(f"{k}: {v.description}" for k, v in presets.items()).replace("%", "%%"))
    p.add_argument("--out", default=None, help="output directory (default results/<preset>)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted grid in --out")
    p.add_argument("--runs", default=None, help="root of the run store (default runs/ or $MIXVIZ_RUNS)")
    p.add_argument("--seeds", type=int, default=None, help="use seeds 0..N-1 instead of the preset's")
    p.add_argument("--policies", nargs="+", default=None, help="only these policies")
    p.add_argument("--datasets", nargs="+", default=None, help="only the regimes on these data sets")
    p.add_argument("--regimes", nargs="+", default=None, help="only these regimes of the preset")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--device", default=None, help="override the device (default auto)")
    p.add_argument("--jobs", type=int, default=1,
                   help="worker processes that train cells at once, each with threads/jobs threads "
                        "(default %(default)s; 2 is faster for the CPU presets on a 2-core machine)")
    p.set_defaults(func=_cmd_compare)
