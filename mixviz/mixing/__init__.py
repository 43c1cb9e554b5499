"""Mixing policies: every way of turning a batch into a :class:`MixedBatch`.

>>> import torch
>>> from mixviz import mixing
>>> x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
>>> gen = torch.Generator().manual_seed(0)
>>> batch = mixing.mix("cutmix", x, y, alpha=1.0, generator=gen)
>>> bool(torch.equal(batch.lam, batch.mask.mean((1, 2, 3))))
True
>>> sorted(mixing.available().items())[:2]
[('automix', 'dynamic'), ('average', 'static')]

Static policies (:mod:`.static`): ``none``, ``mixup``, ``cutmix``, ``fmix``,
``resizemix``, ``gridmix``, ``smoothmix``, ``average``, and ``manifold``
(:mod:`.manifold`, Manifold Mixup: mixes inside the network, so run the model
with :func:`forward`); their masks are built in :mod:`.masks`.  Dynamic
policies (the mask follows the image content): ``saliencymix``
(:mod:`.dynamic`; model-free by default, ``model=`` with
``saliency="gradient"``) and, needing ``model=``, ``puzzlemix`` and its
reduced variant ``puzzlemix_lite`` (:mod:`.puzzlemix`), and ``automix``
(:mod:`.automix`, a learned mixer: its ``model=`` is the state from
:func:`build_state`).
``POLICIES[name]`` describes each one (kind, mask, 4-D images, options).
"""

from __future__ import annotations

from mixviz.mixing import automix, manifold  # the modules (their policy functions are mix("automix"), ...)
from mixviz.mixing.automix import AutoMixPolicy, MixBlock
from mixviz.mixing.batch import MixedBatch
from mixviz.mixing.defaults import alpha_defaults
from mixviz.mixing.dynamic import (
    fine_grained_saliency,
    input_gradient_saliency,
    saliencymix,
    spectral_residual_saliency,
)
from mixviz.mixing.manifold import forward
from mixviz.mixing.puzzlemix import graph_cut_labels, graph_cut_masks, puzzlemix, puzzlemix_lite, transport_plan
from mixviz.mixing.registry import (
    POLICIES,
    Mix,
    PolicyInfo,
    available,
    build_state,
    mix,
    policy_info,
    split_options,
)
from mixviz.mixing.static import (
    average,
    box_mask,
    cutmix,
    fmix,
    fourier_mask,
    gaussian_mask,
    grid_mask,
    gridmix,
    mixup,
    none,
    resizemix,
    sample_beta,
    smoothmix,
)

__all__ = [
    "MixedBatch",
    "mix",
    "forward",
    "build_state",
    "split_options",
    "available",
    "Mix",
    "POLICIES",
    "PolicyInfo",
    "policy_info",
    "none",
    "mixup",
    "average",
    "cutmix",
    "fmix",
    "resizemix",
    "gridmix",
    "smoothmix",
    "saliencymix",
    "puzzlemix",
    "puzzlemix_lite",
    "AutoMixPolicy",
    "MixBlock",
    "sample_beta",
    "box_mask",
    "fourier_mask",
    "grid_mask",
    "gaussian_mask",
    "fine_grained_saliency",
    "input_gradient_saliency",
    "spectral_residual_saliency",
    "graph_cut_masks",
    "graph_cut_labels",
    "transport_plan",
]
