"""Pictures: every function takes data (tensors, DataFrames, dicts) and returns
a matplotlib :class:`~matplotlib.figure.Figure`.  Nothing here trains, loads
data or writes files, except :func:`save` (atomic) and
:func:`probability_grid` (a forward pass of a model on a grid, no training).
PNGs are written (:func:`save`) and shown in notebooks (:func:`inline_png`)
at :data:`DPI` with a palette of :data:`PNG_COLORS` colours.

Each function draws inside :func:`mixviz.viz.style.theme` (seaborn
``whitegrid``), so matplotlib's global settings are left as they were.

=============================  ==============================================
:func:`mixed_samples_gallery`  the same pairs under every policy, with lam,
                               masks and soft labels
:func:`decision_boundaries`    2-D decision boundaries with confidence shading
:func:`reliability_diagrams`   accuracy per confidence bin and ECE per method
:func:`mixed_accuracy_plot`    Top-1 / Top-2 accuracy on mixed samples
:func:`saliency_grid`          attributions for the top-2 classes per method
:func:`training_curves`        run-history columns against the epoch
:func:`method_comparison`      accuracy vs time, mean ± 95 % interval over seeds
:func:`method_bars`            one metric per method
:func:`mismatch_scatter`       label share vs object visibility per policy
:func:`loss_landscape`         mixup CE and DM over the predictions (p_a, p_b)
:func:`gradient_bars`          their gradients on the logits of one prediction
:func:`sgd_trace_plot`         predictions over SGD steps under each loss
:func:`memorisation_curves`    noisy labels memorised per epoch, per method
:func:`dm_sweep`               DM minus mixup CE against the DM weight eta
:func:`semi_curves`            pseudo-labels kept, their accuracy and test
                               accuracy per epoch (semi-supervised runs)
:func:`augmentation_views`     the same images under several augmentations
:func:`interact`               sliders that redraw a picture in a notebook
                               (safe when widget callbacks run in a kernel
                               subshell's thread); :func:`show` shows one
=============================  ==============================================

>>> import matplotlib; matplotlib.use("Agg")
>>> import pandas as pd
>>> from mixviz import viz
>>> h = pd.DataFrame({"epoch": [1, 2], "train_loss": [2.0, 1.5], "test_acc": [0.4, 0.6]})
>>> fig = viz.training_curves({"mixup+mixup_ce": h})
>>> len(fig.axes)
2
"""

from __future__ import annotations

from mixviz._extras import require

for _module in ("matplotlib", "seaborn", "pandas"):  # the 'analysis' extra; the error names the pip line
    require(_module, "mixviz.viz")

from mixviz.viz._common import DPI, PNG_COLORS, inline_png, png_bytes, save
from mixviz.viz.boundary import decision_boundaries, probability_grid
from mixviz.viz.calibration import display_bins, reliability_diagrams
from mixviz.viz.comparison import method_bars, method_comparison, method_summary
from mixviz.viz.curves import training_curves
from mixviz.viz.dm_loss import gradient_bars, loss_landscape, sgd_trace_plot
from mixviz.viz.interactive import interact, show
from mixviz.viz.memorisation import memorisation_curves, seed_band
from mixviz.viz.mismatch import mismatch_scatter, mismatch_scatter_from_reports
from mixviz.viz.mixed_accuracy import final_mixed_accuracy, mixed_accuracy_plot
from mixviz.viz.samples import mixed_samples_gallery, soft_label_text
from mixviz.viz.saliency import display_scale, grey, saliency_grid, upsample_bilinear, upsample_nearest
from mixviz.viz.semi import augmentation_views, semi_curves
from mixviz.viz.style import method_colors, theme
from mixviz.viz.sweep import dm_sweep

__all__ = [
    "save",
    "png_bytes",
    "inline_png",
    "DPI",
    "PNG_COLORS",
    "theme",
    "method_colors",
    "mixed_samples_gallery",
    "soft_label_text",
    "decision_boundaries",
    "probability_grid",
    "reliability_diagrams",
    "display_bins",
    "mixed_accuracy_plot",
    "final_mixed_accuracy",
    "saliency_grid",
    "display_scale",
    "grey",
    "upsample_nearest",
    "upsample_bilinear",
    "training_curves",
    "method_comparison",
    "method_bars",
    "method_summary",
    "mismatch_scatter",
    "mismatch_scatter_from_reports",
    "loss_landscape",
    "gradient_bars",
    "sgd_trace_plot",
    "memorisation_curves",
    "seed_band",
    "dm_sweep",
    "semi_curves",
    "augmentation_views",
    "interact",
    "show",
]
