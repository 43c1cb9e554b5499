"""CIFAR-10, CIFAR-100 and STL-10 through torchvision, and any ImageFolder.

The torchvision set is read once and its arrays (``.data``,
``.targets``/``.labels``) become an :class:`InMemoryDataset` of uint8 images
``[N, 3, H, W]`` (CIFAR 32x32, STL-10 96x96; the labelled train/test splits
only).  Files live under ``root`` (default :func:`default_root`:
``$MIXVIZ_DATA`` or ``~/.cache/mixviz/data``) in torchvision's layout:

* ``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``
* ``root/cifar-100-python/{train, test, meta}``
* ``root/stl10_binary/{train_X.bin, train_y.bin, test_X.bin, test_y.bin,
  unlabeled_X.bin, class_names.txt}``

Nothing is downloaded unless ``download=True`` is passed (``--download`` on
the command line).  torchvision verifies the MD5 of every file when it opens
a set; missing files raise :class:`DatasetNotFoundError`, files that fail the
check a ``RuntimeError`` that says so.

``imagefolder`` reads ``root/train/<class>/<picture>`` and
``root/test/<class>/<picture>``.  A folder with no ``train``/``test``
sub-folders, ``root/<class>/<picture>``, is accepted as the train split only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision import datasets

from mixviz._validation import check_choice, check_positive
from mixviz.data.base import SPLITS, DatasetNotFoundError, FolderDataset, InMemoryDataset, channel_stats, default_root

__all__ = ["TORCHVISION_SETS", "STL10_CLASSES", "cifar10", "cifar100", "stl10", "imagefolder",
           "from_torchvision"]

STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


# The torchvision class behind each name.  A test, or a user whose mirror
# stores differently checksummed files, may put a subclass here (with its own
# ``train_list``/``test_list``/``meta`` checksums).
TORCHVISION_SETS: dict[str, type] = {
    "cifar10": datasets.CIFAR10,
    "cifar100": datasets.CIFAR100,
    "stl10": datasets.STL10,
}


def _resolve_root(root: str | Path | None) -> Path:
    if root is not None and not isinstance(root, (str, Path)):
        raise TypeError(f"root must be a str, a Path or None, got {type(root).__name__}")
    return Path(root).expanduser() if root is not None else default_root()


def _missing(cls: type, root: Path) -> list[str]:
    """Files torchvision checks (for either split) that are not under ``root``."""
    folder = root / cls.base_folder
    names = [f for f, _ in cls.train_list + cls.test_list]
    meta = getattr(cls, "meta", None)
    if isinstance(meta, dict):
        names.append(meta["filename"])
    return [str(folder / f) for f in names if not (folder / f).is_file()]


def _not_found(name: str, cls: type, root: Path, missing: list[str]) -> DatasetNotFoundError:
    shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
    return DatasetNotFoundError(
        f"{name} is not under root={str(root)!r} (missing: {shown}). Get it with "
        f"mixviz.data.load({name!r}, root={str(root)!r}, download=True) or `--download` on the command "
        f"line (needs internet), or unpack {cls.filename} from {cls.url} into {str(root)!r} so that "
        f"{str(root / cls.base_folder)!r} exists. Set $MIXVIZ_DATA to change the default root.")


def _open(name: str, split: str, root: Path, download: bool):
    cls = TORCHVISION_SETS[name]
    if not download:
        missing = _missing(cls, root)
        if missing:
            raise _not_found(name, cls, root, missing)
    kwargs: dict = {"download": True} if download else {}
    if name == "stl10":
        kwargs["split"] = split
    else:
        kwargs["train"] = split == "train"
    try:
        return cls(str(root), **kwargs)
    except RuntimeError as err:
        if "download=True" not in str(err):
            raise
        raise RuntimeError(
            f"{name} files under {str(root / cls.base_folder)!r} failed torchvision's MD5 check ({err}). "
            f"Load again with download=True (or `--download`) to fetch a fresh copy.") from err


def from_torchvision(dataset, *, name: str, split: str, layout: str = "NHWC",
                     classes: list[str] | None = None) -> InMemoryDataset:
    """An :class:`InMemoryDataset` of uint8 ``[N, 3, H, W]`` images from a
    torchvision CIFAR/STL-10 object: ``.data`` is ``[N, H, W, 3]``
    (``layout="NHWC"``, CIFAR) or ``[N, 3, H, W]`` (``"NCHW"``, STL-10);
    labels come from ``.targets`` or ``.labels``; classes from ``.classes``
    unless given."""
    check_choice("layout", layout, ("NHWC", "NCHW"))
    data = np.asarray(dataset.data)
    if data.ndim != 4 or data.dtype != np.uint8:
        raise ValueError(f"dataset.data must be a 4-D uint8 array, got {data.dtype} {data.shape}")
    images = torch.from_numpy(np.ascontiguousarray(data))
    if layout == "NHWC":
        images = images.permute(0, 3, 1, 2)
    images = images.contiguous()
    targets = getattr(dataset, "targets", None)
    if targets is None:
        targets = getattr(dataset, "labels")
    labels = torch.as_tensor(np.asarray(targets), dtype=torch.int64)
    if classes is None:
        classes = list(dataset.classes)
    mean, std = channel_stats(images)
    return InMemoryDataset(images=images, labels=labels, classes=list(classes), name=name, split=split,
                           mean=mean, std=std, augment="crop_flip", meta={"root": str(dataset.root)})


def _load_torchvision(name: str, split: str, root: str | Path | None, download: bool) -> InMemoryDataset:
    check_choice("split", split, SPLITS)
    if not isinstance(download, bool):
        raise TypeError(f"download must be a bool, got {type(download).__name__}")
    ds = _open(name, split, _resolve_root(root), download)
    if name == "stl10":   # torchvision reads class_names.txt when the file is there
        return from_torchvision(ds, name=name, split=split, layout="NCHW",
                                classes=list(getattr(ds, "classes", STL10_CLASSES)))
    return from_torchvision(ds, name=name, split=split, layout="NHWC")


def cifar10(split: str = "train", root: str | Path | None = None, download: bool = False) -> InMemoryDataset:
    """CIFAR-10: 50 000 train / 10 000 test uint8 images 3x32x32, 10 classes."""
    return _load_torchvision("cifar10", split, root, download)


def cifar100(split: str = "train", root: str | Path | None = None, download: bool = False) -> InMemoryDataset:
    """CIFAR-100: 50 000 train / 10 000 test uint8 images 3x32x32, 100 fine classes."""
    return _load_torchvision("cifar100", split, root, download)


def stl10(split: str = "train", root: str | Path | None = None, download: bool = False) -> InMemoryDataset:
    """STL-10, labelled splits: 5 000 train / 8 000 test uint8 images 3x96x96,
    10 classes.  (torchvision checks the unlabeled file too, so it must be
    present.)"""
    return _load_torchvision("stl10", split, root, download)


def imagefolder(split: str = "train", root: str | Path | None = None, download: bool = False, *,
                size: int = 64, mean: tuple[float, float, float] | None = None,
                std: tuple[float, float, float] | None = None) -> FolderDataset:
    """Pictures in class folders, resized to ``size x size`` RGB in [0, 1].

    Layout: ``root/train/<class>/*`` and ``root/test/<class>/*`` (the test
    classes must be the train classes), or ``root/<class>/*`` as the train
    split only.  ``download`` is not supported (there is nothing to fetch).
    """
    check_choice("split", split, SPLITS)
    if root is None:
        raise ValueError("root must be given for 'imagefolder': the folder holding train/<class>/ "
                         "and test/<class>/ (or <class>/ folders for a train split only)")
    if download:
        raise ValueError("download must be False for 'imagefolder': there is nothing to download")
    check_positive("size", size, integer=True)
    root = _resolve_root(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"root={str(root)!r} is not a folder; imagefolder expects "
                                   f"root/train/<class>/* and root/test/<class>/*")
    split_dirs = [root / s for s in SPLITS if (root / s).is_dir()]
    if split_dirs:
        folder = root / split
        if not folder.is_dir():
            raise DatasetNotFoundError(f"no {split!r} folder under root={str(root)!r}: expected "
                                       f"{str(folder)!r} holding one folder per class")
    elif split == "train":
        folder = root
    else:
        raise DatasetNotFoundError(f"root={str(root)!r} has no train/ and test/ folders, so it is read as "
                                   f"the train split only; split='test' needs {str(root / 'test')!r}")
    if split == "test" and (root / "train").is_dir():
        train_classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
        test_classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if train_classes != test_classes:
            raise ValueError(f"the class folders of {str(folder)!r} ({test_classes}) must be those of "
                             f"{str(root / 'train')!r} ({train_classes}), or the labels would not agree")
    try:
        return FolderDataset(folder, name="imagefolder", split=split, size=size, mean=mean, std=std)
    except FileNotFoundError as err:
        raise DatasetNotFoundError(f"no pictures found under {str(folder)!r}: {err}") from err
