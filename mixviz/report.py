"""The numbers behind ``mixviz figures``: one row per run, the per-method
summary with 95 % intervals over seeds and the paired differences, and that
summary as Markdown (``figures/summary.md``).

Kept apart from :mod:`mixviz.figures` (which draws) so that a notebook or a
script can build the same tables from any list of runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mixviz._extras import require

require("pandas")  # the 'analysis' extra: an ImportError here names the pip install line
import pandas as pd  # noqa: E402

from mixviz import analysis
from mixviz.analysis import (EVAL_ALPHA, EVAL_POLICY, EVAL_SEED, MISMATCH_SHARE, MISMATCH_VISIBLE, method_name,
                             training_kind)
from mixviz.train import Run

__all__ = ["SUMMARY_COLUMNS", "results_table", "summary", "summary_markdown"]


def results_table(runs: Sequence[Run], regime: str | None = None) -> pd.DataFrame:
    """One row per run, as ``mixviz compare``'s ``results.csv``
    (:func:`mixviz.experiments.result_row`, in ``regime``), plus ``kind``."""
    from mixviz.experiments import result_row
    from mixviz.runs import config_id

    runs = list(runs)
    if not runs:
        raise ValueError("runs must hold at least one Run")
    rows = []
    for run in runs:
        if not isinstance(run, Run):
            raise TypeError(f"runs must hold mixviz.train.Run objects, got {type(run).__name__}")
        row = result_row(run, config_id(run.config), regime, method_name(run.config))
        row["kind"] = training_kind(run.config.policy, run.config.loss)
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- summary

#: The per-method numbers of the summary (those the runs recorded).
SUMMARY_COLUMNS = ("test_acc", "ece", "sec_per_epoch", "memorised", "cutmix_top2_both", "cutmix_top2_one",
                   "mixup_top2_both", "mixup_top2_one")


def _mean_ci(values: pd.Series) -> tuple[float, float]:
    from mixviz.stats import mean_ci

    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return math.nan, math.nan
    iv = mean_ci(v)
    return iv.mean, iv.half


def summary(results: pd.DataFrame, mixed: pd.DataFrame, mismatch: Mapping[str, Mapping[str, Any]],
            saliency: pd.DataFrame, toy: Mapping[str, Mapping[str, Run]] | None = None, *,
            preset: str = "", n_test: int | None = None) -> dict[str, Any]:
    """The numbers behind the pictures, as a JSON-ready dict.

    ``methods``: per method, the mean and the half-width of its 95 %
    Student-t interval over seeds (``<metric>_ci``; NaN with one seed) of test
    accuracy, ECE, seconds per epoch, memorised noisy labels and Top-2 on the
    pairs whose objects are both visible or only one (from the runs), and of
    mixed Top-1 / Top-2 on the fixed mixed set; ``effects``: paired per-seed
    differences of every method to ``none+ce`` and of DM to the mixup CE
    (:func:`mixviz.experiments.paired_effects`) and ``headline``, the sentence
    that says what the best of them supports; ``label_mismatch``: rate per
    policy; ``saliency`` and ``saliency_by_kind``: agreement with the object
    masks; ``toy``: test accuracy of the toy runs.
    """
    from mixviz.experiments import headline, paired_effects

    for name, frame, cols in (("results", results, ("method", "kind", "test_acc", "ece", "sec_per_epoch")),
                              ("mixed", mixed, ("method", "mixed_top1", "mixed_top2"))):
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} must have the column(s) {', '.join(missing)}")
    methods = []
    for name, group in results.groupby("method", sort=False):
        m = mixed[mixed["method"] == name]
        row: dict[str, Any] = {"method": name, "kind": str(group["kind"].iloc[0]), "runs": int(len(group))}
        for col in SUMMARY_COLUMNS:
            row[col], row[f"{col}_ci"] = _mean_ci(group[col]) if col in group else (math.nan, math.nan)
        for col in ("mixed_top1", "mixed_top2"):
            row[col], row[f"{col}_ci"] = _mean_ci(m[col]) if len(m) else (math.nan, math.nan)
        methods.append(row)
    effects = pd.DataFrame()
    text = ""
    if {"regime", "policy", "loss", "seed", "dataset"} <= set(results.columns):
        effects = paired_effects(results)
        text = headline(pd.DataFrame(), effects, str(results["regime"].iloc[0])) if len(effects) else ""
    from mixviz.mixing import available

    kinds = available()
    out: dict[str, Any] = {
        "preset": preset,
        "evaluation": {"mixed_policy": EVAL_POLICY, "mixed_seed": EVAL_SEED, "mixed_alpha": EVAL_ALPHA,
                       "n_test": n_test, "mismatch_share_threshold": MISMATCH_SHARE,
                       "mismatch_visible_threshold": MISMATCH_VISIBLE},
        "methods": methods,
        "effects": effects.to_dict("records"),
        "headline": text,
        "label_mismatch": [{"policy": p, "kind": kinds.get(p, "static"), "rate": float(r["rate"]),
                            "n_mismatched": int(r["n_mismatched"]), "n_samples": int(r["n_samples"]),
                            "unmixed_rate": float(r["unmixed_rate"]), "n_unmixed": int(r["n_unmixed"]),
                            "n_pairs": int(r["n_pairs"])}
                           for p, r in mismatch.items()],
        "saliency": saliency.to_dict("records"),
        "saliency_by_kind": analysis.saliency_by_kind(saliency).to_dict("records") if len(saliency) else [],
    }
    if toy:
        out["toy"] = [{"dataset": d, "method": m, "test_acc": float(run.metrics["test_acc"]),
                       "ece": float(run.metrics["ece"])} for d, runs in toy.items() for m, run in runs.items()]
    return out


def _pct(mean: float, half: float = math.nan) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if half is None or (isinstance(half, float) and math.isnan(half)):
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} ± {100 * half:.1f}"


def summary_markdown(s: Mapping[str, Any]) -> str:
    """:func:`summary` as Markdown tables (percentages, mean ± 95 % interval)."""
    from mixviz.experiments import effects_markdown

    ev = s["evaluation"]
    lines = [f"# mixviz figures: preset `{s['preset']}`", "",
             f"Clutter test set ({ev['n_test']} images). Mixed Top-1/Top-2 on the fixed mixed set: the test set "
             f"mixed by {ev['mixed_policy']} (alpha {ev['mixed_alpha']}, seed {ev['mixed_seed']}), the same for "
             f"every method. Numbers in %; mean ± 95 % interval (Student t) over the seeds of methods with "
             f"several runs. Top-2 both / one: Top-2 on CutMix-mixed pairs whose two objects are both at least half "
             f"visible / of which only one is; memorised: flipped training labels the model predicts.", "",
             "## Accuracy, calibration and mixed accuracy per method", "",
             "| method | kind | runs | test acc | ECE | memorised | mixed Top-1 | mixed Top-2 | Top-2 both | "
             "Top-2 one | s/epoch |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in s["methods"]:
        lines.append(f"| {r['method']} | {r['kind']} | {r['runs']} | {_pct(r['test_acc'], r['test_acc_ci'])} | "
                     f"{_pct(r['ece'], r['ece_ci'])} | {_pct(r['memorised'], r['memorised_ci'])} | "
                     f"{_pct(r['mixed_top1'], r['mixed_top1_ci'])} | {_pct(r['mixed_top2'], r['mixed_top2_ci'])} | "
                     f"{_pct(r['cutmix_top2_both'], r['cutmix_top2_both_ci'])} | "
                     f"{_pct(r['cutmix_top2_one'], r['cutmix_top2_one_ci'])} | {r['sec_per_epoch']:.2f} |")
    effects = pd.DataFrame(s.get("effects", []))
    if len(effects):
        lines += ["", "## Paired differences", "",
                  "Each method minus none + ce on the seeds both have, in points (± 95 % interval; * the interval "
                  "excludes 0; 1 seed: illustration, no interval, no claim):", ""]
        lines += effects_markdown(effects, "mixing - none+ce")
        for comparison, title in (("DM - mixup CE", "DM minus the mixup CE on the same policy:"),
                                  ("vs mixup - mixup+mixup_ce", "Dynamic policies and DM rows minus mixup + mixup CE:")):
            if (effects["comparison"] == comparison).any():
                lines += ["", title, ""]
                lines += effects_markdown(effects, comparison)
    if s.get("headline"):
        lines += ["", s["headline"]]
    lines += ["", "## Label mismatch per policy", "",
              f"Share of mixed samples whose label gives a class ≥ {ev['mismatch_share_threshold']:.0%} while its "
              f"object is < {ev['mismatch_visible_threshold']:.0%} visible (clutter object masks); and the share "
              f"of pairs of two different classes that the policy did not mix (λ = 0 or 1: one image kept whole).",
              "", "| policy | kind | mismatched samples | pairs not mixed |", "|---|---|---|---|"]
    for r in s["label_mismatch"]:
        lines.append(f"| {r['policy']} | {r['kind']} | {_pct(r['rate'])} ({r['n_mismatched']}/{r['n_samples']}) | "
                     f"{_pct(r['unmixed_rate'])} ({r['n_unmixed']}/{r['n_pairs']}) |")
    if s["saliency"]:
        chance = s["saliency"][0]["chance"]
        lines += ["", "## Saliency agreement with the object masks", "",
                  f"mask share: share of the attribution for the true class inside the object (a uniform map "
                  f"scores {_pct(chance)}); pointing: the map's peak is on the object; mixed share: on the fixed "
                  f"mixed set, the map for each mixed class inside the visible part of its own object. One model "
                  f"(the first seed) per method.", "",
                  "| method | kind | attribution | mask share | pointing | mixed share |", "|---|---|---|---|---|---|"]
        for r in s["saliency"]:
            lines.append(f"| {r['method']} | {r['kind']} | {r['attribution']} | {_pct(r['mask_share'])} | "
                         f"{_pct(r['pointing'])} | {_pct(r['mixed_share'])} |")
        lines += ["", "Mean per training kind:", "",
                  "| attribution | kind | methods | mask share | pointing | mixed share |", "|---|---|---|---|---|---|"]
        for r in s["saliency_by_kind"]:
            lines.append(f"| {r['attribution']} | {r['kind']} | {r['methods']} | {_pct(r['mask_share'])} | "
                         f"{_pct(r['pointing'])} | {_pct(r['mixed_share'])} |")
    if s.get("toy"):
        lines += ["", "## Toy 2-D sets (decision boundaries, 1 seed: illustration)", "", "| data | method | test acc | ECE |",
                  "|---|---|---|---|"]
        for r in s["toy"]:
            lines.append(f"| {r['dataset']} | {r['method']} | {_pct(r['test_acc'])} | {_pct(r['ece'])} |")
    return "\n".join(lines) + "\n"
