"""How many paired seeds the quick preset's headline needs to keep its verdict on any machine (issue 18).

The committed headline (figures/summary.json): mixup + mixup CE minus none + ce, +10.7 ± 4.2 points over 3 paired
seeds, "more accurate".  On another 2-core machine of the same kind, same code and seeds, the three per-seed
differences were +7.6, +10.0 and +16.8 (+11.5 ± 11.9: "no measurable difference").  Taking the committed per-seed
sd (recovered from its interval) as the seed-to-seed scatter, and the other machine's per-seed sd as how far a
seed's difference moves between machines, :func:`mixviz.stats.seeds_for_stable_verdict` gives the fewest seeds
whose expected interval stays above 0.  Nothing is trained.

    python scripts/headline_seeds.py [figures/summary.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mixviz import stats

ROOT = Path(__file__).resolve().parent.parent
#: The other machine's per-seed differences of the headline pair (issue 18), as fractions.
OTHER_MACHINE = (0.076, 0.100, 0.168)
HEADLINE = ("mixing - none+ce", "mixup+mixup_ce")


def committed_headline(summary: dict) -> stats.Interval:
    """The committed headline difference (test accuracy) of ``summary.json``."""
    for row in summary.get("effects", []):
        if (row.get("comparison"), row.get("treatment")) == HEADLINE:
            return stats.Interval(float(row["test_acc"]), float(row["test_acc_ci"]), int(row["seeds"]))
    raise ValueError(f"summary holds no {HEADLINE[1]} row of the comparison {HEADLINE[0]!r}")


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else ROOT / "figures" / "summary.json"
    committed = committed_headline(json.loads(path.read_text()))
    there = stats.mean_ci(OTHER_MACHINE)
    spread = stats.sd_from_interval(there)
    found = stats.seeds_for_stable_verdict(committed, spread=spread)
    print(f"committed: {stats.format_ci(committed, 100, 1, signed=True)} over {committed.n} seeds -> per-seed sd "
          f"{100 * found.sd:.2f} points")
    print(f"other machine: {', '.join(f'{100 * d:+.1f}' for d in OTHER_MACHINE)} -> "
          f"{stats.format_ci(there, 100, 1, signed=True)}, per-seed sd {100 * spread:.2f} points (the spread)")
    print(found.explain(100, "points"))
    return 0 if found.n is not None else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
