"""Analyses of trained classifiers: what the notebooks and ``mixviz figures``
compute before they draw.

Every function takes *models* -- an ``nn.Module`` that returns ``[B, C]``
logits (a timm or torchvision network trained anywhere), a
:class:`mixviz.train.Run` (its ``.model``; its config names the method and
fills the ``policy`` / ``loss`` / ``kind`` / ``seed`` columns), or a dict
``{name: module or Run}`` -- plus tensors: images in [0, 1] ``[N, C, H, W]``,
integer labels ``[N]`` and, for the clutter set, object masks
``[N, 1, H, W]``.  Nothing here trains a run or reads the run store.
A model that returns a tuple, a dict or an object instead of the logits
needs ``logits_fn=`` (its output -> the logits, e.g. ``lambda out: out[0]``
for ``(logits, features)``), which every function here takes.

=================================  ===========================================
:func:`calibration`                reliability bins and ECE per model
:func:`temperature_scaling`        ECE and NLL before and after temperature
                                   scaling (cross-fitted on the same set)
:func:`scaled_calibration`         reliability bins and ECE after it
:func:`mixed_accuracy`             Top-1 / Top-2 accuracy on a fixed mixed set
:func:`visible_pair_accuracy`      Top-1 / Top-2 split by whether both mixed
                                   objects are visible
:func:`mismatch_reports`           how often a policy's labels name a class
                                   whose object was cut away
:func:`memorisation`               how far a model fitted noisy labels
:func:`saliency_table`             attribution maps vs object masks
:func:`saliency_example`           one mixed image, the top-2 maps per model
:func:`boundary_grids`             class probabilities over the plane (2-D)
:func:`fixed_mixed_batch`          the same mixed set for every model
:func:`mix_at_lam`                 mixing at a chosen lam
:func:`large_gallery_batches`      the gallery at 64 px, the models seeing
                                   16 px (:class:`AtResolution`)
:func:`with_last_conv`             name the layer Grad-CAM explains
:func:`boundary_scores`            accuracy and ECE of 2-D classifiers
:func:`saliency_intervals`         saliency agreement with intervals and chance
:func:`pick_top2_example`          a mixed example picked by a stated rule
:mod:`mixviz.analysis.dm`          what the DM loss does to one prediction
=================================  ===========================================

>>> import torch
>>> from mixviz import analysis
>>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
>>> x, y = torch.rand(16, 3, 8, 8), torch.arange(16) % 4
>>> bins, ece = analysis.calibration({"linear": net}, x, y)
>>> sorted(ece)
['linear']
>>> list(analysis.mixed_accuracy(net, x, y).columns)
['method', 'mixed_top1', 'mixed_top2']
"""

from __future__ import annotations

from mixviz.analysis import dm
from mixviz.analysis._common import (EVAL_ALPHA, EVAL_POLICY, EVAL_SEED, MISMATCH_SHARE, MISMATCH_VISIBLE,
                                     NamedModel, method_name, named_models, training_kind)
from mixviz.analysis.attribution import (SALIENCY_METHODS, saliency_by_kind, saliency_example, saliency_table,
                                         with_last_conv)
from mixviz.analysis.evaluation import (boundary_grids, boundary_notes, calibration, logits_of, memorisation,
                                        mismatch_reports, mixed_accuracy, scaled_calibration, temperature_scaling,
                                        visible_pair_accuracy)
from mixviz.analysis.gallery import (GALLERY_MAX_POLICIES, GALLERY_ROWS, GALLERY_SIZE, PUZZLEMIX_BLOCKS,
                                     AtResolution, block_title, gallery_groups, gallery_policies, large_gallery_batches,
                                     mask_block_grid)
from mixviz.analysis.mixed import (LAM_POLICIES, dynamic_models, mixable_policies, fixed_mixed_batch, gallery_batches, mix_at_lam,
                                   pick_mixed_sample, visible_objects)
from mixviz.analysis.teaching import boundary_scores, pick_top2_example, saliency_intervals

__all__ = [
    "EVAL_SEED",
    "EVAL_POLICY",
    "EVAL_ALPHA",
    "MISMATCH_SHARE",
    "MISMATCH_VISIBLE",
    "LAM_POLICIES",
    "SALIENCY_METHODS",
    "NamedModel",
    "named_models",
    "method_name",
    "training_kind",
    "logits_of",
    "fixed_mixed_batch",
    "mix_at_lam",
    "gallery_batches",
    "GALLERY_SIZE",
    "GALLERY_ROWS",
    "GALLERY_MAX_POLICIES",
    "PUZZLEMIX_BLOCKS",
    "AtResolution",
    "gallery_policies",
    "gallery_groups",
    "block_title",
    "large_gallery_batches",
    "mask_block_grid",
    "dynamic_models",
    "mixable_policies",
    "visible_objects",
    "pick_mixed_sample",
    "calibration",
    "temperature_scaling",
    "scaled_calibration",
    "mixed_accuracy",
    "mismatch_reports",
    "visible_pair_accuracy",
    "memorisation",
    "boundary_grids",
    "boundary_notes",
    "saliency_table",
    "saliency_by_kind",
    "saliency_example",
    "boundary_scores",
    "saliency_intervals",
    "pick_top2_example",
    "with_last_conv",
    "dm",
]
