"""Models: an MLP for 2-D points, a small CNN for CPU demos, the CIFAR-style
PreAct-ResNet-18 used by the mixup papers, and torchvision's ResNets by name.

Every image model starts with a :class:`Normalize` layer, so the data stay in
[0, 1] (what pictures and attribution methods want) and the model does the
per-channel standardisation itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mixviz._validation import check_positive

__all__ = ["build", "available", "Normalize", "MLP", "SmallCNN", "PreActResNet18"]

_TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "wide_resnet50_2", "resnext50_32x4d")


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with mean and std as buffers."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std must have the same length, got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be > 0 in every channel, got {tuple(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


class MLP(nn.Module):
    """A ReLU MLP for 2-D points (decision-boundary pictures)."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 128, depth: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x.flatten(1)))


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """Three conv stages (width w, 2w, 4w), each two 3x3 conv-BN-ReLU and a
    2x2 max-pool, then global average pooling and a linear head.  About 0.3 M
    parameters at w = 32: trains in minutes on a laptop CPU on 32x32 images.

    ``last_conv`` names the layer Grad-CAM attributes to.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv_bn(in_channels, w), _conv_bn(w, w), nn.MaxPool2d(2),
            _conv_bn(w, 2 * w), _conv_bn(2 * w, 2 * w), nn.MaxPool2d(2),
            _conv_bn(2 * w, 4 * w), _conv_bn(4 * w, 4 * w),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, num_classes)

    @property
    def last_conv(self) -> nn.Module:
        return self.features[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016, "Identity mappings")."""

    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """PreAct-ResNet-18 for 32x32 inputs (3x3 stem, no max-pool), the network
    of the mixup, CutMix, PuzzleMix and Decoupled Mixup CIFAR experiments."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        cfg = [(width, 1), (2 * width, 2), (4 * width, 2), (8 * width, 2)]
        layers = []
        cin = width
        for cout, stride in cfg:
            layers.append(nn.Sequential(PreActBlock(cin, cout, stride), PreActBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)

    @property
    def last_conv(self) -> nn.Module:
        return self.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.relu(self.bn(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


class _Normalized(nn.Sequential):
    """``Normalize`` followed by a network; exposes the network's ``last_conv``."""

    @property
    def net(self) -> nn.Module:
        return self[1]

    @property
    def last_conv(self) -> nn.Module:
        net = self[1]
        if hasattr(net, "last_conv"):
            return net.last_conv
        if hasattr(net, "layer4"):  # torchvision ResNets
            return net.layer4
        raise AttributeError(f"{type(net).__name__} has no known last conv layer")


def available() -> list[str]:
    """Names accepted by :func:`build`."""
    return ["mlp", "smallcnn", "preact_resnet18", *_TORCHVISION_RESNETS]


def build(name: str, num_classes: int, in_shape: Sequence[int], *,
          mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
          **kwargs) -> nn.Module:
    """Build model ``name`` for ``num_classes`` classes and inputs of shape
    ``in_shape`` (no batch dimension: ``(2,)`` for points, ``(C, H, W)`` for
    images).

    Image models get a :class:`Normalize` layer in front (``mean``/``std``
    per channel; 0.5/0.5 when not given).  Extra keyword arguments go to the
    model (``hidden``/``depth`` for the MLP, ``width`` for the CNNs).
    torchvision models are built with random weights (``weights=None``): the
    package never downloads weights.
    """
    if not isinstance(name, str) or name not in available():
        raise ValueError(f"name must be one of {', '.join(available())}; got {name!r}")
    check_positive("num_classes", num_classes, integer=True)
    in_shape = tuple(int(s) for s in in_shape)
    if name == "mlp":
        if len(in_shape) != 1:
            raise ValueError(f"in_shape must be (features,) for the mlp, got {in_shape}")
        return MLP(in_shape[0], num_classes, **kwargs)
    if len(in_shape) != 3:
        raise ValueError(f"in_shape must be (C, H, W) for {name!r}, got {in_shape}")
    channels = in_shape[0]
    mean = tuple(mean) if mean is not None else (0.5,) * channels
    std = tuple(std) if std is not None else (0.5,) * channels
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean and std must have {channels} entries (one per channel), got {mean} and {std}")
    if name == "smallcnn":
        net: nn.Module = SmallCNN(channels, num_classes, **kwargs)
    elif name == "preact_resnet18":
        net = PreActResNet18(channels, num_classes, **kwargs)
    else:
        import torchvision

        net = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
        if channels != 3:
            old = net.conv1
            net.conv1 = nn.Conv2d(channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
    return _Normalized(Normalize(mean, std), net)
