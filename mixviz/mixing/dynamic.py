"""Dynamic mixing policies: the mask depends on what the model sees in the images.

``saliencymix`` places a CutMix box on the partner's saliency peak.  This
module also holds the saliency maps the dynamic policies share; PuzzleMix
(graph-cut masks and transport) lives in :mod:`mixviz.mixing.puzzlemix`.
Both policies need ``model`` (a module in train mode, as inside
:func:`mixviz.train.fit`) for the input-gradient saliency.

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

from mixviz._validation import as_labels, autocast_like, check_choice, check_positive
from mixviz.mixing.batch import MixedBatch
from mixviz.mixing.static import _box_from_center, _check_batch, _draw_pairs, _expand, _masked_batch

__all__ = [
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


def _gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [B, H, W] maps, replicate padding."""
    radius = max(1, int(round(2 * sigma)))
    taps = torch.arange(-radius, radius + 1, device=maps.device, dtype=maps.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = maps.unsqueeze(1)
    out = F.conv2d(F.pad(out, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return out.squeeze(1)


def spectral_residual_saliency(x: torch.Tensor, *, sigma: float = 1.0) -> torch.Tensor:
    """Model-free saliency [B, H, W] by the spectral residual (Hou & Zhang 2007).

    On the channel mean ``I``: ``A = log |FFT(I)|``, ``P = angle(FFT(I))``,
    residual ``R = A - box3x3(A)``, saliency ``|IFFT(exp(R + i P))|**2``
    smoothed by a Gaussian of width ``sigma`` pixels.  (The SaliencyMix paper
    uses OpenCV's fine-grained static saliency, not available here; OpenCV's
    spectral-residual saliency is this method.)"""
    check_positive("sigma", sigma)
    gray = x.detach().to(torch.float32).mean(1)
    spectrum = torch.fft.fft2(gray)
    log_amp = torch.log(spectrum.abs() + 1e-8)
    smooth = F.avg_pool2d(F.pad(log_amp.unsqueeze(1), (1, 1, 1, 1), mode="replicate"), 3, stride=1).squeeze(1)
    residual = torch.polar(torch.exp(log_amp - smooth), spectrum.angle())
    saliency = torch.fft.ifft2(residual).abs() ** 2
    return _gaussian_blur(saliency, sigma)


def _saliency(kind: str, model: object, x: torch.Tensor, y: torch.Tensor, mode: str, policy: str) -> torch.Tensor:
    check_choice("saliency", kind, ("gradient", "spectral"))
    check_choice("saliency_mode", mode, ("eval", "train"))
    if kind == "spectral":
        return spectral_residual_saliency(x)
    return input_gradient_saliency(_check_model(model, policy), x, y, mode=mode)


def saliencymix(x: torch.Tensor, y: torch.Tensor, *, alpha: float = 1.0, generator: torch.Generator | None = None,
                per_sample: bool = True, model: nn.Module | None = None, correct_lam: bool = True,
                saliency: str = "gradient", saliency_mode: str = "eval") -> MixedBatch:
    """SaliencyMix (Uddin et al. 2021): a CutMix box of area ``(1 - lam) H W``,
    ``lam ~ Beta(alpha, alpha)``, centred on the saliency peak of the
    *partner* image, is cut from the partner and pasted at the same place in
    sample a; lam is corrected to the share of a after clipping.

    Saliency: ``"gradient"`` (default) is the model's input-gradient map of
    :func:`input_gradient_saliency` (needs ``model``); ``"spectral"`` is the
    model-free :func:`spectral_residual_saliency` (``model`` not needed).  The
    original uses OpenCV's fine-grained static saliency, which we do not have.
    The gradient map is smoothed by a 3x3 box filter before taking the peak.
    With ``per_sample=False`` the batch shares one lam (one box size); the box
    centres still follow each partner's saliency.
    """
    _check_batch(x, y, alpha=alpha, generator=generator, per_sample=per_sample, images=True, policy="saliencymix")
    check_choice("saliency", saliency, ("gradient", "spectral"))
    if saliency == "gradient":
        _check_model(model, "saliencymix")
    index, lam = _draw_pairs(x, alpha, generator, per_sample)
    b, _, height, width = x.shape
    sal = _saliency(saliency, model, x, y, saliency_mode, "saliencymix")
    sal = F.avg_pool2d(sal.unsqueeze(1), 3, stride=1, padding=1, count_include_pad=False).squeeze(1)
    peak = sal[index].reshape(b, height * width).argmax(1)
    cy = (peak // width).to(torch.float32) + 0.5
    cx = (peak % width).to(torch.float32) + 0.5
    side = _expand(torch.sqrt((1.0 - lam).clamp(0.0, 1.0)), b)
    mask = _box_from_center(cy, cx, side * height, side * width, height, width)
    return _masked_batch(x, y, index, _expand(lam, b), mask, "saliencymix", correct_lam)
