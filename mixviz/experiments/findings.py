"""The notebooks' "What we found" sections, generated from their numbers.

Each ``*_findings`` function takes the tables a notebook computed (or a
committed results table) and returns Markdown text; nothing in it is typed
by hand.  The rules of :mod:`mixviz.experiments.reading` hold here too, plus
one for the few seeds of the quick preset:

* every difference carries its 95 % interval, its bounds and its seed count;
* it is called higher or lower only where the interval excludes 0, else
  "no measurable difference";
* a row of one seed has no interval: it says "one seed: not tested", never
  "no measurable difference";
* a starred interval whose nearer bound lies close to 0 says so, with the
  bounds printed (:func:`near_zero_note`).

The 5-seed findings of ``results/full`` that a lecture states (the papers'
claims that did or did not reproduce here) are in
:mod:`mixviz.experiments.teaching`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from mixviz import stats
from mixviz.experiments.reading import _interval as _iv  # a table row's difference as an Interval
from mixviz.experiments.reading import name

__all__ = ["NOT_TESTED", "METRIC_NAMES", "seeds_text", "interval_text", "verdict_text", "difference_text", "near_zero_note",
           "effects_findings", "tour_findings", "mixing_findings", "boundary_findings", "calibration_findings",
           "top2_chance", "top2_findings", "model_findings", "saliency_findings", "dm_loss_findings", "semi_findings"]

#: What a one-seed row says instead of a verdict.
NOT_TESTED = "one seed: not tested"
#: Plain names of the metrics of the result tables.
METRIC_NAMES = {"test_acc": "test accuracy", "ece": "ECE", "nll": "NLL", "mixed_top1": "mixed Top-1",
                "mixed_top2": "mixed Top-2", "cutmix_top2_both": "Top-2 where both objects are visible (CutMix set)",
                "mixup_top2_both": "Top-2 where both objects are visible (mixup set)",
                "memorised": "share of the flipped training labels predicted", "mask_rate": "pseudo-labels kept",
                "pseudo_acc": "kept pseudo-labels right"}
#: ``(word if higher, word if lower)`` of a difference in each metric.
_WORDS = {"test_acc": ("more accurate", "less accurate"), "ece": ("worse calibrated", "better calibrated"),
          "memorised": ("memorises more", "memorises less")}
#: A starred interval is "near 0" when its nearer bound is within this fraction of its half-width of 0.
NEAR_ZERO = 0.1


def seeds_text(n: int) -> str:
    """``"one seed"`` or ``"5 seeds"``."""
    return "one seed" if int(n) == 1 else f"{int(n)} seeds"


def _num(value: float, scale: float, digits: int, signed: bool) -> str:
    text = f"{round(value * scale, digits) + 0.0:{'+' if signed else ''}.{digits}f}"
    return text.replace("-", "−")


def _tested(iv: stats.Interval) -> bool:
    return iv.n >= 2 and not math.isnan(iv.half)


def interval_text(iv: stats.Interval, *, scale: float = 100.0, unit: str = "points", digits: int = 1,
                  signed: bool = True) -> str:
    """``"+10.7 ± 4.2 points (95 % interval +6.5 to +14.9, 3 seeds)"``, or
    ``"+6.8 points (one seed: not tested)"``."""
    if not isinstance(iv, stats.Interval):
        raise TypeError(f"iv must be a stats.Interval, got {type(iv).__name__}")
    mean = _num(iv.mean, scale, digits, signed)
    unit = f" {unit}" if unit else ""
    if not _tested(iv):
        return f"{mean}{unit} ({NOT_TESTED})"
    return (f"{mean} ± {iv.half * scale:.{digits}f}{unit} (95 % interval {_num(iv.low, scale, digits, signed)} to "
            f"{_num(iv.high, scale, digits, signed)}, {seeds_text(iv.n)})")


def verdict_text(iv: stats.Interval, higher: str = "higher", lower: str = "lower") -> str:
    """:func:`mixviz.stats.verdict`, except that one seed is :data:`NOT_TESTED`."""
    return stats.verdict(iv, higher, lower) if _tested(iv) else NOT_TESTED


def difference_text(iv: stats.Interval, higher: str = "higher", lower: str = "lower", **kw: Any) -> str:
    """:func:`interval_text` and, where there is an interval, its verdict:
    ``"+10.7 ± 4.2 points (95 % interval +6.5 to +14.9, 3 seeds): more"``."""
    text = interval_text(iv, **kw)
    return f"{text}: {verdict_text(iv, higher, lower)}" if _tested(iv) else text


def near_zero_note(iv: stats.Interval, *, scale: float = 100.0, unit: str = "points") -> str:
    """For a starred interval whose nearer bound lies within :data:`NEAR_ZERO`
    of its half-width from 0: why the star and a bound of about 0 are no
    contradiction, with the bounds printed to four decimals; else ``""``."""
    if not iv.excludes_zero:
        return ""
    near = min(abs(iv.low), abs(iv.high))
    if near > NEAR_ZERO * iv.half:
        return ""
    return (f"Its interval runs from {iv.low * scale:+.4f} to {iv.high * scale:+.4f} {unit}: it excludes 0, so it "
            f"is starred, but only just, so a bound printed as about 0 is no contradiction. The data say the "
            f"difference is unlikely to be 0 or of the other sign; they do not say it is large: anything from about "
            f"0 to {max(abs(iv.low), abs(iv.high)) * scale:.1f} {unit} fits them.")


def _difference(row: Mapping[str, Any] | pd.Series, metric: str, against: str) -> str:
    higher, lower = _WORDS.get(metric, ("higher", "lower"))
    iv = _iv(row, metric)
    return (f"{name(row['treatment'])} minus {against}, {METRIC_NAMES.get(metric, metric)}: "
            f"{difference_text(iv, higher, lower)}.")


def effects_findings(effects: pd.DataFrame, comparison: str = "mixing - none+ce",
                     metrics: tuple[str, ...] = ("test_acc",)) -> list[str]:
    """One sentence per row and metric of one comparison of
    :func:`mixviz.experiments.paired_effects`, each with its interval,
    bounds, seed count and verdict, and the note of a near-zero star."""
    rows = effects[effects["comparison"] == comparison]
    out = []
    for _, row in rows.iterrows():
        against = name(row["reference"])
        for metric in metrics:
            if metric not in row or pd.isna(row[metric]):
                continue
            out.append(_difference(row, metric, against))
            note = near_zero_note(_iv(row, metric))
            if note:
                out.append(note)
    return out


def _bullets(lines: list[str]) -> str:
    return "\n".join(f"* {line}" for line in lines if line)


def tour_findings(effects: pd.DataFrame, regime: str | None = None,
                  metrics: tuple[str, ...] = ("test_acc", "memorised")) -> str:
    """Notebook 00: each method against plain training, with how many seeds
    each row has, and which rows can be ranked at all."""
    rows = effects[effects["comparison"] == "mixing - none+ce"]
    if regime is not None:
        rows = rows[rows["regime"] == regime]
    if rows.empty:
        return "No method was paired with plain training."
    counts = _bullets([f"{name(r['treatment'])}: {seeds_text(r['seeds'])}" for _, r in rows.iterrows()])
    several = rows[rows["seeds"] >= 2]
    text = [f"Seeds per row of the table (each paired with plain training on the same seeds):\n\n{counts}\n",
            _bullets(effects_findings(rows, "mixing - none+ce", metrics))]
    if len(several) < len(rows):
        single = [name(m) for m in rows.loc[rows["seeds"] < 2, "treatment"]]
        text.append(f"\nWhich method is best cannot be read from this table: {', '.join(single)} ran on one seed, "
                    f"with no interval, so {'it is' if len(single) == 1 else 'they are'} not tested and not ranked"
                    + (f"; only {_join_names(several)} {'has' if len(several) == 1 else 'have'} several seeds."
                       if len(several) else "."))
    return "\n".join(text)


def _join_names(rows: pd.DataFrame) -> str:
    names = [name(m) for m in rows["treatment"]]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _span(values: Any) -> str:
    lo, hi = f"{float(values.min()):.2f}", f"{float(values.max()):.2f}"
    return lo if lo == hi else f"{lo} to {hi}"


def mixing_findings(batches: Mapping[str, Any], object_masks: Any, asked: Mapping[str, float] | None = None) -> str:
    """Notebook 01: per mixed batch, the label share λ, the share of a's
    pixels the mask shows (and how far from the λ asked for, in pixel rows)
    and how many images give a class at least 30 % of the label while less
    than 5 % of its object is visible."""
    from mixviz.metrics import label_mismatch

    lines = []
    for label, mixed in batches.items():
        n = len(mixed.lam)
        lam = mixed.lam.float()
        bits = [f"λ {_span(lam)} over {n} images"]
        if mixed.mask is not None:
            share = mixed.mask.float().mean((1, 2, 3))
            bits.append(f"share of a's pixels {_span(share)}")
            if asked is not None and label in asked:
                rows = abs(share - float(asked[label])).max() * mixed.mask.shape[-2]
                bits.append(f"at most {float(rows):.2f} pixel rows from the λ asked for")
        else:
            bits.append("no mask: every pixel is a blend")
        report = label_mismatch(mixed, object_masks[:n])
        bits.append(f"{report['n_mismatched']} of {report['n_samples']} images with a label share of at least 30 % "
                    f"on an object less than 5 % visible")
        lines.append(f"{label}: " + "; ".join(bits) + ".")
    return _bullets(lines)


def boundary_findings(scores: Mapping[str, pd.DataFrame]) -> str:
    """Notebook 02: ``scores`` maps a data set to
    :func:`mixviz.analysis.boundary_scores`; what mixing costs or gains
    against plain training there, and DM against mixup."""
    lines = []
    for dataset, table in scores.items():
        t = table.set_index("method")
        seeds = "one run each, an illustration: not tested" if "seed" not in t or t["seed"].nunique() <= 1 \
            else "several seeds"
        cells = [f"{name(m)} {100 * r['accuracy']:.1f} % (ECE {100 * r['ece']:.1f} %)" for m, r in t.iterrows()]
        lines.append(f"**{dataset}** ({seeds}): test accuracy " + ", ".join(cells) + ".")
        if "none+ce" in t.index and "mixup+mixup_ce" in t.index:
            base, mix = t.loc["none+ce"], t.loc["mixup+mixup_ce"]
            d_acc, d_ece = 100 * (mix["accuracy"] - base["accuracy"]), 100 * (mix["ece"] - base["ece"])
            what = "costs" if d_acc < 0 else "gains"
            lines.append(f"On {dataset}, mixup {what} {abs(d_acc):.1f} points of accuracy against plain training "
                         f"({100 * base['accuracy']:.1f} → {100 * mix['accuracy']:.1f} %) and moves the ECE by "
                         f"{d_ece:+.1f} points ({100 * base['ece']:.1f} → {100 * mix['ece']:.1f} %).")
        if "mixup+dm" in t.index and "mixup+mixup_ce" in t.index:
            dm, mix = t.loc["mixup+dm"], t.loc["mixup+mixup_ce"]
            gap = 100 * max(abs(dm["accuracy"] - mix["accuracy"]), abs(dm["ece"] - mix["ece"]))
            lines.append(f"On {dataset}, mixup + DM and mixup differ by at most {gap:.1f} points in accuracy and ECE"
                         + (": with two classes DM's extra term is log 1 = 0." if gap < 0.05 else "."))
    return _bullets(lines)


def calibration_findings(scaled: pd.DataFrame, effects: pd.DataFrame | None = None) -> str:
    """Notebook 03: ``scaled`` is :func:`mixviz.analysis.temperature_scaling`
    (one run per method); ``effects`` the paired ECE differences."""
    t = scaled.set_index("model")
    lines = []
    if "none+ce" in t.index and len(t) > 1:
        mix = t.drop("none+ce")
        base = t.loc["none+ce"]
        lines.append(f"One run per method (seed 0): as trained, plain training's ECE is {100 * base['ece']:.1f} % and "
                     f"the other methods' {100 * mix['ece'].min():.1f} to {100 * mix['ece'].max():.1f} %. Their "
                     f"fitted temperatures are {mix['temperature'].min():.2f} to {mix['temperature'].max():.2f} "
                     f"(plain training {base['temperature']:.2f}; below 1: under-confident). After temperature "
                     f"scaling: plain training {100 * base['ece_scaled']:.1f} %, the others "
                     f"{100 * mix['ece_scaled'].min():.1f} to {100 * mix['ece_scaled'].max():.1f} %.")
    if effects is not None and not effects.empty:
        lines += effects_findings(effects, "mixing - none+ce", ("ece",))
    return _bullets(lines)


def top2_chance(num_classes: int) -> tuple[float, float]:
    """Mixed Top-1 and Top-2 accuracy of a prediction that ranks the classes
    at random: ``2 / C`` and ``1 / (C choose 2)``."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    return 2.0 / num_classes, 2.0 / (num_classes * (num_classes - 1))


def top2_findings(mixed: pd.DataFrame, num_classes: int) -> str:
    """Notebook 04: ``mixed`` is :func:`mixviz.analysis.mixed_accuracy` over
    every run (one row per run, with ``seed``).  The range of mixed Top-2, its
    chance level, and each DM row paired with its policy's mixup-CE row."""
    means = mixed.groupby("method", sort=False)["mixed_top2"].mean()
    seeds = mixed.groupby("method", sort=False).size()
    top1, top2 = top2_chance(num_classes)
    low, high = means.idxmin(), means.idxmax()
    lines = [f"Mixed Top-2 of the methods: {100 * means[low]:.1f} % ({name(low)}) to {100 * means[high]:.1f} % "
             f"({name(high)}); a random ranking of the {num_classes} classes scores {100 * top2:.1f} % (mixed Top-1: "
             f"{100 * top1:.0f} %). Seeds: " + ", ".join(f"{name(m)} {seeds_text(n)}" for m, n in seeds.items()) + "."]
    for method in means.index:
        policy, _, loss = method.partition("+")
        reference = f"{policy}+mixup_ce"
        if loss != "dm" or reference not in means.index:
            continue
        a = mixed[mixed["method"] == method].set_index("seed")["mixed_top2"]
        b = mixed[mixed["method"] == reference].set_index("seed")["mixed_top2"]
        try:
            iv = stats.paired_ci(a, b)
        except ValueError:
            continue
        lines.append(f"{name(method)} minus {name(reference)}, mixed Top-2: {difference_text(iv)}.")
    return _bullets(lines)


def model_findings(mixed: pd.DataFrame, num_classes: int, saliency: pd.DataFrame | None = None) -> str:
    """Notebook 07: each model's mixed Top-1/Top-2 (:func:`mixviz.analysis.mixed_accuracy`)
    against a random ranking, and its saliency agreement against chance
    (:func:`mixviz.analysis.saliency_table`); one model each: no interval."""
    top1, top2 = top2_chance(num_classes)
    lines = [f"{r['method']}: mixed Top-1 {100 * r['mixed_top1']:.1f} %, Top-2 {100 * r['mixed_top2']:.1f} % (a random "
             f"ranking of the {num_classes} classes: {100 * top1:.0f} % and {100 * top2:.1f} %)."
             for _, r in mixed.iterrows()]
    if saliency is not None and not saliency.empty:
        for _, r in saliency.iterrows():
            lines.append(f"{r['method']}, {r['attribution']}: share of the map on the object {100 * r['mask_share']:.1f} "
                         f"%, pointing {100 * r['pointing']:.1f} % (an even map: {100 * r['chance']:.1f} %).")
    lines.append("One model each and one set of test images: these are descriptions, not tested differences.")
    return _bullets(lines)


def saliency_findings(intervals: pd.DataFrame, example: Mapping[str, Any] | None = None) -> str:
    """Notebook 05: ``intervals`` is :func:`mixviz.analysis.saliency_intervals`;
    ``example`` :func:`mixviz.analysis.pick_top2_example`."""
    if intervals.empty:
        return ""
    first = intervals.iloc[0]
    seeds = sorted({int(s) for s in intervals["seed"]}) if "seed" in intervals else []
    lines = [f"Measured on the first {int(first['n_images'])} test images ({int(first['n_pairs'])} mixed pairs of two "
             f"classes with both objects visible), one run per method"
             + (f" (seed {', '.join(map(str, seeds))})" if seeds else "") + "; ± is the 95 % interval over these "
             "images, not over seeds."]
    for attribution, table in intervals.groupby("attribution", sort=False):
        for metric, what in (("pointing", "pointing"), ("mixed_share", "mixed share")):
            chance = float(table[f"{metric}_chance"].iloc[0])
            cells = [f"{name(r['method'])} {100 * r[metric]:.1f} ± {100 * r[f'{metric}_ci']:.1f} %"
                     for _, r in table.iterrows()]
            above = sum(r[metric] - r[f"{metric}_ci"] > chance for _, r in table.iterrows())
            overlap = (table[metric] - table[f"{metric}_ci"]).max() <= (table[metric] + table[f"{metric}_ci"]).min()
            lines.append(f"{attribution}, {what}: " + ", ".join(cells) + f"; chance {100 * chance:.1f} %. "
                         f"{above} of {len(table)} intervals lie above chance; "
                         + ("all intervals overlap: these images cannot tell the methods apart."
                            if overlap else "not all intervals overlap."))
    if example is not None and example.get("sample") is not None:
        ranked = example["ranked"]
        yes = [name(m) for m, hit in ranked.items() if hit]
        lines.append(f"The worked example above is image {example['sample']} of the mixed set, picked as "
                     f"{example['rule']} ({example['candidates']} images pass the visibility and λ tests): "
                     f"{len(yes)} of {len(ranked)} models rank its two classes as their top two"
                     + (f" ({', '.join(yes)})." if yes else "."))
    return _bullets(lines)


def dm_loss_findings(grid: Mapping[str, Any], trace: pd.DataFrame | None = None, top2_level: float = 0.9) -> str:
    """Notebook 06: where each loss has its minimum on the grid of
    :func:`mixviz.analysis.dm.loss_grid`, and what the losses did on one
    mixed batch (:func:`mixviz.analysis.dm.sgd_trace`)."""
    lam = float(grid["lam"])
    (ma, mb), (da, db) = grid["argmin"]["mixup_ce"], grid["argmin"]["dm"]
    lines = [f"At λ = {lam:g}, η = {grid['eta']:g}, mode `{grid['mode']}`: mixup CE's minimum lies at (p_a, p_b) = "
             f"({ma:.3f}, {mb:.3f}), DM's at ({da:.3f}, {db:.3f}), the label at ({lam:.3f}, {1 - lam:.3f}); the grid "
             f"step is {grid['step']:.3f}. DM's minimum is {abs(da - lam):.3f} from the label in p_a: "
             + ("the same optimum, within one grid step." if abs(da - lam) <= grid["step"] else
                "a different optimum, nearer the even split.")]
    if trace is not None and not trace.empty:
        last = int(trace["step"].max())
        end = trace[trace["step"] == last].set_index("loss_name")
        share = float(trace.attrs.get("share_major", math.nan))
        lines.append(f"On the mixed batch the class with the larger share has a label share of {share:.2f} on average "
                     f"(the dotted line), the smaller {1 - share:.2f}. After {last} steps: probability of the smaller "
                     f"class {end.loc['dm', 'p_minor']:.3f} with DM and {end.loc['mixup_ce', 'p_minor']:.3f} with mixup "
                     f"CE; left on the other classes {end.loc['dm', 'p_rest']:.3f} and "
                     f"{end.loc['mixup_ce', 'p_rest']:.3f}; Top-2 on the batch {end.loc['dm', 'top2']:.3f} and "
                     f"{end.loc['mixup_ce', 'top2']:.3f}.")
        reach = []
        for loss, table in trace.groupby("loss_name", sort=False):
            hit = table.loc[table["top2"] >= top2_level, "step"]
            reach.append(f"{'DM' if loss == 'dm' else 'mixup CE'} at step {int(hit.min())}" if len(hit) else
                         f"{'DM' if loss == 'dm' else 'mixup CE'} not within {last} steps")
        lines.append(f"Top-2 on the batch first reaches {100 * top2_level:.0f} %: " + ", ".join(reach) + ".")
    return _bullets(lines)


def semi_findings(paired: pd.DataFrame, summary: pd.DataFrame | None = None) -> str:
    """Notebook 08: the paired test-accuracy differences per label count
    (:func:`mixviz.experiments.semi.paired_semi`), with seed counts."""
    lines = []
    for labels, rows in paired.groupby("labels_per_class", sort=True):
        for _, row in rows.iterrows():
            iv = _iv(row, "test_acc")
            lines.append(f"{int(labels)} labels per class: {name(row['treatment'])} minus {name(row['reference'])}, "
                         f"test accuracy: {difference_text(iv, 'more accurate', 'less accurate')}.")
    if summary is not None and not summary.empty:
        seeds = sorted({int(s) for s in summary["seeds"]})
        lines.insert(0, f"Seeds per method: {' or '.join(map(str, seeds))}"
                     + (" (one seed: an illustration, no difference is tested)." if seeds == [1] else "."))
    return _bullets(lines)
