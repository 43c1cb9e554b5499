"""The numbers behind the notebooks' "What we found" sections that no other
analysis returns: per-image intervals of the saliency agreement (with the
chance level of each measure), the accuracy and ECE of 2-D classifiers as
numbers, and a worked mixed example picked by a stated rule.

:mod:`mixviz.experiments.findings` turns these tables into sentences.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from mixviz import stats
from mixviz._validation import check_positive, check_tensor
from mixviz.analysis._common import (EVAL_ALPHA, EVAL_POLICY, EVAL_SEED, check_images, check_inputs, model_device,
                                     named_models)
from mixviz.analysis.evaluation import logits_of
from mixviz.analysis.mixed import fixed_mixed_batch, visible_objects

__all__ = ["boundary_scores", "saliency_intervals", "pick_top2_example", "EXAMPLE_RULE"]

#: The rule of :func:`pick_top2_example`, in words (filled with its thresholds).
EXAMPLE_RULE = ("the first image of the fixed mixed test set ({policy}, seed {seed}) whose two classes differ, "
                "whose two objects are each at least {visible} visible, whose λ lies in [{lo}, {hi}], and "
                "that the most models rank with both mixed classes as their two most probable classes")


def boundary_scores(models: Any, X: torch.Tensor, y: torch.Tensor, *, logits_fn: Any = None) -> pd.DataFrame:
    """Test accuracy and ECE of each classifier on ``(X, y)``: the numbers of
    :func:`mixviz.analysis.boundary_notes` as a table (columns ``method``,
    the run's ``policy``/``loss``/``kind``/``seed`` when it is a Run,
    ``accuracy``, ``ece``; fractions)."""
    from mixviz import metrics

    entries = named_models(models, allow_list=False, logits_fn=logits_fn)
    check_inputs(X, y)
    rows = []
    for m in entries:
        probs = logits_of(m.module, X).softmax(dim=1)
        labels = y.to(probs.device)
        rows.append({"method": m.name, **m.info, "accuracy": float(probs.argmax(1).eq(labels).float().mean()),
                     "ece": metrics.expected_calibration_error(probs, labels)})
    return pd.DataFrame(rows)


def _mean_ci(values: torch.Tensor) -> tuple[float, float, int]:
    x = values[~torch.isnan(values)].double().cpu().tolist()
    if not x:
        return float("nan"), float("nan"), 0
    iv = stats.mean_ci(x)
    return iv.mean, iv.half, iv.n


def saliency_intervals(models: Any, images: torch.Tensor, labels: torch.Tensor, object_masks: torch.Tensor, *,
                       attributions: Sequence[str] = ("gradcam",), limit: int | None = 128,
                       policy: str = EVAL_POLICY, seed: int = EVAL_SEED, alpha: float = EVAL_ALPHA,
                       logits_fn: Any = None) -> pd.DataFrame:
    """The saliency agreement of :func:`mixviz.analysis.saliency_table`, each
    with its 95 % interval over the images and its chance level.

    Per model and attribution, on the first ``limit`` images:

    * ``pointing``: the share of clean images whose map peaks on the object;
      chance (a peak at a random pixel) is the mean share of object pixels,
      ``pointing_chance``;
    * ``mask_share``: the mean share of the map on the object; chance (an even
      map) is the mean object area, ``mask_share_chance``;
    * ``mixed_share``: on the fixed mixed set, per pair of two classes whose
      objects are both visible, the mean of the two maps' shares on the
      visible part of their own object; chance (even maps) is the mean
      visible area of the two objects, ``mixed_share_chance``.

    ``<m>_ci`` is the half-width of the t interval over the ``n_images``
    clean images (``n_pairs`` mixed pairs): it measures how far another set of
    test images could move the number, not the seed-to-seed spread.
    """
    from mixviz import saliency

    entries = named_models(models, allow_list=False, logits_fn=logits_fn)
    check_images(images, labels)
    check_tensor("object_masks", object_masks, ndim=4)
    if limit is not None:
        check_positive("limit", limit, integer=True)
        images, labels, object_masks = images[:limit], labels[:limit], object_masks[:limit]
    masks = object_masks.to(torch.float32)
    mixed = fixed_mixed_batch(policy, images, labels, seed=seed, alpha=alpha)
    vis_a, vis_b = visible_objects(mixed, masks)
    keep = mixed.y_a.ne(mixed.y_b) & (vis_a.sum((1, 2, 3)) > 0) & (vis_b.sum((1, 2, 3)) > 0)
    chance = {"pointing": float((masks > 0.5).float().mean()), "mask_share": float(masks.mean()),
              "mixed_share": float(((vis_a.mean((1, 2, 3)) + vis_b.mean((1, 2, 3))) / 2)[keep].mean())}
    rows = []
    for m in entries:
        model, device = m.module, model_device(m.module)
        for method in attributions:
            attr = saliency.attribute(model, images.to(device), labels.to(device), method)
            values = {"pointing": saliency.pointing_game(attr, masks.to(device)).float(),
                      "mask_share": saliency.mask_agreement(attr, masks.to(device))}
            x = mixed.inputs[keep].to(device)
            share_a = saliency.mask_agreement(saliency.attribute(model, x, mixed.y_a[keep].to(device), method),
                                              vis_a[keep].to(device))
            share_b = saliency.mask_agreement(saliency.attribute(model, x, mixed.y_b[keep].to(device), method),
                                              vis_b[keep].to(device))
            values["mixed_share"] = torch.stack([share_a, share_b]).nanmean(0)
            row: dict[str, Any] = {"method": m.name, **m.info, "attribution": method, "n_images": len(images),
                                   "n_pairs": int(keep.sum())}
            for name, v in values.items():
                row[name], row[f"{name}_ci"], _ = _mean_ci(v)
                row[f"{name}_chance"] = chance[name]
            rows.append(row)
    return pd.DataFrame(rows)


def pick_top2_example(models: Any, images: torch.Tensor, labels: torch.Tensor, object_masks: torch.Tensor, *,
                      policy: str = EVAL_POLICY, seed: int = EVAL_SEED, alpha: float = EVAL_ALPHA,
                      min_visible: float = 0.6, lam_range: tuple[float, float] = (0.3, 0.7),
                      logits_fn: Any = None) -> dict[str, Any]:
    """A worked mixed example that shows what a top-2 saliency figure claims:
    by :data:`EXAMPLE_RULE`, the first image of the fixed mixed set (the one
    :func:`mixviz.analysis.saliency_example` draws) with two different
    classes, both objects at least ``min_visible`` visible and λ in
    ``lam_range``, among those that the most ``models`` rank with the two
    mixed classes as their top two.

    Returns ``{"sample": index for saliency_example(sample=...), "ranked":
    {model: True when its top two are the mixed pair}, "candidates": how many
    images pass the visibility and λ tests, "rule": the rule in words}``;
    ``sample`` is None when no image passes them.
    """
    from mixviz.metrics import object_visibility

    entries = named_models(models, allow_list=False, logits_fn=logits_fn)
    check_images(images, labels)
    check_tensor("object_masks", object_masks, ndim=4)
    if not 0.0 <= min_visible <= 1.0:
        raise ValueError(f"min_visible must lie in [0, 1], got {min_visible!r}")
    lo, hi = lam_range
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"lam_range must be (low, high) with 0 <= low <= high <= 1, got {lam_range!r}")
    mixed = fixed_mixed_batch(policy, images, labels, seed=seed, alpha=alpha)
    vis_a, vis_b = object_visibility(mixed, object_masks)
    lam = mixed.lam.cpu()
    ok = (mixed.y_a.ne(mixed.y_b).cpu() & (vis_a.cpu().nan_to_num(-1.0) >= min_visible)
          & (vis_b.cpu().nan_to_num(-1.0) >= min_visible) & (lam >= lo) & (lam <= hi))
    hits = {}
    for m in entries:
        top = logits_of(m.module, mixed.inputs).topk(2, dim=1).indices.cpu()
        y_a, y_b = mixed.y_a.cpu(), mixed.y_b.cpu()
        hits[m.name] = ((top[:, 0] == y_a) & (top[:, 1] == y_b)) | ((top[:, 0] == y_b) & (top[:, 1] == y_a))
    rule = EXAMPLE_RULE.format(policy=policy, seed=seed, visible=f"{100 * min_visible:.0f} %", lo=lo, hi=hi)
    if not bool(ok.any()):
        return {"sample": None, "ranked": {}, "candidates": 0, "rule": rule}
    count = torch.stack(list(hits.values())).sum(0) if hits else torch.zeros(len(lam), dtype=torch.long)
    count = torch.where(ok, count, torch.full_like(count, -1))
    i = int((count == count.max()).nonzero()[0, 0])  # the first of the best
    return {"sample": i, "ranked": {name: bool(h[i]) for name, h in hits.items()}, "candidates": int(ok.sum()),
            "rule": rule}
