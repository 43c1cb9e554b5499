"""What the results say, in sentences generated from the result tables.

Every number in the README's reading comes from here, computed from the files
that the commands wrote (``results/full``, ``results/dm-sweep``,
``results/semi``); nothing is typed by hand.  A difference is called "more" or
"less" only where its paired 95 % interval excludes 0; everything else is
"no measurable difference", said with its interval.

:func:`reading` returns the Markdown bullets; each ``*_sentences`` function
builds one of them from its tables, so that tests can feed it hand-made ones.
"""

from __future__ import annotations

import math

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mixviz import stats

__all__ = ["NAMES", "REGIME_NAMES", "name", "difference", "machines", "noisy_sentences", "dm_sentences",
           "dynamic_sentences",
           "regime_sentences", "calibration_sentences", "semi_sentences", "reading"]

#: Plain names of the method rows.
NAMES = {
    "none+ce": "plain training", "mixup+mixup_ce": "mixup", "mixup+dm": "mixup + DM", "cutmix+mixup_ce": "CutMix",
    "cutmix+dm": "CutMix + DM", "manifold+mixup_ce": "Manifold Mixup", "manifold+dm": "Manifold Mixup + DM",
    "average+midpoint": "input averaging with midpoint labels", "saliencymix+mixup_ce": "SaliencyMix",
    "puzzlemix+mixup_ce": "PuzzleMix", "automix+mixup_ce": "AutoMix", "fmix+mixup_ce": "FMix",
    "resizemix+mixup_ce": "ResizeMix", "gridmix+mixup_ce": "GridMix", "fixmatch": "FixMatch",
    "fixmatch+mixup": "FixMatch + mixup", "fixmatch+dm": "FixMatch + DM", "supervised": "training on the labels alone",
}
#: Plain names of the regimes of the CPU presets.
REGIME_NAMES = {"clean": "clean labels", "noisy20": "20 % noisy labels", "noisy40": "40 % noisy labels",
                "few20": "20 labels per class"}
_DYNAMIC = ("saliencymix+mixup_ce", "puzzlemix+mixup_ce", "automix+mixup_ce")
_MIXING = "mixing - none+ce"
_DM = "DM - mixup CE"
_VS_MIXUP = "vs mixup - mixup+mixup_ce"


def name(method: str) -> str:
    """The plain name of a method row (the row label itself when unknown)."""
    return NAMES.get(method, method)


def _interval(row: Mapping[str, Any] | pd.Series, metric: str) -> stats.Interval:
    """A table row's paired difference of ``metric`` as an Interval (half-width NaN without a ``_ci`` value)."""
    half = row.get(f"{metric}_ci", math.nan)
    return stats.Interval(float(row[metric]), float(half) if not pd.isna(half) else math.nan, int(row["seeds"]))


def difference(row: Mapping[str, Any] | pd.Series, metric: str = "test_acc", scale: float = 100.0) -> str:
    """``"+11.7 ± 3.6"`` (a paired difference in points, true minus sign, no star)."""
    return stats.format_ci(_interval(row, metric), scale=scale, signed=True).removesuffix(" *")


def _starred(row: Mapping[str, Any] | pd.Series, metric: str = "test_acc") -> bool:
    return _interval(row, metric).excludes_zero


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _rows(effects: pd.DataFrame, regime: str, comparison: str) -> pd.DataFrame:
    return effects[(effects["regime"] == regime) & (effects["comparison"] == comparison)]


def _split(rows: pd.DataFrame, metric: str = "test_acc") -> tuple[list[str], list[str], list[str]]:
    """Rows as ``"name (+a ± b)"`` sorted into above 0, below 0 and no measurable difference."""
    up, down, none = [], [], []
    for _, row in rows.iterrows():
        if pd.isna(row.get(f"{metric}_ci")):
            continue
        text = f"{name(row['treatment'])} ({difference(row, metric)})"
        (up if _starred(row, metric) and row[metric] > 0 else down if _starred(row, metric) else none).append(text)
    return up, down, none


def _phrases(up: list[str], down: list[str], none: list[str], above: str, below: str) -> list[str]:
    """``"<above>: a, b"`` / ``"<below>: c"`` / ``"no measurable difference: d"`` for the non-empty groups."""
    groups = ((above, up), (below, down), ("no measurable difference", none))
    return [f"{label}: {_join(items)}" for label, items in groups if items]


def _seed_text(rows: pd.DataFrame) -> str:
    seeds = sorted({int(s) for s in rows["seeds"]})
    return " or ".join(str(s) for s in seeds) + (" seed" if seeds == [1] else " seeds")


def noisy_sentences(effects: pd.DataFrame, summary: pd.DataFrame, regime: str = "noisy40") -> str:
    """Accuracy and memorisation against plain training in the noisy regime."""
    rows = _rows(effects, regime, _MIXING)
    if rows.empty:
        return ""
    phrases = _phrases(*_split(rows), "more accurate than plain training", "less accurate")
    text = (f"With {REGIME_NAMES.get(regime, regime)} ({_seed_text(rows)} per method, paired against plain "
            f"training, points): " + "; ".join(phrases) + ".")
    memo = summary[(summary["regime"] == regime)] if "memorised" in summary else pd.DataFrame()
    mixup = rows[rows["treatment"] == "mixup+mixup_ce"]
    if not memo.empty and not mixup.empty and not pd.isna(mixup.iloc[0].get("memorised")):
        share = memo.set_index("method")["memorised"]
        if "none+ce" in share and "mixup+mixup_ce" in share:
            text += (f" By the last epoch plain training predicts the flipped label for {100 * share['none+ce']:.0f} % "
                     f"of the flipped training images and mixup for {100 * share['mixup+mixup_ce']:.0f} % "
                     f"({difference(mixup.iloc[0], 'memorised')} points).")
    return text


def machines(results: pd.DataFrame | None) -> dict[tuple[str, str], frozenset[str]]:
    """``{(regime, method): the machines its rows were trained on}`` from a
    results table's ``machine`` column (an empty cell: an unrecorded machine,
    counted as one)."""
    if results is None or "machine" not in results:
        return {}
    cells = results.assign(machine=results["machine"].fillna("").astype(str))
    return {(str(regime), str(method)): frozenset(table["machine"])
            for (regime, method), table in cells.groupby(["regime", "method"], sort=False)}


def _across(row: Mapping[str, Any] | pd.Series, where: Mapping[tuple[str, str], frozenset[str]]) -> bool:
    """Whether the two methods of a paired row were trained on different machines."""
    a, b = where.get((row["regime"], row["treatment"])), where.get((row["regime"], row["reference"]))
    return a is not None and b is not None and a != b


def dm_sentences(effects: pd.DataFrame, sweep: pd.DataFrame | None = None,
                 where: Mapping[tuple[str, str], frozenset[str]] | None = None) -> str:
    """DM against the mixup CE on the same policy, over every regime, and the
    eta sweep.  With ``where`` (:func:`machines`), a starred difference whose
    two rows were trained on different machines is marked so: it may be the
    machines' difference rather than the loss's."""
    where = where or {}
    rows = effects[effects["comparison"] == _DM].dropna(subset=["test_acc_ci"])
    if rows.empty:
        return ""
    starred = [r for _, r in rows.iterrows() if _starred(r)]
    noisy = rows[rows["regime"] == "noisy40"]
    listed = _join([f"{name(r['reference'])} {difference(r)}" for _, r in noisy.iterrows()])
    text = (f"DM minus the mixup CE on the same policy changes test accuracy measurably in {len(starred)} of "
            f"{len(rows)} paired comparisons over the regimes")
    if starred:
        text += " (" + _join([f"{name(r['treatment'])}, {REGIME_NAMES.get(r['regime'], r['regime'])}: "
                              f"{difference(r)}" + (", its two rows trained on different machines"
                                                    if _across(r, where) else "") for r in starred]) + ")"
    across = sum(_across(r, where) for _, r in rows.iterrows())
    if across:
        text += (f"; {across} of the {len(rows)} comparisons pair rows trained on different machines (the "
                 f"`machine` column of results.csv), where single runs differ by several points")
    text += "." if noisy.empty else f"; at 40 % noise: {listed} points."
    for metric, what in (("mixed_top2", "mixed Top-2"), ("cutmix_top2_both", "Top-2 on CutMix pairs whose two "
                                                                             "objects are both visible")):
        if metric in rows and rows[f"{metric}_ci"].notna().any():
            valid = rows.dropna(subset=[f"{metric}_ci"])
            hits = [r for _, r in valid.iterrows() if _starred(r, metric)]
            text += f" On {what}, {len(hits)} of {len(valid)} differ measurably"
            text += (" (" + _join([f"{name(r['treatment'])}, {REGIME_NAMES.get(r['regime'], r['regime'])}: "
                                   f"{difference(r, metric)}" + (", across machines" if _across(r, where) else "")
                                   for r in hits]) + ")." if hits else ".")
    if sweep is not None and not sweep.empty:
        settings = sweep.dropna(subset=["test_acc_ci"])
        moved = [r for _, r in settings.iterrows() if _starred(r)]
        metrics = [m for m in ("test_acc", "ece", "memorised", "mixed_top1", "mixed_top2", "cutmix_top2_both",
                               "mixup_top2_both") if f"{m}_ci" in sweep]
        cells = [(r, m) for _, r in sweep.iterrows() for m in metrics if not pd.isna(r[f"{m}_ci"])]
        stars = sum(_starred(r, m) for r, m in cells)
        text += (f" The eta sweep ({len(settings)} settings, {_seed_text(settings)}) moves test accuracy measurably "
                 f"in {len(moved)} of them; {stars} of its {len(cells)} paired differences over "
                 f"{len(metrics)} measures are starred, against about {0.05 * len(cells):.0f} that chance gives at "
                 f"a 5 % level.")
    return text


def dynamic_sentences(effects: pd.DataFrame, summary: pd.DataFrame | None = None) -> str:
    """Dynamic policies and the DM rows against plain mixup, per regime."""
    rows = effects[effects["comparison"] == _VS_MIXUP].dropna(subset=["test_acc_ci"])
    if rows.empty:
        return ""
    parts = []
    for regime, table in rows.groupby("regime", sort=False):
        bits = _phrases(*_split(table[table["treatment"].isin(_DYNAMIC)]), "above mixup", "below mixup")
        if bits:
            parts.append(f"{REGIME_NAMES.get(regime, regime)}: " + "; ".join(bits))
    above = [r for _, r in rows[rows["treatment"].isin(_DYNAMIC)].iterrows() if _starred(r) and r["test_acc"] > 0]
    text = ("Dynamic policies against plain mixup (paired, points): " + ". ".join(parts) + ". "
            + (f"{len(above)} dynamic result(s) above mixup in any regime." if above else
               "No dynamic policy is measurably above plain mixup in any regime."))
    if summary is not None and "sec_per_epoch" in summary:
        cost = summary[summary["regime"] == "noisy40"].set_index("method")["sec_per_epoch"]
        if "mixup+mixup_ce" in cost:
            ratios = [f"{name(m)} {cost[m] / cost['mixup+mixup_ce']:.1f}x" for m in _DYNAMIC if m in cost]
            text += f" Time per epoch against mixup's in the 40 % noise grid: {_join(ratios)}."
    return text


def regime_sentences(effects: pd.DataFrame, regimes: Iterable[str] = ("clean", "noisy20", "few20")) -> str:
    """Every method against plain training in the other regimes."""
    parts = []
    for regime in regimes:
        rows = _rows(effects, regime, _MIXING)
        if rows.empty:
            continue
        up, down, none = _split(rows)
        bits = [f"above plain training: {_join(up)}" if up else "none above plain training"]
        if down:
            bits.append(f"below it: {_join(down)}")
        if none:
            bits.append(f"no measurable difference: {len(none)} method(s)")
        parts.append(f"*{REGIME_NAMES.get(regime, regime)}* ({_seed_text(rows)}): " + "; ".join(bits) + ".")
    return " ".join(parts)


def calibration_sentences(table: pd.DataFrame, regime: str = "noisy40") -> str:
    """ECE as trained and after temperature scaling, against plain training
    (``table`` is calibration.csv: one row per run)."""
    rows = table[table["regime"] == regime]
    if rows.empty or "none+ce" not in set(rows["method"]):
        return ""
    by = {m: t.set_index("seed") for m, t in rows.groupby("method", sort=False)}
    base = by["none+ce"]
    raw, scaled = {}, {}
    for method, t in by.items():
        if method == "none+ce" or len(t) < 2:
            continue
        raw[method] = stats.paired_ci(t["ece"], base["ece"])
        scaled[method] = stats.paired_ci(t["ece_scaled"], base["ece_scaled"])
    if not raw:
        return ""
    above = sum(i.excludes_zero and i.mean > 0 for i in raw.values())
    lo, hi = min(i.mean for i in raw.values()), max(i.mean for i in raw.values())
    temps = rows.groupby("method")["temperature"].mean()
    mix_t = temps.drop("none+ce")
    worse = [f"{name(m)} ({stats.format_ci(i, 100, signed=True).removesuffix(' *')})"
             for m, i in scaled.items() if i.excludes_zero and i.mean > 0]
    better = [f"{name(m)} ({stats.format_ci(i, 100, signed=True).removesuffix(' *')})"
              for m, i in scaled.items() if i.excludes_zero and i.mean < 0]
    span = max(abs(i.mean) for i in scaled.values())
    text = (f"With {REGIME_NAMES.get(regime, regime)}, as trained, every mixing method's ECE is "
            f"{100 * lo:+.0f} to {100 * hi:+.0f} points from plain training's ({above} of {len(raw)} intervals "
            f"above 0). Their fitted temperatures are {mix_t.min():.2f} to {mix_t.max():.2f} (plain training "
            f"{temps['none+ce']:.2f}): under-confidence. After temperature scaling every difference to plain "
            f"training is within {100 * span:.1f} points; measurably better calibrated than plain training: "
            f"{_join(better) or 'none'}; measurably worse: {_join(worse) or 'none'} (ECE points).")
    return text.replace("+-", "−").replace(" -", " −")


def semi_sentences(paired: pd.DataFrame) -> str:
    """FixMatch with and without mixing (``paired.csv`` of the semi preset)."""
    if paired.empty:
        return ""
    parts = []
    for labels, rows in paired.groupby("labels_per_class", sort=True):
        bits = []
        for _, row in rows.iterrows():
            verdict = stats.verdict(_interval(row, "test_acc"), "more accurate", "less accurate")
            bits.append(f"{name(row['treatment'])} minus {name(row['reference'])} {difference(row)} "
                        f"({verdict})")
        parts.append(f"With {labels} labels per class ({_seed_text(rows)}): " + "; ".join(bits))
    return "Test accuracy, paired, in points. " + ". ".join(parts) + "."


def _csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.exists() else None


def reading(root: str | Path) -> str | None:
    """The README's reading: Markdown bullets from the result files under
    ``root`` (the repository); None when ``results/full`` has no tables."""
    root = Path(root)
    full = root / "results" / "full"
    effects, summary = _csv(full / "effects.csv"), _csv(full / "summary.csv")
    if effects is None or summary is None:
        return None
    sweep = _csv(root / "results" / "dm-sweep" / "sweep.csv")
    calibration = _csv(full / "calibration.csv")
    semi = _csv(root / "results" / "semi" / "paired.csv")
    where = machines(_csv(full / "results.csv"))
    bullets = [
        ("Noisy labels, where mixup's best-known effect shows", noisy_sentences(effects, summary)),
        ("DM against the mixup CE", dm_sentences(effects, sweep, where)),
        ("Static against dynamic", dynamic_sentences(effects, summary)),
        ("Calibration", calibration_sentences(calibration) if calibration is not None else ""),
        ("The other regimes", regime_sentences(effects)),
        ("Semi-supervised", semi_sentences(semi) if semi is not None else ""),
    ]
    return "\n".join(f"- **{title}.** {body}" for title, body in bullets if body) or None
