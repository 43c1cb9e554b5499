"""The tables of a comparison: per-method means with their 95 % intervals, and
paired per-seed differences (mixing minus no mixing, DM minus the mixup CE).

Every interval is Student's t over the seeds (:mod:`mixviz.stats`).  A
difference is marked ``*`` only when its interval excludes 0; the text that
reads these tables claims nothing else.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from mixviz import stats
from mixviz._validation import check_frame

__all__ = ["ILLUSTRATION", "SUMMARY_METRICS", "EFFECT_METRICS", "SWEEP_METRICS", "kind_of", "summarize", "paired_effects",
           "summary_markdown", "effects_markdown", "headline", "sweep_table", "sweep_markdown"]

#: Metrics averaged per method (those present in the results).
SUMMARY_METRICS = ("test_acc", "ece", "nll", "mixed_top1", "mixed_top2", "cutmix_top2_both", "cutmix_top2_one",
                   "mixup_top2_both", "memorised", "still_right", "sec_per_epoch")
#: Metrics of the paired differences.
EFFECT_METRICS = ("test_acc", "ece", "mixed_top2", "cutmix_top2_both", "mixup_top2_both", "memorised")
_GROUP = ["regime", "dataset", "method", "policy", "loss"]
ILLUSTRATION = stats.ILLUSTRATION
BASELINE = "none+ce"
#: The standard static recipe that the DM paper's claim measures dynamic policies and static + DM against.
MIXUP = "mixup+mixup_ce"


def kind_of(policy: str, loss: str) -> str:
    """'DM' for the Decoupled Mixup loss, 'baseline' for no mixing, else the
    policy's kind (static/dynamic)."""
    from mixviz.mixing import available

    if loss == "dm":
        return "DM"
    if policy == "none":
        return "baseline"
    return available().get(policy, "static")


def _present(results: pd.DataFrame, metrics: tuple[str, ...]) -> list[str]:
    return [m for m in metrics if m in results.columns and pd.to_numeric(results[m], errors="coerce").notna().any()]


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (regime, method): ``<metric>_mean``, ``<metric>_ci`` (half
    width of the 95 % t interval over seeds) and ``<metric>_std`` for every
    metric of :data:`SUMMARY_METRICS` in ``results``; ``seeds``; ``kind``; and
    seconds per epoch relative to mixup + mixup CE in the same regime."""
    check_frame("results", results, [*_GROUP, "seed", "test_acc"])
    if results.empty:
        raise ValueError("results is empty: nothing to summarise")
    table = stats.summarize_groups(results, _GROUP, _present(results, SUMMARY_METRICS))
    regimes = {r: i for i, r in enumerate(dict.fromkeys(results["regime"]))}
    table = table.sort_values("regime", key=lambda col: col.map(regimes), kind="stable").reset_index(drop=True)
    table["kind"] = [kind_of(p, l) for p, l in zip(table["policy"], table["loss"])]
    if "sec_per_epoch_mean" in table:
        ref = table[table["method"] == "mixup+mixup_ce"].set_index("regime")["sec_per_epoch_mean"]
        table["time_vs_mixup"] = [row.sec_per_epoch_mean / ref[row.regime] if row.regime in ref.index else math.nan
                                  for row in table.itertuples()]
    return table


def _pairs(results: pd.DataFrame) -> list[tuple[str, tuple[Any, Any]]]:
    """(comparison, (treatment method, reference method)) in table order."""
    methods = list(dict.fromkeys(results["method"]))
    by_method = results.drop_duplicates("method").set_index("method")
    out = []
    if BASELINE in methods:
        out += [("mixing - none+ce", ((m,), (BASELINE,))) for m in methods if m != BASELINE]
    for m in methods:
        row = by_method.loc[m]
        reference = f"{row['policy']}+mixup_ce"
        if row["loss"] == "dm" and reference in methods:
            out.append(("DM - mixup CE", ((m,), (reference,))))
    if MIXUP in methods:  # dynamic policies and DM rows against plain mixup (mixup + DM is the row above)
        out += [("vs mixup - mixup+mixup_ce", ((m,), (MIXUP,))) for m in methods
                if " " not in m and m not in (MIXUP, "mixup+dm")
                and kind_of(by_method.loc[m, "policy"], by_method.loc[m, "loss"]) in ("dynamic", "DM")]
    return out


def paired_effects(results: pd.DataFrame) -> pd.DataFrame:
    """Paired per-seed differences within each regime: every method minus
    ``none+ce``, every DM row minus the mixup-CE row of its policy, and every
    dynamic or other DM row minus ``mixup+mixup_ce`` (the DM paper's claim:
    static + DM against dynamic, both against the standard recipe).

    Columns: ``regime``, ``comparison``, ``treatment``, ``reference``,
    ``seeds`` and, per metric of :data:`EFFECT_METRICS` present, the mean
    difference ``<m>``, its half-width ``<m>_ci`` and ``<m>_low``/``<m>_high``.
    """
    check_frame("results", results, [*_GROUP, "seed", "test_acc"])
    metrics = _present(results, EFFECT_METRICS)
    parts = []
    for regime, group in results.groupby("regime", sort=False):
        for comparison, (treatment, reference) in _pairs(group):
            table = stats.paired_table(group, [], ["method"], [(treatment, reference)], metrics)
            if len(table):
                table.insert(0, "comparison", comparison)
                table.insert(0, "regime", regime)
                parts.append(table)
    if not parts:
        return pd.DataFrame(columns=["regime", "comparison", "treatment", "reference", "seeds"])
    return pd.concat(parts, ignore_index=True)


def _iv(row: Any, metric: str, n: int) -> stats.Interval:
    return stats.Interval(float(row[f"{metric}_mean"]), float(row[f"{metric}_ci"]), n)


def _cell(row: Any, metric: str, scale: float = 100, digits: int = 1) -> str:
    if f"{metric}_mean" not in row or pd.isna(row[f"{metric}_mean"]):
        return "–"
    return stats.format_ci(_iv(row, metric, int(row["seeds"])), scale, digits)


def _diff_cell(row: Any, metric: str, scale: float = 100, digits: int = 1) -> str:
    if metric not in row or pd.isna(row[metric]):
        return "–"
    return stats.format_ci(stats.Interval(float(row[metric]), float(row[f"{metric}_ci"]), int(row["seeds"])),
                           scale, digits, signed=True)


_SUMMARY_COLUMNS = [("test acc %", "test_acc", 100, 1), ("ECE %", "ece", 100, 1), ("NLL", "nll", 1, 3),
                    ("mixed Top-2 %", "mixed_top2", 100, 1), ("Top-2, both visible %", "cutmix_top2_both", 100, 1),
                    ("memorised %", "memorised", 100, 1), ("s/epoch", "sec_per_epoch", 1, 2)]
_EFFECT_COLUMNS = [("test acc", "test_acc"), ("ECE", "ece"), ("mixed Top-2", "mixed_top2"),
                   ("Top-2, both visible (CutMix set)", "cutmix_top2_both"),
                   ("Top-2, both visible (mixup set)", "mixup_top2_both"), ("memorised", "memorised")]


def effects_markdown(effects: pd.DataFrame, comparison: str) -> list[str]:
    """The rows of one comparison of :func:`paired_effects` as a Markdown table."""
    rows = effects[effects["comparison"] == comparison]
    cols = [(title, m) for title, m in _EFFECT_COLUMNS if m in rows.columns and rows[m].notna().any()]
    lines = ["| method | seeds | " + " | ".join(t for t, _ in cols) + " |", "|---|---|" + "---|" * len(cols)]
    for r in rows.to_dict("records"):
        seeds = ILLUSTRATION if int(r["seeds"]) < 2 else r["seeds"]
        lines.append(f"| {r['treatment']} | {seeds} | " + " | ".join(_diff_cell(r, m) for _, m in cols) + " |")
    return lines


def headline(summary: pd.DataFrame, effects: pd.DataFrame, regime: str) -> str:
    """One sentence on the best mixing method of ``regime`` against no mixing:
    its paired difference and what the interval says.  Only methods paired
    on several seeds are ranked: those on one seed are named as
    :data:`ILLUSTRATION` and never called best."""
    mine = effects[(effects["regime"] == regime) & (effects["comparison"] == "mixing - none+ce")]
    if mine.empty:
        return ""
    several = mine[mine["seeds"] >= 2]
    single = list(mine.loc[mine["seeds"] < 2, "treatment"])
    note = f" {ILLUSTRATION}, not ranked: {', '.join(single)}." if single else ""
    if several.empty or several["test_acc"].isna().all():
        return (f"Every mixing method ran on 1 seed against none + ce ({ILLUSTRATION}): no interval, no claim "
                f"and no best method.")
    best = several.loc[several["test_acc"].idxmax()]
    iv = stats.Interval(float(best["test_acc"]), float(best["test_acc_ci"]), int(best["seeds"]))
    word = stats.verdict(iv, "more accurate", "less accurate")
    text = stats.format_ci(iv, 100, 1, signed=True).rstrip(" *")
    if word == "no measurable difference":
        return (f"Best mixing method: {best['treatment']}, {text} points against none + ce over {iv.n} paired "
                f"seeds: no measurable difference (the 95 % interval includes 0).{note}")
    return (f"Best mixing method: {best['treatment']}, {text} points against none + ce over {iv.n} paired seeds: "
            f"{word} (the 95 % interval excludes 0).{note}")


def summary_markdown(summary: pd.DataFrame, effects: pd.DataFrame | None = None) -> str:
    """The summary as Markdown: per regime, the methods (mean ± 95 % interval
    over seeds, in %), then the paired differences of :func:`paired_effects`
    (``*``: the interval excludes 0)."""
    parts = []
    for regime, table in summary.groupby("regime", sort=False):
        seeds = sorted(set(int(s) for s in table["seeds"]))
        dataset = table["dataset"].iloc[0]
        text = "/".join(map(str, seeds))
        parts.append(f"**{regime}** ({dataset}; mean ± 95 % interval over {text} seed{'s' if max(seeds) > 1 else ''})\n")
        cols = [c for c in _SUMMARY_COLUMNS if f"{c[1]}_mean" in table.columns and table[f"{c[1]}_mean"].notna().any()]
        parts.append("| method | kind | seeds | " + " | ".join(c[0] for c in cols) + " | time vs mixup |")
        parts.append("|---|---|---|" + "---|" * len(cols) + "---|")
        for r in table.to_dict("records"):
            cells = [_cell(r, m, scale, digits) for _, m, scale, digits in cols]
            ratio = r.get("time_vs_mixup", math.nan)
            parts.append(f"| {r['method']} | {r['kind']} | {r['seeds']} | " + " | ".join(cells) +
                         f" | {'–' if pd.isna(ratio) else f'{ratio:.2f}x'} |")
        parts.append("")
        if effects is not None and len(effects):
            mine = effects[effects["regime"] == regime]
            for comparison, title in (("mixing - none+ce", "Each method minus none + ce"),
                                      ("DM - mixup CE", "DM minus the mixup CE on the same policy"),
                                      ("vs mixup - mixup+mixup_ce",
                                       "Dynamic policies and DM rows minus mixup + mixup CE")):
                if (mine["comparison"] == comparison).any():
                    parts.append(f"{title}, paired per seed, in points (± 95 % interval; * the interval "
                                 f"excludes 0; {ILLUSTRATION}: no interval, no claim):\n")
                    parts += effects_markdown(mine, comparison)
                    parts.append("")
            line = headline(summary, effects, regime)
            if line:
                parts += [line, ""]
    return "\n".join(parts)


#: Metrics of the DM strength sweep (paired DM minus mixup CE).
SWEEP_METRICS = ("test_acc", "ece", "memorised", "mixed_top1", "mixed_top2", "cutmix_top2_both", "mixup_top2_both")


def sweep_table(results: pd.DataFrame) -> pd.DataFrame:
    """The DM strength sweep: for every DM row whose label names its eta (the
    ``dm-sweep`` variants), the paired per-seed difference to the mixup-CE row
    of its policy in the same regime, with ``eta``, ``mode`` and
    ``lam_power`` read from its loss options.  One row per (regime, policy,
    eta, mode), sorted by those."""
    import json

    check_frame("results", results, [*_GROUP, "seed", "test_acc", "loss_options"])
    rows = results[(results["loss"] == "dm") & results["method"].str.contains(" eta=", regex=False)]
    if rows.empty:
        raise ValueError("results hold no DM sweep rows (methods named '<policy>+dm eta=<eta> <mode>')")
    keep = results[results.index.isin(rows.index) | (results["loss"] == "mixup_ce")]
    metrics = _present(results, SWEEP_METRICS)
    parts = []
    for regime, group in keep.groupby("regime", sort=False):
        pairs = [((m,), (f"{m.split('+')[0]}+mixup_ce",)) for m in dict.fromkeys(group.loc[group["loss"] == "dm",
                                                                                         "method"])]
        table = stats.paired_table(group, [], ["method"], pairs, metrics)
        if len(table):
            table.insert(0, "regime", regime)
            parts.append(table)
    if not parts:
        raise ValueError("no DM sweep row has a mixup-CE row of its policy to pair with")
    table = pd.concat(parts, ignore_index=True)
    options = rows.drop_duplicates("method").set_index("method")
    parsed = [json.loads(options.loc[m, "loss_options"]) for m in table["treatment"]]
    table.insert(1, "policy", [options.loc[m, "policy"] for m in table["treatment"]])
    table.insert(2, "eta", [float(o["eta"]) for o in parsed])
    table.insert(3, "mode", [o.get("mode", "both") for o in parsed])
    table.insert(4, "lam_power", [float(o.get("lam_power", 1.0)) for o in parsed])
    return table.sort_values(["regime", "policy", "eta", "mode"], kind="stable").reset_index(drop=True)


def sweep_markdown(table: pd.DataFrame) -> str:
    """:func:`sweep_table` as Markdown: one table per (regime, policy), DM minus
    mixup CE in points with 95 % intervals (``*``: the interval excludes 0)."""
    titles = {"test_acc": "test acc", "ece": "ECE", "memorised": "memorised noisy labels", "mixed_top1": "mixed Top-1", "mixed_top2": "mixed Top-2",
              "cutmix_top2_both": "Top-2 both visible (CutMix)", "mixup_top2_both": "Top-2 both visible (mixup)"}
    cols = [m for m in SWEEP_METRICS if m in table.columns and table[m].notna().any()]
    parts = []
    for (regime, policy), group in table.groupby(["regime", "policy"], sort=False):
        parts.append(f"**{regime}, {policy}**: DM minus mixup CE, paired per seed, in points "
                     f"(± 95 % interval; * the interval excludes 0)\n")
        parts.append("| eta | mode | seeds | " + " | ".join(titles[m] for m in cols) + " |")
        parts.append("|---|---|---|" + "---|" * len(cols))
        for r in group.to_dict("records"):
            parts.append(f"| {r['eta']:g} | {r['mode']} | {r['seeds']} | " +
                         " | ".join(_diff_cell(r, m) for m in cols) + " |")
        parts.append("")
    return "\n".join(parts)
