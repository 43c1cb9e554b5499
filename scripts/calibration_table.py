"""Calibration after temperature scaling for every run of a finished grid.

    python scripts/calibration_table.py [--results results/full/results.csv]
                                        [--runs runs] [--out results/full]

loads each run of the results table from the run store, cross-fits one
temperature per run on its test split, and writes ``calibration.csv`` (one
row per run) and ``calibration.md`` (means with 95 % intervals, paired
differences against none + ce) in ``--out``.  scripts/update_readme.py pastes
calibration.md into the README.  The 220 runs of results/full take 36 s on a
2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    from mixviz.experiments.calibration import calibration_markdown, temperature_table
    from mixviz.ioutil import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(ROOT / "results" / "full" / "results.csv"),
                        help="a results.csv written by `mixviz compare` (default: results/full/results.csv)")
    parser.add_argument("--runs", default=os.environ.get("MIXVIZ_RUNS", str(ROOT / "runs")),
                        help="the run store that holds its runs (default: $MIXVIZ_RUNS, else runs/)")
    parser.add_argument("--out", default=None, help="folder for calibration.csv and .md (default: the results' folder)")
    args = parser.parse_args(argv)
    results_path = Path(args.results)
    if not results_path.exists():
        parser.error(f"{results_path} does not exist: run `mixviz compare` first")
    out = Path(args.out) if args.out else results_path.parent
    out.mkdir(parents=True, exist_ok=True)
    try:
        table = temperature_table(pd.read_csv(results_path), args.runs)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    atomic_write_text(out / "calibration.csv", table.to_csv(index=False))
    atomic_write_text(out / "calibration.md", calibration_markdown(table))
    print(f"wrote {out / 'calibration.csv'} and {out / 'calibration.md'} ({len(table)} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
