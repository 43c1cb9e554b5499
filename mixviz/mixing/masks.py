"""Mask builders of the mask policies: [n, 1, H, W] float32 masks in [0, 1],
the share of each pixel taken from sample a (0 where the partner shows).

Every builder takes lam [n] and draws its geometry from ``generator``
without a loop over the samples: ``box_mask`` (CutMix), ``fourier_mask``
(FMix), ``grid_mask`` (GridMix) and ``gaussian_mask`` (SmoothMix).
:mod:`mixviz.mixing.static` re-exports them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mixviz._validation import check_positive

__all__ = ["box_mask", "fourier_mask", "grid_mask", "gaussian_mask"]


# --------------------------------------------------------------------------- checks and draws


def _check_interval(name: str, value: object, *, low: float, high: float, integer: bool = False) -> tuple:
    """``value`` must be a pair ``(lo, hi)`` with ``low <= lo <= hi <= high``."""
    kinds = (int,) if integer else (int, float)
    if (not isinstance(value, Sequence) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, kinds) for v in value)):
        kind = "ints" if integer else "numbers"
        raise TypeError(f"{name} must be a pair (low, high) of {kind}, got {value!r}")
    lo, hi = value
    if not (low <= lo <= hi <= high):
        raise ValueError(f"{name} must satisfy {low} <= low <= high <= {high}, got {tuple(value)!r}")
    return lo, hi



def _check_range(name: str, value: object, *, integer: bool = False, high: float = math.inf) -> tuple:
    """``value`` is a number (fixed) or a pair ``(lo, hi)`` (drawn uniformly
    per mask), with ``0 < lo <= hi <= high`` (integers ``>= 1`` with ``integer``)."""
    kinds = (int,) if integer else (int, float)
    pair = value if isinstance(value, Sequence) and not isinstance(value, str) else (value, value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, kinds) for v in pair):
        kind = "an int" if integer else "a number"
        raise TypeError(f"{name} must be {kind} or a pair (low, high) of them, got {value!r}")
    lo, hi = pair
    if not (0 < lo <= hi <= high) or not math.isfinite(hi):
        raise ValueError(f"{name} must satisfy 0 < low <= high <= {high}, got {value!r}")
    return float(lo), float(hi)


def _draw_range(bounds: tuple, u: torch.Tensor, *, integer: bool = False) -> torch.Tensor:
    """``lo + (hi - lo) u`` (float32) for U[0, 1) draws ``u``; with ``integer``
    a uniform integer in ``[lo, hi]``."""
    lo, hi = bounds
    if integer:
        return lo + (u * (hi - lo + 1)).floor().clamp(max=hi - lo)
    return lo + (hi - lo) * u


def _uniform(n: int, k: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """[k, n] draws from U[0, 1)."""
    return torch.rand((k, n), generator=generator, device=device)


# --------------------------------------------------------------------------- masks


def _box_between(y1: torch.Tensor, y2: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor,
                 height: int, width: int) -> torch.Tensor:
    """[n, 1, H, W] float32 mask: 0 on the rows ``[y1, y2)`` x columns
    ``[x1, x2)`` (per sample, [n] each; an empty range gives no box), 1
    elsewhere.  Built with ``arange`` comparisons, without a loop."""
    rows = torch.arange(height, device=y1.device, dtype=y1.dtype)
    cols = torch.arange(width, device=y1.device, dtype=y1.dtype)
    out_y = ((rows < y1[:, None]) | (rows >= y2[:, None])).to(torch.float32)
    out_x = ((cols < x1[:, None]) | (cols >= x2[:, None])).to(torch.float32)
    # a pixel is outside the box when its row or its column is: max of 0/1 values is "or"
    return torch.maximum(out_y[:, :, None], out_x[:, None, :]).unsqueeze(1)


def _box_from_center(cy: torch.Tensor, cx: torch.Tensor, box_h: torch.Tensor, box_w: torch.Tensor,
                     height: int, width: int) -> torch.Tensor:
    """[n, 1, H, W] float32 mask: 0 inside the box of size ``box_h x box_w``
    centred at (cy, cx) (pixel units; edges rounded to whole pixels and
    clipped at the border), 1 outside."""
    y1 = (cy - box_h / 2).round().clamp(0, height)
    y2 = (cy + box_h / 2).round().clamp(0, height)
    x1 = (cx - box_w / 2).round().clamp(0, width)
    x2 = (cx + box_w / 2).round().clamp(0, width)
    return _box_between(y1, y2, x1, x2, height, width)


def box_mask(lam: torch.Tensor, height: int, width: int, *,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """CutMix masks [n, 1, H, W] for lam [n].

    The box has height ``sqrt(1 - lam) * H`` and width ``sqrt(1 - lam) * W``
    (area ``(1 - lam) H W`` before clipping), its centre is uniform over the
    image, its edges are rounded to whole pixels and clipped at the border.
    The mask is 0 inside the box (pixels from the partner) and 1 outside.
    """
    n = lam.shape[0]
    side = torch.sqrt((1.0 - lam).clamp(0.0, 1.0))
    u = _uniform(n, 2, generator, lam.device)
    return _box_from_center(u[0] * height, u[1] * width, side * height, side * width, height, width)


def _top_fraction(scores: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Binary [n, 1, H, W] mask that is 1 on the ``round(lam * H * W)``
    highest-scoring pixels of each sample (``scores`` [n, H, W])."""
    n, height, width = scores.shape
    size = height * width
    keep = (lam * size).round().long().clamp(0, size)
    order = torch.argsort(scores.reshape(n, size), dim=1, descending=True)
    ranked = (torch.arange(size, device=scores.device) < keep[:, None]).to(torch.float32)
    flat = torch.zeros((n, size), device=scores.device, dtype=torch.float32).scatter_(1, order, ranked)
    return flat.view(n, 1, height, width)


def fourier_mask(lam: torch.Tensor, height: int, width: int, *, decay_power: float = 3.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """FMix masks [n, 1, H, W] for lam [n] (Harris et al. 2020).

    A random complex spectrum ``(a + i b) / max(f, 1/max(H, W)) ** decay_power``
    with ``a, b ~ N(0, 1)`` and ``f`` the frequency magnitude is brought back
    to image space with ``torch.fft.irfft2`` (a low-frequency random field), and
    the ``round(lam * H * W)`` pixels with the highest values are set to 1, the
    rest to 0.  So each mask has mean ``round(lam H W) / (H W)``, within
    ``1 / (2 H W)`` of the requested lam.
    """
    check_positive("decay_power", decay_power)
    n = lam.shape[0]
    fy = torch.fft.fftfreq(height, device=lam.device)[:, None]
    fx = torch.fft.rfftfreq(width, device=lam.device)[None, :]
    freq = torch.sqrt(fy ** 2 + fx ** 2)
    scale = freq.clamp_min(1.0 / max(height, width)) ** (-float(decay_power))
    parts = torch.randn((2, n, *freq.shape), generator=generator, device=lam.device)
    spectrum = torch.complex(parts[0], parts[1]) * scale
    field = torch.fft.irfft2(spectrum, s=(height, width))
    return _top_fraction(field, lam)


def grid_mask(lam: torch.Tensor, height: int, width: int, *, n_holes: int | tuple[int, int] = (2, 6),
              hole_aspect_ratio: float | tuple[float, float] = 1.0,
              cut_area_ratio: float | tuple[float, float] = (0.5, 1.0),
              cut_aspect_ratio: float | tuple[float, float] = (0.5, 2.0),
              generator: torch.Generator | None = None) -> torch.Tensor:
    """GridMix masks [n, 1, H, W] for lam [n] (Baek et al. 2021): a regular
    grid of holes through which the partner shows, built as the authors'
    code (OpenMixup's ``gridmix``) builds it.

    A crop of ``cut_w = floor(sqrt(a H W / r))`` x ``cut_h = floor(r cut_w)``
    pixels (``a = cut_area_ratio``, ``r = cut_aspect_ratio``, height over
    width; capped at the image) sits at ``x1 = floor(u (W - cut_w))``,
    ``y1 = floor(v (H - cut_h))`` with ``u, v ~ U[0, 1)``.  It is tiled by
    patches of width ``p = ceil(cut_w / k)`` (``k = n_holes`` along x, at
    most ``cut_w // 2``: the authors assert that) and height
    ``q = floor(p * hole_aspect_ratio)`` (at least 1).  The top-left corner
    of every patch is a hole of ``floor(p s) x floor(q s)`` pixels with
    ``s = sqrt(1 - lam)``, each side clamped to ``[1, side - 1]``: pixel
    (r, c) of the crop is a hole iff ``r mod q < hole_h`` and ``c mod p <
    hole_w``.  The mask is 0 on the holes (the partner's pixels; OpenMixup's
    mask is their complement) and 1 elsewhere.  Every option is a number or a
    ``(low, high)`` range drawn uniformly per mask (``n_holes``: integers).

    The defaults are the authors' configs (every OpenMixup config that mixes
    with GridMix: 2 to 6 holes across, square holes, a crop of 50 to 100 %
    of the image with aspect ratio 0.5 to 2).  OpenMixup's function defaults
    (20 holes, the whole image) leave lam no say on small images: at 32 px the
    patches are 2 px, every hole is 1 px, and a quarter of the pixels comes
    from the partner whatever lam was drawn.
    """
    holes = _check_range("n_holes", n_holes, integer=True)
    hole_ratio = _check_range("hole_aspect_ratio", hole_aspect_ratio)
    area = _check_range("cut_area_ratio", cut_area_ratio, high=1.0)
    aspect = _check_range("cut_aspect_ratio", cut_aspect_ratio)
    n, device = lam.shape[0], lam.device
    u = _uniform(n, 6, generator, device)
    k = _draw_range(holes, u[0], integer=True)
    # 1e-3 guards floor() against float32 round-off on exact squares; the authors compute in float64
    cut_w = (torch.sqrt(_draw_range(area, u[2]) * height * width / _draw_range(aspect, u[3])) + 1e-3).floor()
    cut_w = cut_w.clamp(1, width)
    cut_h = (cut_w * _draw_range(aspect, u[3]) + 1e-3).floor().clamp(1, height)
    x1 = ((width - cut_w) * u[4]).floor()
    y1 = ((height - cut_h) * u[5]).floor()
    k = torch.minimum(k, (cut_w / 2).floor().clamp_min(1))
    patch_w = torch.ceil(cut_w / k)
    patch_h = (patch_w * _draw_range(hole_ratio, u[1]) + 1e-3).floor().clamp_min(1)
    s = torch.sqrt((1.0 - lam).clamp(0.0, 1.0))
    hole_w = torch.minimum((patch_w * s).floor().clamp_min(1), patch_w - 1).long()
    hole_h = torch.minimum((patch_h * s).floor().clamp_min(1), patch_h - 1).long()
    r = torch.arange(height, device=device)[None, :] - y1.long()[:, None]
    c = torch.arange(width, device=device)[None, :] - x1.long()[:, None]
    in_r = (r >= 0) & (r < cut_h.long()[:, None]) & (r.remainder(patch_h.long()[:, None]) < hole_h[:, None])
    in_c = (c >= 0) & (c < cut_w.long()[:, None]) & (c.remainder(patch_w.long()[:, None]) < hole_w[:, None])
    hole = in_r[:, :, None] & in_c[:, None, :]
    return (~hole).to(torch.float32).unsqueeze(1)


def gaussian_mask(lam: torch.Tensor, height: int, width: int, *,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """SmoothMix masks [n, 1, H, W] for lam [n]: ``1 - G`` with a Gaussian bump

        G(r, c) = exp(-(r + 1/2 - cy)^2 / (2 sy^2) - (c + 1/2 - cx)^2 / (2 sx^2))

    (peak 1: the partner's share) centred uniformly at random, with
    ``sy = s H``, ``sx = s W`` and ``s = sqrt((1 - lam) / (2 pi))``, so that the
    unclipped bump integrates to ``(1 - lam) H W``.  The mask is soft
    (values in [0, 1]); clipping at the border makes its mean differ from the
    sampled lam, which is why lam is corrected by default.
    """
    n = lam.shape[0]
    u = _uniform(n, 2, generator, lam.device)
    cy, cx = u[0] * height, u[1] * width
    s = torch.sqrt((1.0 - lam).clamp(0.0, 1.0) / (2 * math.pi)).clamp_min(1e-6)
    rows = torch.arange(height, device=lam.device, dtype=torch.float32) + 0.5
    cols = torch.arange(width, device=lam.device, dtype=torch.float32) + 0.5
    dy = ((rows[None, :] - cy[:, None]) / (s[:, None] * height)) ** 2
    dx = ((cols[None, :] - cx[:, None]) / (s[:, None] * width)) ** 2
    bump = torch.exp(-0.5 * (dy[:, :, None] + dx[:, None, :]))
    return (1.0 - bump).unsqueeze(1)
