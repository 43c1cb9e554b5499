"""Label mismatch on the clutter set: the share a mixed label gives a class
against how much of that class's object is visible in the mixed image."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from mixviz.viz._common import (check_fraction, check_fractions, check_int, check_mapping, check_same_keys,
                                grid_shape, hide_unused, label_outer, new_figure, to_numpy)
from mixviz.viz.style import themed

__all__ = ["mismatch_scatter", "mismatch_scatter_from_reports"]

MISMATCH_COLOR = "#c0392b"
OK_COLOR = "#4c72b0"


def _check_pairs(label_share: Mapping[str, Any], visibility: Mapping[str, Any]) -> dict[str, tuple]:
    check_mapping("label_share", label_share)
    check_mapping("visibility", visibility)
    check_same_keys("visibility", visibility, "label_share", label_share)
    out = {}
    for key in label_share:
        share = to_numpy(f"label_share[{key!r}]", label_share[key], ndim=1)
        vis = to_numpy(f"visibility[{key!r}]", visibility[key], ndim=1)
        if share.shape != vis.shape:
            raise ValueError(f"label_share[{key!r}] and visibility[{key!r}] must have the same length, "
                             f"got {share.shape[0]} and {vis.shape[0]}")
        check_fractions(f"label_share[{key!r}]", share)
        check_fractions(f"visibility[{key!r}]", vis)
        keep = np.isfinite(share) & np.isfinite(vis)
        out[key] = (share[keep], vis[keep])
    return out


@themed
def mismatch_scatter(label_share: Mapping[str, Any], visibility: Mapping[str, Any],
                     rates: Mapping[str, float] | None = None, share_threshold: float = 0.3,
                     visible_threshold: float = 0.05, ncols: int | None = None) -> Figure:
    """One panel per policy: each mixed label's share against the visible
    fraction of its object.

    A label is *mismatched* when its share is ``>= share_threshold`` while
    less than ``visible_threshold`` of its object survives in the mixed image
    (the shaded corner; see :func:`mixviz.metrics.label_mismatch`).  Mixup's
    labels lie on the diagonal (the object is faded by lam, never cut); cut
    policies scatter away from it.

    Args:
        label_share: ``{policy: [N] shares in [0, 1]}`` (one entry per label,
            e.g. ``share_a`` and ``share_b`` concatenated).
        visibility: ``{policy: [N] visible fractions in [0, 1]}`` matching
            ``label_share``; NaN entries (empty object masks) are skipped.
        rates: optional ``{policy: fraction of mixed samples with a mismatched
            label}`` (``label_mismatch(...)["rate"]``) for the titles; without
            it the titles give the share of mismatched *labels* among the points.
        share_threshold, visible_threshold: the corners of the mismatch region.
        ncols: panels per row (default: up to 4).

    Returns:
        The figure: one axes per policy.
    """
    data = _check_pairs(label_share, visibility)
    share_threshold = check_fraction("share_threshold", share_threshold)
    visible_threshold = check_fraction("visible_threshold", visible_threshold)
    if rates is not None:
        check_mapping("rates", rates)
        check_same_keys("rates", rates, "label_share", label_share)
        rates = {k: check_fraction(f"rates[{k!r}]", rates[k]) for k in data}
    if ncols is not None:
        check_int("ncols", ncols)
    rows, cols = grid_shape(len(data), ncols)
    fig, axes = new_figure(rows, cols, figsize=(3.6 * cols + 0.4, 3.9 * rows + 1.2), layout="constrained",
                           sharex=True, sharey=True)
    for ax, (key, (share, vis)) in zip(axes.ravel(), data.items()):
        bad = (share >= share_threshold) & (vis < visible_threshold)
        ax.add_patch(Rectangle((-0.02, share_threshold), visible_threshold + 0.02, 1.04 - share_threshold,
                               facecolor=MISMATCH_COLOR, alpha=0.15, edgecolor=MISMATCH_COLOR, linewidth=1.0))
        ax.plot([0, 1], [0, 1], linestyle="--", color="0.4", linewidth=1.0)
        ax.scatter(vis[~bad], share[~bad], s=9, color=OK_COLOR, alpha=0.45, linewidths=0)
        ax.scatter(vis[bad], share[bad], s=12, color=MISMATCH_COLOR, alpha=0.8, linewidths=0)
        if rates is not None:
            text = f"{rates[key]:.1%} of samples mismatched"
        else:
            text = f"{bad.mean() if bad.size else float('nan'):.1%} of labels mismatched"
        ax.set_title(f"{key}\n{text}")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_box_aspect(1)  # both axes span [-0.02, 1.02]: equal scales; plays well with constrained layout
    label_outer(axes, len(data), "visible fraction of the object", "label share of the class")
    hide_unused(axes, len(data))
    fig.suptitle(f"Label mismatch: shaded = label share ≥ {share_threshold:.0%} but object < "
                 f"{visible_threshold:.0%} visible; dashed = share equals visibility")
    return fig


def mismatch_scatter_from_reports(reports: Mapping[str, Mapping[str, Any]], **kw: Any) -> Figure:
    """:func:`mismatch_scatter` from ``{policy: mixviz.metrics.label_mismatch(...)}``:
    both labels of every sample are drawn (``share_a``/``share_b`` against
    ``visibility_a``/``visibility_b``) and the titles give each report's ``rate``."""
    check_mapping("reports", reports)
    share, vis, rates = {}, {}, {}
    for key, report in reports.items():
        if not isinstance(report, Mapping):
            raise TypeError(f"reports[{key!r}] must be the dict of label_mismatch, got {type(report).__name__}")
        missing = [k for k in ("share_a", "share_b", "visibility_a", "visibility_b", "rate") if k not in report]
        if missing:
            raise ValueError(f"reports[{key!r}] must have the keys of label_mismatch; missing {', '.join(missing)}")
        share[key] = np.concatenate([to_numpy(f"reports[{key!r}]['share_a']", report["share_a"], 1),
                                     to_numpy(f"reports[{key!r}]['share_b']", report["share_b"], 1)])
        vis[key] = np.concatenate([to_numpy(f"reports[{key!r}]['visibility_a']", report["visibility_a"], 1),
                                   to_numpy(f"reports[{key!r}]['visibility_b']", report["visibility_b"], 1)])
        rates[key] = report["rate"]
    return mismatch_scatter(share, vis, rates=rates, **kw)
