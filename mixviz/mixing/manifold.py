"""Manifold Mixup (Verma et al., ICML 2019): mix the pair at a random hidden layer.

For each batch a layer ``k`` is drawn uniformly from ``layers`` (default
``(0, 1, 2)``: the input, the output of stage 1, the output of stage 2, as in
openmixup's ``_manifoldmix`` and the authors' PreAct-ResNet code) together with
the usual partner permutation and ``lam ~ Beta(alpha, alpha)``.  The network
runs up to layer ``k``, replaces its hidden batch ``h`` by

    h <- lam * h + (1 - lam) * h[index]

and carries on (gradients flow through both terms).  The loss is the
configured criterion on ``(y_a, y_b, lam)`` -- mixup cross-entropy or DM --
unchanged, and so are the Top-1/Top-2 metrics.

Mixing happens inside the network, so the :class:`MixedBatch` holds the
*unmixed* inputs, no pixel mask, and ``layer`` / ``layers`` (see
:class:`~mixviz.mixing.batch.MixedBatch`).  Every place that runs a model on
a mixed batch calls :func:`forward`, which passes the mixing to the model as
``model(inputs, mix_hidden=HiddenMix(...))`` -- through
DistributedDataParallel too -- and is a plain ``model(inputs)`` for every
other policy.  The models with hidden-layer access are mixviz's ``mlp``,
``smallcnn`` and ``preact_resnet18`` (:class:`mixviz.models.StagedNet`);
:func:`forward` raises ``ValueError`` for others (torchvision's ResNets).

Choices and deviations:

* Layer 0 is the input *after* the model's Normalize layer; since
  normalisation is a per-channel affine map, mixing there equals mixing the
  pixels (input mixup).
* The layer index stays a 0-dim tensor on the device (drawn with the
  generator, no host sync); the network applies
  ``torch.where(layer == k, lam, 1)`` at each candidate layer, which leaves
  the other layers exactly unchanged (see :class:`mixviz.models.HiddenMix`).
* ``per_sample=True`` (the default of :func:`mix`, and what ``fit`` uses)
  draws one lam per sample; the original draws one per batch, which
  ``per_sample=False`` reproduces.  The layer is one per batch either way.
* ``alpha`` is the caller's (openmixup's CIFAR tables use 2.0, its DM
  variant 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mixviz.mixing.batch import MixedBatch
from mixviz.mixing.static import _check_batch, _check_bool, _draw_pairs, _expand

__all__ = ["manifold", "forward"]

DEFAULT_LAYERS = (0, 1, 2)


def _check_layers(layers: Any) -> tuple[int, ...]:
    if (isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or not layers
            or any(isinstance(k, bool) or not isinstance(k, int) for k in layers)):
        raise TypeError(f"layers must be a non-empty sequence of ints (layer 0 = the input), got {layers!r}")
    if any(k < 0 for k in layers) or len(set(layers)) != len(layers):
        raise ValueError(f"layers must be distinct ints >= 0 (layer 0 = the input), got {tuple(layers)!r}")
    return tuple(layers)


def manifold(x: torch.Tensor, y: torch.Tensor, *, alpha: float = 1.0, generator: torch.Generator | None = None,
             per_sample: bool = True, correct_lam: bool = True,
             layers: Sequence[int] = DEFAULT_LAYERS) -> MixedBatch:
    """Manifold Mixup: pair each sample with ``index[i]`` of a random
    permutation, draw ``lam ~ Beta(alpha, alpha)`` and a layer uniformly from
    ``layers`` (in that order, from ``generator``), and leave the mixing
    ``h_k <- lam h_k + (1 - lam) h_k[index]`` to the network (run it with
    :func:`forward`).  Any input shape [B, ...] (2-D points with the MLP too).

    Returns a :class:`MixedBatch` whose ``inputs`` is ``x`` itself (unmixed),
    ``mask`` None, ``layer`` the drawn layer (0-dim int64 tensor on x's
    device) and ``layers`` the candidates.  ``correct_lam`` is accepted, as by
    every policy, and has nothing to correct.
    """
    _check_batch(x, y, alpha=alpha, generator=generator, per_sample=per_sample, images=False, policy="manifold")
    _check_bool("correct_lam", correct_lam)
    layers = _check_layers(layers)
    index, lam = _draw_pairs(x, alpha, generator, per_sample)
    pick = torch.randint(len(layers), (), generator=generator, device=x.device)
    # layers[pick] with the layer ids as scalars: no host -> device copy (which waits for the device)
    layer = torch.zeros((), dtype=torch.int64, device=x.device)
    for i, k in enumerate(layers):
        layer = layer + (pick == i) * k
    return MixedBatch(inputs=x, y_a=y, y_b=y[index], index=index, lam=_expand(lam, x.shape[0]),
                      policy="manifold", layer=layer, layers=layers)


def forward(model: nn.Module, mixed: MixedBatch) -> torch.Tensor:
    """The model's output on a mixed batch: ``model(mixed.inputs)``, or, when
    the batch is mixed inside the network (``mixed.layer`` set),
    ``model(mixed.inputs, mix_hidden=HiddenMix(layer, layers, index, lam))``.

    ``model`` may be wrapped in DistributedDataParallel (the keyword passes
    through, so gradients are synchronised as usual).  ``ValueError`` when the
    batch is mixed inside the network and the model has no hidden-layer
    access, or fewer stages than the largest candidate layer.
    """
    if not callable(model):
        raise TypeError(f"model must be a callable torch.nn.Module, got {type(model).__name__}")
    if not isinstance(mixed, MixedBatch):
        raise TypeError(f"mixed must be a MixedBatch, got {type(mixed).__name__}")
    if mixed.layer is None:
        return model(mixed.inputs)
    from mixviz.models import HiddenMix, check_staged

    net = check_staged(model, purpose=f"mixing inside the network (policy {mixed.policy!r})")
    if max(mixed.layers) > net.num_stages:
        raise ValueError(f"layers must be <= {net.num_stages} for a {type(net).__name__} (it has "
                         f"{net.num_stages} stages), got {mixed.layers!r}")
    logits = model(mixed.inputs, mix_hidden=HiddenMix(mixed.layer, mixed.layers, mixed.index, mixed.lam))
    mixed.forwarded = True  # the losses' check (MixedBatch.check_forwarded): this batch was mixed in the network
    return logits
