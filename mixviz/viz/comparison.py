"""The method comparison from the results table of the comparison harness:
accuracy against training time, and bars of one metric per method."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from mixviz.stats import ILLUSTRATION
from mixviz.viz._common import check_frame, check_mapping, interval_half, method_labels, new_figure, percent
from mixviz.viz.style import KIND_MARKERS, method_colors, method_style, metric_label, themed

__all__ = ["method_comparison", "method_bars", "method_summary", "ILLUSTRATION"]

DM_LOSSES = frozenset({"dm"})
LOWER_IS_BETTER = frozenset({"ece", "test_ece", "nll", "test_nll", "train_loss", "sec_per_epoch", "epoch_sec"})
ANNOTATE_MAX = 8  # more methods than this: the legend names them, labels on the points would overlap


def _default_kinds() -> dict[str, str]:
    try:
        from mixviz.mixing import available
    except ImportError:
        return {}
    return dict(available())


def _check_kinds(kinds: Mapping[str, str] | None) -> dict[str, str]:
    if kinds is None:
        return _default_kinds()
    check_mapping("kinds", kinds)
    bad = {k: v for k, v in kinds.items() if v not in ("static", "dynamic")}
    if bad:
        raise ValueError(f"kinds must map policy names to 'static' or 'dynamic', got {bad}")
    return dict(kinds)


def _kind(policy: str, loss: str | None, kinds: Mapping[str, str]) -> str:
    """'DM loss' for the decoupled loss, 'midpoint loss' for the midpoint
    soft labels, 'baseline' for no mixing, else the policy's kind ('other' if unknown)."""
    if loss in DM_LOSSES:
        return "DM loss"
    if loss == "midpoint":
        return "midpoint loss"
    if policy == "none":
        return "baseline"
    return kinds.get(policy, "other")


def method_summary(results: pd.DataFrame, metrics: list[str],
                   kinds: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Mean and standard deviation over seeds of ``metrics`` per method.

    Returns one row per method (in order of first appearance) with the
    columns ``method``, ``kind`` (``baseline``/``static``/``dynamic``/``DM loss``/``midpoint loss``/``other``),
    ``n`` (runs), and ``<metric>``, ``<metric>_std``, ``<metric>_ci`` (half-width
    of the 95 % Student-t interval of the mean) for each metric (percentage
    metrics in percent; std 0 and interval NaN for a single run).
    """
    check_frame("results", results, metrics)
    if len(results) == 0:
        raise ValueError("results must have at least one row")
    kinds = _check_kinds(kinds)
    methods = method_labels(results).to_numpy()
    policies = results["policy"].astype(str).to_numpy() if "policy" in results.columns else \
        np.array([m.split("+")[0] for m in methods])
    losses = results["loss"].astype(str).to_numpy() if "loss" in results.columns else \
        np.array([m.split("+")[1] if "+" in m else None for m in methods], dtype=object)
    frame = pd.DataFrame({"method": methods,
                          "kind": [_kind(p, l, kinds) for p, l in zip(policies, losses)]})
    for m in metrics:
        values = pd.to_numeric(results[m], errors="coerce").to_numpy(dtype=float)
        frame[m] = percent(f"results[{m!r}]", values, m)
    agg: dict[str, tuple[str, str]] = {"kind": ("kind", "first"), "n": ("method", "size")}
    for m in dict.fromkeys(metrics):
        agg[m] = (m, "mean")
        agg[f"{m}_std"] = (m, "std")
    out = frame.groupby("method", sort=False).agg(**agg).reset_index()
    for m in dict.fromkeys(metrics):
        out[f"{m}_ci"] = interval_half(out[f"{m}_std"], out["n"])
    return out.fillna({f"{m}_std": 0.0 for m in metrics})


def _subtitle(results: pd.DataFrame, summary: pd.DataFrame) -> str:
    parts = []
    for col in ("dataset", "model"):
        if col in results.columns and results[col].nunique() == 1:
            parts.append(str(results[col].iloc[0]))
    several = summary.loc[summary["n"] > 1, "n"]
    if several.empty:
        parts.append(f"1 run per method, no spread shown ({ILLUSTRATION}, not ranked)")
    else:
        lo, hi = int(several.min()), int(several.max())
        runs = f"{lo} runs" if lo == hi else f"{lo}-{hi} runs"
        parts.append(f"mean ± 95 % interval over {runs} per method")
        if len(several) < len(summary):
            parts.append(f"hollow: {ILLUSTRATION}, no interval")
    return ", ".join(parts)


@themed
def method_comparison(results: pd.DataFrame, x: str = "sec_per_epoch", y: str = "test_acc",
                      kinds: Mapping[str, str] | None = None) -> Figure:
    """One point per method: the mean of ``y`` against the mean of ``x`` over
    seeds, with the 95 % Student-t interval of each mean as error bars in
    both directions.  A method on one seed has no interval: its mark is
    hollow and its name says "1 seed: illustration" (a picture of one draw,
    not a ranking).

    The marker shows the training kind: plus = no mixing, circle = static
    mixing, square = dynamic mixing (saliency / graph cuts, slower),
    triangle = the Decoupled Mixup loss (any policy); the colour shows the
    mixing policy (:func:`mixviz.viz.style.method_style`: grey for none, cool
    tones for static, warm for dynamic), so a policy with and without DM
    shares a colour.  Up to 8 points carry their method's
    name; the legend names all.  The default is the accuracy-versus-time plot of
    the method comparison: what does the extra time of dynamic mixing buy,
    and does DM get it for free?

    Args:
        results: one row per run with the columns ``x``, ``y`` and ``policy``
            and ``loss`` (or ``method``); the method label is
            ``f"{policy}+{loss}"``.  Accuracy / ECE columns are fractions in
            [0, 1] and drawn in percent.
        x, y: the columns to plot.
        kinds: ``{policy: "static" | "dynamic"}``; default
            :func:`mixviz.mixing.available` when importable.

    Returns:
        The figure: one axes.
    """
    for name, value in (("x", x), ("y", y)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a column name (str), got {type(value).__name__}")
    summary = method_summary(results, [x, y], kinds)
    policies = [m.split("+")[0] for m in summary["method"]]
    colors = method_colors(policies, _check_kinds(kinds))
    fig, axes = new_figure(1, 1, figsize=(10.0, 6.0), layout="constrained")
    ax = axes[0, 0]
    annotate = len(summary) <= ANNOTATE_MAX
    names = []
    for row, policy in zip(summary.itertuples(index=False), policies):
        r = row._asdict()
        spread = r["n"] > 1  # one run has no spread: no error bar, a hollow mark, and it says so
        names.append(r["method"] if spread else f"{r['method']} ({ILLUSTRATION})")
        ax.errorbar(r[x], r[y], xerr=r[f"{x}_ci"] if spread else None, yerr=r[f"{y}_ci"] if spread else None,
                    marker=KIND_MARKERS[r["kind"]], markersize=9, color=colors[policy],
                    markerfacecolor=colors[policy] if spread else "none",
                    markeredgecolor="black" if spread else colors[policy], markeredgewidth=0.6 if spread else 1.8,
                    capsize=3, linestyle="none", label=r["method"])
        if annotate:
            ax.annotate(names[-1], (r[x], r[y]), textcoords="offset points", xytext=(7, 5), fontsize="small")
    ax.set_xlabel(metric_label(x))
    ax.set_ylabel(metric_label(y))
    subtitle = _subtitle(results, summary).replace(", hollow", ",\nhollow")  # two lines: the axes stay wide
    ax.set_title(f"{metric_label(y)} vs {metric_label(x)}\n({subtitle})")
    handles = [Line2D([], [], marker=KIND_MARKERS[k], color="0.4", linestyle="none", markersize=8, label=k)
               for k in KIND_MARKERS if k in set(summary["kind"])]
    if (summary["n"] < 2).any():
        handles.append(Line2D([], [], marker="o", color="0.4", markerfacecolor="none", markeredgewidth=1.8,
                              linestyle="none", markersize=8, label=f"hollow: {ILLUSTRATION}"))
    fig.legend(handles=handles, loc="outside right lower", title="kind (marker)", fontsize="small")
    fig.legend(list(ax.containers), names, loc="outside right upper", title="method", fontsize="small")
    ax.margins(x=0.15, y=0.15)
    return fig


@themed
def method_bars(results: pd.DataFrame, metric: str = "test_acc",
                kinds: Mapping[str, str] | None = None) -> Figure:
    """Horizontal bars of ``metric`` per method (mean over seeds, its 95 %
    interval as error bars, each run as a dot), sorted by the mean with the best method
    on top (lowest for ECE, NLL, loss and time; highest otherwise), coloured
    by the family of its policy (:func:`mixviz.viz.style.method_style`: grey
    for no mixing, blue for static, vermilion for dynamic mixing, purple for
    the midpoint loss), hatched for the DM loss.  A method on one seed
    is not ranked: its bar is hollow, without an interval, below the ranked
    ones, and its label says "1 seed: illustration".

    Args:
        results: one row per run with the column ``metric`` and ``policy`` and
            ``loss`` (or ``method``).
        metric: the column to compare (accuracy / ECE in percent).
        kinds: ``{policy: "static" | "dynamic"}``; default
            :func:`mixviz.mixing.available` when importable.

    Returns:
        The figure: one axes.
    """
    if not isinstance(metric, str):
        raise TypeError(f"metric must be a column name (str), got {type(metric).__name__}")
    ascending = metric not in LOWER_IS_BETTER  # barh draws the last row on top: the best method goes there
    summary = method_summary(results, [metric], kinds)
    # only methods with several seeds are ranked; those on one seed go below them, in table order, hollow
    ranked = summary[summary["n"] > 1].sort_values(metric, ascending=ascending, kind="stable")
    summary = pd.concat([summary[summary["n"] < 2].iloc[::-1], ranked]).reset_index(drop=True)
    single = (summary["n"] < 2).to_numpy()
    fig, axes = new_figure(1, 1, figsize=(7.5, 2.4 + 0.45 * len(summary)), layout="constrained")
    ax = axes[0, 0]
    pos = np.arange(len(summary))
    styles = [method_style(m, _check_kinds(kinds)) for m in summary["method"]]
    bars = ax.barh(pos, summary[metric], xerr=summary[f"{metric}_ci"].where(~single).fillna(0.0), capsize=3,
                   color=["none" if one else s.family_color for one, s in zip(single, styles)],
                   edgecolor=[s.family_color if one else "black" for one, s in zip(single, styles)],
                   linewidth=[1.8 if one else 0.6 for one in single])
    legend: dict[str, Patch] = {}  # one entry per look drawn: its colour, edge and hatch are the bar's
    for bar, style, one in zip(bars.patches, styles, single):
        bar.set_hatch(style.hatch)
        label = style.legend_label() + (f" ({ILLUSTRATION})" if one else "")
        legend.setdefault(label, Patch(facecolor=bar.get_facecolor(), edgecolor=bar.get_edgecolor(),
                                       linewidth=bar.get_linewidth(), hatch=style.hatch, label=label))
    labels = method_labels(results).to_numpy()
    runs = percent(f"results[{metric!r}]", pd.to_numeric(results[metric], errors="coerce").to_numpy(float), metric)
    right = []
    for i, method in enumerate(summary["method"]):
        vals = runs[labels == method]
        ax.scatter(vals, np.full(vals.shape, pos[i]), s=14, color="black", zorder=3)
        right.append(np.nanmax([*vals, summary.at[i, metric] + np.nan_to_num(summary.at[i, f"{metric}_ci"])]))
    span = max(np.nanmax(right), 1e-12)
    for i, value in enumerate(summary[metric]):
        ax.text(right[i] + 0.02 * span, pos[i], f"{value:.2f}", va="center", fontsize="small")
    ax.set_yticks(pos, [f"{m} ({ILLUSTRATION})" if one else m for m, one in zip(summary["method"], single)])
    ax.set_xlabel(metric_label(metric))
    ax.grid(axis="y", visible=False)
    order = "best on top" if not single.any() else "not ranked" if single.all() else \
        "several seeds ranked, best on top; 1 seed below, not ranked"
    note = textwrap.fill(f"({_subtitle(results, summary)}; dots = single runs; {order})", 90)
    ax.set_title(f"{metric_label(metric)} per method\n{note}", fontsize="medium")
    fig.legend(handles=list(legend.values())[::-1], loc="outside lower center", ncols=2, title="kind (colour)",
               fontsize="small")
    ax.set_xlim(0, span * 1.2)
    return fig
