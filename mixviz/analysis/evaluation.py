"""Calibration, Top-1/Top-2 accuracy on mixed images, label mismatch and
decision boundaries, for any classifier."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mixviz._extras import require

require("pandas")  # the 'analysis' extra: an ImportError here names the pip install line
import pandas as pd  # noqa: E402
import torch

from mixviz._validation import check_positive, check_tensor
from mixviz.analysis._common import (EVAL_ALPHA, EVAL_POLICY, EVAL_SEED, MISMATCH_SHARE, MISMATCH_VISIBLE,
                                     check_images, check_inputs, model_device, named_models)
from mixviz.analysis.mixed import fixed_mixed_batch


def logits_of(model: torch.nn.Module, images: torch.Tensor, *, batch_size: int = 512,
              logits_fn: Any = None) -> torch.Tensor:
    """Float32 logits of ``model`` on ``images`` in eval mode (mode restored),
    in batches of ``batch_size``, on the model's device
    (:func:`mixviz.train.evaluate`).  ``logits_fn`` takes the model's output
    to the logits when it is not a tensor (a tuple, a dict, an object)."""
    from mixviz.models import with_logits_fn
    from mixviz.train import evaluate

    model = with_logits_fn(model, logits_fn)

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_tensor("images", images)
    check_positive("batch_size", batch_size, integer=True)
    device = model_device(model)
    try:
        logits = evaluate(model, images, torch.empty(0), batch_size=batch_size, device=device)
    except AttributeError as err:  # evaluate's .float() on a tuple / dict output
        if logits_fn is not None or "object has no attribute" not in str(err):
            raise
        raise TypeError(f"model must return the logits as a tensor ({err}); for a model that returns a tuple, "
                        "a dict or an object pass logits_fn=, e.g. logits_fn=lambda out: out[0]") from err
    if logits.dim() != 2 or logits.shape[0] != images.shape[0]:
        raise ValueError(f"model must return [N, C] logits for N = {images.shape[0]} inputs, "
                         f"got shape {tuple(logits.shape)}")
    return logits


def calibration(models: Any, images: torch.Tensor, labels: torch.Tensor,
                n_bins: int = 15, *, logits_fn: Any = None) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """Reliability bins and ECE of each model's softmax on ``images``.

    ``models``: a module, a Run or ``{name: module or Run}``.  Returns
    ``({name: reliability_bins}, {name: ECE})`` as
    :func:`mixviz.viz.reliability_diagrams` takes them.  ECE is
    ``sum_b n_b / N |acc_b - conf_b|`` over equal-width confidence bins
    (torchmetrics' L1 calibration error, :func:`mixviz.metrics.expected_calibration_error`).
    """
    from mixviz import metrics

    entries = named_models(models, allow_list=False, logits_fn=logits_fn)
    check_inputs(images, labels)
    check_positive("n_bins", n_bins, integer=True)
    bins, ece = {}, {}
    for m in entries:
        probs = logits_of(m.module, images).softmax(dim=1)
        y = labels.to(probs.device)
        bins[m.name] = metrics.reliability_bins(probs, y, n_bins)
        ece[m.name] = metrics.expected_calibration_error(probs, y, n_bins)
    return bins, ece


def _cross_fitted(models: Any, images: torch.Tensor, labels: torch.Tensor, folds: int, seed: int, n_bins: int,
                  logits_fn: Any) -> list[tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor, list[float]]]:
    """Per model (after the argument checks): (entry, logits, labels, logits
    scaled by the temperature fitted on the other folds, fold temperatures)."""
    from mixviz import metrics

    entries = named_models(models, allow_list=False, logits_fn=logits_fn)
    check_inputs(images, labels)
    check_positive("folds", folds, integer=True)
    check_positive("n_bins", n_bins, integer=True)
    n = labels.shape[0]
    if not 2 <= folds <= n:
        raise ValueError(f"folds must be between 2 and the number of samples ({n}), got {folds}")
    parts = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).chunk(folds)
    out = []
    for m in entries:
        logits, y = logits_of(m.module, images).float().cpu(), labels.cpu()
        scaled = torch.empty_like(logits)
        temps = []
        for k, part in enumerate(parts):
            rest = torch.cat([p for j, p in enumerate(parts) if j != k])
            temps.append(metrics.fit_temperature(logits[rest], y[rest]))
            scaled[part] = logits[part] / temps[-1]
        out.append((m, logits, y, scaled, temps))
    return out


def scaled_calibration(models: Any, images: torch.Tensor, labels: torch.Tensor, *, folds: int = 2,
                       seed: int = EVAL_SEED, n_bins: int = 15,
                       logits_fn: Any = None) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """Reliability bins and ECE after temperature scaling, as :func:`calibration`
    returns them before: the predictions cross-fitted exactly as in
    :func:`temperature_scaling` (so each ECE is its ``ece_scaled``)."""
    from mixviz import metrics

    bins, ece = {}, {}
    for m, _, y, scaled, _ in _cross_fitted(models, images, labels, folds, seed, n_bins, logits_fn):
        probs = scaled.softmax(1)
        bins[m.name] = metrics.reliability_bins(probs, y, n_bins)
        ece[m.name] = metrics.expected_calibration_error(probs, y, n_bins)
    return bins, ece


def temperature_scaling(models: Any, images: torch.Tensor, labels: torch.Tensor, *, folds: int = 2,
                        seed: int = EVAL_SEED, n_bins: int = 15, logits_fn: Any = None) -> pd.DataFrame:
    """Calibration before and after temperature scaling, cross-fitted on one
    labelled set: the samples are split at random (``seed``) into ``folds``
    parts, each part is scaled by the temperature fitted
    (:func:`mixviz.metrics.fit_temperature`) on the other parts, and ECE and
    NLL are computed on the pooled scaled predictions.  No sample's own label
    sets its temperature, so no extra validation split is needed.

    One row per model: ``model``, ``temperature`` (the mean of the fold
    temperatures; > 1 where the model was over-confident, < 1 where it was
    under-confident), ``clipped`` (True when a fold's temperature stopped at
    a bound of :data:`mixviz.metrics.TEMPERATURE_RANGE`: the best
    temperature lies beyond it, so ``temperature`` is a bound, not an
    optimum; a ``UserWarning`` names those models), ``accuracy`` (unchanged
    by scaling), ``ece``, ``ece_scaled``, ``nll``, ``nll_scaled``.
    """
    import warnings

    from mixviz import metrics

    rows = []
    for m, logits, y, scaled, temps in _cross_fitted(models, images, labels, folds, seed, n_bins, logits_fn):
        lo, hi = metrics.TEMPERATURE_RANGE
        clipped = any(abs(t - lo) <= 1e-6 * lo or abs(t - hi) <= 1e-6 * hi for t in temps)
        rows.append({"model": m.name, "temperature": sum(temps) / len(temps), "clipped": clipped,
                     "accuracy": metrics.accuracy(logits, y, topk=1)[0],
                     "ece": metrics.expected_calibration_error(logits.softmax(1), y, n_bins),
                     "ece_scaled": metrics.expected_calibration_error(scaled.softmax(1), y, n_bins),
                     "nll": metrics.nll(logits, y), "nll_scaled": metrics.nll(scaled, y)})
    table = pd.DataFrame(rows, columns=["model", "temperature", "clipped", "accuracy", "ece", "ece_scaled", "nll",
                                        "nll_scaled"])
    if table["clipped"].any():
        names = ", ".join(map(str, table.loc[table["clipped"], "model"]))
        warnings.warn(f"temperature_scaling: the temperature of {names} stopped at a bound of "
                      f"{metrics.TEMPERATURE_RANGE} (the best one lies beyond it; see the clipped column)",
                      UserWarning, stacklevel=2)
    return table


def mixed_accuracy(models: Any, images: torch.Tensor, labels: torch.Tensor, *, policy: str = EVAL_POLICY,
                   seed: int = EVAL_SEED, alpha: float = EVAL_ALPHA, logits_fn: Any = None) -> pd.DataFrame:
    """Top-1 / Top-2 accuracy (the DM paper's) of each model on a fixed mixed set.

    Every model sees ``images`` mixed by ``policy`` with the same ``seed``
    (:func:`mixviz.metrics.mixed_evaluation`; a dynamic policy also asks the
    model itself).  Top-1: the top class is one of the two mixed classes;
    Top-2: the two top classes are exactly them (pairs of two classes only).

    Args:
        models: a module, a Run, ``{name: module or Run}``, or a list of Runs
            (one row each, e.g. every seed of a grid).

    Returns:
        One row per model: ``method`` (its name) and, for Runs, ``policy``,
        ``loss``, ``kind``, ``seed``; then ``mixed_top1``, ``mixed_top2`` (fractions).
    """
    from mixviz import metrics

    entries = named_models(models, logits_fn=logits_fn)
    check_images(images, labels)
    rows = []
    for m in entries:
        device = model_device(m.module)
        scores = metrics.mixed_evaluation(m.module, images.to(device), labels.to(device), policy=policy,
                                          alpha=alpha, seed=seed)
        rows.append({"method": m.name, **m.info, **scores})
    return pd.DataFrame(rows)


def memorisation(models: Any, images: torch.Tensor, labels: torch.Tensor, clean_labels: torch.Tensor, *,
                 logits_fn: Any = None) -> pd.DataFrame:
    """How far each model has fitted the wrong labels of a noisy training set
    (:func:`mixviz.metrics.memorisation` on its logits).

    ``labels`` are the labels it was trained on, ``clean_labels`` the true
    ones (a label-noise set keeps them, ``InMemoryDataset.clean_labels``).
    On the flipped samples, ``memorised`` is the share predicted as the noisy
    label and ``still_right`` as the true one; ``clean_fit`` is the accuracy
    on the others and ``noisy_share`` the fraction flipped.

    Returns:
        One row per model: ``method`` (and, for Runs, ``policy``, ``loss``,
        ``kind``, ``seed``), ``memorised``, ``still_right``, ``clean_fit``,
        ``noisy_share``.
    """
    from mixviz import metrics

    entries = named_models(models, logits_fn=logits_fn)
    check_inputs(images, labels)
    check_inputs(images, clean_labels)
    rows = []
    for m in entries:
        logits = logits_of(m.module, images)
        scores = metrics.memorisation(logits, labels.to(logits.device), clean_labels.to(logits.device))
        rows.append({"method": m.name, **m.info, **scores})
    return pd.DataFrame(rows)


def visible_pair_accuracy(models: Any, images: torch.Tensor, labels: torch.Tensor, object_masks: torch.Tensor, *,
                          policy: str = EVAL_POLICY, seed: int = EVAL_SEED, alpha: float = EVAL_ALPHA,
                          visible: float | None = None, logits_fn: Any = None) -> pd.DataFrame:
    """Mixed Top-1 / Top-2 accuracy split by what each mixed image really shows
    (:func:`mixviz.metrics.mixed_topk_by_visibility`).

    ``images`` mixed by ``policy`` with ``seed`` (the same set for every model;
    a dynamic policy asks each model itself).  ``*_both``: pairs whose two
    objects are both at least ``visible`` visible (Top-2 is fair); ``*_one``:
    pairs of which only one object is (the image shows one class; Top-2 asks
    for one that is not there).  ``visible`` defaults to
    :data:`mixviz.metrics.VISIBLE_SHARE`.

    Returns:
        One row per model: ``method`` (and Run columns), ``top1_both``,
        ``top2_both``, ``n_both``, ``top1_one``, ``top2_one``, ``n_one``.
    """
    from mixviz import metrics
    from mixviz.mixing import policy_info

    entries = named_models(models, logits_fn=logits_fn)
    check_images(images, labels)
    check_tensor("object_masks", object_masks, ndim=4)
    visible = metrics.VISIBLE_SHARE if visible is None else visible
    dynamic = policy_info(policy).needs_model
    shared = None if dynamic else fixed_mixed_batch(policy, images, labels, seed=seed, alpha=alpha)
    rows = []
    for m in entries:
        device = model_device(m.module)
        mixed = shared if shared is not None else fixed_mixed_batch(
            policy, images.to(device), labels.to(device), seed=seed, alpha=alpha, model=m.module)
        logits = logits_of(m.module, mixed.inputs)
        split = metrics.mixed_topk_by_visibility(logits, mixed, object_masks.to(logits.device), visible=visible)
        rows.append({"method": m.name, **m.info, **split})
    return pd.DataFrame(rows)


def mismatch_reports(images: torch.Tensor, labels: torch.Tensor, object_masks: torch.Tensor,
                     policies: Sequence[str], *, models: Mapping[str, torch.nn.Module] | None = None,
                     seed: int = EVAL_SEED, alpha: float = EVAL_ALPHA, share_threshold: float = MISMATCH_SHARE,
                     visible_threshold: float = MISMATCH_VISIBLE, logits_fn: Any = None) -> dict[str, dict[str, Any]]:
    """``{policy: mixviz.metrics.label_mismatch(...)}`` on the fixed mixed set.

    A mixed label is mismatched when it gives a class a share
    ``>= share_threshold`` while less than ``visible_threshold`` of that
    class's object survives in the mixed image; ``rate`` is the fraction of
    mixed samples with such a label.  This measures the *policies*, not a
    classifier: dynamic policies need a model to look at, given in
    ``models`` as ``{policy: module}`` (see :func:`dynamic_models`).
    """
    from mixviz import metrics

    if isinstance(policies, str) or not policies:
        raise ValueError("policies must be a non-empty sequence of policy names")
    check_images(images, labels)
    check_tensor("object_masks", object_masks, ndim=4)
    from mixviz.models import with_logits_fn

    models = models or {}
    out = {}
    for policy in policies:
        model = with_logits_fn(models.get(policy), logits_fn) if models.get(policy) is not None else None
        device = model_device(model) if model is not None else images.device
        mixed = fixed_mixed_batch(policy, images.to(device), labels.to(device), seed=seed, alpha=alpha, model=model)
        out[policy] = metrics.label_mismatch(mixed, object_masks.to(device), share_threshold=share_threshold,
                                             visible_threshold=visible_threshold)
    return out


def boundary_grids(models: Any, X: torch.Tensor, resolution: int = 150, *,
                   logits_fn: Any = None) -> dict[str, dict[str, Any]]:
    """``{name: probability grid}`` of each 2-D classifier over the plane
    around ``X`` (:func:`mixviz.viz.probability_grid`; a forward pass, no
    training)."""
    from mixviz.viz import probability_grid

    entries = named_models(models, allow_list=False, logits_fn=logits_fn)
    return {m.name: probability_grid(m.module, X, resolution=resolution) for m in entries}


def boundary_notes(models: Any, X: torch.Tensor, y: torch.Tensor, *, logits_fn: Any = None) -> dict[str, str]:
    """The subtitle of each decision-boundary panel: accuracy and ECE of the
    model on ``(X, y)`` and, for a Run trained with DM on two classes, why it
    matches mixup: the decoupled softmax over the classes other than the
    partner has one class left, so its term is ``log 1 = 0``."""
    from mixviz import metrics

    entries = named_models(models, allow_list=False, logits_fn=logits_fn)
    check_inputs(X, y)
    notes = {}
    for m in entries:
        probs = logits_of(m.module, X).softmax(dim=1)
        labels = y.to(probs.device)
        acc = float(probs.argmax(1).eq(labels).float().mean())
        ece = metrics.expected_calibration_error(probs, labels)
        text = f"test acc {100 * acc:.1f} %, ECE {100 * ece:.1f} %"
        if m.info.get("loss") == "dm" and probs.shape[1] == 2:
            text += "\n(2 classes: DM term = 0, same as mixup CE)"
        notes[m.name] = text
    return notes

