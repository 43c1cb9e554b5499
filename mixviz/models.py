"""Models: an MLP for 2-D points, a small CNN for CPU demos, the CIFAR-style
PreAct-ResNet-18 used by the mixup papers, and torchvision's ResNets by name.

Every image model starts with a :class:`Normalize` layer, so the data stay in
[0, 1] (what pictures and attribution methods want) and the model does the
per-channel standardisation itself.

Hidden layers.  The MLP, the small CNN and the PreAct-ResNet-18 are
:class:`StagedNet` s: ``forward(x) = head(stage_S(... stage_1(x)))``.  Layer
``k`` is the boundary after ``k`` stages (0: the input as the first stage sees
it, after :class:`Normalize`; ``S``: the last stage's output, before the
head).  Two things use it:

* ``model(x, mix_hidden=HiddenMix(...))`` mixes each sample with its partner
  at one layer and carries on (Manifold Mixup).  It is a keyword of
  ``forward``, so it passes through ``DistributedDataParallel``, whose
  gradient sync needs the forward to go through the wrapper;
* ``model.hidden(x, k)`` returns layer ``k`` (AutoMix's MixBlock reads the
  features there).

torchvision's ResNets have no such access; :func:`check_staged` says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mixviz._validation import check_positive

__all__ = ["build", "available", "Normalize", "MLP", "SmallCNN", "PreActResNet18", "StagedNet", "HiddenMix",
           "check_staged"]

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


class HiddenMix(NamedTuple):
    """Mix every sample with its partner inside the network, at one layer.

    At layer ``layer`` the hidden batch ``h`` becomes
    ``lam * h + (1 - lam) * h[index]`` (per sample, ``lam`` [B]); gradients
    flow through both terms.  ``layer`` is drawn from ``layers``; it may be a
    0-dim integer tensor on the device, so that drawing it needs no host
    sync: the network then applies ``torch.where(layer == k, lam, 1)`` at every
    ``k`` in ``layers``, and weight 1 leaves ``h`` exactly as it is
    (``torch.lerp`` returns its end point at weight 1), so the result is the
    same as mixing at ``layer`` only.
    """

    layer: torch.Tensor | int
    layers: tuple[int, ...]
    index: torch.Tensor
    lam: torch.Tensor

    def __call__(self, k: int, h: torch.Tensor) -> torch.Tensor:
        """Layer ``k`` of the network after mixing (``h`` unchanged where it does not mix)."""
        if k not in self.layers:
            return h
        lam = self.lam
        if isinstance(self.layer, int):
            if self.layer != k:
                return h
        elif len(self.layers) > 1:
            lam = torch.where(self.layer == k, lam, torch.ones_like(lam))
        weight = lam.to(h.dtype).view(-1, *([1] * (h.dim() - 1)))
        return torch.lerp(h[self.index], h, weight)


class StagedNet(nn.Module):
    """A network run as stages: ``forward(x) = head(stage_S(... stage_1(x)))``.

    Subclasses set ``stage_channels`` (the channels, or features, of each
    stage's output) and define ``_stage(k, h)`` (stage ``k + 1``) and
    ``_head(h)``; ``_enter(x)`` prepares the input (the MLP flattens it).
    """

    stage_channels: tuple[int, ...] = ()

    @property
    def num_stages(self) -> int:
        return len(self.stage_channels)

    def _enter(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _stage(self, k: int, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, *, mix_hidden: HiddenMix | None = None) -> torch.Tensor:
        """Logits of ``x``; with ``mix_hidden`` the batch is mixed at its layer
        (see :class:`HiddenMix`)."""
        if mix_hidden is not None:
            _check_hidden_mix(mix_hidden, self.num_stages)
        h = self._enter(x)
        for k in range(self.num_stages):
            if mix_hidden is not None:
                h = mix_hidden(k, h)
            h = self._stage(k, h)
        if mix_hidden is not None:
            h = mix_hidden(self.num_stages, h)
        return self._head(h)

    def hidden(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """Layer ``layer`` of ``x``: the batch after ``layer`` stages (0: ``x`` itself)."""
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= self.num_stages:
            raise ValueError(f"layer must be an int in [0, {self.num_stages}] (the number of stages), got {layer!r}")
        h = self._enter(x)
        for k in range(layer):
            h = self._stage(k, h)
        return h


def _check_hidden_mix(mix: Any, num_stages: int) -> None:
    if not isinstance(mix, HiddenMix):
        raise TypeError(f"mix_hidden must be a mixviz.models.HiddenMix or None, got {type(mix).__name__}")
    bad = [k for k in mix.layers if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= num_stages]
    if bad or not mix.layers:
        raise ValueError(f"mix_hidden.layers must be ints in [0, {num_stages}] (this network has {num_stages} "
                         f"stages), got {tuple(mix.layers)!r}")


class MLP(StagedNet):
    """A ReLU MLP for 2-D points (decision-boundary pictures).  Stage ``k`` is
    hidden layer ``k`` (Linear + ReLU)."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 128, depth: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)
        self.stage_channels = (hidden,) * depth

    def _enter(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def _stage(self, k: int, h: torch.Tensor) -> torch.Tensor:
        return self.features[2 * k + 1](self.features[2 * k](h))

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(h)


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(StagedNet):
    """Three conv stages (width w, 2w, 4w), each two 3x3 conv-BN-ReLU, the
    first two followed by a 2x2 max-pool, then global average pooling and a
    linear head.  About 0.3 M parameters at w = 32: trains in minutes on a
    laptop CPU on 32x32 images.  Layers 1, 2, 3 (the stage outputs, pools
    included) are at 1/2, 1/4 and 1/4 of the input size.

    ``last_conv`` names the layer Grad-CAM attributes to.
    """

    _BOUNDS = ((0, 3), (3, 6), (6, 8))  # stage k = features[a:b]

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
        self.stage_channels = (w, 2 * w, 4 * w)

    @property
    def last_conv(self) -> nn.Module:
        return self.features[-1]

    def _stage(self, k: int, h: torch.Tensor) -> torch.Tensor:
        start, stop = self._BOUNDS[k]
        for i in range(start, stop):
            h = self.features[i](h)
        return h

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(h).flatten(1))


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


class PreActResNet18(StagedNet):
    """PreAct-ResNet-18 for 32x32 inputs (3x3 stem, no max-pool), the network
    of the mixup, CutMix, PuzzleMix and Decoupled Mixup CIFAR experiments.
    Stage 1 is the stem and ``layer1``, stages 2-4 are ``layer2``-``layer4``
    (layers 1-4 at 1, 1/2, 1/4, 1/8 of the input size)."""

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
        self.stage_channels = tuple(cout for cout, _ in cfg)

    @property
    def last_conv(self) -> nn.Module:
        return self.layer4

    def _stage(self, k: int, h: torch.Tensor) -> torch.Tensor:
        if k == 0:
            return self.layer1(self.conv1(h))
        return (self.layer2, self.layer3, self.layer4)[k - 1](h)

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(h))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


class _Normalized(nn.Sequential):
    """``Normalize`` followed by a network; exposes the network's ``last_conv``
    and, for a :class:`StagedNet`, its hidden layers (layer 0 is the
    normalised input)."""

    @property
    def net(self) -> nn.Module:
        return self[1]

    def forward(self, x: torch.Tensor, *, mix_hidden: HiddenMix | None = None) -> torch.Tensor:
        if mix_hidden is None:
            return super().forward(x)
        return check_staged(self).forward(self[0](x), mix_hidden=mix_hidden)

    def hidden(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        return check_staged(self).hidden(self[0](x), layer)

    @property
    def num_stages(self) -> int:
        return check_staged(self).num_stages

    @property
    def stage_channels(self) -> tuple[int, ...]:
        return check_staged(self).stage_channels

    @property
    def last_conv(self) -> nn.Module:
        net = self[1]
        if hasattr(net, "last_conv"):
            return net.last_conv
        if hasattr(net, "layer4"):  # torchvision ResNets
            return net.layer4
        raise AttributeError(f"{type(net).__name__} has no known last conv layer")


class LogitsOf(nn.Module):
    """A classifier that returns plain logits, made from one that returns a
    tuple, a dict or an object: ``forward(*args) = logits_fn(model(*args))``.
    The analyses wrap a model in it when given ``logits_fn=``; keyword
    arguments (``mix_hidden=``) pass through to the model."""

    def __init__(self, model: nn.Module, logits_fn: Any) -> None:
        super().__init__()
        self.model = model
        self.logits_fn = logits_fn
        if isinstance(getattr(model, "last_conv", None), nn.Module):
            self.last_conv = model.last_conv  # Grad-CAM's layer (mixviz.saliency) stays reachable

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        logits = self.logits_fn(self.model(*args, **kwargs))
        if not isinstance(logits, torch.Tensor):
            raise TypeError(f"logits_fn must return the logits as a tensor, got {type(logits).__name__}")
        return logits


def with_logits_fn(model: Any, logits_fn: Any = None) -> Any:
    """``model`` itself when ``logits_fn`` is None (it returns logits), else
    :class:`LogitsOf` ``(model, logits_fn)``, e.g. ``logits_fn=lambda out:
    out[0]`` for a model returning ``(logits, features)`` or ``lambda out:
    out["logits"]`` for one returning a dict."""
    if logits_fn is None:
        return model
    if not callable(logits_fn):
        raise TypeError(f"logits_fn must be None or a callable (model output -> logits), "
                        f"got {type(logits_fn).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return LogitsOf(model, logits_fn)


def check_staged(model: Any, purpose: str = "hidden-layer access") -> StagedNet:
    """The :class:`StagedNet` inside ``model`` (a built model, its network, or
    either wrapped in DistributedDataParallel); ``ValueError`` naming the
    model when it has no hidden-layer access (torchvision's ResNets, other
    modules)."""
    net = model
    if isinstance(net, LogitsOf):
        net = net.model
    if isinstance(net, nn.parallel.DistributedDataParallel):
        net = net.module
    if isinstance(net, _Normalized):
        net = net[1]
    if not isinstance(net, StagedNet):
        raise ValueError(f"{purpose} needs one of mixviz's mlp, smallcnn or preact_resnet18 (a "
                         f"mixviz.models.StagedNet); got a {type(net).__name__}, which has no hidden-layer access")
    return net


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
