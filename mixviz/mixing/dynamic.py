"""Dynamic mixing policies: the mask depends on what the model sees in the images.

``saliencymix`` places a CutMix box on the partner's saliency peak.  This
module also holds the saliency maps the dynamic policies share: the
model-free ones, OpenCV's fine-grained static saliency (SaliencyMix's
default, the authors' map) and the spectral residual, and the input gradient.
PuzzleMix (graph-cut masks and transport) lives in
:mod:`mixviz.mixing.puzzlemix`.  The input-gradient saliency (PuzzleMix's,
and SaliencyMix's with ``saliency="gradient"``) needs ``model`` (a module in
train mode, as inside :func:`mixviz.train.fit`).

The extra pass.  Saliency is ``sqrt(mean_c g**2)`` with ``g`` the gradient of
the summed cross-entropy with respect to the *input only*
(``torch.autograd.grad(loss, x)``): no ``.grad`` is written to any parameter.
By default (``saliency_mode="eval"``) the pass runs with the model in eval
mode, as the original PuzzleMix does with ``clean_lam=0``: BatchNorm uses and
does **not** update its running statistics and dropout is off; every module's
train/eval flag is restored afterwards.  With ``saliency_mode="train"`` the
pass runs in train mode and BatchNorm's running statistics see it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from mixviz._validation import as_labels, autocast_like, check_choice, check_positive, check_tensor
from mixviz.mixing.batch import MixedBatch
from mixviz.mixing.static import _box_between, _check_batch, _draw_pairs, _expand, _masked_batch

__all__ = [
    "fine_grained_saliency",
    "input_gradient_saliency",
    "spectral_residual_saliency",
    "saliencymix",
]


def _check_model(model: object, policy: str) -> nn.Module:
    """``model`` itself (typed), or ValueError / TypeError naming it."""
    if model is None:
        raise ValueError(f"model is required for the dynamic policy {policy!r} "
                         "(pass model=<the network being trained>)")
    if not callable(model):
        raise TypeError(f"model must be a callable torch.nn.Module, got {type(model).__name__}")
    return model  # type: ignore[return-value]  # any callable returning logits works like a Module here


@contextmanager
def _mode(model: nn.Module, mode: str) -> Iterator[None]:
    """Run the block with the model in ``mode`` ("eval" or "train") and put
    every module's own flag back afterwards."""
    if not isinstance(model, nn.Module):
        yield
        return
    flags = [(m, m.training) for m in model.modules()]
    model.train(mode == "train")
    try:
        yield
    finally:
        for module, flag in flags:
            module.training = flag


def input_gradient_saliency(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                            mode: str = "eval") -> torch.Tensor:
    """Saliency [B, H, W] from the input gradient (as in PuzzleMix):
    ``s = sqrt(mean_c (d L / d x)**2)`` with ``L = sum_i CE(model(x)_i, y_i)``.

    Only the input gradient is computed (``torch.autograd.grad``), so no
    parameter gradient is left behind; ``mode`` ("eval", default, or "train")
    is the mode of the extra forward pass (see the module docstring)."""
    check_choice("saliency_mode", mode, ("eval", "train"))
    grad, _ = _input_gradient(model, x, y, mode)
    return grad.pow(2).mean(1).sqrt()


def _input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mode: str,
                    keep_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dL/dx, L)`` with ``L = sum_i CE(model(x)_i, y_i)``, the model in
    ``mode`` for this pass.  Only the input gradient is taken; with
    ``keep_graph`` the graph of ``L`` is kept so that ``L`` can still be
    back-propagated into the parameters (PuzzleMix's clean loss).  Float16 /
    bfloat16 inputs run under autocast in their dtype; labels of any integer
    dtype are used as int64 and must lie below the model's output width."""
    with torch.enable_grad(), _mode(model, mode), autocast_like(x):  # fp16 / bf16 inputs: run in their dtype
        inputs = x.detach().requires_grad_(True)
        logits = model(inputs)
        y = as_labels("y", y, num_classes=logits.shape[-1])  # the model's output width is the class count
        loss = F.cross_entropy(logits.float(), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, inputs, retain_graph=keep_graph)
    return grad, loss


def _gaussian_blur(maps: torch.Tensor, sigma: float, radius: int, pad: str) -> torch.Tensor:
    """Separable Gaussian blur of [B, H, W] maps, window ``2 radius + 1``, padded by ``pad``."""
    taps = torch.arange(-radius, radius + 1, device=maps.device, dtype=maps.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = maps.unsqueeze(1)
    out = F.conv2d(F.pad(out, (radius, radius, 0, 0), mode=pad), kernel.view(1, 1, 1, -1))
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode=pad), kernel.view(1, 1, -1, 1))
    return out.squeeze(1)


#: ITU-R BT.601 luma weights of (R, G, B), as OpenCV's RGB-to-gray conversion.
_LUMA = (0.299, 0.587, 0.114)

#: Floor of the spectrum's amplitude, relative to its RMS, before the log (see spectral_residual_saliency).
_AMPLITUDE_FLOOR = 1e-3


def spectral_residual_saliency(x: torch.Tensor, *, size: int | None = 64, sigma: float = 8.0,
                               window: int = 5) -> torch.Tensor:
    """Model-free saliency [B, H, W] by the spectral residual (Hou & Zhang
    2007), the pipeline of OpenCV's ``StaticSaliencySpectralResidual``.

    ``I`` is the gray image (luma ``0.299 R + 0.587 G + 0.114 B`` for 3
    channels, the channel mean otherwise) resized to ``size x size``
    (bilinear, up or down as OpenCV does; ``size=None`` keeps H x W).  With
    ``F = FFT(I)``, ``A = log max(|F|, 1e-3 rms|F|)`` and ``P = angle(F)``,
    the residual ``R = A - box3x3(A)`` (reflected at the border) is brought
    back, ``M = |IFFT(exp(R + i P))|``, blurred by a ``window x window``
    Gaussian of width ``sigma`` (pixels of the working grid, reflected),
    squared, divided by its maximum and resized back to H x W (bilinear).
    Values in [0, 1].  The amplitude floor stands in for the rounding noise
    of OpenCV's 8-bit gray image: without it the exact zeros of a flat or
    upsampled synthetic image (log 0 = -inf) swamp the residual.

    Agreement with OpenCV (``tests/test_mixing_dynamic.py`` measures it):
    correlation above 0.999 on scikit-learn's 427 x 640 sample photos; on
    32-px crops of them about 0.985 (median; OpenCV's 8-bit rounding of the
    upsampled image weighs more there)."""
    if size is not None:
        check_positive("size", size, integer=True)
    check_positive("sigma", sigma)
    check_positive("window", window, integer=True)
    if window % 2 == 0:
        raise ValueError(f"window must be odd, got {window}")
    check_tensor("x", x, ndim=4, floating=True)
    x = x.detach().to(torch.float32)
    height, width = x.shape[-2:]
    if x.shape[1] == 3:
        gray = torch.einsum("bchw,c->bhw", x, torch.tensor(_LUMA, device=x.device))
    else:
        gray = x.mean(1)
    work = (height, width) if size is None else (size, size)
    if work != (height, width):
        gray = F.interpolate(gray.unsqueeze(1), size=work, mode="bilinear", align_corners=False).squeeze(1)
    spectrum = torch.fft.fft2(gray)
    amp = spectrum.abs()
    floor = _AMPLITUDE_FLOOR * amp.pow(2).mean((1, 2), keepdim=True).sqrt()
    log_amp = torch.log(torch.maximum(amp, floor.clamp_min(1e-30)))
    pad = "reflect" if min(log_amp.shape[-2:]) > 1 else "replicate"
    smooth = F.avg_pool2d(F.pad(log_amp.unsqueeze(1), (1, 1, 1, 1), mode=pad), 3, stride=1).squeeze(1)
    magnitude = torch.fft.ifft2(torch.polar(torch.exp(log_amp - smooth), spectrum.angle())).abs()
    radius = window // 2
    pad = "reflect" if min(magnitude.shape[-2:]) > radius else "replicate"
    saliency = _gaussian_blur(magnitude, sigma, radius, pad) ** 2
    saliency = saliency / saliency.amax((1, 2), keepdim=True).clamp_min(1e-30)
    if work != (height, width):
        saliency = F.interpolate(saliency.unsqueeze(1), size=(height, width), mode="bilinear",
                                 align_corners=False).squeeze(1)
    return saliency


#: OpenCV's fixed-point luma of 8-bit (R, G, B), in units of 2**-15 (``cvtColor(..., COLOR_BGR2GRAY)``).
_LUMA_Q15 = (9798, 19235, 3735)

#: Surround half-widths of the fine-grained saliency (Montabone & Soto's six scales, in pixels).
_FINE_GRAINED_SCALES = (12, 24, 48, 28, 56, 112)


def _binomial_blur_u8(gray: torch.Tensor) -> torch.Tensor:
    """One 3x3 Gaussian blur of 8-bit [B, H, W] images as OpenCV does it
    (``GaussianBlur(g, (3, 3), 0)``: kernel ``[1, 2, 1] / 4`` both ways,
    border mirrored without repeating the edge, rounded half up to 8 bits)."""
    out = gray.unsqueeze(1)
    for dim, pad in ((-1, (1, 1, 0, 0)), (-2, (0, 0, 1, 1))):
        out = F.pad(out, pad, mode="reflect" if out.shape[dim] > 1 else "replicate")
        n = out.shape[dim] - 2
        out = out.narrow(dim, 0, n) + 2 * out.narrow(dim, 1, n) + out.narrow(dim, 2, n)
    return torch.floor((out.squeeze(1) + 8) / 16)


def _integral_f32(gray: torch.Tensor) -> torch.Tensor:
    """Integral image [B, H + 1, W + 1] of [B, H, W] 8-bit images, as
    OpenCV's float32 ``integral``: exact while ``255 H W < 2**24``; above
    that, rows are added one by one in float32 as OpenCV does, so that its
    rounding is reproduced too (a loop over the rows of large images only)."""
    rows = gray.cumsum(2)  # exact: 255 W < 2**24
    if 255 * gray.shape[1] * gray.shape[2] >= 2 ** 24:
        acc = torch.zeros_like(rows[:, 0])
        for r in range(rows.shape[1]):
            acc = acc + rows[:, r]
            rows[:, r] = acc
    else:
        rows = rows.cumsum(1)
    return F.pad(rows, (1, 0, 1, 0))


def fine_grained_saliency(x: torch.Tensor) -> torch.Tensor:
    """Model-free saliency [B, H, W] by OpenCV's fine-grained static saliency
    (``StaticSaliencyFineGrained``, Montabone & Soto 2010), the map the
    SaliencyMix authors use; vectorized over the batch, float32 only.

    ``x`` [B, C, H, W] in [0, 1] is first made the 8-bit image OpenCV gets,
    ``u = round(255 x)``, and its gray level ``g = floor((9798 R + 19235 G
    + 3735 B + 2**14) / 2**15)`` (OpenCV's fixed-point luma; one channel is
    kept as it is, other counts are averaged and rounded), blurred twice by
    the 3x3 binomial kernel (8-bit, mirrored border).  For each surround
    half-width ``n`` in (12, 24, 48, 28, 56, 112) the box ``S_n(p)`` holds
    rows ``[y - n + 1, y + n]`` and columns ``[x - n + 1, x + n]`` of ``g``,
    cut at the border (read from the float32 integral image); the surround
    mean leaves the centre out, ``m_n = (sum_{S_n} g - g) / (|S_n| - 1)``
    (float32), and the centre-surround differences are truncated to
    integers, ``on_n = floor(max(g - m_n, 0))``, ``off_n = floor(max(m_n - g,
    0))``.  Summed over the scales, ``ON = sum_n on_n``, ``OFF = sum_n off_n``,
    each is brought to 8 bits by its own maximum over the image,
    ``on = floor(255 ON / max ON)`` (0 if ``max ON = 0``; likewise ``off``),
    and the map is ``((on + off) mod 256) / 255`` in float32, as OpenCV
    returns it (``255 * map`` is an exact integer).  The ``mod 256`` is
    OpenCV's 8-bit store of ``on + off`` where both are high: rare, but
    measured (a pixel brighter than its small surrounds and darker than its
    large ones comes out at 8, not 264).

    The map equals OpenCV's bit for bit, argmax included
    (``tests/test_mixing_dynamic.py``: photos and clutter images, 16 px to
    427 x 640).  Two things the authors' call does differently are left out:
    they hand OpenCV the normalised float32 tensor, not the 8-bit picture
    (OpenCV then reads the float image's bytes as 8-bit pixels, a map that
    does not follow the picture: correlation about 0.01 with this one on a
    photo), and in RGB
    order where OpenCV expects BGR (so their luma weighs red by 0.114 and
    blue by 0.299); here ``x`` is read as the RGB picture it shows."""
    check_tensor("x", x, ndim=4, floating=True)
    x = x.detach().to(torch.float32)
    _, c, height, width = x.shape
    u = (x * 255).round().clamp(0, 255)
    if c == 3:
        w = torch.tensor(_LUMA_Q15, device=x.device, dtype=torch.float32)
        gray = torch.floor((torch.einsum("bchw,c->bhw", u, w) + 2 ** 14) / 2 ** 15)
    else:
        gray = u.mean(1).round()
    gray = _binomial_blur_u8(_binomial_blur_u8(gray))
    integral = _integral_f32(gray)
    rows = torch.arange(height, device=x.device)
    cols = torch.arange(width, device=x.device)
    on = torch.zeros_like(gray)
    off = torch.zeros_like(gray)
    for n in _FINE_GRAINED_SCALES:
        r0, r1 = (rows - n + 1).clamp(0, height), (rows + n + 1).clamp(0, height)
        c0, c1 = (cols - n + 1).clamp(0, width), (cols + n + 1).clamp(0, width)
        top, bottom = integral[:, r0], integral[:, r1]
        box = bottom[:, :, c1] + top[:, :, c0] - bottom[:, :, c0] - top[:, :, c1]
        area = ((r1 - r0)[:, None] * (c1 - c0)[None, :] - 1).clamp_min(1).to(torch.float32)
        mean = (box - gray) / area
        on += torch.floor((gray - mean).clamp_min(0))
        off += torch.floor((mean - gray).clamp_min(0))
    total = torch.zeros_like(gray)
    for part in (on, off):
        peak = part.amax((1, 2), keepdim=True)
        total += torch.where(peak > 0, torch.floor(part / peak.clamp_min(1) * 255), torch.zeros_like(part))
    return torch.remainder(total, 256) * torch.tensor(1 / 255, dtype=torch.float32, device=x.device)


#: SaliencyMix's saliency maps; the model-free ones are in [0, 1] and peak on the authors' 8-bit rule.
_SALIENCY_KINDS = ("fine_grained", "spectral", "gradient")


def _saliency(kind: str, model: object, x: torch.Tensor, y: torch.Tensor, mode: str, policy: str) -> torch.Tensor:
    check_choice("saliency", kind, _SALIENCY_KINDS)
    check_choice("saliency_mode", mode, ("eval", "train"))
    if kind == "fine_grained":
        return fine_grained_saliency(x)
    if kind == "spectral":
        return spectral_residual_saliency(x)
    return input_gradient_saliency(_check_model(model, policy), x, y, mode=mode)


def saliencymix(x: torch.Tensor, y: torch.Tensor, *, alpha: float = 1.0, generator: torch.Generator | None = None,
                per_sample: bool = True, model: nn.Module | None = None, correct_lam: bool = True,
                saliency: str = "fine_grained", saliency_mode: str = "eval") -> MixedBatch:
    """SaliencyMix (Uddin et al. 2021): a box cut from the partner around its
    most salient pixel and pasted at the same place in sample a, as the
    authors' code (and OpenMixup's ``saliencymix``) does.

    With ``lam ~ Beta(alpha, alpha)`` the box has sides ``c_h = floor(s H)``,
    ``c_w = floor(s W)``, ``s = sqrt(1 - lam)``; its rows are
    ``[py - c_h // 2, py + c_h // 2)`` (columns likewise) around the
    partner's saliency peak ``(py, px)``, clipped at the border; lam is
    corrected to the share of a.

    Saliency: ``"fine_grained"`` (default, model-free) is
    :func:`fine_grained_saliency`, OpenCV's fine-grained static saliency the
    authors call, bit for bit; ``"spectral"`` (model-free) is
    :func:`spectral_residual_saliency`, OpenCV's spectral residual.  On both
    the peak is found as the authors find it: the argmax of the map stored
    in 8 bits, ``uint8(255 s)`` (truncated), the first maximum in row-major
    order, so the box sits where theirs does (the fine-grained map is already
    in steps of 1/255; the 8-bit store makes near-ties of the spectral map
    exact ones).  ``"gradient"`` is the model's input-gradient map of
    :func:`input_gradient_saliency` (needs ``model``), smoothed by a 3x3 box
    filter; its peak is the argmax of the float map (first in row-major order
    on ties).
    With ``per_sample=False`` the batch shares one lam and one box, placed on
    the saliency peak of sample 0's partner, as the authors' batch-level code
    does; with ``per_sample=True`` (default) each pair has its own.
    """
    _check_batch(x, y, alpha=alpha, generator=generator, per_sample=per_sample, images=True, policy="saliencymix")
    check_choice("saliency", saliency, _SALIENCY_KINDS)
    if saliency == "gradient":
        _check_model(model, "saliencymix")
    index, lam = _draw_pairs(x, alpha, generator, per_sample)
    b, _, height, width = x.shape
    partners = index if per_sample else index[:1]
    sal = _saliency(saliency, model, x, y, saliency_mode, "saliencymix")[partners]
    if saliency == "gradient":
        sal = F.avg_pool2d(sal.unsqueeze(1), 3, stride=1, padding=1, count_include_pad=False).squeeze(1)
    else:
        sal = torch.floor(sal * 255)  # the authors' (map * 255).astype("uint8") of a map in [0, 1]
    peak = sal.reshape(sal.shape[0], height * width).argmax(1)
    py, px = peak // width, peak % width
    s = torch.sqrt((1.0 - lam).clamp(0.0, 1.0))
    half_h = (s * height).floor().long().div(2, rounding_mode="floor")
    half_w = (s * width).floor().long().div(2, rounding_mode="floor")
    mask = _box_between((py - half_h).clamp(0, height), (py + half_h).clamp(0, height),
                        (px - half_w).clamp(0, width), (px + half_w).clamp(0, width), height, width)
    return _masked_batch(x, y, index, _expand(lam, b), mask, "saliencymix", correct_lam)
