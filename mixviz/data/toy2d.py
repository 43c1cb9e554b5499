"""Two-class 2-D point sets for decision-boundary pictures: ``moons`` and
``spirals``.

Train and test are independent draws (seeds derived from ``seed`` by
:func:`~mixviz.data.base.split_seed`).  Both splits are standardised with the
mean and standard deviation of the *train* draw, so they share one coordinate
frame: ``x_std = (x - mean_train) / std_train`` per coordinate.
"""

from __future__ import annotations

import math

import torch

from mixviz._extras import require
from mixviz._validation import check_choice, check_positive
from mixviz.data.base import SPLITS, InMemoryDataset, check_seed, split_seed

__all__ = ["moons", "spirals", "raw_moons", "raw_spirals"]


def _check_args(n: int, noise: float, seed: int) -> None:
    check_positive("n", n, integer=True)
    if n < 2:
        raise ValueError(f"n must be >= 2 (one point per class), got {n}")
    check_positive("noise", noise, allow_zero=True)
    check_seed(seed)


def raw_moons(n: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points of scikit-learn's ``make_moons`` (two interleaved half
    circles, Gaussian noise of std ``noise``), unstandardised, shuffled."""
    require("sklearn", "the offline data sets")
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=n, noise=noise, shuffle=True, random_state=seed)
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64)


def raw_spirals(n: int, noise: float, seed: int, turns: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points on two interleaved spirals, unstandardised, shuffled.

    Class ``k`` in {0, 1}: ``t = sqrt(u)``, ``u ~ U(0, 1)`` (about uniform
    along the arc), angle ``theta = 2 pi turns t + k pi``, radius
    ``r = 0.1 + 0.9 t``; the point is ``r (cos theta, sin theta) + noise * e``,
    ``e ~ N(0, I)``.  Class sizes are ``n // 2`` and ``n - n // 2``.
    """
    g = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) >= n // 2).long()
    t = torch.rand(n, generator=g).sqrt()
    theta = 2 * math.pi * turns * t + math.pi * labels
    r = 0.1 + 0.9 * t
    x = torch.stack((r * theta.cos(), r * theta.sin()), dim=1)
    x = x + noise * torch.randn(n, 2, generator=g)
    perm = torch.randperm(n, generator=g)
    return x[perm].float(), labels[perm]


def _standardised(name: str, split: str, draw, n: int, seed: int, meta: dict) -> InMemoryDataset:
    check_choice("split", split, SPLITS)
    train_x, _ = draw(n, split_seed(seed, "train"))
    mean, std = train_x.mean(0), train_x.std(0)
    x, y = draw(n, split_seed(seed, split))
    x = ((x - mean) / std).float()
    return InMemoryDataset(images=x, labels=y, classes=["0", "1"], name=name, split=split,
                           augment="none", meta={**meta, "seed": seed, "n": n})


def moons(split: str = "train", *, n: int = 1000, noise: float = 0.1, seed: int = 0) -> InMemoryDataset:
    """Two moons (``sklearn.datasets.make_moons``): ``n`` points per split,
    Gaussian noise of std ``noise`` (in the units of the unit half circles),
    standardised with the train draw's statistics."""
    _check_args(n, noise, seed)
    return _standardised("moons", split, lambda k, s: raw_moons(k, noise, s), n, seed, {"noise": noise})


def spirals(split: str = "train", *, n: int = 1000, noise: float = 0.05, turns: float = 1.5,
            seed: int = 0) -> InMemoryDataset:
    """Two interleaved spirals (:func:`raw_spirals`): ``n`` points per split,
    noise std ``noise`` (outer radius 1), ``turns`` turns, standardised with
    the train draw's statistics."""
    _check_args(n, noise, seed)
    check_positive("turns", turns)
    return _standardised("spirals", split, lambda k, s: raw_spirals(k, noise, s, turns), n, seed,
                         {"noise": noise, "turns": turns})
