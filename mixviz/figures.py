"""``mixviz figures``: every picture of the package, regenerated from trained runs.

Two steps, so that plotting never trains:

1. :func:`collect` calls :func:`mixviz.runs.load_or_train` for every run the
   pictures need: the clutter grid of a preset (the same configs as
   ``mixviz compare``, :func:`mixviz.experiments.grid`, so both commands share
   the run store) and small MLPs on the 2-D toy sets (:func:`toy_configs`).
   Finished runs are loaded, missing ones trained.
2. The computing functions below turn runs and evaluation data into what the
   :mod:`mixviz.viz` functions draw, and :func:`make_figures` writes one PNG
   per picture kind plus ``summary.md`` / ``summary.json`` with the numbers.

Every evaluation on mixed samples uses one fixed mixed set: the clutter test
set mixed with ``generator = torch.Generator().manual_seed(EVAL_SEED)``, the
same for every method, so differences between methods come from the models
and not from the draw.

>>> from mixviz import figures
>>> sorted(figures.FIGURE_KINDS)[:3]
['decision_boundary', 'label_mismatch', 'method_comparison']
>>> [name for name, _ in figures.TOY_METHODS]
['none+ce', 'mixup+mixup_ce', 'mixup+dm', 'average+midpoint']
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mixviz._validation import check_choice, check_labels, check_positive, check_tensor
from mixviz.mixing.batch import MixedBatch
from mixviz.train import Run, TrainConfig

__all__ = [
    "FIGURE_KINDS",
    "EVAL_SEED",
    "TOY_DATASETS",
    "TOY_METHODS",
    "FigureRuns",
    "method_name",
    "training_kind",
    "figure_presets",
    "clutter_configs",
    "clutter_config",
    "toy_configs",
    "toy_point_policies",
    "collect",
    "clutter_eval_set",
    "fixed_mixed_batch",
    "mix_at_lam",
    "LAM_POLICIES",
    "gallery_batches",
    "boundary_grids",
    "boundary_notes",
    "calibration",
    "mixed_accuracy",
    "results_table",
    "mismatch_reports",
    "dynamic_models",
    "saliency_table",
    "saliency_by_kind",
    "pick_mixed_sample",
    "saliency_example",
    "summary",
    "summary_markdown",
    "make_figures",
    "register_command",
]

#: The picture kinds and the file names (without ``.png``) they are written to.
FIGURE_KINDS: dict[str, tuple[str, ...]] = {
    "mixed_samples": ("mixed_samples",),
    "decision_boundary": ("decision_boundary_moons", "decision_boundary_spirals"),
    "reliability": ("reliability",),
    "top1_top2": ("top1_top2",),
    "label_mismatch": ("label_mismatch",),
    "saliency": ("saliency",),
    "training_curves": ("training_curves",),
    "method_comparison": ("method_comparison",),
}

#: Seed of the fixed mixed evaluation set (the same for every method).
EVAL_SEED = 0
#: Mixing of the fixed evaluation set on images (the training loop's default
#: evaluation policy on images, so the final numbers agree with the run history).
EVAL_POLICY = "cutmix"
EVAL_ALPHA = 1.0

TOY_DATASETS = ("moons", "spirals")
#: The toy methods as (name, (policy, loss)); a cut-and-paste policy is added
#: by :func:`toy_methods` when the mixing registry has one for 2-D points.
TOY_METHODS: tuple[tuple[str, tuple[str, str]], ...] = (
    ("none+ce", ("none", "ce")),
    ("mixup+mixup_ce", ("mixup", "mixup_ce")),
    ("mixup+dm", ("mixup", "dm")),
    ("average+midpoint", ("average", "midpoint")),
)
#: Settings of the toy runs: an MLP on 1000 points, 600 Adam steps; a few
#: seconds per run on a laptop CPU.
TOY_BASE: dict[str, Any] = dict(model="mlp", epochs=30, batch_size=50, lr=0.01, optimizer="adam",
                                weight_decay=0.0, alpha=1.0, dataset_options=dict(n=1000),
                                model_options=dict(hidden=64, depth=3))

#: Rows of the saliency grid (the methods present in the preset are drawn).
SALIENCY_ROWS = ("none+ce", "mixup+mixup_ce", "cutmix+mixup_ce", "puzzlemix+mixup_ce", "cutmix+dm")
#: Attribution methods of the saliency agreement table.
SALIENCY_METHODS = ("gradcam", "saliency")
#: Test points drawn over each decision-boundary panel (all 1000 would hide the shading).
BOUNDARY_POINTS = 300

MISMATCH_SHARE = 0.3
MISMATCH_VISIBLE = 0.05


# --------------------------------------------------------------------------- names


def method_name(config: TrainConfig) -> str:
    """``"<policy>+<loss>"``, the method label used in every table and figure."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    return f"{config.policy}+{config.loss}"


def training_kind(policy: str, loss: str) -> str:
    """``"baseline"`` (no mixing), ``"DM"`` (the Decoupled Mixup loss), or the
    policy's kind in the mixing registry (``"static"`` / ``"dynamic"``)."""
    from mixviz.mixing import available

    check_choice("policy", policy, available())
    if loss == "dm":
        return "DM"
    if policy == "none":
        return "baseline"
    return available()[policy]


# --------------------------------------------------------------------------- configs and runs


def figure_presets() -> list[str]:
    """The presets with a figure regime on the clutter set (the pictures need its object masks)."""
    from mixviz.experiments import PRESETS

    return [name for name, p in PRESETS.items()
            if p.figure_regime is not None and p.dataset_of(p.figure_regime) == "clutter"]


def _preset(name: str) -> Any:
    from mixviz.experiments import preset

    p = preset(name)
    if name not in figure_presets():
        raise ValueError(f"preset must be one of {', '.join(figure_presets())} (a preset with a clutter regime for "
                         f"the pictures, whose object masks they need); got {name!r}")
    return p


def clutter_configs(preset: str) -> list[TrainConfig]:
    """The runs of the figure regime of ``preset``: :func:`mixviz.experiments.grid`
    restricted to that regime, so ``mixviz compare`` and ``mixviz figures`` share runs."""
    from mixviz.experiments import grid

    p = _preset(preset)
    return grid(p, regimes=(p.figure_regime,))


def clutter_config(preset: str, method: str, seed: int | None = None) -> TrainConfig:
    """The clutter config of ``method`` (``"<policy>+<loss>"``) in ``preset``,
    for ``seed`` (default: the preset's first seed)."""
    configs = clutter_configs(preset)
    seed = min(c.seed for c in configs) if seed is None else seed
    found = {method_name(c): c for c in configs if c.seed == seed}
    if method not in found:
        raise ValueError(f"method must be one of {', '.join(found)} for preset {preset!r} and seed {seed}; "
                         f"got {method!r}")
    return found[method]


def toy_point_policies() -> list[str]:
    """Mask (cut-and-paste) policies of the registry that accept 2-D points
    (``has_mask`` and not ``needs_images``).  Empty today: CutMix and its
    relatives cut image regions, which 2-D points do not have."""
    from mixviz.mixing import POLICIES

    return [name for name, info in POLICIES.items() if info.has_mask and not info.needs_images]


def toy_methods() -> list[tuple[str, tuple[str, str]]]:
    """:data:`TOY_METHODS` plus ``<policy>+mixup_ce`` for the first policy of
    :func:`toy_point_policies`, if any."""
    out = list(TOY_METHODS)
    extra = toy_point_policies()
    if extra:
        out.append((f"{extra[0]}+mixup_ce", (extra[0], "mixup_ce")))
    return out


def toy_configs(preset: str) -> dict[str, dict[str, TrainConfig]]:
    """``{dataset: {method: TrainConfig}}`` for the decision-boundary pictures:
    :data:`TOY_BASE` on moons and spirals for every method of :func:`toy_methods`
    (DM with the preset's DM settings)."""
    from mixviz.experiments import method_config

    p = _preset(preset)
    return {dataset: {name: method_config(TOY_BASE, dataset, policy, loss, 0, dm_kind=p.dm_kind)
                      for name, (policy, loss) in toy_methods()}
            for dataset in TOY_DATASETS}


@dataclass
class FigureRuns:
    """What :func:`collect` returns: trained runs, nothing computed yet.

    Attributes:
        preset: the preset's name.
        clutter: ``{method: Run}`` of the preset's first seed (the pictures).
        clutter_all: every clutter run, all seeds (the tables: mean ± std).
        toy: ``{dataset: {method: Run}}`` for the decision boundaries.
    """

    preset: str
    clutter: dict[str, Run] = field(default_factory=dict)
    clutter_all: list[Run] = field(default_factory=list)
    toy: dict[str, dict[str, Run]] = field(default_factory=dict)


PARTS = ("clutter", "toy")


def collect(preset: str = "quick", runs_root: str | os.PathLike | None = None, *,
            parts: Sequence[str] = PARTS, log: Callable[[str], Any] | None = print) -> FigureRuns:
    """Load (or train, once) every run the pictures of ``preset`` need.

    Args:
        preset: a preset of :func:`figure_presets` (``"quick"`` or ``"full"``).
        runs_root: the run store (default ``$MIXVIZ_RUNS`` or ``./runs``).
        parts: ``"clutter"`` (the grid of the preset on the clutter set) and/or
            ``"toy"`` (MLPs on moons and spirals).
        log: called with one line per run (None: silent).

    Returns:
        A :class:`FigureRuns`; models are on the CPU when loaded from the store.
    """
    from mixviz.runs import is_finished, load_or_train, run_dir

    _preset(preset)
    if isinstance(parts, str) or not parts:
        raise ValueError(f"parts must be a non-empty sequence of {', '.join(PARTS)}; got {parts!r}")
    for part in parts:
        check_choice("parts", part, PARTS)
    jobs: list[tuple[str, str, TrainConfig]] = []
    if "clutter" in parts:
        jobs += [("clutter", method_name(c), c) for c in clutter_configs(preset)]
    if "toy" in parts:
        jobs += [(dataset, name, c) for dataset, cs in toy_configs(preset).items() for name, c in cs.items()]
    out = FigureRuns(preset=preset)
    first_seed = min((c.seed for _, _, c in jobs if c.dataset == "clutter"), default=0)
    for i, (group, name, config) in enumerate(jobs, 1):
        stored = is_finished(run_dir(config, runs_root))
        t0 = time.perf_counter()
        run = load_or_train(config, runs_root)
        if log is not None:
            log(f"[{i}/{len(jobs)}] {group} {name} seed {config.seed}: "
                f"{'loaded' if stored else 'trained'} in {time.perf_counter() - t0:.1f} s, "
                f"test acc {run.metrics['test_acc']:.3f}")
        if group == "clutter":
            out.clutter_all.append(run)
            if config.seed == first_seed:
                out.clutter[name] = run
        else:
            out.toy.setdefault(group, {})[name] = run
    return out


# --------------------------------------------------------------------------- evaluation data and mixing


def clutter_eval_set(preset: str) -> Any:
    """The clutter test split of ``preset`` (images, labels, object masks), as
    its runs were evaluated on."""
    from mixviz import data

    p = _preset(preset)
    options = dict(p.bases[p.figure_regime].get("dataset_options", {}))
    return data.load("clutter", "test", **options)


def _check_images(images: Any, labels: Any) -> None:
    check_tensor("images", images, ndim=4, floating=True)
    check_labels("labels", labels, batch=images.shape[0])


def fixed_mixed_batch(policy: str, images: torch.Tensor, labels: torch.Tensor, *, seed: int = EVAL_SEED,
                      alpha: float = EVAL_ALPHA, model: torch.nn.Module | None = None,
                      **options: Any) -> MixedBatch:
    """``images`` mixed by ``policy`` with a CPU generator seeded ``seed``.

    The same seed gives the same partners and, for static policies, the same
    lam and masks for every call, so every method is evaluated on the same
    mixed set.  Dynamic policies also look at ``model`` (required for them).
    """
    from mixviz.mixing import mix, policy_info

    info = policy_info(policy)
    _check_images(images, labels)
    if info.needs_model and model is None:
        raise ValueError(f"model is required for the dynamic policy {policy!r}")
    generator = torch.Generator(device=images.device).manual_seed(seed)
    was_training = model.training if model is not None else False
    try:
        with torch.enable_grad():
            mixed = mix(policy, images, labels, alpha=alpha, generator=generator, model=model, **options)
    finally:
        if model is not None:
            model.train(was_training)
    return replace(mixed, inputs=mixed.inputs.detach(), lam=mixed.lam.detach(), aux_loss=None,
                   mask=None if mixed.mask is None else mixed.mask.detach())  # keeps a hidden-layer mix's layer


def _mask_function(policy: str) -> Callable[..., torch.Tensor] | None:
    from mixviz.mixing import box_mask, fourier_mask, gaussian_mask, grid_mask

    return {"cutmix": box_mask, "fmix": fourier_mask, "gridmix": grid_mask, "smoothmix": gaussian_mask}.get(policy)


#: Policies :func:`mix_at_lam` can mix at a chosen lam.
LAM_POLICIES = ("none", "mixup", "average", "cutmix", "fmix", "gridmix", "smoothmix")


def mix_at_lam(policy: str, x: torch.Tensor, y: torch.Tensor, lam: float, *, seed: int = EVAL_SEED) -> MixedBatch:
    """Mix ``x`` by ``policy`` at a chosen ``lam`` instead of a Beta draw
    (the lam slider of the mixed-samples notebook).

    Partners are ``index = randperm(B)`` from a generator seeded ``seed``.
    Mixup: ``inputs = lam x + (1 - lam) x[index]``.  Mask policies use the
    policy's own mask function (:func:`mixviz.mixing.box_mask`,
    ``fourier_mask``, ``grid_mask``, ``gaussian_mask``) at ``lam``:
    ``inputs = m x + (1 - m) x[index]`` and the returned lam is the mask
    mean (the share of a actually shown).  ``average`` always has lam = 0.5
    and ``none`` lam = 1.  Other policies (ResizeMix, the dynamic ones) draw
    their own geometry and are not supported: use :func:`fixed_mixed_batch`.
    """
    from mixviz.mixing import mix

    check_choice("policy", policy, LAM_POLICIES)
    check_tensor("x", x, floating=True)
    check_labels("y", y, batch=x.shape[0])
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be a number in [0, 1], got {lam!r}")
    generator = torch.Generator(device=x.device).manual_seed(seed)
    if policy in ("none", "average"):
        return mix(policy, x, y, generator=generator)
    b = x.shape[0]
    index = torch.randperm(b, generator=generator, device=x.device)
    lam_t = torch.full((b,), float(lam), dtype=torch.float32, device=x.device)
    if policy == "mixup":
        inputs = torch.lerp(x[index], x, lam_t.view(-1, *([1] * (x.dim() - 1))).to(x.dtype))
        return MixedBatch(inputs=inputs, y_a=y, y_b=y[index], index=index, lam=lam_t, policy="mixup")
    check_tensor("x", x, ndim=4)
    mask = _mask_function(policy)(lam_t, x.shape[2], x.shape[3], generator=generator)
    inputs = torch.lerp(x[index], x, mask.to(x.dtype))
    return MixedBatch(inputs=inputs, y_a=y, y_b=y[index], index=index, lam=mask.mean((1, 2, 3)), mask=mask,
                      policy=policy)


def dynamic_models(runs: Mapping[str, Run], policies: Sequence[str]) -> dict[str, torch.nn.Module]:
    """A model for each dynamic policy in ``policies``: the one trained with
    that policy and the mixup cross-entropy (else any run of the policy, else
    the ``none+ce`` baseline) -- dynamic mixing asks a model where the
    objects are.  A policy with a learned state (AutoMix) mixes with the
    trained state of one of its own runs (``Run.mixer``): no fallback."""
    from mixviz.mixing import policy_info

    out = {}
    for policy in policies:
        info = policy_info(policy)
        if not info.needs_model:
            continue
        candidates = [f"{policy}+mixup_ce", *[m for m in runs if m.startswith(f"{policy}+")]]
        if info.state is None:
            candidates.append("none+ce")
        chosen = next((m for m in candidates if m in runs), None)
        if chosen is None:
            need = f"a run of {policy!r}" + (" (its trained mixer)" if info.state is not None else " or 'none+ce'")
            raise ValueError(f"runs must hold {need} to mix with the dynamic policy {policy!r}; has {sorted(runs)}")
        out[policy] = runs[chosen].mixer
    return out


def gallery_batches(images: torch.Tensor, labels: torch.Tensor, policies: Sequence[str], *,
                    models: Mapping[str, torch.nn.Module] | None = None, seed: int = EVAL_SEED,
                    alpha: float = EVAL_ALPHA) -> dict[str, MixedBatch]:
    """``{policy: MixedBatch}``: the same images mixed by each policy with the
    same seed (so the same partners: every policy draws its permutation first),
    for :func:`mixviz.viz.mixed_samples_gallery`."""
    if isinstance(policies, str) or not policies:
        raise ValueError("policies must be a non-empty sequence of policy names")
    models = models or {}
    return {p: fixed_mixed_batch(p, images, labels, seed=seed, alpha=alpha, model=models.get(p)) for p in policies}


# --------------------------------------------------------------------------- decision boundaries


def boundary_grids(runs: Mapping[str, Run], X: torch.Tensor, resolution: int = 150) -> dict[str, dict[str, Any]]:
    """``{method: probability grid}`` of each toy run over the plane around ``X``
    (:func:`mixviz.viz.probability_grid`; a forward pass, no training)."""
    from mixviz.viz import probability_grid

    _check_runs(runs)
    return {name: probability_grid(run.model, X, resolution=resolution) for name, run in runs.items()}


def boundary_notes(runs: Mapping[str, Run], num_classes: int = 2) -> dict[str, str]:
    """The subtitle of each decision-boundary panel: test accuracy and, for DM
    on two classes, why it matches mixup (the decoupled softmax over the
    classes other than the partner has one class left: its term is log 1 = 0)."""
    _check_runs(runs)
    notes = {}
    for name, run in runs.items():
        text = f"test acc {100 * run.metrics['test_acc']:.1f} %, ECE {100 * run.metrics['ece']:.1f} %"
        if run.config.loss == "dm" and num_classes == 2:
            text += "\n(2 classes: DM term = 0, same as mixup CE)"
        notes[name] = text
    return notes


# --------------------------------------------------------------------------- calibration and mixed accuracy


def _check_runs(runs: Any) -> None:
    if not isinstance(runs, Mapping) or not runs:
        raise ValueError("runs must be a non-empty dict {method: Run}")
    for key, run in runs.items():
        if not isinstance(run, Run):
            raise TypeError(f"runs[{key!r}] must be a mixviz.train.Run, got {type(run).__name__}")


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def calibration(runs: Mapping[str, Run], images: torch.Tensor, labels: torch.Tensor,
                n_bins: int = 15) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """Reliability bins and ECE of each run's softmax on ``images``:
    ``({method: reliability_bins}, {method: ECE})`` as
    :func:`mixviz.viz.reliability_diagrams` takes them.  ECE is
    ``sum_b n_b / N |acc_b - conf_b|`` (torchmetrics' L1 calibration error)."""
    from mixviz import metrics
    from mixviz.train import evaluate

    _check_runs(runs)
    _check_images(images, labels)
    check_positive("n_bins", n_bins, integer=True)
    bins, ece = {}, {}
    for name, run in runs.items():
        device = _device(run.model)
        y = labels.to(device)
        probs = evaluate(run.model, images.to(device), y).softmax(dim=1)
        bins[name] = metrics.reliability_bins(probs, y, n_bins)
        ece[name] = metrics.expected_calibration_error(probs, y, n_bins)
    return bins, ece


def mixed_accuracy(runs: Sequence[Run] | Mapping[str, Run], images: torch.Tensor, labels: torch.Tensor, *,
                   policy: str = EVAL_POLICY, seed: int = EVAL_SEED, alpha: float = EVAL_ALPHA) -> pd.DataFrame:
    """Top-1 / Top-2 accuracy (the DM paper's) of each run on the fixed mixed set.

    Every run sees ``images`` mixed by ``policy`` with the same ``seed``
    (:func:`mixviz.metrics.mixed_evaluation`).  Top-1: the top class is one of
    the two mixed classes; Top-2: the two top classes are exactly them.

    Returns:
        One row per run: ``method``, ``policy``, ``loss``, ``kind``, ``seed``,
        ``mixed_top1``, ``mixed_top2`` (fractions).
    """
    from mixviz import metrics

    items = list(runs.values()) if isinstance(runs, Mapping) else list(runs)
    if not items:
        raise ValueError("runs must hold at least one Run")
    for run in items:
        if not isinstance(run, Run):
            raise TypeError(f"runs must hold mixviz.train.Run objects, got {type(run).__name__}")
    _check_images(images, labels)
    rows = []
    for run in items:
        device = _device(run.model)
        scores = metrics.mixed_evaluation(run.model, images.to(device), labels.to(device), policy=policy,
                                          alpha=alpha, seed=seed)
        c = run.config
        rows.append({"method": method_name(c), "policy": c.policy, "loss": c.loss,
                     "kind": training_kind(c.policy, c.loss), "seed": c.seed, **scores})
    return pd.DataFrame(rows)


def results_table(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per run, as ``mixviz compare``'s ``results.csv``
    (:func:`mixviz.experiments.result_row`), plus ``method`` and ``kind``."""
    from mixviz.experiments import result_row
    from mixviz.runs import config_id

    runs = list(runs)
    if not runs:
        raise ValueError("runs must hold at least one Run")
    rows = []
    for run in runs:
        if not isinstance(run, Run):
            raise TypeError(f"runs must hold mixviz.train.Run objects, got {type(run).__name__}")
        row = result_row(run, config_id(run.config))
        row.update(method=method_name(run.config), kind=training_kind(run.config.policy, run.config.loss))
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- label mismatch


def mismatch_reports(images: torch.Tensor, labels: torch.Tensor, object_masks: torch.Tensor,
                     policies: Sequence[str], *, models: Mapping[str, torch.nn.Module] | None = None,
                     seed: int = EVAL_SEED, alpha: float = EVAL_ALPHA, share_threshold: float = MISMATCH_SHARE,
                     visible_threshold: float = MISMATCH_VISIBLE) -> dict[str, dict[str, Any]]:
    """``{policy: mixviz.metrics.label_mismatch(...)}`` on the fixed mixed set.

    A mixed label is mismatched when it gives a class a share
    ``>= share_threshold`` while less than ``visible_threshold`` of that
    class's object survives in the mixed image; ``rate`` is the fraction of
    mixed samples with such a label.  Dynamic policies need their model in
    ``models`` (see :func:`dynamic_models`).
    """
    if isinstance(policies, str) or not policies:
        raise ValueError("policies must be a non-empty sequence of policy names")
    _check_images(images, labels)
    check_tensor("object_masks", object_masks, ndim=4)
    from mixviz import metrics

    models = models or {}
    out = {}
    for policy in policies:
        model = models.get(policy)
        device = _device(model) if model is not None else images.device
        mixed = fixed_mixed_batch(policy, images.to(device), labels.to(device), seed=seed, alpha=alpha, model=model)
        out[policy] = metrics.label_mismatch(mixed, object_masks.to(device), share_threshold=share_threshold,
                                             visible_threshold=visible_threshold)
    return out


# --------------------------------------------------------------------------- saliency


def _visible_objects(mixed: MixedBatch, object_masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The visible part of object a and of object b in each mixed image:
    ``m o_a`` and ``(1 - m) o_b`` ([B, 1, H, W]); whole objects when the
    policy has no mask (mixup fades, it does not cut)."""
    obj_a = object_masks.to(torch.float32)
    obj_b = obj_a[mixed.index]
    if mixed.mask is None:
        return obj_a, obj_b
    m = mixed.mask.to(obj_a.device, torch.float32)
    return m * obj_a, (1.0 - m) * obj_b


def saliency_table(runs: Mapping[str, Run], images: torch.Tensor, labels: torch.Tensor,
                   object_masks: torch.Tensor, *, attributions: Sequence[str] = SALIENCY_METHODS,
                   limit: int | None = 256, policy: str = EVAL_POLICY, seed: int = EVAL_SEED,
                   alpha: float = EVAL_ALPHA, tolerance: int = 0) -> pd.DataFrame:
    """Agreement of each model's attributions with the object masks.

    For each run and attribution method (captum, :func:`mixviz.saliency.attribute`):

    * ``mask_share``: mean share of the attribution for the true class inside
      the object, on the clean images (a uniform map scores the mean object
      area, ``chance``);
    * ``pointing``: fraction of clean images whose map peaks on the object;
    * ``mixed_share``: on the fixed mixed set (``policy``, ``seed``), the
      share of the map for ``y_a`` inside the visible part of object a and of
      the map for ``y_b`` inside the visible part of object b, averaged over
      both and over the pairs of two classes whose objects are both visible
      -- does the model find each mixed class where its object is?

    ``limit`` takes the first images only (None: all).

    Returns:
        One row per (run, attribution): ``method``, ``kind``, ``attribution``,
        ``mask_share``, ``pointing``, ``mixed_share``, ``chance``.
    """
    from mixviz import saliency

    _check_runs(runs)
    _check_images(images, labels)
    check_tensor("object_masks", object_masks, ndim=4)
    if limit is not None:
        check_positive("limit", limit, integer=True)
        images, labels, object_masks = images[:limit], labels[:limit], object_masks[:limit]
    for a in attributions:
        check_choice("attributions", a, saliency.METHODS)
    mixed = fixed_mixed_batch(policy, images, labels, seed=seed, alpha=alpha)
    vis_a, vis_b = _visible_objects(mixed, object_masks)
    keep = mixed.y_a.ne(mixed.y_b) & (vis_a.sum((1, 2, 3)) > 0) & (vis_b.sum((1, 2, 3)) > 0)
    chance = float(object_masks.to(torch.float32).mean())
    rows = []
    for name, run in runs.items():
        device = _device(run.model)
        for method in attributions:
            clean = saliency.saliency_agreement(run.model, images.to(device), object_masks.to(device),
                                                labels.to(device), method=method, tolerance=tolerance)
            x = mixed.inputs[keep].to(device)
            share_a = saliency.mask_agreement(saliency.attribute(run.model, x, mixed.y_a[keep].to(device), method),
                                              vis_a[keep].to(device))
            share_b = saliency.mask_agreement(saliency.attribute(run.model, x, mixed.y_b[keep].to(device), method),
                                              vis_b[keep].to(device))
            both = torch.cat([share_a, share_b])
            both = both[~torch.isnan(both)]
            rows.append({"method": name, "kind": training_kind(run.config.policy, run.config.loss),
                         "attribution": method, **clean,
                         "mixed_share": float(both.mean()) if both.numel() else math.nan, "chance": chance})
    return pd.DataFrame(rows)


def saliency_by_kind(table: pd.DataFrame) -> pd.DataFrame:
    """Mean of ``mask_share``, ``pointing`` and ``mixed_share`` over the methods
    of each training kind (baseline / static / dynamic / DM), per attribution."""
    cols = ["mask_share", "pointing", "mixed_share"]
    missing = [c for c in ("kind", "attribution", *cols) if c not in table.columns]
    if missing:
        raise ValueError(f"table must have the columns of saliency_table; missing {', '.join(missing)}")
    order = {"baseline": 0, "static": 1, "dynamic": 2, "DM": 3}
    out = table.groupby(["attribution", "kind"], sort=False)[cols].mean().reset_index()
    out["methods"] = table.groupby(["attribution", "kind"], sort=False).size().to_numpy()
    out = out.sort_values(["attribution", "kind"], key=lambda s: s.map(order) if s.name == "kind" else s,
                          kind="stable")
    return out.reset_index(drop=True)


def pick_mixed_sample(mixed: MixedBatch, object_masks: torch.Tensor, *, min_visible: float = 0.6,
                      lam_range: tuple[float, float] = (0.3, 0.7)) -> int:
    """The first mixed sample of two different classes with both objects at
    least ``min_visible`` visible and lam in ``lam_range`` (a sample in which
    both labels are right); if none, the pair of two classes whose worse
    visible object is the most visible."""
    from mixviz.metrics import object_visibility

    if not isinstance(mixed, MixedBatch):
        raise TypeError(f"mixed must be a MixedBatch, got {type(mixed).__name__}")
    vis_a, vis_b = object_visibility(mixed, object_masks)
    worst = torch.fmin(vis_a, vis_b).nan_to_num(-1.0)
    worst = torch.where(mixed.y_a.ne(mixed.y_b).to(worst.device), worst, torch.full_like(worst, -2.0))
    lam = mixed.lam.to(worst.device)
    good = (worst >= min_visible) & (lam >= lam_range[0]) & (lam <= lam_range[1])
    if bool(good.any()):
        return int(good.nonzero()[0, 0])
    return int(worst.argmax())


def saliency_example(runs: Mapping[str, Run], images: torch.Tensor, labels: torch.Tensor,
                     object_masks: torch.Tensor, *, method: str = "gradcam", policy: str = EVAL_POLICY,
                     seed: int = EVAL_SEED, alpha: float = EVAL_ALPHA, sample: int | None = None,
                     class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """The keyword arguments of :func:`mixviz.viz.saliency_grid` for one mixed image.

    The image is sample ``sample`` of the fixed mixed set (default
    :func:`pick_mixed_sample`); each run's attribution maps are for its two
    most probable classes (:func:`mixviz.saliency.top2_attributions`).  The
    ``agreement`` of a map is its share inside the visible part of the
    object of the class it explains, or inside both objects when that class
    is neither of the two mixed classes.
    """
    from mixviz import saliency

    _check_runs(runs)
    _check_images(images, labels)
    mixed = fixed_mixed_batch(policy, images, labels, seed=seed, alpha=alpha)
    i = pick_mixed_sample(mixed, object_masks) if sample is None else sample
    check_positive("sample", i, allow_zero=True, integer=True)
    if i >= len(mixed):
        raise ValueError(f"sample must be < {len(mixed)} (the number of images), got {i}")
    vis_a, vis_b = _visible_objects(mixed, object_masks)
    y_a, y_b = int(mixed.y_a[i]), int(mixed.y_b[i])
    objects = {y_a: vis_a[i:i + 1], y_b: vis_b[i:i + 1]}
    union = torch.clamp(vis_a[i:i + 1] + vis_b[i:i + 1], max=1.0)
    attributions, agreement = {}, {}
    for name, run in runs.items():
        device = _device(run.model)
        first, second, top2 = saliency.top2_attributions(run.model, mixed.inputs[i:i + 1].to(device), method)
        attributions[name] = (first.cpu(), second.cpu(), top2.cpu())
        shares = []
        for attr, cls in ((first, int(top2[0, 0])), (second, int(top2[0, 1]))):
            region = objects.get(cls, union).to(device)
            shares.append(float(saliency.mask_agreement(attr, region)[0].nan_to_num(0.0)))
        agreement[name] = tuple(shares)
    return {"images": (images[i].cpu(), images[int(mixed.index[i])].cpu()), "mixed": mixed.inputs[i].cpu(),
            "attributions": attributions, "class_names": class_names, "labels": (y_a, y_b),
            "lam": float(mixed.lam[i]), "agreement": agreement}


# --------------------------------------------------------------------------- summary


def _mean_std(values: pd.Series) -> tuple[float, float]:
    v = pd.to_numeric(values, errors="coerce")
    return float(v.mean()), float(v.std()) if v.notna().sum() > 1 else math.nan


def summary(results: pd.DataFrame, mixed: pd.DataFrame, mismatch: Mapping[str, Mapping[str, Any]],
            saliency: pd.DataFrame, toy: Mapping[str, Mapping[str, Run]] | None = None, *,
            preset: str = "", n_test: int | None = None) -> dict[str, Any]:
    """The numbers behind the pictures, as a JSON-ready dict.

    ``methods``: per method, mean (and std over seeds) of test accuracy and ECE
    (from the runs) and of mixed Top-1 / Top-2 on the fixed mixed set;
    ``label_mismatch``: rate per policy; ``saliency`` and ``saliency_by_kind``:
    agreement with the object masks; ``toy``: test accuracy of the toy runs.
    """
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
        for col, frame in (("test_acc", group), ("ece", group), ("sec_per_epoch", group),
                           ("mixed_top1", m), ("mixed_top2", m)):
            row[col], row[f"{col}_std"] = _mean_std(frame[col]) if len(frame) else (math.nan, math.nan)
        methods.append(row)
    from mixviz.mixing import available

    kinds = available()
    out: dict[str, Any] = {
        "preset": preset,
        "evaluation": {"mixed_policy": EVAL_POLICY, "mixed_seed": EVAL_SEED, "mixed_alpha": EVAL_ALPHA,
                       "n_test": n_test, "mismatch_share_threshold": MISMATCH_SHARE,
                       "mismatch_visible_threshold": MISMATCH_VISIBLE},
        "methods": methods,
        "label_mismatch": [{"policy": p, "kind": kinds.get(p, "static"), "rate": float(r["rate"]),
                            "n_mismatched": int(r["n_mismatched"]), "n_samples": int(r["n_samples"]),
                            "unmixed_rate": float(r["unmixed_rate"]), "n_unmixed": int(r["n_unmixed"]),
                            "n_pairs": int(r["n_pairs"])}
                           for p, r in mismatch.items()],
        "saliency": saliency.to_dict("records"),
        "saliency_by_kind": saliency_by_kind(saliency).to_dict("records") if len(saliency) else [],
    }
    if toy:
        out["toy"] = [{"dataset": d, "method": m, "test_acc": float(run.metrics["test_acc"]),
                       "ece": float(run.metrics["ece"])} for d, runs in toy.items() for m, run in runs.items()]
    return out


def _pct(mean: float, std: float = math.nan) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def summary_markdown(s: Mapping[str, Any]) -> str:
    """:func:`summary` as Markdown tables (percentages)."""
    ev = s["evaluation"]
    lines = [f"# mixviz figures: preset `{s['preset']}`", "",
             f"Clutter test set ({ev['n_test']} images). Mixed Top-1/Top-2 on the fixed mixed set: the test set "
             f"mixed by {ev['mixed_policy']} (alpha {ev['mixed_alpha']}, seed {ev['mixed_seed']}), the same for "
             f"every method. Numbers in %; mean ± std when there are several seeds.", "",
             "## Calibration and mixed accuracy per method", "",
             "| method | kind | runs | test acc | ECE | mixed Top-1 | mixed Top-2 | s/epoch |",
             "|---|---|---|---|---|---|---|---|"]
    for r in s["methods"]:
        lines.append(f"| {r['method']} | {r['kind']} | {r['runs']} | {_pct(r['test_acc'], r['test_acc_std'])} | "
                     f"{_pct(r['ece'], r['ece_std'])} | {_pct(r['mixed_top1'], r['mixed_top1_std'])} | "
                     f"{_pct(r['mixed_top2'], r['mixed_top2_std'])} | {r['sec_per_epoch']:.2f} |")
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
                  f"mixed set, the map for each mixed class inside the visible part of its own object.", "",
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
        lines += ["", "## Toy 2-D sets (decision boundaries)", "", "| data | method | test acc | ECE |",
                  "|---|---|---|---|"]
        for r in s["toy"]:
            lines.append(f"| {r['dataset']} | {r['method']} | {_pct(r['test_acc'])} | {_pct(r['ece'])} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- all figures


#: Resolution of the written PNGs (dots per inch) and the size of their palette (see :func:`mixviz.viz.save`).
DPI = 110
PNG_COLORS = 256


def _save(fig: Any, path: Path, written: dict[str, Path]) -> None:
    import matplotlib.pyplot as plt

    from mixviz.viz import save

    written[path.stem] = save(fig, path, dpi=DPI, colors=PNG_COLORS)
    plt.close(fig)


def make_figures(runs: FigureRuns, out: str | os.PathLike, *, log: Callable[[str], Any] | None = print,
                 saliency_limit: int | None = 256) -> dict[str, Path]:
    """Compute and write every picture of :data:`FIGURE_KINDS` and the summary.

    Nothing is trained: ``runs`` comes from :func:`collect` (with both parts).
    Writes ``<out>/<name>.png`` (atomically), ``summary.md`` and
    ``summary.json``; returns ``{file stem: path}``.
    """
    from mixviz import data, viz
    from mixviz.ioutil import atomic_write_json, atomic_write_text

    if not isinstance(runs, FigureRuns):
        raise TypeError(f"runs must be the FigureRuns of collect(), got {type(runs).__name__}")
    if not runs.clutter or not runs.toy:
        raise ValueError("runs must hold the clutter and the toy runs: collect(preset, parts=('clutter', 'toy'))")
    out = Path(out)
    say = log or (lambda _: None)
    written: dict[str, Path] = {}
    clutter, all_runs = runs.clutter, runs.clutter_all
    test = clutter_eval_set(runs.preset)
    images, labels, masks, names = test.images, test.labels, test.masks, test.classes
    policies = list(dict.fromkeys(r.config.policy for r in clutter.values() if r.config.policy != "none"))
    models = dynamic_models(clutter, policies)

    t0 = time.perf_counter()
    gallery = gallery_batches(images[:16], labels[:16], policies, models=models)
    _save(viz.mixed_samples_gallery(gallery, class_names=names, n=4), out / "mixed_samples.png", written)

    for dataset, toy_runs in runs.toy.items():
        points = data.load(dataset, "test", **TOY_BASE["dataset_options"])
        grids = boundary_grids(toy_runs, points.images)
        shown = slice(0, BOUNDARY_POINTS)
        fig = viz.decision_boundaries(grids, points=(points.images[shown], points.labels[shown]),
                                      notes=boundary_notes(toy_runs, points.num_classes), ncols=len(grids))
        fig.suptitle(f"{dataset}: {fig.get_suptitle()}")
        _save(fig, out / f"decision_boundary_{dataset}.png", written)
    say(f"gallery and decision boundaries: {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    bins, ece = calibration(clutter, images, labels)
    _save(viz.reliability_diagrams(bins, ece, ncols=5), out / "reliability.png", written)
    results = results_table(all_runs)
    mixed = mixed_accuracy(all_runs, images, labels)
    histories = {name: run.history for name, run in clutter.items()}
    _save(viz.mixed_accuracy_plot(histories, final=mixed), out / "top1_top2.png", written)
    _save(viz.training_curves(histories, metrics=("train_loss", "test_acc", "test_ece", "mixed_top2")),
          out / "training_curves.png", written)
    _save(viz.method_comparison(results), out / "method_comparison.png", written)
    say(f"calibration, Top-1/Top-2, curves, comparison: {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    trained = {r.config.policy for r in clutter.values()}
    all_policies = [p for p in _registry_policies() if p != "none" and (p in trained or not _learns(p))]
    mismatch_models = {**dynamic_models(clutter, all_policies)}
    reports = mismatch_reports(images, labels, masks, all_policies, models=mismatch_models)
    _save(viz.mismatch_scatter_from_reports(reports, share_threshold=MISMATCH_SHARE,
                                            visible_threshold=MISMATCH_VISIBLE, ncols=5),
          out / "label_mismatch.png", written)
    say(f"label mismatch: {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    rows = {m: clutter[m] for m in SALIENCY_ROWS if m in clutter} or dict(list(clutter.items())[:4])
    example = saliency_example(rows, images, labels, masks, class_names=names)
    _save(viz.saliency_grid(**example), out / "saliency.png", written)
    sal = saliency_table(clutter, images, labels, masks, limit=saliency_limit)
    say(f"saliency: {time.perf_counter() - t0:.1f} s")

    s = summary(results, mixed, reports, sal, runs.toy, preset=runs.preset, n_test=len(labels))
    s["files"] = {k: str(v) for k, v in written.items()}
    written["summary.json"] = atomic_write_json(out / "summary.json", s)
    written["summary.md"] = atomic_write_text(out / "summary.md", summary_markdown(s))
    return written


def _registry_policies() -> list[str]:
    from mixviz.mixing import available

    return list(available())


def _learns(policy: str) -> bool:
    """The policy has a learned state (AutoMix): it can only mix with a run of its own."""
    from mixviz.mixing import policy_info

    return policy_info(policy).state is not None


# --------------------------------------------------------------------------- the command


def _cmd_figures(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    t0 = time.perf_counter()
    runs = collect(args.preset, args.runs)
    print(f"runs ready in {time.perf_counter() - t0:.1f} s")
    written = make_figures(runs, args.out)
    print(f"wrote {len(written)} files to {Path(args.out).resolve()}:")
    for path in written.values():
        size = path.stat().st_size / 1024
        print(f"  {path}  ({size:.0f} KB)")
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


def register_command(sub: Any) -> None:
    p = sub.add_parser(
        "figures", help="train what is missing and write every picture and its numbers",
        description="Load (or train once, through the run store shared with `mixviz compare`) the clutter runs of "
                    "a preset and small MLPs on moons and spirals, then write one PNG per picture kind (mixed "
                    "samples, decision boundaries, reliability diagrams, Top-1/Top-2 mixed accuracy, label "
                    "mismatch, saliency, training curves, method comparison) and summary.md / summary.json with "
                    "the numbers behind them.")
    p.add_argument("--preset", default="quick", choices=figure_presets(),
                   help="quick: a few minutes on a CPU; full: 3 seeds, more epochs. Default: %(default)s")
    p.add_argument("--out", default="figures", help="output directory. Default: %(default)s")
    p.add_argument("--runs", default=None, help="root of the run store (default runs/ or $MIXVIZ_RUNS)")
    p.set_defaults(func=_cmd_figures)
