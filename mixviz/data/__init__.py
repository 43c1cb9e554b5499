"""Datasets: offline ones that need no internet (``moons``, ``spirals``,
``digits``, ``clutter``) and online ones read through torchvision
(``cifar10``, ``cifar100``, ``stl10``, ``imagefolder``).

>>> from mixviz import data
>>> ds = data.load("clutter", split="test", n_test=100)
>>> ds.images.shape, ds.masks.shape, ds.num_classes
(torch.Size([100, 3, 32, 32]), torch.Size([100, 1, 32, 32]), 10)

Every set is an :class:`InMemoryDataset` (tensors ``images``, ``labels``,
maybe ``masks``) except ``imagefolder``, a :class:`FolderDataset` to read with
a DataLoader.  Images are in [0, 1] (uint8 0..255 for CIFAR/STL-10); the
model normalises with the dataset's ``mean``/``std``.

Keyword arguments per name (all optional):

==============  ===========================================================
moons           ``n=1000, noise=0.1, seed=0``
spirals         ``n=1000, noise=0.05, turns=1.5, seed=0``
digits          ``size=32``
clutter         ``n_train=5000, n_test=1000, seed=0, size=32,
                objects="digits"|"shapes"|"both", scale, aspect, contrast, patch``
cifar10/100     (``root``, ``download``)
stl10           (``root``, ``download``)
imagefolder     ``size=64, mean, std`` (``root`` required)
==============  ===========================================================

Every in-memory set (all but ``imagefolder``) also takes the label-noise
options of :mod:`mixviz.data.noise`: ``label_noise=p`` (in [0, 1)),
``noise_kind="symmetric"|"pair"`` and ``noise_seed`` (default: the set's own
``seed`` option, 0 for sets without one).  Only the training split is
corrupted; its true labels stay in ``clean_labels``.

The offline sets ignore ``root`` and ``download``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mixviz._validation import check_choice
from mixviz.data import clutter as _clutter
from mixviz.data import digits as _digits
from mixviz.data import toy2d as _toy2d
from mixviz.data import vision as _vision
from mixviz.data.base import (
    SPLITS,
    DatasetNotFoundError,
    FolderDataset,
    InMemoryDataset,
    channel_stats,
    default_root,
    to_float,
)
from mixviz.data.clutter import mask_area_stats
from mixviz.data.noise import NOISE_KINDS, NOISE_OPTIONS, check_noise, corrupt_labels, with_label_noise
from mixviz.data.subsets import labelled_subset

__all__ = [
    "load",
    "available",
    "describe",
    "InMemoryDataset",
    "FolderDataset",
    "DatasetNotFoundError",
    "default_root",
    "to_float",
    "channel_stats",
    "mask_area_stats",
    "NOISE_KINDS",
    "corrupt_labels",
    "with_label_noise",
    "labelled_subset",
]

_OFFLINE: dict[str, Callable[..., InMemoryDataset]] = {
    "moons": _toy2d.moons,
    "spirals": _toy2d.spirals,
    "digits": _digits.digits,
    "clutter": _clutter.clutter,
}
_ONLINE: dict[str, Callable[..., InMemoryDataset | FolderDataset]] = {
    "cifar10": _vision.cifar10,
    "cifar100": _vision.cifar100,
    "stl10": _vision.stl10,
    "imagefolder": _vision.imagefolder,
}


def available() -> list[str]:
    """The names :func:`load` accepts."""
    return [*_OFFLINE, *_ONLINE]


def _options(fn: Callable) -> list[str]:
    params = inspect.signature(fn).parameters
    return [p for p in params if p not in ("split", "root", "download")]


def load(name: str, split: str = "train", root: str | Path | None = None, download: bool = False,
         **kw: Any) -> InMemoryDataset | FolderDataset:
    """Load dataset ``name`` (one of :func:`available`), split ``"train"`` or
    ``"test"``.

    ``root`` is where online sets live (default ``$MIXVIZ_DATA`` or
    ``~/.cache/mixviz/data``; required for ``imagefolder``); ``download=True``
    lets torchvision fetch a missing set.  Other keyword arguments go to the
    set's builder (see the module docstring); unknown ones raise ``TypeError``.

    Raises:
        ValueError: unknown ``name`` or ``split`` (the message lists the choices).
        DatasetNotFoundError: an online set is not on disk and ``download`` is
            False; the message says how to get it.
    """
    if not isinstance(name, str) or name not in available():
        raise ValueError(f"name must be one of {', '.join(available())}; got {name!r}")
    check_choice("split", split, SPLITS)
    if not isinstance(download, bool):
        raise TypeError(f"download must be a bool, got {type(download).__name__}")
    fn = _OFFLINE.get(name) or _ONLINE[name]
    options = _options(fn)
    noise = {k: kw.pop(k) for k in NOISE_OPTIONS if k in kw}
    unknown = sorted(set(kw) - set(options))
    if unknown:
        raise TypeError(f"unknown keyword argument(s) {', '.join(unknown)} for dataset {name!r}; "
                        f"it accepts: {', '.join([*options, *NOISE_OPTIONS] if name != 'imagefolder' else options) or 'none'}")
    if noise and name == "imagefolder":
        raise ValueError("label_noise is supported for in-memory data sets only, not 'imagefolder' "
                         "(its pictures are read lazily and keep their folder labels)")
    p, kind = noise.get("label_noise", 0.0), noise.get("noise_kind", "symmetric")
    check_noise(p, kind)
    seed = noise.get("noise_seed", kw.get("seed", 0))
    ds = fn(split, **kw) if name in _OFFLINE else fn(split, root=root, download=download, **kw)
    return with_label_noise(ds, p, kind, seed=seed) if p else ds


def describe(ds: InMemoryDataset | FolderDataset) -> dict[str, Any]:
    """A summary of ``ds`` for notebooks and logs: name, split, n,
    num_classes, in_shape, augment, mean, std, and for in-memory sets the
    image dtype, the class counts and, with masks, the object-area statistics
    of :func:`mask_area_stats` under ``"mask_area"``."""
    if not isinstance(ds, (InMemoryDataset, FolderDataset)):
        raise TypeError(f"ds must be an InMemoryDataset or a FolderDataset, got {type(ds).__name__}")
    out: dict[str, Any] = {
        "name": ds.name, "split": ds.split, "n": len(ds), "num_classes": ds.num_classes,
        "in_shape": tuple(ds.in_shape), "augment": ds.augment, "mean": ds.mean, "std": ds.std,
    }
    if isinstance(ds, InMemoryDataset):
        import torch

        out["dtype"] = str(ds.images.dtype).replace("torch.", "")
        out["class_counts"] = torch.bincount(ds.labels, minlength=ds.num_classes).tolist()
        out["label_noise"] = float(ds.noisy.float().mean()) if len(ds) else 0.0
        if ds.masks is not None:
            out["mask_area"] = mask_area_stats(ds.masks)
    return out
