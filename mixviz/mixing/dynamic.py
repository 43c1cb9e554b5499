"""Dynamic mixing policies: the mask depends on what the model sees in the images.

``saliencymix`` places a CutMix box on the partner's saliency peak;
``puzzlemix`` cuts a block-wise mask with a graph cut that keeps the salient
blocks of both images.  Both need ``model`` (a module in train mode, as inside
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

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mixviz._validation import check_choice, check_positive
from mixviz.mixing.batch import MixedBatch
from mixviz.mixing.static import _box_from_center, _check_batch, _draw_pairs, _expand, _masked_batch

__all__ = [
    "input_gradient_saliency",
    "spectral_residual_saliency",
    "graph_cut_masks",
    "saliencymix",
    "puzzlemix",
]


def _check_model(model: object, policy: str) -> None:
    if model is None:
        raise ValueError(f"model is required for the dynamic policy {policy!r} "
                         "(pass model=<the network being trained>)")
    if not callable(model):
        raise TypeError(f"model must be a callable torch.nn.Module, got {type(model).__name__}")


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
    with torch.enable_grad(), _mode(model, mode):
        inputs = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(inputs), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, inputs)
    return grad.pow(2).mean(1).sqrt()


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
    _check_model(model, policy)
    return input_gradient_saliency(model, x, y, mode=mode)


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


# --------------------------------------------------------------------------- PuzzleMix


def graph_cut_masks(cost_a: np.ndarray, cost_b: np.ndarray, weight_down: np.ndarray,
                    weight_right: np.ndarray) -> np.ndarray:
    """Exact binary labellings of B grids by one s-t min cut (PyMaxflow).

    For every sample ``s`` it minimises over ``m`` in {0, 1}^(n x n)::

        E(m) = sum_k [m_k cost_a[s, k] + (1 - m_k) cost_b[s, k]]
             + sum_{k below/right of l} w[s, k, l] * [m_k != m_l]

    with ``weight_down`` [B, n-1, n] (between block (i, j) and (i+1, j)) and
    ``weight_right`` [B, n, n-1] (between (i, j) and (i, j+1)), all weights
    >= 0 (submodular, so the min cut is the global optimum).  The B grids are
    disjoint parts of a single graph, so one ``maxflow()`` call solves every
    sample without a Python loop.  Returns bool [B, n, n], True where m = 1.
    """
    cost_a = np.asarray(cost_a, dtype=np.float64)
    cost_b = np.asarray(cost_b, dtype=np.float64)
    b, n, _ = cost_a.shape
    if np.any(weight_down < 0) or np.any(weight_right < 0):
        raise ValueError("weight_down and weight_right must be >= 0 (submodular energy)")
    import maxflow  # PyMaxflow; imported here so the static policies do not need it

    graph = maxflow.Graph[float]()
    nodes = graph.add_grid_nodes((b, n, n))
    down = np.zeros((b, n, n))
    down[:, :-1, :] = weight_down
    right = np.zeros((b, n, n))
    right[:, :, :-1] = weight_right
    for weights, offset in ((down, (1, 2, 1)), (right, (1, 1, 2))):
        structure = np.zeros((3, 3, 3))
        structure[offset] = 1
        graph.add_grid_edges(nodes, weights=weights, structure=structure, symmetric=True)
    base = np.minimum(cost_a, cost_b)
    # A node left on the source side cuts its sink edge (pays sinkcaps): that side is m = 1.
    graph.add_grid_tedges(nodes, cost_b - base, cost_a - base)
    graph.maxflow()
    return ~graph.get_grid_segments(nodes)


def _boundary_penalty(p_first: torch.Tensor, p_second: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Mean colour jump across the block boundaries along ``dim`` (2: rows,
    3: columns) when the first block shows ``p_first`` and the next
    ``p_second`` (images pooled to ``n k`` cells per side, k cells per block)."""
    if dim == 2:
        jump = (p_first[:, :, k - 1:-1:k, :] - p_second[:, :, k::k, :]).abs().mean(1)
        return F.avg_pool2d(jump.unsqueeze(1), (1, k)).squeeze(1)
    jump = (p_first[:, :, :, k - 1:-1:k] - p_second[:, :, :, k::k]).abs().mean(1)
    return F.avg_pool2d(jump.unsqueeze(1), (k, 1)).squeeze(1)


def _pairwise_terms(pooled: torch.Tensor, index: torch.Tensor, k: int, dim: int, scale: float,
                    smooth: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Data smoothness between neighbouring blocks, split as in the original
    into unary parts for each side plus a Potts weight:
    ``V(s, t) = u_first(s) + u_second(t) + w [s != t] + const`` with
    ``w = (V_ab + V_ba - V_aa - V_bb) / 2`` (clamped at 0) plus ``smooth``.
    Returns (unary of the first block [B, 2, ...], unary of the second, w);
    index 0 of the label axis is "from b", 1 is "from a"."""
    a, b = pooled, pooled[index]
    v = {(s, t): scale * _boundary_penalty(p, q, k, dim)
         for s, p in ((0, b), (1, a)) for t, q in ((0, b), (1, a))}
    first = torch.stack([(v[0, 0] + v[0, 1]) / 2, (v[1, 0] + v[1, 1]) / 2], 1)
    second = torch.stack([(v[0, 0] + v[1, 0]) / 2, (v[0, 1] + v[1, 1]) / 2], 1)
    weight = ((v[1, 0] + v[0, 1] - v[1, 1] - v[0, 0]) / 2).clamp_min(0) + smooth
    return first, second, weight


def _block_num(choice: int | None, height: int, width: int, generator: torch.Generator | None,
               device: torch.device) -> int:
    if choice is not None:
        check_positive("block_num", choice, integer=True)
        if choice > min(height, width):
            raise ValueError(f"block_num must be <= min(H, W) = {min(height, width)}, got {choice}")
        return choice
    options = [n for n in (2, 4, 8, 16) if n <= min(height, width)] or [1]
    pick = torch.randint(len(options), (1,), generator=generator, device=device)
    return options[int(pick)]  # host sync: the block grid is needed on the host for the graph cut


def puzzlemix(x: torch.Tensor, y: torch.Tensor, *, alpha: float = 1.0, generator: torch.Generator | None = None,
              per_sample: bool = True, model: nn.Module | None = None, correct_lam: bool = True,
              block_num: int | None = None, beta: float = 1.2, gamma: float = 0.5, eta: float = 0.2,
              neigh_size: int = 4, saliency_mode: str = "eval") -> MixedBatch:
    """Puzzle Mix (Kim, Choo & Song, ICML 2020) without the transport step.

    1. Saliency ``s = sqrt(mean_c g**2)`` from the model's input gradient
       (:func:`input_gradient_saliency`), average-pooled to an ``n x n`` block
       grid and normalised to sum 1 per image (``u_a``; the partner's is
       ``u_b = u_a[index]``).  ``n`` is ``block_num``, or drawn per batch from
       {2, 4, 8, 16} (those <= min(H, W)) as in the original.
    2. lam ~ Beta(alpha, alpha) (per sample, or one per batch with
       ``per_sample=False``) enters as a label prior.
    3. A binary block mask ``m`` (1: block from a) minimises, per sample,
       ``sum_k [m_k (u_b,k - eta' log lam) + (1 - m_k)(u_a,k - eta' log(1 - lam))]
       + sum_{k~l} w_kl [m_k != m_l]`` with ``eta' = eta / n**2``: a block
       taken from one image loses the other image's saliency there.  The
       pairwise weight is ``beta' = beta / (16 n)`` (label smoothness) plus
       ``beta' gamma`` times the colour jump a cut would create at the block
       boundary (data smoothness, measured on strips ``neigh_size`` pixels
       wide and split into unary and Potts parts as in the original; a
       non-submodular remainder is clamped to 0).  Solved exactly by one
       PyMaxflow min cut over all samples (:func:`graph_cut_masks`).
    4. The block mask is upsampled (nearest) to H x W, ``inputs = m x +
       (1 - m) x[index]`` and lam = the mask mean.

    With flat saliency (an untrained model, blank images) only the prior and
    the smoothness speak and the cut takes one whole image: lam is then 0 or
    1, as in the original.  The graph cut itself has no per-sample loop: the
    B grids are disjoint parts of one graph and one ``maxflow()`` call solves
    them all.

    Left out from the original: the optimal-transport step that moves salient
    blocks of each image under the mask, soft masks with more than two labels
    (``n_labels = 3``, the "label smoothing" of the mask), and the adversarial
    noise / clean-loss regularisation.  The graph cut runs on the CPU, so this
    policy syncs with the host (the saliency and the costs go to the CPU and
    the mask comes back); everything else is batched tensor code.
    """
    _check_batch(x, y, alpha=alpha, generator=generator, per_sample=per_sample, images=True, policy="puzzlemix")
    _check_model(model, "puzzlemix")
    for name, value in (("beta", beta), ("gamma", gamma), ("eta", eta)):
        check_positive(name, value, allow_zero=True)
    check_positive("neigh_size", neigh_size, integer=True)
    check_choice("saliency_mode", saliency_mode, ("eval", "train"))
    b, _, height, width = x.shape
    index, lam = _draw_pairs(x, alpha, generator, per_sample)
    n = _block_num(block_num, height, width, generator, x.device)

    sal = input_gradient_saliency(model, x, y, mode=saliency_mode)
    unary = F.adaptive_avg_pool2d(sal.unsqueeze(1), (n, n)).squeeze(1)
    unary = unary / unary.sum((1, 2), keepdim=True).clamp_min(1e-12)
    lam_b = _expand(lam, b)[:, None, None]
    prior = eta / n ** 2
    cost_a = unary[index] - prior * torch.log(lam_b + 1e-8)         # block from a: b's saliency is lost
    cost_b = unary - prior * torch.log(1.0 - lam_b + 1e-8)         # block from b: a's saliency is lost
    smooth = beta / (16 * n)

    k = max(1, min(height, width) // (n * neigh_size))
    pooled = F.adaptive_avg_pool2d(x.detach().to(torch.float32), (n * k, n * k))
    costs = torch.stack([cost_b, cost_a], 1)                        # label axis: 0 from b, 1 from a
    weights = [torch.zeros((b, n - 1, n)), torch.zeros((b, n, n - 1))]
    for dim in (2, 3) if n > 1 else ():
        first, second, weight = _pairwise_terms(pooled, index, k, dim, smooth * gamma, smooth)
        if dim == 2:
            costs[:, :, :-1, :] += first
            costs[:, :, 1:, :] += second
        else:
            costs[:, :, :, :-1] += first
            costs[:, :, :, 1:] += second
        weights[dim - 2] = weight

    host = [t.detach().to("cpu", torch.float64).numpy() for t in (costs, *weights)]
    blocks = graph_cut_masks(host[0][:, 1], host[0][:, 0], host[1], host[2])
    blocks = torch.from_numpy(blocks).to(x.device, torch.float32).unsqueeze(1)
    mask = F.interpolate(blocks, size=(height, width), mode="nearest")
    return _masked_batch(x, y, index, _expand(lam, b), mask, "puzzlemix", correct_lam)
