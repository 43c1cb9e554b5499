"""scikit-learn's handwritten digits (``sklearn.datasets.load_digits``: 1797
real 8x8 scans, 16 grey levels, ships with scikit-learn, offline), upsampled.

The train/test split is fixed: stratified by class, 20 % test, seed 0
(``sklearn.model_selection.train_test_split``), so every run and every set
built from the glyphs (:mod:`mixviz.data.clutter`) agrees on which scans are
test scans.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from mixviz._extras import require
from mixviz._validation import check_choice, check_positive
from mixviz.data.base import SPLITS, InMemoryDataset, channel_stats

__all__ = ["digits", "glyphs", "split_indices", "TEST_FRACTION", "SPLIT_SEED"]

TEST_FRACTION = 0.2
SPLIT_SEED = 0


@lru_cache(maxsize=1)
def _load() -> tuple[torch.Tensor, torch.Tensor]:
    require("sklearn", "the offline data sets")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32) / 16.0
    return images, torch.as_tensor(bunch.target, dtype=torch.int64)


@lru_cache(maxsize=1)
def _split() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.model_selection import train_test_split

    _, labels = _load()
    index = torch.arange(labels.shape[0])
    train, test = train_test_split(index.numpy(), test_size=TEST_FRACTION, stratify=labels.numpy(),
                                   random_state=SPLIT_SEED, shuffle=True)
    return torch.as_tensor(train, dtype=torch.int64), torch.as_tensor(test, dtype=torch.int64)


def split_indices(split: str) -> torch.Tensor:
    """Indices into ``load_digits()`` of the scans in ``split`` (fixed)."""
    check_choice("split", split, SPLITS)
    train, test = _split()
    return (train if split == "train" else test).clone()


def glyphs(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8x8 scans of ``split`` as float32 ``[N, 8, 8]`` in [0, 1] (grey
    level / 16) and their labels ``[N]``."""
    index = split_indices(split)
    images, labels = _load()
    return images[index].clone(), labels[index].clone()


def digits(split: str = "train", *, size: int = 32) -> InMemoryDataset:
    """The digits of ``split`` as float32 ``[N, 1, size, size]`` in [0, 1],
    upsampled from 8x8 by bilinear interpolation (``align_corners=False``; a
    convex combination of grey levels, so the range stays [0, 1]).

    1437 train and 360 test scans, 10 classes ``"0"..."9"``; ``augment`` is
    ``"none"`` (a flipped digit is another glyph).
    """
    check_choice("split", split, SPLITS)
    check_positive("size", size, integer=True)
    if size < 8:
        raise ValueError(f"size must be >= 8 (the scans are 8x8), got {size}")
    x, y = glyphs(split)
    x = x.unsqueeze(1)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.clamp_(0.0, 1.0).contiguous()
    mean, std = channel_stats(x)
    return InMemoryDataset(images=x, labels=y, classes=[str(d) for d in range(10)], name="digits",
                           split=split, mean=mean, std=std, augment="none", meta={"size": size})
