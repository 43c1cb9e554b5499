"""Labelled subsets for semi-supervised training: ``k`` labels per class,
the rest of the training split used without its labels."""

from __future__ import annotations

import torch

from mixviz._validation import check_positive, check_tensor
from mixviz.data.base import check_seed

__all__ = ["labelled_subset"]


def labelled_subset(labels: torch.Tensor, labels_per_class: int, *, seed: int = 0,
                    num_classes: int | None = None, classes: list[str] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a training set into a class-balanced labelled part and the rest.

    Every sample gets a random key from a generator seeded with ``seed``; in
    each class the ``labels_per_class`` samples with the smallest keys are
    labelled.  So the subset is balanced (exactly ``k`` per class), a
    deterministic function of ``(labels, k, seed)``, and it grows with ``k``
    (the 4-label subset of a seed lies inside its 25-label subset).

    Args:
        labels: ``[N]`` integer class labels of the training split.
        labels_per_class: ``k >= 1``; at most the size of the smallest class.
        seed: the draw.
        num_classes: the number of classes (default ``labels.max() + 1``);
            every class must have at least ``k`` samples.
        classes: class names, only to name a too-small class in the error.

    Returns:
        ``(labelled, unlabelled)``: sorted LongTensors of indices into
        ``labels`` that together cover ``0 .. N-1`` once.  Only the labels of
        ``labelled`` are meant to be used for training.

    Raises:
        ValueError: naming ``labels_per_class`` when a class has fewer samples.
    """
    check_tensor("labels", labels, ndim=1, floating=False)
    check_positive("labels_per_class", labels_per_class, integer=True)
    check_seed(seed)
    if labels.numel() == 0:
        raise ValueError("labels must not be empty")
    labels = labels.detach().to("cpu", torch.long)
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    check_positive("num_classes", num_classes, integer=True)
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}) (num_classes)")
    counts = torch.bincount(labels, minlength=num_classes)
    smallest = int(counts.argmin())
    if int(counts[smallest]) < labels_per_class:
        name = classes[smallest] if classes is not None and smallest < len(classes) else str(smallest)
        raise ValueError(f"labels_per_class ({labels_per_class}) is larger than class {name!r} has in the "
                         f"training split ({int(counts[smallest])} samples); use at most {int(counts.min())}")
    key = torch.rand(labels.shape[0], generator=torch.Generator().manual_seed(seed))
    order = torch.argsort(key)
    order = order[torch.argsort(labels[order], stable=True)]  # by class, then by key
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(labels.shape[0]) - starts[labels[order]]
    chosen = torch.zeros(labels.shape[0], dtype=torch.bool)
    chosen[order[rank < labels_per_class]] = True
    return chosen.nonzero().squeeze(1), (~chosen).nonzero().squeeze(1)
