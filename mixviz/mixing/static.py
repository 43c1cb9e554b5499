"""Static mixing policies: the mixed batch depends only on the data and on random draws.

Every policy pairs sample ``i`` with sample ``index[i]`` of a random
permutation of the batch (``torch.randperm`` with the given generator; with a
small batch a sample may be its own partner, then ``y_a[i] == y_b[i]``) and
returns a :class:`~mixviz.mixing.batch.MixedBatch`.

Mask policies (``cutmix``, ``fmix``, ``resizemix``, ``gridmix``,
``smoothmix``) build ``mask`` ([B, 1, H, W], float32 in [0, 1], the share of
each pixel taken from sample a) and blend with ``torch.lerp``::

    inputs = lerp(x[index], x, mask) = mask * x + (1 - mask) * x[index]

(``resizemix`` pastes a *resized* copy of the partner, so its inputs are
``mask * x + (1 - mask) * resize(x[index])``).  With the default
``correct_lam=True`` the returned ``lam`` is the exact share of sample a,
``lam == mask.mean((1, 2, 3))`` per sample: boxes clipped at the border, masks
quantised to whole pixels and soft masks all give the label weight of the
pixels actually shown (timm's "lam correction").  ``correct_lam=False`` keeps
the sampled lam.  The masks are built in :mod:`mixviz.mixing.masks` (re-exported
here).  ResizeMix and GridMix follow the authors' code (OpenMixup) by default.

``per_sample=True`` gives every sample its own lam and its own mask;
``per_sample=False`` draws one lam and one mask for the whole batch (like
torchvision v2).  All randomness comes from ``generator`` (a
``torch.Generator`` on the same device as ``x``): the same seed gives the same
batch.  Nothing here loops over the samples of a batch or syncs with the host
(value checks such as the NaN check in ``x`` do sync; turn them off with
:func:`mixviz.validation`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mixviz._validation import check_choice, check_finite, check_labels, check_positive, check_tensor
from mixviz.mixing.batch import MixedBatch
from mixviz.mixing.masks import (  # noqa: F401  (re-exported; dynamic.py and augment.py use the box builders)
    _box_between,
    _box_from_center,
    _check_interval,
    _uniform,
    box_mask,
    fourier_mask,
    gaussian_mask,
    grid_mask,
)

__all__ = [
    "sample_beta",
    "box_mask",
    "fourier_mask",
    "grid_mask",
    "gaussian_mask",
    "none",
    "mixup",
    "average",
    "cutmix",
    "fmix",
    "resizemix",
    "gridmix",
    "smoothmix",
]


# --------------------------------------------------------------------------- checks


def _check_generator(generator: torch.Generator | None, device: torch.device) -> None:
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    gen_device = torch.device(generator.device)
    same = gen_device.type == device.type and (
        gen_device.index is None or device.index is None or gen_device.index == device.index)
    if not same:
        raise ValueError(f"generator must be on the same device as x ({device}), got a generator on {gen_device}")


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")


def _check_batch(x: torch.Tensor, y: torch.Tensor, *, alpha: float, generator: torch.Generator | None,
                 per_sample: bool, images: bool, policy: str) -> None:
    """Checks shared by every policy: ``x`` [B, ...] float (4-D for image
    policies), ``y`` integer [B] on the same device, ``alpha > 0``, a generator
    on x's device, no NaN/inf in ``x`` (a value check)."""
    check_positive("alpha", alpha)
    if isinstance(x, torch.Tensor) and x.dtype == torch.uint8:
        raise TypeError("x must be a floating-point tensor, got torch.uint8: mixing.mix(...) and mixing.Mix(...) "
                        "convert uint8 images (to float32 in [0, 1]), or call x.float() / 255 first")
    check_tensor("x", x, floating=True)
    if images and x.dim() != 4:
        raise ValueError(f"x must be a 4-D image batch [B, C, H, W] for policy {policy!r}, "
                         f"got shape {tuple(x.shape)}")
    if x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch [B, ...], got shape {tuple(x.shape)}")
    check_labels("y", y, batch=x.shape[0])
    if y.device != x.device:
        raise ValueError(f"y must be on the same device as x ({x.device}), got {y.device}")
    _check_bool("per_sample", per_sample)
    _check_generator(generator, x.device)
    check_finite("x", x)


# --------------------------------------------------------------------------- random draws


def sample_beta(alpha: float, shape: Sequence[int] | int, *, generator: torch.Generator | None = None,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Draw ``lam ~ Beta(alpha, alpha)`` (float32) with ``generator``.

    ``torch.distributions`` takes no generator, so lam is built from two Gamma
    draws made with it: ``lam = G1 / (G1 + G2)``, ``Gi ~ Gamma(alpha)``.  For
    small ``alpha`` a Gamma(alpha) draw underflows to 0 in float32 (then lam
    would be 0/0), so each is written as ``G = G' * U**(1/alpha)`` with
    ``G' ~ Gamma(alpha + 1)`` and ``U ~ Uniform(0, 1]`` (Marsaglia & Tsang's
    boost) and combined in log space::

        log Gi = log G'i + log(Ui) / alpha,   lam = sigmoid(log G1 - log G2).

    Mean 1/2 and variance ``1 / (4 (2 alpha + 1))``.
    """
    check_positive("alpha", alpha)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    conc = torch.full((2, *shape), float(alpha) + 1.0, dtype=torch.float32, device=device)
    log_gamma = torch._standard_gamma(conc, generator=generator).log_()
    u = torch.rand((2, *shape), generator=generator, dtype=torch.float32, device=device)
    log_gamma += torch.log1p(-u).div_(float(alpha))  # log U with U = 1 - u in (0, 1]
    return torch.sigmoid(log_gamma[0] - log_gamma[1])


def _draw_pairs(x: torch.Tensor, alpha: float, generator: torch.Generator | None,
                per_sample: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The partner permutation [B] and lam ~ Beta(alpha, alpha), [B] or [1]."""
    b = x.shape[0]
    index = torch.randperm(b, generator=generator, device=x.device)
    lam = sample_beta(alpha, (b if per_sample else 1,), generator=generator, device=x.device)
    return index, lam


def _take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[index]`` along the batch axis, in x's memory format (channels_last
    stays channels_last).  ``index_select`` is several times faster than
    advanced indexing on the CPU; its ``out=`` form keeps the layout but has
    no autograd, so inputs that require grad take the indexing path."""
    if x.requires_grad:
        return x[index]
    return torch.index_select(x, 0, index, out=torch.empty_like(x))


# --------------------------------------------------------------------------- assembling


def _expand(t: torch.Tensor, b: int) -> torch.Tensor:
    """A [1, ...] tensor viewed as [B, ...] (per_sample=False); [B, ...] unchanged."""
    return t.expand(b, *t.shape[1:]) if t.shape[0] != b else t


def _masked_batch(x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, lam: torch.Tensor,
                  mask: torch.Tensor, policy: str, correct_lam: bool,
                  partner: torch.Tensor | None = None) -> MixedBatch:
    """Blend with ``lerp(partner, x, mask)`` and fix lam to the mask mean."""
    _check_bool("correct_lam", correct_lam)
    b = x.shape[0]
    mask = _expand(mask, b)  # lam from the very tensor the batch carries: the same reduction, bit for bit
    if correct_lam:
        lam = mask.mean((1, 2, 3))
    partner = _take(x, index) if partner is None else partner
    inputs = partner.lerp_(x, mask.to(x.dtype))  # in place on the fresh partner copy
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    if channels_last and not inputs.is_contiguous(memory_format=torch.channels_last):
        inputs = inputs.contiguous(memory_format=torch.channels_last)  # resizemix's gathered canvas
    return MixedBatch(inputs=inputs, y_a=y, y_b=y[index], index=index, lam=_expand(lam, b),
                      mask=mask, policy=policy)


# --------------------------------------------------------------------------- policies


def none(x: torch.Tensor, y: torch.Tensor, *, alpha: float = 1.0, generator: torch.Generator | None = None,
         per_sample: bool = True, correct_lam: bool = True) -> MixedBatch:
    """No mixing: every sample is its own partner, lam = 1.  Draws nothing."""
    _check_batch(x, y, alpha=alpha, generator=generator, per_sample=per_sample, images=False, policy="none")
    _check_bool("correct_lam", correct_lam)
    return MixedBatch.unmixed(x, y)


def mixup(x: torch.Tensor, y: torch.Tensor, *, alpha: float = 1.0, generator: torch.Generator | None = None,
          per_sample: bool = True, correct_lam: bool = True) -> MixedBatch:
    """Mixup (Zhang et al. 2018): ``inputs = lam * x + (1 - lam) * x[index]``,
    ``lam ~ Beta(alpha, alpha)``.  Any input shape [B, ...] (2-D points too).
    No mask; ``correct_lam`` is accepted and has nothing to correct."""
    _check_batch(x, y, alpha=alpha, generator=generator, per_sample=per_sample, images=False, policy="mixup")
    _check_bool("correct_lam", correct_lam)
    index, lam = _draw_pairs(x, alpha, generator, per_sample)
    lam = _expand(lam, x.shape[0])
    weight = lam.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
    inputs = _take(x, index).lerp_(x, weight)
    return MixedBatch(inputs=inputs, y_a=y, y_b=y[index], index=index, lam=lam, policy="mixup")


def average(x: torch.Tensor, y: torch.Tensor, *, alpha: float = 1.0, generator: torch.Generator | None = None,
            per_sample: bool = True, correct_lam: bool = True) -> MixedBatch:
    """Input averaging ("bypassing the random input mixing"): ``inputs =
    (x + x[index]) / 2`` and ``lam = 0.5`` for every sample.  Any input
    shape.  Only the partner permutation is random; ``alpha`` is unused."""
    _check_batch(x, y, alpha=alpha, generator=generator, per_sample=per_sample, images=False, policy="average")
    _check_bool("correct_lam", correct_lam)
    b = x.shape[0]
    index = torch.randperm(b, generator=generator, device=x.device)
    inputs = _take(x, index).lerp_(x, 0.5)
    lam = torch.full((b,), 0.5, dtype=torch.float32, device=x.device)
    return MixedBatch(inputs=inputs, y_a=y, y_b=y[index], index=index, lam=lam, policy="average")


def cutmix(x: torch.Tensor, y: torch.Tensor, *, alpha: float = 1.0, generator: torch.Generator | None = None,
           per_sample: bool = True, correct_lam: bool = True) -> MixedBatch:
    """CutMix (Yun et al. 2019): a box of area ``(1 - lam) H W`` (see
    :func:`box_mask`) is taken from the partner; lam = the share of sample a
    after clipping the box at the border."""
    _check_batch(x, y, alpha=alpha, generator=generator, per_sample=per_sample, images=True, policy="cutmix")
    index, lam = _draw_pairs(x, alpha, generator, per_sample)
    mask = box_mask(lam, x.shape[2], x.shape[3], generator=generator)
    return _masked_batch(x, y, index, lam, mask, "cutmix", correct_lam)


def fmix(x: torch.Tensor, y: torch.Tensor, *, alpha: float = 1.0, generator: torch.Generator | None = None,
         per_sample: bool = True, correct_lam: bool = True, decay_power: float = 3.0) -> MixedBatch:
    """FMix (Harris et al. 2020): binary masks from thresholded low-frequency
    random fields (see :func:`fourier_mask`); ``decay_power`` sets how fast the
    spectrum's amplitude falls with frequency (larger: smoother blobs).
    Binary masks only (the original's soft ``max_soft`` masks are left out)."""
    _check_batch(x, y, alpha=alpha, generator=generator, per_sample=per_sample, images=True, policy="fmix")
    check_positive("decay_power", decay_power)
    index, lam = _draw_pairs(x, alpha, generator, per_sample)
    mask = fourier_mask(lam, x.shape[2], x.shape[3], decay_power=decay_power, generator=generator)
    return _masked_batch(x, y, index, lam, mask, "fmix", correct_lam)


def _resize_into_box(partner: torch.Tensor, y1: torch.Tensor, x1: torch.Tensor, box_h: torch.Tensor,
                     box_w: torch.Tensor) -> torch.Tensor:
    """A [B, C, H, W] canvas whose box ``[y1, y1 + box_h) x [x1, x1 + box_w)``
    holds ``partner`` resized to ``box_h x box_w`` (nearest neighbour, the
    same source pixels as ``F.interpolate(mode="nearest")``).  Outside the
    box the canvas holds arbitrary partner pixels (they are masked out).
    Per-sample sizes through one ``gather`` over the flattened pixels, no loop."""
    b, c, height, width = partner.shape
    rows = torch.arange(height, device=partner.device)
    cols = torch.arange(width, device=partner.device)
    scale_h = (height / box_h.clamp_min(1).to(torch.float32))[:, None]
    scale_w = (width / box_w.clamp_min(1).to(torch.float32))[:, None]
    src_r = ((rows[None, :] - y1[:, None]).to(torch.float32) * scale_h).floor().long().clamp(0, height - 1)
    src_c = ((cols[None, :] - x1[:, None]).to(torch.float32) * scale_w).floor().long().clamp(0, width - 1)
    source = _expand(src_r[:, :, None] * width + src_c[:, None, :], b).reshape(b, 1, height * width)
    flat = partner.reshape(b, c, height * width).gather(2, source.expand(b, c, height * width))
    return flat.view(b, c, height, width)


def _resize_box(tau: torch.Tensor, u: torch.Tensor, size: int, placement: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Start and end [n] (long) of ResizeMix's box along one axis of ``size``
    pixels, for the scale ``tau`` and a U[0, 1) draw ``u`` (see :func:`resizemix`)."""
    if placement == "clip":
        half = (tau * size).floor().long().div(2, rounding_mode="floor").clamp_min(1)
        centre = (u * size).floor().long().clamp(max=size - 1)
        return (centre - half).clamp(0, size), (centre + half).clamp(0, size)
    side = (tau * size).round().clamp(1, size).long()
    start = (u * (size - side + 1)).long().clamp(max=size - side)
    return start, start + side


def resizemix(x: torch.Tensor, y: torch.Tensor, *, alpha: float = 1.0, generator: torch.Generator | None = None,
              per_sample: bool = True, correct_lam: bool = True, scope: tuple[float, float] = (0.1, 0.8),
              use_alpha: bool = True, placement: str = "clip") -> MixedBatch:
    """ResizeMix (Qin et al. 2020): the whole partner image, shrunk by a
    factor ``tau``, is pasted into a box of sample a.  By default as the
    authors' code (OpenMixup's ``resizemix``) does it.

    Scale (``use_alpha=True``, the default, as in every config of the
    authors): ``tau ~ Beta(alpha, alpha)``, redrawn from ``Uniform(scope)``
    when it falls outside the scope; at ``alpha = 1`` this is
    ``Uniform(scope)``, the ResizeMix paper's draw.  ``use_alpha=False``:
    always ``tau ~ Uniform(scope)`` (``alpha`` unused; the paper's draw and
    OpenMixup's function default).

    Box, ``placement="clip"`` (default, the authors'): sides
    ``c_h = floor(tau H)``, ``c_w = floor(tau W)``, centre ``(cy, cx)`` a
    uniform pixel, rows ``[cy - c_h // 2, cy + c_h // 2)`` and columns
    likewise, clipped at the border (so the box is ``2 (c // 2)`` pixels
    before clipping; at least 2, where the authors' box would be empty and
    their resize fail).  The partner is squeezed into the clipped box.
    ``placement="inside"``: a ``round(tau H) x round(tau W)`` box (at least
    one pixel) at a uniform place fully inside the image.

    The partner is resized with nearest neighbour; inputs are
    ``mask * x + (1 - mask) * resize(x[index])``.  lam = the area share of
    sample a, ``1 - box area / (H W)`` (exact; ``correct_lam=False`` returns
    ``1 - tau**2`` instead).
    """
    _check_batch(x, y, alpha=alpha, generator=generator, per_sample=per_sample, images=True, policy="resizemix")
    low, high = _check_interval("scope", scope, low=0.0, high=1.0)
    if low <= 0:
        raise ValueError(f"scope must have low > 0, got {tuple(scope)!r}")
    _check_bool("use_alpha", use_alpha)
    check_choice("placement", placement, ("clip", "inside"))
    b, _, height, width = x.shape
    n = b if per_sample else 1
    index = torch.randperm(b, generator=generator, device=x.device)
    u = _uniform(n, 3, generator, x.device)
    tau = low + (high - low) * u[0]
    if use_alpha:
        beta = sample_beta(alpha, (n,), generator=generator, device=x.device)
        tau = torch.where((beta >= low) & (beta <= high), beta, tau)
    y1, y2 = _resize_box(tau, u[1], height, placement)
    x1, x2 = _resize_box(tau, u[2], width, placement)
    mask = _box_between(y1, y2, x1, x2, height, width)
    pasted = _resize_into_box(_take(x, index), y1, x1, y2 - y1, x2 - x1)
    return _masked_batch(x, y, index, 1.0 - tau ** 2, mask, "resizemix", correct_lam, partner=pasted)


def gridmix(x: torch.Tensor, y: torch.Tensor, *, alpha: float = 1.0, generator: torch.Generator | None = None,
            per_sample: bool = True, correct_lam: bool = True, n_holes: int | tuple[int, int] = (2, 6),
            hole_aspect_ratio: float | tuple[float, float] = 1.0,
            cut_area_ratio: float | tuple[float, float] = (0.5, 1.0),
            cut_aspect_ratio: float | tuple[float, float] = (0.5, 2.0)) -> MixedBatch:
    """GridMix (Baek et al. 2021) as the authors' code (OpenMixup's
    ``gridmix``) builds it: ``lam ~ Beta(alpha, alpha)`` sets the side of the
    holes, ``sqrt(1 - lam)`` of a grid patch, through which the partner shows
    (see :func:`grid_mask` for the grid and its options, with the authors'
    defaults); lam is then the share of pixels from a.  The paper's extra
    local-context loss is left out."""
    _check_batch(x, y, alpha=alpha, generator=generator, per_sample=per_sample, images=True, policy="gridmix")
    index, lam = _draw_pairs(x, alpha, generator, per_sample)
    mask = grid_mask(lam, x.shape[2], x.shape[3], n_holes=n_holes, hole_aspect_ratio=hole_aspect_ratio,
                     cut_area_ratio=cut_area_ratio, cut_aspect_ratio=cut_aspect_ratio, generator=generator)
    return _masked_batch(x, y, index, lam, mask, "gridmix", correct_lam)


def smoothmix(x: torch.Tensor, y: torch.Tensor, *, alpha: float = 1.0, generator: torch.Generator | None = None,
              per_sample: bool = True, correct_lam: bool = True) -> MixedBatch:
    """SmoothMix (Lee et al. 2020), Gaussian variant: the partner shows
    through a soft Gaussian bump whose size follows ``lam ~ Beta(alpha,
    alpha)`` (see :func:`gaussian_mask`; the paper draws the width from a fixed
    range instead, and also has a square soft-edged variant, left out here)."""
    _check_batch(x, y, alpha=alpha, generator=generator, per_sample=per_sample, images=True, policy="smoothmix")
    index, lam = _draw_pairs(x, alpha, generator, per_sample)
    mask = gaussian_mask(lam, x.shape[2], x.shape[3], generator=generator)
    return _masked_batch(x, y, index, lam, mask, "smoothmix", correct_lam)
