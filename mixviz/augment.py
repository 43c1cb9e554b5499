"""Batched data augmentation on the device, one random draw per sample from a
generator and no Python loop over the samples of a batch.

* :func:`random_crop_flip` -- the *weak* augmentation: random crop (zero
  padding) and horizontal flip.
* :func:`rand_augment` -- RandAugment (Cubuk et al. 2020) as FixMatch and the
  Decoupled Mixup authors' semi-supervised configuration use it: every sample
  draws ``num_ops`` operations (with replacement) from the 14 of
  :data:`RAND_AUGMENT_OPS`, and each drawn operation fires with probability
  ``p``.
* :func:`cutout` -- one square per sample filled with a constant colour.
* :func:`strong_augment` -- :func:`rand_augment` then :func:`cutout`: the
  *strong* view of FixMatch.

Images are float ``[B, C, H, W]`` in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from mixviz._validation import check_positive, check_tensor

__all__ = ["random_crop_flip", "rand_augment", "cutout", "strong_augment", "RAND_AUGMENT_OPS",
           "CUTOUT_FILL", "GEOMETRIC_FILL", "crop_padding", "cutout_size"]

# The 14 operations of FixMatch's RandAugment pool (the DM authors' semi-supervised config lists the same).
RAND_AUGMENT_OPS = ("autocontrast", "brightness", "color", "contrast", "equalize", "identity", "posterize",
                    "rotate", "sharpness", "shear_x", "shear_y", "solarize", "translate_x", "translate_y")
# Fill of the area a geometric operation uncovers: 128 of 255, the mmcls/openmixup default.
GEOMETRIC_FILL = 128 / 255
# Fill of a Cutout square: the authors' (125, 123, 114) of 255.
CUTOUT_FILL = (125 / 255, 123 / 255, 114 / 255)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator | None = None, *,
                     padding: int = 4, flip: bool = True) -> torch.Tensor:
    """Pad ``x`` [B, C, H, W] by ``padding`` zeros on each side, cut a random
    H x W window per sample, and mirror each sample left-right with
    probability 1/2 -- torchvision's ``RandomCrop(H, padding)`` +
    ``RandomHorizontalFlip()`` applied to every sample independently, with no
    Python loop over the batch.
    """
    check_tensor("x", x, ndim=4)
    check_positive("padding", padding, allow_zero=True, integer=True)
    b, _, h, w = x.shape
    device = x.device
    if padding:
        x = torch.nn.functional.pad(x, (padding, padding, padding, padding))
        oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=device)
        ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=device)
    else:
        oy = ox = torch.zeros(b, dtype=torch.long, device=device)
    rows = oy[:, None] + torch.arange(h, device=device)            # [B, H]
    cols = ox[:, None] + torch.arange(w, device=device)            # [B, W]
    if flip:
        mirror = torch.rand(b, generator=generator, device=device) < 0.5
        cols = torch.where(mirror[:, None], cols.flip(1), cols)
    # Gather rows, then columns, per sample.
    x = x.gather(2, rows[:, None, :, None].expand(-1, x.shape[1], -1, x.shape[3]))
    x = x.gather(3, cols[:, None, None, :].expand(-1, x.shape[1], h, -1))
    return x


def crop_padding(size: int) -> int:
    """The crop padding for images of side ``size``: ``round(size / 8)``, at
    least 1 -- FixMatch's ``int(0.125 * size)`` (4 px at 32 px, 2 px at 16 px)."""
    check_positive("size", size, integer=True)
    return max(1, round(size / 8))


def cutout_size(size: int) -> int:
    """The Cutout side for images of side ``size``: the authors' 4 px at 32 px,
    scaled with the image (``round(size / 8)``, at least 1: 2 px at 16 px)."""
    check_positive("size", size, integer=True)
    return max(1, round(size / 8))


# --------------------------------------------------------------------------- RandAugment operations
#
# Each operation maps (images [n, C, H, W], neg [n] bool, magnitude in [0, 1]) -> images.  ``neg`` is the
# per-sample random sign of signed operations (mmcls's random_negative with probability 1/2); unsigned
# operations ignore it.  Magnitude ranges are those of the authors' FixMatch policy at level ``30 * m``.


def _factor(neg: torch.Tensor, m: float, like: torch.Tensor) -> torch.Tensor:
    """``1 +- v`` per sample with ``v = 0.05 + 0.9 m`` (range (0.05, 0.95)), shaped [n, 1, 1, 1]."""
    v = 0.05 + 0.9 * m
    return torch.where(neg, 1.0 - v, 1.0 + v).to(like.dtype).view(-1, 1, 1, 1)


def _blend(x: torch.Tensor, degenerate: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ``ImageEnhance``: ``clip(degenerate + factor (x - degenerate), 0, 1)`` with a per-sample factor
    (torchvision's ``adjust_*`` take one factor per call)."""
    return degenerate.lerp(x, factor).clamp_(0.0, 1.0)


def _gray(x: torch.Tensor) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF

    return TF.rgb_to_grayscale(x) if x.shape[1] == 3 else x.mean(1, keepdim=True)


def _brightness(x: torch.Tensor, neg: torch.Tensor, m: float) -> torch.Tensor:
    return _blend(x, torch.zeros_like(x), _factor(neg, m, x))


def _color(x: torch.Tensor, neg: torch.Tensor, m: float) -> torch.Tensor:
    return _blend(x, _gray(x).expand_as(x), _factor(neg, m, x))


def _contrast(x: torch.Tensor, neg: torch.Tensor, m: float) -> torch.Tensor:
    return _blend(x, _gray(x).mean((1, 2, 3), keepdim=True).expand_as(x), _factor(neg, m, x))


def _sharpness(x: torch.Tensor, neg: torch.Tensor, m: float) -> torch.Tensor:
    """Blend with PIL's SMOOTH filter ``[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13``; the border pixels keep
    their value (as in PIL and torchvision)."""
    c = x.shape[1]
    kernel = torch.ones(3, 3, dtype=x.dtype, device=x.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).expand(c, 1, 3, 3)
    smooth = x.clone()
    smooth[..., 1:-1, 1:-1] = F.conv2d(x, kernel, groups=c)
    return _blend(x, smooth, _factor(neg, m, x))


def _autocontrast(x: torch.Tensor, neg: torch.Tensor, m: float) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF

    return TF.autocontrast(x)


def _equalize(x: torch.Tensor, neg: torch.Tensor, m: float) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF

    return TF.equalize(x)


def _identity(x: torch.Tensor, neg: torch.Tensor, m: float) -> torch.Tensor:
    return x


def _posterize(x: torch.Tensor, neg: torch.Tensor, m: float) -> torch.Tensor:
    """``int(4 + 4 m)`` bits per channel (range (4, 8)); 8 bits (full magnitude) keeps the image."""
    from torchvision.transforms.v2 import functional as TF

    bits = int(4 + 4 * m)
    return x if bits >= 8 else TF.posterize(x, bits)


def _solarize(x: torch.Tensor, neg: torch.Tensor, m: float) -> torch.Tensor:
    """Invert every value ``>= (256 - 256 m) / 255`` (range (256, 0)): full magnitude inverts the image."""
    from torchvision.transforms.v2 import functional as TF

    return TF.solarize(x, (256.0 - 256.0 * m) / 255.0)


def _warp(x: torch.Tensor, inverse: torch.Tensor, mode: str) -> torch.Tensor:
    """Resample every image with its own affine map: output pixel ``p`` takes the input at
    ``inverse[i] @ p`` (``inverse`` [n, 3, 3] in pixel coordinates, pixel centres at 0 .. W-1), uncovered
    pixels get :data:`GEOMETRIC_FILL`.  One ``affine_grid`` + ``grid_sample`` for the whole group."""
    n, _, h, w = x.shape
    to_norm = torch.tensor([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]], device=x.device)
    from_norm = torch.tensor([[w / 2, 0, (w - 1) / 2], [0, h / 2, (h - 1) / 2], [0, 0, 1]], device=x.device)
    theta = torch.matmul(torch.matmul(to_norm, inverse.float()), from_norm)[:, :2]
    grid = F.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False).to(x.dtype)
    out = F.grid_sample(x - GEOMETRIC_FILL, grid, mode=mode, padding_mode="zeros", align_corners=False)
    out = out.add_(GEOMETRIC_FILL)
    return out.clamp_(0.0, 1.0) if mode == "bicubic" else out


def _signed(neg: torch.Tensor, value: float) -> torch.Tensor:
    return torch.where(neg, -value, value).to(torch.float32)


def _rotate(neg: torch.Tensor, m: float, h: int, w: int) -> torch.Tensor:
    """Rotation by ``+-30 m`` degrees about the image centre."""
    angle = _signed(neg, math.radians(30.0 * m))
    cos, sin = torch.cos(angle), torch.sin(angle)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    zero, one = torch.zeros_like(cos), torch.ones_like(cos)
    return torch.stack((cos, -sin, cx - cos * cx + sin * cy,
                        sin, cos, cy - sin * cx - cos * cy,
                        zero, zero, one), 1).view(-1, 3, 3)


def _shear(axis: int) -> Callable[[torch.Tensor, float, int, int], torch.Tensor]:
    def shear(neg: torch.Tensor, m: float, h: int, w: int) -> torch.Tensor:
        """Shear by ``+-0.3 m`` about the top-left pixel (mmcv's and PIL's ``[[1, s, 0], [0, 1, 0]]``)."""
        inverse = torch.eye(3, device=neg.device).repeat(neg.shape[0], 1, 1)
        inverse[:, axis, 1 - axis] = _signed(neg, 0.3 * m)
        return inverse

    return shear


def _translate(axis: int) -> Callable[[torch.Tensor, float, int, int], torch.Tensor]:
    def translate(neg: torch.Tensor, m: float, h: int, w: int) -> torch.Tensor:
        """Shift by ``+-0.3 m`` of the image side."""
        inverse = torch.eye(3, device=neg.device).repeat(neg.shape[0], 1, 1)
        inverse[:, axis, 2] = _signed(neg, 0.3 * m * (w if axis == 0 else h))
        return inverse

    return translate


# Operations on pixel values: (images, neg, m) -> images.
_PIXEL_OPS: dict[str, Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]] = {
    "autocontrast": _autocontrast, "brightness": _brightness, "color": _color, "contrast": _contrast,
    "equalize": _equalize, "posterize": _posterize, "sharpness": _sharpness, "solarize": _solarize,
}
# Geometric operations: (neg, m, H, W) -> the inverse map [n, 3, 3], and the resampling of each
# (mmcv's defaults: nearest neighbour for rotate and translate, bicubic for shear).
_GEOMETRIC_OPS: dict[str, Callable[[torch.Tensor, float, int, int], torch.Tensor]] = {
    "rotate": _rotate, "shear_x": _shear(0), "shear_y": _shear(1), "translate_x": _translate(0),
    "translate_y": _translate(1),
}
_RESAMPLING = {"rotate": "nearest", "translate_x": "nearest", "translate_y": "nearest",
               "shear_x": "bicubic", "shear_y": "bicubic"}


def _check_probability(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return float(value)


def _check_images(x: object) -> torch.Tensor:
    check_tensor("x", x, ndim=4, floating=True)
    if x.shape[1] not in (1, 3):
        raise ValueError(f"x must have 1 or 3 channels, got shape {tuple(x.shape)}")
    return x


def rand_augment(x: torch.Tensor, generator: torch.Generator | None = None, *, num_ops: int = 3,
                 magnitude: float = 1.0, p: float = 0.5, ops: Sequence[str] = RAND_AUGMENT_OPS,
                 grouped: bool | None = None) -> torch.Tensor:
    """RandAugment, drawn per sample.

    Every sample draws ``num_ops`` operations uniformly with replacement from
    ``ops``; each drawn operation fires with probability ``p`` and signed
    operations get a random sign (probability 1/2).  The operations run in
    the drawn order.  With ``magnitude = m`` in [0, 1] (the authors' level
    ``30 m`` of 30; their semi-supervised config uses full magnitude, ``m = 1``):

    ================  ==============================================================
    autocontrast      per image and channel, stretch [min, max] to [0, 1]
    brightness        ``clip(f x)``, ``f = 1 +- (0.05 + 0.9 m)``
    color             blend with the grayscale image by ``f``
    contrast          blend with the mean of the grayscale image by ``f``
    equalize          histogram equalisation per channel (256 bins)
    identity          nothing
    posterize         keep ``int(4 + 4 m)`` bits (8 at ``m = 1``: the image is kept)
    rotate            ``+-30 m`` degrees about the centre, nearest neighbour
    sharpness         blend with PIL's SMOOTH-filtered image by ``f``
    shear_x/y         ``+-0.3 m`` about the top-left pixel, bicubic
    solarize          invert values ``>= (256 - 256 m) / 255`` (``m = 1``: invert all)
    translate_x/y     ``+-0.3 m`` of the side, nearest neighbour
    ================  ==============================================================

    Geometric operations fill uncovered pixels with 128/255 and resample all
    their samples with one ``affine_grid``/``grid_sample`` (a matrix per
    sample); the others are tensor code or torchvision v2 functional
    operations (``autocontrast``, ``equalize``, ``posterize``, ``solarize``,
    ``rgb_to_grayscale``) on whole groups.  The loop runs over
    ``num_ops x len(ops)`` (slot, operation) groups, never over samples.

    The operations and their ranges follow the authors' mmcls-style ops
    (``openmixup/datasets/pipelines/auto_augment.py``).  Deviations: images are
    float in [0, 1] instead of uint8 (no rounding to 1/255 between operations);
    sharpness keeps the border pixels (PIL and torchvision do; OpenCV's filter
    in the original also smooths them).

    Args:
        x: float images ``[B, C, H, W]`` in [0, 1] (C = 1 or 3).
        generator: the source of every random draw.
        num_ops: operations per sample (``>= 1``; the authors use 3).
        magnitude: ``m`` in [0, 1].
        p: the probability that a drawn operation fires (0.5 in the authors' ops).
        ops: the pool to draw from (names of :data:`RAND_AUGMENT_OPS`).
        grouped: run each operation on its group of samples only (default on
            the CPU) or on the whole batch and keep the group with
            ``torch.where`` (default on a GPU: no host sync).  Same result.
    """
    _check_images(x)
    check_positive("num_ops", num_ops, integer=True)
    m = _check_probability("magnitude", magnitude)
    p = _check_probability("p", p)
    if isinstance(ops, str) or not isinstance(ops, Sequence) or not ops:
        raise TypeError(f"ops must be a non-empty sequence of operation names, got {ops!r}")
    unknown = [o for o in ops if o not in RAND_AUGMENT_OPS]
    if unknown:
        raise ValueError(f"ops must be names from {', '.join(RAND_AUGMENT_OPS)}; got unknown {unknown}")
    if grouped is None:
        grouped = x.device.type == "cpu"
    b, device = x.shape[0], x.device
    choice = torch.randint(0, len(ops), (b, num_ops), generator=generator, device=device)
    fire = torch.rand((b, num_ops), generator=generator, device=device) < p
    neg = torch.rand((b, num_ops), generator=generator, device=device) < 0.5
    out = x.to(torch.float64 if x.dtype == torch.float64 else torch.float32, copy=True)
    for slot in range(num_ops):
        code = torch.where(fire[:, slot], choice[:, slot], len(ops))  # len(ops): nothing fires
        step = _slot_grouped if grouped else _slot_masked
        out = step(out, code, neg[:, slot], list(ops), m)
    return out.to(x.dtype)


def _slot_grouped(x: torch.Tensor, code: torch.Tensor, neg: torch.Tensor, ops: list[str],
                  m: float) -> torch.Tensor:
    """One slot, each operation on its own group of samples (written in place into ``x``).  The group
    sizes come to the host once per slot (``bincount(...).tolist()``: free on a CPU)."""
    order = torch.argsort(code, stable=True)
    counts = torch.bincount(code, minlength=len(ops) + 1).tolist()
    starts = [sum(counts[:k]) for k in range(len(ops))]
    groups = {k: order[starts[k]:starts[k] + counts[k]] for k in range(len(ops)) if counts[k]}
    h, w = x.shape[2:]
    for k, index in groups.items():
        if ops[k] in _PIXEL_OPS:
            x.index_copy_(0, index, _PIXEL_OPS[ops[k]](x.index_select(0, index), neg[index], m))
    for mode in ("nearest", "bicubic"):
        ks = [k for k in groups if _RESAMPLING.get(ops[k]) == mode]
        if ks:
            index = torch.cat([groups[k] for k in ks])
            inverse = torch.cat([_GEOMETRIC_OPS[ops[k]](neg[groups[k]], m, h, w) for k in ks])
            x.index_copy_(0, index, _warp(x.index_select(0, index), inverse, mode))
    return x


def _slot_masked(x: torch.Tensor, code: torch.Tensor, neg: torch.Tensor, ops: list[str],
                 m: float) -> torch.Tensor:
    """One slot, each operation on the whole batch and ``torch.where`` keeping its samples: no host sync
    (more arithmetic, which a GPU does not notice at these sizes).  The same images as
    :func:`_slot_grouped`, because every operation treats each sample on its own."""
    b, h, w = x.shape[0], x.shape[2], x.shape[3]
    for k, name in enumerate(ops):
        if name in _PIXEL_OPS:
            x = torch.where((code == k).view(-1, 1, 1, 1), _PIXEL_OPS[name](x, neg, m), x)
    for mode in ("nearest", "bicubic"):
        ks = [k for k, name in enumerate(ops) if _RESAMPLING.get(name) == mode]
        if ks:
            inverse = torch.eye(3, device=x.device).expand(b, 3, 3)
            for k in ks:
                inverse = torch.where((code == k).view(-1, 1, 1), _GEOMETRIC_OPS[ops[k]](neg, m, h, w), inverse)
            chosen = torch.isin(code, torch.tensor(ks, device=x.device))
            x = torch.where(chosen.view(-1, 1, 1, 1), _warp(x, inverse, mode), x)
    return x


def cutout(x: torch.Tensor, generator: torch.Generator | None = None, *, size: int | None = None,
           p: float = 0.5, fill: Sequence[float] | float = CUTOUT_FILL) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017) per sample: with probability ``p`` a
    ``size x size`` square (default :func:`cutout_size`) with a uniform random
    centre, clipped at the border, is filled with ``fill`` (per channel; the
    authors' (125, 123, 114) / 255 by default)."""
    from mixviz.mixing.static import _box_from_center

    _check_images(x)
    b, c, h, w = x.shape
    size = cutout_size(min(h, w)) if size is None else size
    check_positive("size", size, integer=True)
    p = _check_probability("p", p)
    fill_values = (float(fill),) * c if isinstance(fill, (int, float)) else tuple(float(v) for v in fill)
    if len(fill_values) != c:
        raise ValueError(f"fill must have {c} values (one per channel), got {len(fill_values)}")
    device = x.device
    fire = torch.rand(b, generator=generator, device=device) < p
    centre = torch.rand((2, b), generator=generator, device=device)
    side = torch.full((b,), float(size), device=device)
    keep = _box_from_center(centre[0] * h, centre[1] * w, side, side, h, w)  # 0 inside the square
    keep = torch.where(fire.view(-1, 1, 1, 1), keep, torch.ones_like(keep)).to(x.dtype)
    colour = torch.tensor(fill_values, dtype=x.dtype, device=device).view(1, c, 1, 1)
    return colour.lerp(x, keep)


def strong_augment(x: torch.Tensor, generator: torch.Generator | None = None, *, num_ops: int = 3,
                   magnitude: float = 1.0, p: float = 0.5, cutout_px: int | None = None,
                   cutout_p: float = 0.5, grouped: bool | None = None) -> torch.Tensor:
    """FixMatch's strong augmentation as the Decoupled Mixup authors configure
    it: :func:`rand_augment` (3 operations at full magnitude, each firing with
    probability 1/2) then :func:`cutout` (``cutout_px``, default
    :func:`cutout_size`: 4 px at 32 px; with probability ``cutout_p``).
    Apply it to weakly augmented (cropped and flipped) images."""
    out = rand_augment(x, generator, num_ops=num_ops, magnitude=magnitude, p=p, grouped=grouped)
    return cutout(out, generator, size=cutout_px, p=cutout_p)
