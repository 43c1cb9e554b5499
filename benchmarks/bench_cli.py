"""How fast the ``mixviz`` command answers, and what it imports to do it.

Times ``python -m mixviz --help``, ``--version`` and ``compare --help`` as a
user runs them (a fresh interpreter each time), in interleaved rounds, against
``python -c pass`` (the interpreter's own start-up), and reports the median
over rounds.  Goal: ``--help`` under one second, without importing torch or
pandas (checked in the same run with ``-X importtime``).

    python benchmarks/bench_cli.py [--rounds 7]

Prints a Markdown table and writes it to benchmarks/results/cli.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "mixviz --help": ["-m", "mixviz", "--help"],
    "mixviz --version": ["-m", "mixviz", "--version"],
    "mixviz compare --help": ["-m", "mixviz", "compare", "--help"],
}


def _run(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, check=True)
    return time.perf_counter() - t0


def _imports(args: list[str]) -> set[str]:
    """Top-level modules imported by the command (``-X importtime`` on stderr)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    return {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cli.md"))
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.rounds):
        for name, cmd in COMMANDS.items():
            times[name].append(_run(cmd))
    lines = ["# The command line: time to answer", "",
             f"Median over {args.rounds} interleaved rounds, a fresh interpreter each time "
             f"(`{Path(sys.executable).name}`), on this machine; 'heavy imports' are torch and pandas.", "",
             "| command | seconds (median) | heavy imports | goal |", "|---|---|---|---|"]
    for name, cmd in COMMANDS.items():
        heavy = sorted(_imports(cmd) & {"torch", "pandas"}) or ["none"]
        goal = "< 1 s, no torch or pandas" if name == "mixviz --help" else ""
        met = (" (met)" if statistics.median(times[name]) < 1.0 and heavy == ["none"] else " (missed)") if goal else ""
        lines.append(f"| `{name}` | {statistics.median(times[name]):.3f} | {', '.join(heavy)} | {goal}{met} |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
