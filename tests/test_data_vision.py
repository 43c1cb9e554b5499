"""CIFAR-10/100, STL-10 and ImageFolder on tiny files written here in the real
on-disk formats.

torchvision checks the MD5 of every CIFAR/STL-10 file each time it opens a
set, and tiny fake files cannot have the real checksums.  The tests therefore
compute the MD5 of the files they wrote and register a subclass of the real
torchvision class that lists those checksums (``vision.TORCHVISION_SETS`` is
mixviz's own table of the classes): torchvision's own integrity check and
reader run unchanged on the fake files.  A separate test shows that the stock
classes reject the same files, with mixviz's explanation.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets

from mixviz import data
from mixviz.data import vision as V
from mixviz.data.base import DatasetNotFoundError, channel_stats

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# --------------------------------------------------------------------------- writers (real formats)

def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, per_batch: int = 3, seed: int = 0) -> dict:
    """``cifar-10-batches-py``: pickled dicts with ``data`` uint8 [n, 3072]
    (1024 red, 1024 green, 1024 blue values, rows of 32) and ``labels``."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    out = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        rows = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        label = f"training batch {i + 1} of 5" if name != "test_batch" else "testing batch 1 of 1"
        _dump(folder / name, {"batch_label": label, "labels": labels, "data": rows,
                              "filenames": [f"img_{i}_{k}.png" for k in range(per_batch)]})
        out[name] = (rows, labels)
    _dump(folder / "batches.meta", {"num_cases_per_batch": per_batch, "label_names": CIFAR10_NAMES,
                                    "num_vis": 3072})
    return out


def write_cifar100(root: Path, n_train: int = 7, n_test: int = 4, seed: int = 0) -> dict:
    """``cifar-100-python``: ``train``/``test`` with ``fine_labels`` and
    ``coarse_labels``, ``meta`` with ``fine_label_names``/``coarse_label_names``."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for name, n in (("train", n_train), ("test", n_test)):
        rows = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = rng.integers(0, 100, n).tolist()
        _dump(folder / name, {"filenames": [f"{name}_{k}.png" for k in range(n)], "batch_label": name,
                              "fine_labels": fine, "coarse_labels": [f // 5 for f in fine], "data": rows})
        out[name] = (rows, fine)
    _dump(folder / "meta", {"fine_label_names": [f"fine_{k}" for k in range(100)],
                            "coarse_label_names": [f"coarse_{k}" for k in range(20)]})
    return out


def write_stl10(root: Path, n_train: int = 3, n_test: int = 2, seed: int = 0, class_names: bool = True) -> dict:
    """``stl10_binary``: ``*_X.bin`` raw uint8, per image 3 planes of 96x96
    stored column-major; ``*_y.bin`` uint8 labels 1..10."""
    rng = np.random.default_rng(seed)
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    out = {}
    for name, n in (("train", n_train), ("test", n_test), ("unlabeled", 1)):
        images = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)       # [N, C, H, W]
        (folder / f"{name}_X.bin").write_bytes(images.transpose(0, 1, 3, 2).tobytes())
        if name != "unlabeled":
            labels = rng.integers(1, 11, n).astype(np.uint8)
            (folder / f"{name}_y.bin").write_bytes(labels.tobytes())
            out[name] = (images, labels)
    if class_names:
        (folder / "class_names.txt").write_text("\n".join(V.STL10_CLASSES) + "\n")
    return out


def with_checksums_of(cls: type, root: Path) -> type:
    """A subclass of torchvision's ``cls`` that expects the MD5 sums of the
    files under ``root`` (what torchvision's integrity check compares)."""
    folder = root / cls.base_folder

    def md5(name: str) -> str:
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    attrs = {"train_list": [[f, md5(f)] for f, _ in cls.train_list],
             "test_list": [[f, md5(f)] for f, _ in cls.test_list]}
    if isinstance(getattr(cls, "meta", None), dict):
        attrs["meta"] = {**cls.meta, "md5": md5(cls.meta["filename"])}
    return type(f"Local{cls.__name__}", (cls,), attrs)


def _register(monkeypatch, name: str, root: Path) -> None:
    monkeypatch.setitem(V.TORCHVISION_SETS, name, with_checksums_of(V.TORCHVISION_SETS[name], root))


# --------------------------------------------------------------------------- CIFAR / STL-10

def test_cifar10_reads_the_pickled_batches(tmp_path, monkeypatch):
    written = write_cifar10(tmp_path)
    _register(monkeypatch, "cifar10", tmp_path)
    tr = data.load("cifar10", "train", root=tmp_path)
    rows = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert tr.images.shape == (15, 3, 32, 32) and tr.images.dtype == torch.uint8
    assert np.array_equal(tr.images.numpy(), rows.reshape(15, 3, 32, 32))     # R, G, B planes
    assert tr.labels.tolist() == labels and tr.labels.dtype == torch.int64
    assert tr.classes == CIFAR10_NAMES and tr.num_classes == 10 and tr.in_shape == (3, 32, 32)
    assert tr.augment == "crop_flip" and tr.masks is None and tr.split == "train" and tr.name == "cifar10"
    assert tr.mean == pytest.approx(tuple(rows.reshape(15, 3, -1).transpose(1, 0, 2).reshape(3, -1).mean(1) / 255))
    x, y = tr[4]
    assert x.dtype == torch.float32 and torch.allclose(x * 255, torch.from_numpy(rows[4].reshape(3, 32, 32)).float())
    te = data.load("cifar10", "test", root=tmp_path)
    assert np.array_equal(te.images.numpy(), written["test_batch"][0].reshape(3, 3, 32, 32))
    assert te.labels.tolist() == written["test_batch"][1]


def test_cifar100_reads_fine_labels(tmp_path, monkeypatch):
    written = write_cifar100(tmp_path)
    _register(monkeypatch, "cifar100", tmp_path)
    for split, n in (("train", 7), ("test", 4)):
        ds = data.load("cifar100", split, root=str(tmp_path))
        rows, fine = written[split]
        assert ds.images.shape == (n, 3, 32, 32) and np.array_equal(ds.images.numpy(), rows.reshape(n, 3, 32, 32))
        assert ds.labels.tolist() == fine
        assert ds.num_classes == 100 and ds.classes[42] == "fine_42"


@pytest.mark.parametrize("class_names", [True, False])
def test_stl10_reads_the_binary_layout(tmp_path, monkeypatch, class_names):
    written = write_stl10(tmp_path, class_names=class_names)
    _register(monkeypatch, "stl10", tmp_path)
    for split, n in (("train", 3), ("test", 2)):
        ds = data.load("stl10", split, root=tmp_path)
        images, labels = written[split]
        assert ds.images.shape == (n, 3, 96, 96) and ds.images.dtype == torch.uint8
        assert np.array_equal(ds.images.numpy(), images)          # column-major planes undone
        assert ds.labels.tolist() == (labels.astype(np.int64) - 1).tolist()
        assert ds.classes == V.STL10_CLASSES and ds.in_shape == (3, 96, 96) and ds.augment == "crop_flip"
        assert ds.mean == pytest.approx(channel_stats(torch.from_numpy(images))[0])


def test_default_root_is_mixviz_data(tmp_path, monkeypatch):
    write_cifar10(tmp_path)
    _register(monkeypatch, "cifar10", tmp_path)
    monkeypatch.setenv("MIXVIZ_DATA", str(tmp_path))
    assert data.default_root() == tmp_path
    assert len(data.load("cifar10", "test")) == 3
    monkeypatch.delenv("MIXVIZ_DATA")
    assert data.default_root() == Path("~/.cache/mixviz/data").expanduser()


@pytest.mark.parametrize("name, folder", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"),
                                          ("stl10", "stl10_binary")])
def test_missing_data_says_how_to_get_it(tmp_path, monkeypatch, name, folder):
    monkeypatch.setenv("MIXVIZ_DATA", str(tmp_path / "nowhere"))
    for root in (tmp_path, None):
        with pytest.raises(DatasetNotFoundError) as err:
            data.load(name, "test", root=root)
        message = str(err.value)
        assert "download=True" in message and "--download" in message and folder in message
        assert str(tmp_path if root else tmp_path / "nowhere") in message
    assert issubclass(DatasetNotFoundError, FileNotFoundError)
    assert not (tmp_path / folder).exists()                       # nothing was fetched or made


def test_partly_missing_files_are_named(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match="data_batch_3"):
        data.load("cifar10", root=tmp_path)


def test_stock_torchvision_rejects_files_with_other_checksums(tmp_path):
    write_cifar10(tmp_path)
    assert V.TORCHVISION_SETS["cifar10"] is datasets.CIFAR10
    with pytest.raises(RuntimeError, match="MD5") as err:
        data.load("cifar10", root=tmp_path)
    assert "download=True" in str(err.value) and not isinstance(err.value, DatasetNotFoundError)


def test_download_is_passed_only_when_asked(tmp_path, monkeypatch):
    calls = []
    local = with_checksums_of(datasets.CIFAR10, _prepared(tmp_path / "ref"))

    class Recording(local):
        def __init__(self, root, **kwargs):
            calls.append(kwargs)
            super().__init__(root, **kwargs)

        def download(self):                                       # stands in for the network
            if not (Path(self.root) / self.base_folder).exists():
                write_cifar10(Path(self.root))

    monkeypatch.setitem(V.TORCHVISION_SETS, "cifar10", Recording)
    root = tmp_path / "fresh"
    with pytest.raises(DatasetNotFoundError):
        data.load("cifar10", root=root)
    assert calls == []                                            # refused before torchvision is asked
    ds = data.load("cifar10", "test", root=root, download=True)
    assert calls == [{"download": True, "train": False}] and len(ds) == 3
    data.load("cifar10", "train", root=root)
    assert calls[-1] == {"train": True}


def _prepared(root: Path) -> Path:
    write_cifar10(root)
    return root


def test_torchvision_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="split"):
        data.load("cifar10", split="valid", root=tmp_path)
    with pytest.raises(TypeError, match="root"):
        data.load("cifar100", root=3)
    with pytest.raises(TypeError, match="size"):
        data.load("stl10", root=tmp_path, size=32)


def test_from_torchvision_rejects_non_uint8():
    class Fake:
        data = np.zeros((2, 4, 4, 3), dtype=np.float32)
        targets = [0, 1]
        classes = ["a", "b"]
        root = "."

    with pytest.raises(ValueError, match="uint8"):
        V.from_torchvision(Fake(), name="x", split="train")
    with pytest.raises(ValueError, match="layout"):
        V.from_torchvision(Fake(), name="x", split="train", layout="HWC")
    Fake.data = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    ds = V.from_torchvision(Fake(), name="x", split="test")
    assert ds.images.shape == (2, 3, 4, 5) and ds.images[1, 2, 3, 4] == Fake.data[1, 3, 4, 2]


# --------------------------------------------------------------------------- ImageFolder

COLOURS = {"blue": (0, 0, 255), "green": (0, 255, 0), "red": (255, 0, 0)}


def write_folder(root: Path, splits=("train", "test"), per_class: int = 2, size=(10, 14)) -> None:
    for split in splits:
        for name, rgb in COLOURS.items():
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                Image.new("RGB", size, rgb).save(folder / f"{k}.png")


def test_imagefolder_reads_train_and_test(tmp_path):
    write_folder(tmp_path)
    tr = data.load("imagefolder", "train", root=tmp_path, size=8)
    assert isinstance(tr, data.FolderDataset) and not hasattr(tr, "images")
    assert tr.classes == ["blue", "green", "red"] and tr.num_classes == 3 and tr.in_shape == (3, 8, 8)
    assert len(tr) == 6 and tr.augment == "crop_flip" and tr.split == "train" and tr.name == "imagefolder"
    x, y = next(iter(DataLoader(tr, batch_size=6)))
    assert x.shape == (6, 3, 8, 8) and x.dtype == torch.float32 and type(x) is torch.Tensor
    expected = torch.tensor([COLOURS[tr.classes[k]] for k in y.tolist()], dtype=torch.float32) / 255
    assert torch.allclose(x, expected[:, :, None, None].expand_as(x), atol=1e-6)
    assert tr.mean == pytest.approx((1 / 3, 1 / 3, 1 / 3)) and tr.std == pytest.approx((2 ** 0.5 / 3,) * 3)
    te = data.load("imagefolder", "test", root=tmp_path)
    assert len(te) == 6 and te.in_shape == (3, 64, 64) and te[0][0].shape == (3, 64, 64)
    given = data.load("imagefolder", root=tmp_path, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    assert given.mean == (0.5, 0.5, 0.5) and given.std == (0.2, 0.2, 0.2)


def test_imagefolder_flat_layout_is_train_only(tmp_path):
    write_folder(tmp_path, splits=(None,))
    ds = data.load("imagefolder", root=tmp_path, size=4)
    assert len(ds) == 6 and ds.classes == ["blue", "green", "red"]
    with pytest.raises(DatasetNotFoundError, match="test"):
        data.load("imagefolder", "test", root=tmp_path)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(ValueError, match="root"):
        data.load("imagefolder")
    with pytest.raises(ValueError, match="download"):
        data.load("imagefolder", root=tmp_path, download=True)
    with pytest.raises(DatasetNotFoundError, match="root"):
        data.load("imagefolder", root=tmp_path / "absent")
    with pytest.raises(ValueError, match="size"):
        data.load("imagefolder", root=tmp_path, size=0)
    write_folder(tmp_path / "a", splits=("train",))
    with pytest.raises(DatasetNotFoundError, match="test"):
        data.load("imagefolder", "test", root=tmp_path / "a")
    write_folder(tmp_path / "b")
    (tmp_path / "b" / "test" / "purple").mkdir()
    Image.new("RGB", (4, 4), (128, 0, 128)).save(tmp_path / "b" / "test" / "purple" / "0.png")
    with pytest.raises(ValueError, match="class folders"):
        data.load("imagefolder", "test", root=tmp_path / "b")
    (tmp_path / "c" / "train" / "empty").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="no pictures"):
        data.load("imagefolder", root=tmp_path / "c")
