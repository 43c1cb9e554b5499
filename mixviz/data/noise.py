"""Label noise: the regime in which mixup's regularisation shows.

With noisy labels a network that can memorise will, late in training, fit the
wrong labels of the flipped samples; mixing holds that memorisation down
(Zhang et al. 2018, section 3.4).  These functions corrupt the *training*
labels of an in-memory set and keep the true ones:

* ``"symmetric"``: each label, with probability ``p``, becomes a class drawn
  uniformly from the ``C - 1`` *other* classes:
  ``y' = (y + k) mod C`` with ``k ~ U{1, ..., C - 1}``;
* ``"pair"``: each label, with probability ``p``, becomes the next class:
  ``y' = (y + 1) mod C`` (the "pair flip" of Han et al. 2018).

The draws come from a CPU ``torch.Generator`` seeded from ``seed`` (the data
set's own seed by default, see :func:`mixviz.data.load`), so the same options
give the same noisy labels on every machine.  The realised rate is binomial
around ``p`` (each sample flips independently).

>>> import torch
>>> y = torch.arange(10).repeat(100)
>>> noisy = corrupt_labels(y, 10, 0.4, "symmetric", seed=0)
>>> round(float((noisy != y).float().mean()), 2)
0.41
>>> bool(((noisy - y) % 10 != 0).sum() == (noisy != y).sum())
True
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from mixviz._validation import check_choice, check_tensor
from mixviz.data.base import InMemoryDataset, check_seed

__all__ = ["NOISE_KINDS", "NOISE_OPTIONS", "check_noise", "corrupt_labels", "with_label_noise"]

NOISE_KINDS = ("symmetric", "pair")
#: The data options (``data.load(..., label_noise=..., noise_kind=..., noise_seed=...)``) handled here.
NOISE_OPTIONS = ("label_noise", "noise_kind", "noise_seed")


def check_noise(label_noise: Any, noise_kind: Any) -> None:
    """Raise ``ValueError``/``TypeError`` naming the option unless
    ``label_noise`` is a number in [0, 1) and ``noise_kind`` one of
    :data:`NOISE_KINDS`."""
    if isinstance(label_noise, bool) or not isinstance(label_noise, (int, float)):
        raise TypeError(f"label_noise must be a number in [0, 1), got {label_noise!r}")
    if not 0.0 <= float(label_noise) < 1.0:
        raise ValueError(f"label_noise must lie in [0, 1) (the probability that a training label is flipped), "
                         f"got {label_noise!r}")
    check_choice("noise_kind", noise_kind, NOISE_KINDS)


def _generator(seed: int) -> torch.Generator:
    # A stream of its own: the noise does not reuse the draws that made the images.
    state = np.random.SeedSequence([seed, 0x6E6F6973]).generate_state(1)[0]  # 0x6E6F6973 = "nois"
    return torch.Generator().manual_seed(int(state))


def corrupt_labels(labels: torch.Tensor, num_classes: int, p: float, kind: str = "symmetric", *,
                   seed: int = 0) -> torch.Tensor:
    """A noisy copy of ``labels`` (LongTensor [N] in ``[0, num_classes)``).

    Each sample is flipped independently with probability ``p``; see the
    module docstring for the two kinds.  ``p = 0`` returns ``labels`` itself.
    """
    check_noise(p, kind)
    check_tensor("labels", labels, ndim=1, floating=False)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2 to flip labels, got {num_classes!r}")
    check_seed(seed)
    if p == 0:
        return labels
    g = _generator(seed)
    n = labels.shape[0]
    flip = torch.rand(n, generator=g) < p
    if kind == "symmetric":
        shift = torch.randint(1, num_classes, (n,), generator=g)
    else:
        shift = torch.ones(n, dtype=torch.int64)
    y = labels.to("cpu", torch.int64)
    noisy = torch.where(flip, (y + shift) % num_classes, y)
    return noisy.to(labels.device)


def with_label_noise(ds: InMemoryDataset, label_noise: float, noise_kind: str = "symmetric", *,
                     seed: int = 0) -> InMemoryDataset:
    """``ds`` with noisy ``labels`` and the true ones in ``clean_labels``.

    Only the training split is corrupted: a test split is returned unchanged
    (its ``clean_labels`` is its ``labels``), so one set of data options
    serves both splits.  ``meta`` records the noise and its realised rate.
    """
    if not isinstance(ds, InMemoryDataset):
        raise TypeError(f"label noise needs an in-memory data set, got {type(ds).__name__} "
                        f"(folder data sets are read lazily and keep their labels)")
    check_noise(label_noise, noise_kind)
    if ds.split != "train" or label_noise == 0:
        return ds
    noisy = corrupt_labels(ds.clean_labels, ds.num_classes, float(label_noise), noise_kind, seed=seed)
    rate = float((noisy != ds.clean_labels).float().mean()) if len(ds) else 0.0
    meta = {**ds.meta, "label_noise": float(label_noise), "noise_kind": noise_kind, "noise_seed": seed,
            "flipped": rate}
    return replace(ds, labels=noisy, clean_labels=ds.clean_labels, meta=meta)
