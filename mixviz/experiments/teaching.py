"""The findings a lecture states, generated from the committed 5-seed results.

Three claims of the papers and of common lore, each checked against
``results/full`` (every method on 5 seeds, four regimes, paired per seed):

* ``dm``: the DM loss raises accuracy and mixed Top-2 over the mixup CE;
* ``dynamic``: dynamic policies beat static mixup;
* ``calibration``: mixup improves calibration.

:func:`paper_claims` says, for each, what the tables show and whether it
reproduced here; :func:`teaching_section` is the generated part of
``docs/teaching.md`` (the section ``teaching``, for ``scripts/update_readme.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from mixviz import stats
from mixviz.experiments.reading import REGIME_NAMES, _across, machines, name
from mixviz.experiments.findings import difference_text, interval_text, seeds_text

__all__ = ["CLAIMS", "outcome", "dm_claim", "dynamic_claim", "calibration_claim", "paper_claims", "claims_markdown",
           "teaching_section"]

#: The claims, as the papers (or common lore) state them.
CLAIMS = {
    "dm": "The DM paper: adding the decoupled term to the mixup cross-entropy raises test accuracy and mixed Top-2.",
    "dynamic": "The DM paper's starting point: dynamic policies (SaliencyMix, PuzzleMix, AutoMix) are more accurate "
               "than static mixup.",
    "calibration": "Mixup is often said to give better-calibrated predictions than plain training.",
}
_DYNAMIC = ("saliencymix+mixup_ce", "puzzlemix+mixup_ce", "automix+mixup_ce")


def outcome(better: int, total: int) -> str:
    """``"reproduced"`` when at least half of ``total`` comparisons are
    measurably in the claimed direction, ``"did not reproduce here"`` when
    none is, else ``"reproduced in only k of n"``."""
    if total <= 0:
        return "not tested"
    if better == 0:
        return "did not reproduce here"
    if 2 * better >= total:
        return "reproduced"
    return f"reproduced in only {better} of {total} comparisons"


def _count(rows: pd.DataFrame, metric: str) -> tuple[int, int, int, int]:
    """(higher, lower, no measurable difference, total) over rows with an interval."""
    valid = rows.dropna(subset=[f"{metric}_ci"]) if f"{metric}_ci" in rows else rows.iloc[0:0]
    ivs = [stats.Interval(float(r[metric]), float(r[f"{metric}_ci"]), int(r["seeds"])) for _, r in valid.iterrows()]
    up = sum(i.excludes_zero and i.mean > 0 for i in ivs)
    down = sum(i.excludes_zero and i.mean < 0 for i in ivs)
    return up, down, len(ivs) - up - down, len(ivs)


def _seeds(rows: pd.DataFrame) -> str:
    return " or ".join(seeds_text(n) for n in sorted({int(s) for s in rows["seeds"]}))


def dm_claim(effects: pd.DataFrame, regime: str = "noisy40",
             where: Mapping[tuple[str, str], frozenset[str]] | None = None) -> str:
    """The DM claim; with ``where`` (:func:`mixviz.experiments.reading.machines`)
    a measurable accuracy difference whose two rows come from different
    machines says so."""
    rows = effects[effects["comparison"] == "DM - mixup CE"]
    if rows.empty:
        return ""
    where = where or {}
    acc, top2 = _count(rows, "test_acc"), _count(rows, "mixed_top2")
    moved = [f"{name(r['treatment'])} with {REGIME_NAMES.get(r['regime'], r['regime'])}: "
             f"{interval_text(_iv(r, 'test_acc'))}"
             + (", its two rows trained on different machines" if _across(r, where) else "")
             for _, r in rows.iterrows() if _iv(r, "test_acc").excludes_zero]
    shown = rows[rows["regime"] == regime]
    listed = "; ".join(f"{name(r['reference'])}: accuracy {interval_text(_iv(r, 'test_acc'))}, mixed Top-2 "
                       f"{interval_text(_iv(r, 'mixed_top2'))}" for _, r in shown.iterrows()
                       if "mixed_top2" in r and not pd.isna(r["mixed_top2"]))
    # a difference whose two rows come from different machines may be the machines': it counts for nothing
    across = sum(_iv(r, "test_acc").excludes_zero and r["test_acc"] > 0 and _across(r, where)
                 for _, r in rows.iterrows())
    acc_verdict = outcome(acc[0] - across, acc[3])
    verdict = acc_verdict if acc_verdict == outcome(top2[0], top2[3]) else \
        f"accuracy: {acc_verdict}; mixed Top-2: {outcome(top2[0], top2[3])}"
    return (f"{CLAIMS['dm']} **{verdict[0].upper() + verdict[1:]}.** DM minus the mixup CE on the same policy "
            f"({_seeds(rows)} per method, paired, {acc[3]} comparisons over {rows['regime'].nunique()} regimes): test "
            f"accuracy measurably higher in {acc[0]}"
            + (f" ({across} of them with its two rows trained on different machines, which is not counted as "
               f"reproducing the claim)" if across else "")
            + f", lower in {acc[1]}, no measurable difference in {acc[2]}; mixed "
            f"Top-2 measurably higher in {top2[0]}, lower in {top2[1]}, no measurable difference in {top2[2]}."
            + (f" The measurable accuracy differences: {'; '.join(moved)}." if moved else "")
            + (f" With {REGIME_NAMES.get(regime, regime)}: {listed}." if listed else ""))


def dynamic_claim(effects: pd.DataFrame) -> str:
    rows = effects[(effects["comparison"] == "vs mixup - mixup+mixup_ce") & effects["treatment"].isin(_DYNAMIC)]
    if rows.empty:
        return ""
    up, down, none, total = _count(rows, "test_acc")
    below = [f"{name(r['treatment'])} with {REGIME_NAMES.get(r['regime'], r['regime'])}: "
             f"{interval_text(_iv(r, 'test_acc'))}" for _, r in rows.iterrows()
             if _iv(r, "test_acc").excludes_zero and r["test_acc"] < 0]
    verdict = outcome(up, total)
    return (f"{CLAIMS['dynamic']} **{verdict[0].upper() + verdict[1:]}.** Each dynamic policy minus plain mixup "
            f"({_seeds(rows)}, paired, {total} comparisons over {rows['regime'].nunique()} regimes): measurably more "
            f"accurate in {up}, less accurate in {down}, no measurable difference in {none}."
            + (f" Less accurate: {'; '.join(below)}." if below else ""))


def calibration_claim(calibration: pd.DataFrame, regime: str = "noisy40", method: str = "mixup+mixup_ce") -> str:
    rows = calibration[calibration["regime"] == regime]
    by = {m: t.set_index("seed") for m, t in rows.groupby("method", sort=False)}
    if "none+ce" not in by or method not in by:
        return ""
    raw = stats.paired_ci(by[method]["ece"], by["none+ce"]["ece"])
    scaled = stats.paired_ci(by[method]["ece_scaled"], by["none+ce"]["ece_scaled"])
    better = raw.excludes_zero and raw.mean < 0
    verdict = "reproduced" if better else "did not reproduce here"
    return (f"{CLAIMS['calibration']} **{verdict[0].upper() + verdict[1:]}.** With "
            f"{REGIME_NAMES.get(regime, regime)}, {name(method)} minus plain training, ECE as trained: "
            f"{difference_text(raw, 'worse calibrated', 'better calibrated')}; its fitted "
            f"temperature is {by[method]['temperature'].mean():.2f} against plain training's "
            f"{by['none+ce']['temperature'].mean():.2f} (below 1: under-confident). After temperature scaling: "
            f"{difference_text(scaled, 'worse calibrated', 'better calibrated')}"
            + (" — the excess goes away with one fitted number." if raw.excludes_zero and raw.mean > 0
               and not scaled.excludes_zero else "."))


def _iv(row: pd.Series, metric: str) -> stats.Interval:
    return stats.Interval(float(row[metric]), float(row[f"{metric}_ci"]), int(row["seeds"]))


def paper_claims(root: str | Path) -> dict[str, str]:
    """``{"dm": ..., "dynamic": ..., "calibration": ...}``: each claim, what
    ``results/full`` under ``root`` shows, and whether it reproduced; claims
    whose tables are missing are left out."""
    full = Path(root) / "results" / "full"
    out = {}
    if (full / "effects.csv").exists():
        effects = pd.read_csv(full / "effects.csv")
        where = machines(pd.read_csv(full / "results.csv")) if (full / "results.csv").exists() else {}
        out["dm"], out["dynamic"] = dm_claim(effects, where=where), dynamic_claim(effects)
    if (full / "calibration.csv").exists():
        out["calibration"] = calibration_claim(pd.read_csv(full / "calibration.csv"))
    return {k: v for k, v in out.items() if v}


def claims_markdown(root: str | Path) -> str:
    """The claims as numbered Markdown paragraphs (what a notebook prints)."""
    claims = paper_claims(root)
    return "\n".join(f"{i}. {text}" for i, text in enumerate(claims.values(), 1)) if claims else ""


def teaching_section(root: str | Path) -> str | None:
    """The generated part of ``docs/teaching.md``: the three findings with
    their numbers, from ``results/full`` under ``root``; None without it."""
    text = claims_markdown(root)
    if not text:
        return None
    return ("The three findings to state in class, from `results/full` (every method on 5 seeds, paired per "
            "seed; ± is the 95 % interval of the mean difference):\n\n" + text)
