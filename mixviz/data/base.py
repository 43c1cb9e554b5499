"""The dataset types of :mod:`mixviz.data`.

* :class:`InMemoryDataset` -- every set that fits in memory (2-D points,
  digits, clutter, CIFAR, STL-10): plain tensors, so the training loop can move
  the whole set to the device once and index it there.
* :class:`FolderDataset` -- a torchvision ``ImageFolder`` read lazily through a
  DataLoader, each picture resized to a fixed square ``size`` in [0, 1].

Images stay in [0, 1] (or uint8 0..255 for the big sets); ``mean``/``std`` are
only *reported*: the model normalises (:class:`mixviz.models.Normalize`), so
pictures and attributions work on unnormalised images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch.utils.data import Dataset

from mixviz._validation import check_choice, check_tensor

__all__ = [
    "SPLITS",
    "AUGMENTS",
    "DatasetNotFoundError",
    "InMemoryDataset",
    "FolderDataset",
    "to_float",
    "channel_stats",
    "default_root",
    "split_seed",
    "check_seed",
]

SPLITS = ("train", "test")
AUGMENTS = ("crop_flip", "none")


class DatasetNotFoundError(FileNotFoundError):
    """The files of an online dataset are not on disk (and ``download`` was
    not asked for).  The message says how to get them."""


def default_root() -> Path:
    """Where online datasets live: ``$MIXVIZ_DATA`` if set, else
    ``~/.cache/mixviz/data``."""
    env = os.environ.get("MIXVIZ_DATA")
    return Path(env).expanduser() if env else Path("~/.cache/mixviz/data").expanduser()


def check_seed(seed: int) -> None:
    """Raise ``TypeError``/``ValueError`` naming ``seed`` unless it is an int >= 0."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")


def split_seed(seed: int, split: str) -> int:
    """A 32-bit seed for one split, derived from ``seed``: the train and test
    draws of a generated set use different, well-mixed streams
    (``numpy.random.SeedSequence([seed, split_index])``)."""
    import numpy as np

    check_seed(seed)
    check_choice("split", split, SPLITS)
    return int(np.random.SeedSequence([seed, SPLITS.index(split)]).generate_state(1)[0])


def to_float(images: torch.Tensor) -> torch.Tensor:
    """Images as float32 in [0, 1]: uint8 ``v`` becomes ``v / 255``; float
    images are returned as float32 unchanged."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    return images.to(torch.float32)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of ``images``
    [N, C, H, W], in the [0, 1] scale of :func:`to_float`.

    uint8 images are counted with a 256-bin histogram per channel, so no float
    copy of a big set is made and the result is exact:
    ``mean = sum_v p(v) v / 255``, ``std^2 = sum_v p(v) (v / 255)^2 - mean^2``.
    """
    check_tensor("images", images, ndim=4)
    if images.shape[0] == 0:
        raise ValueError("images must hold at least one image to compute mean/std")
    if images.dtype == torch.uint8:
        values = torch.arange(256, dtype=torch.float64) / 255.0
        means, stds = [], []
        for c in range(images.shape[1]):
            counts = torch.bincount(images[:, c].reshape(-1), minlength=256).to(torch.float64)
            p = counts / counts.sum()
            m = float((p * values).sum())
            var = float((p * values.square()).sum()) - m * m
            means.append(m)
            stds.append(max(var, 0.0) ** 0.5)
        return tuple(means), tuple(stds)
    var, mean = torch.var_mean(images.to(torch.float32), dim=(0, 2, 3), correction=0)
    return tuple(mean.tolist()), tuple(var.sqrt().tolist())


def _check_mean_std(name: str, value: Sequence[float] | None, channels: int | None) -> None:
    if value is None:
        return
    if not isinstance(value, tuple) or not all(isinstance(v, float) for v in value):
        raise TypeError(f"{name} must be a tuple of floats or None, got {value!r}")
    if channels is not None and len(value) != channels:
        raise ValueError(f"{name} must have {channels} entries (one per channel), got {len(value)}")


@dataclass(eq=False)
class InMemoryDataset(Dataset):
    """A labelled set held as tensors.

    Attributes:
        images: ``[N, C, H, W]`` images, float32 in [0, 1] (digits, clutter) or
            uint8 in 0..255 (CIFAR, STL-10: a quarter of the memory; use
            :func:`to_float`, which divides by 255), or ``[N, 2]`` float32
            points (moons, spirals).
        labels: LongTensor ``[N]`` with values in ``[0, num_classes)``.
        classes: the class names; ``labels`` index into it.
        name, split: the name given to :func:`mixviz.data.load` and
            ``"train"`` or ``"test"``.
        masks: None, or float32 ``[N, 1, H, W]`` in {0, 1}: 1 where the pixel
            belongs to the labelled object (clutter only).
        mean, std: per-channel statistics of this split's images in the [0, 1]
            scale (for the model's normalisation layer); None for points.
        augment: the augmentation the training loop should apply:
            ``"crop_flip"`` (natural images) or ``"none"`` (digits, points).
        meta: the arguments that made a generated set (seed, size, ...), or
            the root of a torchvision set; informative only.
        clean_labels: the true labels.  The same tensor as ``labels`` unless
            label noise was asked for (:mod:`mixviz.data.noise`); then
            ``labels`` holds the noisy training labels and ``clean_labels``
            the true ones, kept for analysis (memorisation), never for training.

    ``ds[i]`` is ``(to_float(images[i]), labels[i])`` so a DataLoader works.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str
    split: str
    masks: torch.Tensor | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    augment: str = "none"
    meta: dict = field(default_factory=dict)
    clean_labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        check_tensor("images", self.images, ndim=(2, 4))
        if self.images.dtype not in (torch.float32, torch.uint8):
            raise TypeError(f"images must be float32 or uint8, got {self.images.dtype}")
        if self.images.dim() == 2 and self.images.dtype != torch.float32:
            raise TypeError(f"point images ([N, D]) must be float32, got {self.images.dtype}")
        check_tensor("labels", self.labels, ndim=1, floating=False)
        if self.labels.dtype != torch.int64:
            raise TypeError(f"labels must be a LongTensor (int64), got {self.labels.dtype}")
        n = self.images.shape[0]
        if self.labels.shape[0] != n:
            raise ValueError(f"labels must have length {n} (one per image), got {self.labels.shape[0]}")
        if not isinstance(self.classes, list) or not all(isinstance(c, str) for c in self.classes):
            raise TypeError(f"classes must be a list of str, got {self.classes!r}")
        if not self.classes:
            raise ValueError("classes must not be empty")
        if n and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)):
            raise ValueError(f"labels must lie in [0, {len(self.classes)}) (the number of classes)")
        if self.clean_labels is None:
            self.clean_labels = self.labels
        elif self.clean_labels is not self.labels:
            check_tensor("clean_labels", self.clean_labels, ndim=1, floating=False)
            if self.clean_labels.dtype != torch.int64 or self.clean_labels.shape != self.labels.shape:
                raise ValueError(f"clean_labels must be a LongTensor of shape [{n}] like labels, got "
                                 f"{self.clean_labels.dtype} {list(self.clean_labels.shape)}")
        check_choice("split", self.split, SPLITS)
        check_choice("augment", self.augment, AUGMENTS)
        if self.masks is not None:
            check_tensor("masks", self.masks, ndim=4, floating=True)
            want = (n, 1, *self.images.shape[2:])
            if self.images.dim() != 4 or tuple(self.masks.shape) != want:
                raise ValueError(f"masks must have shape {list(want)}, got {list(self.masks.shape)}")
        channels = self.images.shape[1] if self.images.dim() == 4 else None
        _check_mean_std("mean", self.mean, channels)
        _check_mean_std("std", self.std, channels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_shape(self) -> tuple[int, ...]:
        """The shape of one input, without the batch dimension."""
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return to_float(self.images[index]), self.labels[index]

    def to(self, device: torch.device | str) -> "InMemoryDataset":
        """A copy with ``images``, ``labels`` and ``masks`` on ``device``."""
        masks = None if self.masks is None else self.masks.to(device)
        labels = self.labels.to(device)
        clean = labels if self.clean_labels is self.labels else self.clean_labels.to(device)
        return replace(self, images=self.images.to(device), labels=labels, masks=masks, clean_labels=clean)

    @property
    def noisy(self) -> torch.Tensor:
        """Bool [N]: where ``labels`` differs from ``clean_labels`` (the flipped samples)."""
        return self.labels != self.clean_labels

    def __repr__(self) -> str:
        masks = "" if self.masks is None else ", masks"
        return (f"InMemoryDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
                f"in_shape={self.in_shape}, dtype={self.images.dtype}, "
                f"num_classes={self.num_classes}{masks})")


class FolderDataset(Dataset):
    """Pictures in class folders (torchvision ``ImageFolder``), each resized to
    ``size x size`` RGB and returned as float32 in [0, 1].

    ``mean``/``std`` are measured on at most ``stats_samples`` pictures spread
    evenly over the folder (pass them explicitly to skip the measurement).
    There is no ``images`` attribute: iterate with a DataLoader.
    """

    augment = "crop_flip"

    def __init__(self, folder: str | Path, *, name: str, split: str, size: int = 64,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 stats_samples: int = 256) -> None:
        from torchvision import datasets
        from torchvision.transforms import v2

        check_choice("split", split, SPLITS)
        self.name, self.split, self.size = name, split, size
        self.folder = Path(folder)
        transform = v2.Compose([
            v2.ToImage(),
            v2.Resize((size, size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.ToPureTensor(),
        ])
        self.dataset = datasets.ImageFolder(str(self.folder), transform=transform)
        self.classes: list[str] = list(self.dataset.classes)
        if mean is None or std is None:
            mean, std = self._measure(stats_samples)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        _check_mean_std("mean", self.mean, 3)
        _check_mean_std("std", self.std, 3)

    def _measure(self, stats_samples: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        n = len(self.dataset)
        k = min(n, max(1, stats_samples))
        index = torch.linspace(0, n - 1, k).round().long().unique()
        images = torch.stack([self.dataset[i][0] for i in index.tolist()])
        return channel_stats(images)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (3, self.size, self.size)

    @property
    def targets(self) -> list[int]:
        return list(self.dataset.targets)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.dataset[index]

    def __repr__(self) -> str:
        return (f"FolderDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
                f"in_shape={self.in_shape}, num_classes={self.num_classes}, folder={str(self.folder)!r})")
