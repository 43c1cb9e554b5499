"""PuzzleMix (Kim, Choo & Song, ICML 2020), as the authors' code does it.

One call of :func:`puzzlemix` on a batch ``x`` [B, C, H, W] (pixels in [0, 1]):

1. **Pairs and ratio.**  A partner ``x[index]`` and ``lam ~ Beta(alpha,
   alpha)`` per sample (``per_sample=False``: one lam per batch, as the
   original).  A block grid ``n`` is ``block_num`` or drawn per batch from
   {2, 4, 8, 16} (those <= min(H, W)).
2. **Saliency** ``s = sqrt(mean_c g**2)``, ``g`` the input gradient of the
   summed cross-entropy (one extra forward/backward of ``model``, see
   :func:`mixviz.mixing.dynamic.input_gradient_saliency`), pooled to the n x n
   blocks and normalised to sum 1 per image: ``u_a``, and ``u_b = u_a[index]``.
3. **Mask by a graph cut.**  Each block gets a label ``L`` in {0, .., K-1}
   (``K = n_labels``) and the mask value ``m = 1 - L / (K - 1)`` (the share of
   sample a: {1, 0} for K = 2, {1, 0.5, 0} for K = 3).  The labels minimise

       E(L) = sum_k [(1 - l_k) U_a,k + l_k U_b,k + P(L_k)]
            + sum_{k~k'} w_kk' (L_k - L_k')**2 / (K - 1)**2,      l_k = L_k / (K - 1)

   * ``U_a = u_b`` and ``U_b = u_a`` (showing one image hides the other's
     saliency), each plus the unary part of the data-smoothness term below.
   * ``P(L) = -(eta / n**2) log(binom(K-1, L) lam**(K-1-L) (1 - lam)**L + 1e-8)``:
     a block is the mean of K - 1 Bernoulli(lam) picks of sample a.
   * ``w = beta' + (E_ab + E_ba - E_aa - E_bb) / 2`` with ``beta' = beta / (16 n)``
     (label smoothness) and ``E_st = beta' gamma`` times the mean colour
     jump across a block boundary when the first block shows image s and the
     next image t (on the images average-pooled to strips ``neigh_size``
     pixels wide); the rest of ``E`` goes into the unaries, as in the
     original (exact for K = 2; the 0.5 label gets the mean of both unaries).
     With images in [0, 1] and ``gamma <= 1``, ``w >= beta' (1 - gamma) >= 0``;
     a negative ``w`` (``gamma > 1``) is clamped to 0.
4. **Transport** (``transport=True``): a G x G cell grid (``t_size``-pixel
   cells, G a multiple of n; ``t_size=None``: the blocks), the saliency
   re-pooled to it, and for each image a greedy transport plan
   (:func:`transport_plan`) moves its salient cells to where the mask shows
   that image; the partner is moved under ``1 - m``.  Cells that receive
   nothing take the batch's mean colour.
5. ``inputs = m * T_a(x) + (1 - m) * T_b(x[index])`` (``m`` nearest-upsampled),
   ``lam = mean(m)`` (the 0.5 label counts half).  The moves are kept in
   ``MixedBatch.transport`` so that metrics move object masks the same way
   (:meth:`MixedBatch.carry`).

What the transport can do: the cut comes first and does not know about it.
When the two images' saliency is laid out alike (two objects at the same
place on plain backgrounds) every mask hides the same saliency, so the prior
and the smoothness decide and the mask is one whole image or, with three
labels, a 0.5 blend; no transport can then separate the objects.  When the
images differ elsewhere the cut splits the pair, and the transport moves a
hidden cell into its image's side if its saliency share exceeds
``t_eps d**2 / (G - 1)**2`` (d: the distance in cells), which lets both
objects of a pair be more than half visible (``tests/test_puzzlemix.py``).

Cost per CPU training step (small CNN, batch 128, ``benchmarks/results/mixing.md``):
2.1x a mixup step with the defaults, 1.8x reduced (mostly the saliency pass),
3.0x with ``clean_lam > 0``; ``adv_p`` adds no pass.  At n = 16 the
transport (a [B, 256, 256] cost matrix per plan, 16 rounds) dominates the rest.

**The solver.**  The pairwise cost ``w (L - L')**2`` with ``w >= 0`` is convex
in the label difference, so Ishikawa's layered graph gives the *global*
optimum with one min cut (:func:`graph_cut_labels`); all B grids are disjoint
parts of one PyMaxflow graph, so one ``maxflow()`` call solves the batch
(PyMaxflow is already a dependency).  The original runs GCO's alpha-beta
swap from all-zero labels, one pair at a time (8 worker processes), on the
energy scaled by ``1000 n**2`` and truncated to integers; swap finds a
local optimum.  On 300 three-label instances of exactly that integer
energy (``tests/data/puzzlemix_gco_reference.npz``, made by
``tests/data/make_puzzlemix_gco_reference.py`` with gco-wrapper 3.0.9;
n = 2, 4, 8, 16), the min cut's energy is never above GCO's and equal on 257
(86 %: all 80 at n = 2, 89 of 90 at n = 4, 70 of 90 at n = 8, 18 of 40 at
n = 16); where they differ GCO is 0.21 % above the optimum on average (1.7 %
at worst).  Per batch of 128 pairs, timed in interleaved rounds on one CPU
thread, GCO's swaps one pair after the other take 105x (n = 2), 45x (4),
7.8x (8) and 1.8x (16) the time of the batched min cut (on a 2-core
machine shared with other jobs; the original spreads its swaps over 8
worker processes).
PyMaxflow's ``fastmin.abswap_grid`` / ``aexpansion_grid`` were not used: they
take one label-cost matrix for the whole grid, not a weight per edge, and
run one grid per call.  ``gco-wrapper`` has no wheel for Python 3.12 and
uses ``np.int``, removed in NumPy 1.24, so it serves only as the test's
reference.  Here the energy stays in float64: no truncation, and no int32
overflow (in the original a 2 x 2 block holding more than about 8 % of an
image's saliency overflows GCO's integer terms at n = 16).

**Deviations and choices**, beyond the solver:

* lam is drawn per sample by default (``per_sample=False`` is the original's
  one lam per batch); ``correct_lam=False`` keeps the drawn lam as the label
  ratio.
* Unfilled transport cells: the original leaves 0 in normalised space, the
  data set's mean colour; mixviz's images are un-normalised [0, 1] pixels
  and the policy does not know the data set, so the batch's per-channel mean
  colour (of the clean batch) stands in.  As in the original, a visible cell
  whose saliency is exactly 0 ties with the columns' zero entries and is
  left unfilled.
* Sizes that are not multiples of the grids: blocks and cells follow
  nearest-neighbour resizing (:func:`mixviz.mixing.batch.cell_index`), the
  pooling follows ``adaptive_avg_pool2d``; the transport moves cells of
  unequal size by clamping offsets (:func:`mixviz.mixing.batch.move_cells`).
  For multiples (CIFAR's 32 x 32 with the defaults) everything is exact.
* ``clean_lam``: the original adds ``2 clean_lam / C * CE(clean)`` to a
  BCE-on-softmax loss that is averaged over the C classes.  mixviz's
  criteria are not divided by C, so ``aux_loss = 2 clean_lam * CE(clean)``
  (mean over the batch) keeps the original's ratio of clean to mixed loss
  (up to BCE-on-softmax against soft cross-entropy).
* The graph cut runs on the CPU: the saliency and the energy go to the host
  and the mask comes back, one host sync per batch (the block size is also
  drawn on the host).  Everything else is batched tensor code on x's
  device, without a loop over samples.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mixviz._validation import check_choice, check_positive
from mixviz.mixing.batch import MixedBatch, cell_index, move_cells
from mixviz.mixing.dynamic import _check_model, _input_gradient
from mixviz.mixing.static import _check_batch, _check_bool, _draw_pairs, _expand, _masked_batch, _take

__all__ = ["graph_cut_labels", "graph_cut_masks", "transport_plan", "puzzlemix", "puzzlemix_lite"]


# --------------------------------------------------------------------------- graph cut


def graph_cut_labels(unary: np.ndarray, weight_down: np.ndarray, weight_right: np.ndarray) -> np.ndarray:
    """Exact minimisers of B grid energies with a convex quadratic label cost.

    For every grid ``s`` it returns the labels L in {0, .., K-1}^(h x w)
    (K = ``unary.shape[-1]`` >= 2) that minimise::

        E(L) = sum_k unary[s, k, L_k] + sum_{k~l} w[s, k, l] (L_k - L_l)**2 / (K - 1)**2

    with ``weight_down`` [B, h-1, w] between (i, j) and (i+1, j) and
    ``weight_right`` [B, h, w-1] between (i, j) and (i, j+1), all >= 0.

    Ishikawa's construction (2003): each site gets K - 1 binary nodes
    ``b_j = [L >= j]`` (j = 1 .. K-1) joined by infinite edges that forbid
    ``b_{j+1} = 1`` while ``b_j = 0``, so ``L = sum_j b_j``.  The unary
    telescopes, ``U(L) = U(0) + sum_j b_j (U(j) - U(j-1))``, and for monotone
    nodes ``(L - L')**2 = sum_j (2j - K)(b_j + b'_j) + sum_{j, j'} [b_j != b'_j']``:
    linear terms plus one edge of capacity ``w / (K-1)**2`` between every
    node of a site and every node of its neighbour.  All capacities are >= 0,
    so the min cut is the global minimum.  The B grids are disjoint parts of
    one PyMaxflow graph: one ``maxflow()`` call, no loop over grids.  Returns
    int64 labels [B, h, w].
    """
    unary = np.asarray(unary, dtype=np.float64)
    if unary.ndim != 4 or unary.shape[-1] < 2:
        raise ValueError(f"unary must have shape [B, h, w, K] with K >= 2 labels, got {unary.shape}")
    b, h, w, k = unary.shape
    down = np.asarray(weight_down, dtype=np.float64)
    right = np.asarray(weight_right, dtype=np.float64)
    if down.shape != (b, h - 1, w) or right.shape != (b, h, w - 1):
        raise ValueError(f"weight_down must be [{b}, {h - 1}, {w}] and weight_right [{b}, {h}, {w - 1}], "
                         f"got {down.shape} and {right.shape}")
    if not (np.isfinite(unary).all() and np.isfinite(down).all() and np.isfinite(right).all()):
        raise ValueError("unary, weight_down and weight_right must be finite")
    if np.any(down < 0) or np.any(right < 0):
        raise ValueError("weight_down and weight_right must be >= 0 (a convex, graph-representable energy)")
    from mixviz._extras import require

    maxflow = require("maxflow", "the puzzlemix graph cut")  # PyMaxflow: not needed by the other policies

    c_down = down / (k - 1) ** 2
    c_right = right / (k - 1) ** 2
    touching = np.zeros((b, h, w))  # the summed pair weight of each site's neighbours
    touching[:, :-1] += c_down
    touching[:, 1:] += c_down
    touching[:, :, :-1] += c_right
    touching[:, :, 1:] += c_right
    layers = np.arange(1, k)
    coeff = np.moveaxis(np.diff(unary, axis=-1), -1, 1) + (2 * layers - k)[None, :, None, None] * touching[:, None]

    n_edges = b * (k - 1) * ((k - 1) * ((h - 1) * w + h * (w - 1)) + h * w)
    graph = maxflow.Graph[float](b * (k - 1) * h * w, n_edges)  # sized up front: no regrowth while adding
    nodes = graph.add_grid_nodes((b, k - 1, h, w))
    # A node on the sink side has b_j = 1: it pays its source capacity.
    graph.add_grid_tedges(nodes, np.maximum(coeff, 0.0), np.maximum(-coeff, 0.0))
    pairs = [(nodes[:, j, :-1, :], nodes[:, i, 1:, :], c_down) for j in range(k - 1) for i in range(k - 1)]
    pairs += [(nodes[:, j, :, :-1], nodes[:, i, :, 1:], c_right) for j in range(k - 1) for i in range(k - 1)]
    caps = np.concatenate([c.ravel() for _, _, c in pairs])
    graph.add_edges(np.concatenate([s.ravel() for s, _, _ in pairs]), np.concatenate([t.ravel() for _, t, _ in pairs]),
                    caps, caps)
    if k > 2:  # infinite edges j -> j + 1: cutting one (b_j = 0, b_{j+1} = 1) costs more than any finite cut
        big = 1.0 + np.abs(coeff).sum() + 2.0 * (k - 1) ** 2 * (c_down.sum() + c_right.sum())
        low, high = nodes[:, :-1].ravel(), nodes[:, 1:].ravel()
        graph.add_edges(low, high, np.full(low.size, big), np.zeros(low.size))
    graph.maxflow()
    return graph.get_grid_segments(nodes).sum(1, dtype=np.int64)


def graph_cut_masks(cost_a: np.ndarray, cost_b: np.ndarray, weight_down: np.ndarray,
                    weight_right: np.ndarray) -> np.ndarray:
    """Exact binary labellings of B grids by one s-t min cut.

    For every sample ``s`` it minimises over ``m`` in {0, 1}^(n x n)::

        E(m) = sum_k [m_k cost_a[s, k] + (1 - m_k) cost_b[s, k]]
             + sum_{k below/right of l} w[s, k, l] * [m_k != m_l]

    (:func:`graph_cut_labels` with K = 2).  Returns bool [B, n, n], True
    where m = 1.
    """
    unary = np.stack([np.asarray(cost_a, dtype=np.float64), np.asarray(cost_b, dtype=np.float64)], -1)
    return graph_cut_labels(unary, weight_down, weight_right) == 0


def _boundary_penalty(p_first: torch.Tensor, p_second: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Mean colour jump across the block boundaries along ``dim`` (2: rows,
    3: columns) when the first block shows ``p_first`` and the next
    ``p_second`` (images pooled to ``n k`` cells per side, k cells per block)."""
    if dim == 2:
        jump = (p_first[:, :, k - 1:-1:k, :] - p_second[:, :, k::k, :]).abs().mean(1)
        return F.avg_pool2d(jump.unsqueeze(1), (1, k)).squeeze(1)
    jump = (p_first[:, :, :, k - 1:-1:k] - p_second[:, :, :, k::k]).abs().mean(1)
    return F.avg_pool2d(jump.unsqueeze(1), (k, 1)).squeeze(1)


def _smoothness(pooled: torch.Tensor, index: torch.Tensor, k: int, dim: int, scale: float,
                smooth: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The data smoothness between neighbouring blocks along ``dim``, split as
    in the original into a unary part for each block plus an edge weight:
    ``E(s, t) = first(s) + second(t) + (w - smooth) [s != t] + const``.
    Returns (unary of the first block [B, ..., 2], unary of the second, w);
    the last axis is (shows a, shows b)."""
    a, b = pooled, pooled[index]
    e = {(s, t): scale * _boundary_penalty(p, q, k, dim) for s, p in ((0, a), (1, b)) for t, q in ((0, a), (1, b))}
    first = torch.stack([(e[0, 0] + e[0, 1]) / 2, (e[1, 0] + e[1, 1]) / 2], -1)
    second = torch.stack([(e[0, 0] + e[1, 0]) / 2, (e[0, 1] + e[1, 1]) / 2], -1)
    weight = ((e[0, 1] + e[1, 0] - e[0, 0] - e[1, 1]) / 2 + smooth).clamp_min(0)
    return first, second, weight


def _energy(x: torch.Tensor, sal: torch.Tensor, index: torch.Tensor, lam: torch.Tensor, n: int, *, beta: float,
            gamma: float, eta: float, neigh_size: int,
            n_labels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PuzzleMix's block energy (module docstring, step 3) on x's device:
    unaries [B, n, n, K] (label L shows a with share 1 - L / (K - 1)),
    ``weight_down`` [B, n-1, n] and ``weight_right`` [B, n, n-1]."""
    b, _, height, width = x.shape
    u = F.adaptive_avg_pool2d(sal.unsqueeze(1).float(), (n, n)).squeeze(1)
    u = u / u.sum((1, 2), keepdim=True).clamp_min(1e-12)
    costs = torch.stack([u[index], u], -1)  # shows a: b's saliency is hidden; shows b: a's is
    smooth = beta / (16 * n)
    k = max(1, min(height, width) // (n * neigh_size))
    pooled = F.adaptive_avg_pool2d(x.detach().float(), (n * k, n * k))
    weights = []
    for dim in (2, 3):
        if n == 1:
            weights.append(torch.zeros((b, 0, 1) if dim == 2 else (b, 1, 0), device=x.device))
            continue
        first, second, weight = _smoothness(pooled, index, k, dim, smooth * gamma, smooth)
        if dim == 2:
            costs[:, :-1, :] += first
            costs[:, 1:, :] += second
        else:
            costs[:, :, :-1] += first
            costs[:, :, 1:] += second
        weights.append(weight)
    levels = torch.arange(n_labels, device=x.device, dtype=torch.float32) / (n_labels - 1)  # l = share of b
    lam_b = _expand(lam, b).float()[:, None]
    binom = torch.tensor([math.comb(n_labels - 1, j) for j in range(n_labels)], device=x.device, dtype=torch.float32)
    steps = torch.arange(n_labels, device=x.device, dtype=torch.float32)
    prob = binom * lam_b ** (n_labels - 1 - steps) * (1 - lam_b) ** steps
    prior = -(eta / n ** 2) * torch.log(prob + 1e-8)  # [B, K]
    unary = (1 - levels) * costs[..., :1] + levels * costs[..., 1:] + prior[:, None, None, :]
    return unary, weights[0], weights[1]


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


# --------------------------------------------------------------------------- transport


def _column_winners(prop: torch.Tensor, pcost: torch.Tensor) -> torch.Tensor:
    """The row that wins each column, or -1, when row i proposes column
    ``prop[:, i]`` at cost ``pcost[:, i]``.  As the authors resolve it: column j
    goes to the first row at the minimum over *all* rows of ``pcost_i if row i
    proposes j else 0``; when that row did not propose j, j stays empty."""
    b, nc = prop.shape
    rows = torch.arange(nc, device=prop.device).expand(b, nc)
    best = torch.full((b, nc), math.inf, device=prop.device, dtype=pcost.dtype).scatter_reduce(
        1, prop, pcost, "amin")
    count = torch.zeros((b, nc), device=prop.device, dtype=torch.int64).scatter_add_(1, prop, torch.ones_like(prop))
    low = torch.where(count < nc, best.clamp_max(0), best)  # rows that do not propose j count as 0
    at_low = pcost == low.gather(1, prop)
    first = torch.full((b, nc), nc, device=prop.device, dtype=torch.int64).scatter_reduce(
        1, prop, torch.where(at_low, rows, nc), "amin")  # first proposer at the column's minimum
    # rows 0 .. lead-1 all propose row 0's column
    lead = (prop == prop[:, :1]).to(torch.int64).cumprod(1).sum(1, keepdim=True)
    first_free = torch.zeros((b, nc), device=prop.device, dtype=torch.int64).scatter_(1, prop[:, :1], lead)
    wins = (first < nc) & ((low != 0) | (first < first_free))
    return torch.where(wins, first, -1)


def transport_plan(mask: torch.Tensor, saliency: torch.Tensor, *, eps: float = 0.8) -> torch.Tensor:
    """PuzzleMix's greedy transport of an image's salient cells under its mask.

    ``mask`` [B, G, G] is the share of the image shown in each cell and
    ``saliency`` [B, G, G] its saliency per cell (normalised to sum 1).  With
    ``z_j = [mask_j > 0]`` and ``D_ij`` the squared grid distance of cells i
    and j over ``(G - 1)**2``, the cost of moving cell i to cell j is
    ``cost_ij = eps D_ij - saliency_i z_j``.  G rounds of: every cell i
    proposes its cheapest column ``argmin_j cost_ij``; each column keeps the
    proposal at the lowest cost (ties and the zeros of rows that did not
    propose go to the lowest row index, as coded by the authors: a column
    whose best proposal costs more than 0 stays empty); every losing
    proposal's cost is raised by 1.  The last round's winners are the plan:
    at most one source per cell and one destination per source.

    Returns int64 [B, G, G]: the flat index of the source cell moved to each
    cell, -1 where none.  Batched tensor code on the inputs' device (float32
    like the original): O(B G**4) per round, G rounds.
    """
    if mask.dim() != 3 or mask.shape[1] != mask.shape[2] or saliency.shape != mask.shape:
        raise ValueError(f"mask and saliency must both be [B, G, G], got {tuple(mask.shape)} and "
                         f"{tuple(saliency.shape)}")
    check_positive("eps", eps, allow_zero=True)
    b, g = mask.shape[0], mask.shape[-1]
    nc = g * g
    grid = torch.arange(g, device=mask.device, dtype=torch.float32)
    rr, cc = (t.reshape(-1) for t in torch.meshgrid(grid, grid, indexing="ij"))
    dist = ((rr[:, None] - rr[None, :]) ** 2 + (cc[:, None] - cc[None, :]) ** 2) / max(g - 1, 1) ** 2
    z = (mask.reshape(b, nc) > 0).to(torch.float32)
    cost = eps * dist - saliency.reshape(b, nc, 1).to(torch.float32) * z[:, None, :]
    rows = torch.arange(nc, device=mask.device).expand(b, nc)
    winners = torch.full((b, nc), -1, device=mask.device, dtype=torch.int64)
    for _ in range(g):
        prop = cost.argmin(-1)
        winners = _column_winners(prop, cost.gather(2, prop.unsqueeze(-1)).squeeze(-1))
        lost = winners.gather(1, prop) != rows
        cost.view(b, nc * nc).scatter_add_(1, rows * nc + prop, lost.to(cost.dtype))
    return winners.reshape(b, g, g)


# --------------------------------------------------------------------------- policies


def _check_options(*, beta: float, gamma: float, eta: float, neigh_size: int, n_labels: int,
                   transport: bool, t_eps: float, t_size: int | None, adv_p: float, adv_eps: float,
                   clean_lam: float, saliency_mode: str | None) -> None:
    for name, value in (("beta", beta), ("gamma", gamma), ("eta", eta), ("t_eps", t_eps), ("adv_eps", adv_eps),
                        ("clean_lam", clean_lam)):
        check_positive(name, value, allow_zero=True)
    check_positive("neigh_size", neigh_size, integer=True)
    if isinstance(n_labels, bool) or not isinstance(n_labels, int):
        raise TypeError(f"n_labels must be an int (2 or 3), got {type(n_labels).__name__}")
    check_choice("n_labels", n_labels, (2, 3))
    _check_bool("transport", transport)
    if t_size is not None:
        check_positive("t_size", t_size, integer=True)
    check_positive("adv_p", adv_p, allow_zero=True)
    if adv_p > 1:
        raise ValueError(f"adv_p must be a probability in [0, 1], got {adv_p}")
    if saliency_mode is not None:
        check_choice("saliency_mode", saliency_mode, ("eval", "train"))


def _transport_grid(n: int, height: int, width: int, t_size: int | None) -> int:
    """G: cells of ``t_size`` pixels, a multiple of the n blocks (n when the
    blocks are smaller than ``t_size``); for 32 x 32 and ``t_size = 4`` this is
    the original's 8 (n = 2, 4, 8) and 16 (n = 16)."""
    if t_size is None:
        return n
    return n * max(1, (min(height, width) // n) // t_size)


def _puzzlemix(x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator | None, per_sample: bool,
               model: nn.Module | None, correct_lam: bool, block_num: int | None, beta: float, gamma: float, eta: float,
               neigh_size: int, n_labels: int, transport: bool, t_eps: float, t_size: int | None, adv_p: float,
               adv_eps: float, clean_lam: float, saliency_mode: str | None, policy: str) -> MixedBatch:
    _check_batch(x, y, alpha=alpha, generator=generator, per_sample=per_sample, images=True, policy=policy)
    model = _check_model(model, policy)
    _check_options(beta=beta, gamma=gamma, eta=eta, neigh_size=neigh_size, n_labels=n_labels,
                   transport=transport, t_eps=t_eps, t_size=t_size, adv_p=adv_p, adv_eps=adv_eps,
                   clean_lam=clean_lam, saliency_mode=saliency_mode)
    _check_bool("correct_lam", correct_lam)
    b, _, height, width = x.shape
    index, lam = _draw_pairs(x, alpha, generator, per_sample)
    n = _block_num(block_num, height, width, generator, x.device)

    x_in, noise = x, None
    if adv_p > 0:  # two flags per batch (sample a's side, the partner's), as in the original
        flags = torch.rand(2, generator=generator, device=x.device) < adv_p
        eps = adv_eps / 255
        start = (torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1) * eps
        x_in = torch.where(flags.any(), (x + start).clamp(0, 1), x)
        noise = x_in - x
    mode = saliency_mode or ("train" if clean_lam > 0 else "eval")
    grad, loss = _input_gradient(model, x_in, y, mode, keep_graph=clean_lam > 0)
    sal = grad.detach().float().pow(2).mean(1).sqrt()
    if noise is not None:  # one signed-gradient step, projected, then scaled by one U(0, 1) draw
        coef = torch.rand(1, generator=generator, device=x.device, dtype=x.dtype)
        noise = (noise + (adv_eps + 2) / 255 * grad.detach().sign().to(x.dtype)).clamp(-eps, eps) * coef

    unary, down, right = _energy(x, sal, index, lam, n, beta=beta, gamma=gamma, eta=eta, neigh_size=neigh_size,
                                 n_labels=n_labels)
    host = [t.detach().to("cpu", torch.float64).numpy() for t in (unary, down, right)]  # host sync
    # NaN pixels pass only with value checks off (or a diverged model): their terms count as 0, no error
    host = [np.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0) for t in host]
    labels = torch.from_numpy(graph_cut_labels(*host)).to(x.device)
    blocks = 1.0 - labels.to(torch.float32) / (n_labels - 1)  # [B, n, n], the share of a
    mask = blocks[:, cell_index(height, n, x.device)][:, :, cell_index(width, n, x.device)].unsqueeze(1)

    x_a, x_b = x, _take(x, index)
    if noise is not None:
        x_a = torch.where(flags[0], (x + noise).clamp(0, 1), x)
        x_b = torch.where(flags[1], (x_b + noise[index]).clamp(0, 1), x_b)
    moves = None
    if transport:
        g = _transport_grid(n, height, width, t_size)
        cells = blocks.repeat_interleave(g // n, 1).repeat_interleave(g // n, 2)
        u = F.adaptive_avg_pool2d(sal.unsqueeze(1), (g, g)).squeeze(1)
        u = u / u.sum((1, 2), keepdim=True).clamp_min(1e-12)
        moves = torch.stack([transport_plan(cells, u, eps=t_eps), transport_plan(1 - cells, u[index], eps=t_eps)], 1)
        fill = x.detach().mean((0, 2, 3))  # the batch's mean colour, for cells that receive nothing
        x_a, x_b = move_cells(x_a, moves[:, 0], fill), move_cells(x_b, moves[:, 1], fill)
    out = _masked_batch(x_a, y, index, _expand(lam, b), mask, policy, correct_lam, partner=x_b)
    aux = 2 * clean_lam * loss.float() / b if clean_lam > 0 else None
    return replace(out, transport=moves, aux_loss=aux)


def puzzlemix(x: torch.Tensor, y: torch.Tensor, *, alpha: float = 1.0, generator: torch.Generator | None = None,
              per_sample: bool = True, model: nn.Module | None = None, correct_lam: bool = True,
              block_num: int | None = None, beta: float = 1.2, gamma: float = 0.5, eta: float = 0.2,
              neigh_size: int = 4, n_labels: int = 3, transport: bool = True, t_eps: float = 0.8,
              t_size: int | None = 4, adv_p: float = 0.0, adv_eps: float = 10.0, clean_lam: float = 0.0,
              saliency_mode: str | None = None) -> MixedBatch:
    """Puzzle Mix (Kim, Choo & Song, ICML 2020) as the authors' code does it
    (the steps, the solver and every deviation are in the module docstring).

    Defaults are the original's CIFAR-100 PreAct-ResNet-18 recipe: ``alpha=1``,
    ``n_labels=3``, ``beta=1.2``, ``gamma=0.5``, ``eta=0.2``, ``neigh_size=4``,
    ``transport=True``, ``t_eps=0.8``, ``t_size=4``, ``clean_lam=0``, ``adv_p=0``
    (its adversarial recipe: ``adv_p=0.1, adv_eps=10``).

    Args:
        model: the network being trained (needed: the saliency is its input
            gradient).
        block_num: the n x n block grid of the mask; None draws n from
            {2, 4, 8, 16} per batch.
        beta, gamma, eta, neigh_size: label smoothness, data smoothness
            (colour jumps, measured on ``neigh_size``-pixel strips) and the
            weight of the lam prior in the graph-cut energy.
        n_labels: 2 (binary mask) or 3 (mask values 0, 0.5, 1).
        transport: move each image's salient cells under its side of the mask.
        t_eps: the transport's distance weight; ``t_size``: its cell size in
            pixels (None: the graph-cut blocks).
        adv_p: the probability (per batch, once for the samples and once for
            the partners) of adding adversarial noise: a random start in
            ``[-adv_eps, adv_eps] / 255``, one signed-gradient step of
            ``(adv_eps + 2) / 255`` from the saliency pass, clipped and scaled
            by one U(0, 1) draw, added before the transport.  Costs no extra
            pass.
        clean_lam: with ``clean_lam > 0`` the saliency pass (in train mode
            unless ``saliency_mode`` says otherwise) also trains the network:
            ``aux_loss = 2 clean_lam * CE(model(x), y)`` (mean over the batch)
            keeps its graph, and the training step adds it to the loss.
        saliency_mode: the mode of the saliency pass, ``"eval"`` or ``"train"``;
            None: eval, or train when ``clean_lam > 0`` (as the original).

    The batch has ``mask`` (values in {0, 0.5, 1} for 3 labels), ``lam = mask
    mean``, and with transport ``transport`` (the cells moved; see
    :class:`MixedBatch`).
    """
    return _puzzlemix(x, y, alpha, generator, per_sample, model, correct_lam, block_num, beta, gamma, eta,
                      neigh_size, n_labels, transport, t_eps, t_size, adv_p, adv_eps, clean_lam, saliency_mode,
                      "puzzlemix")


def puzzlemix_lite(x: torch.Tensor, y: torch.Tensor, *, alpha: float = 1.0,
                   generator: torch.Generator | None = None, per_sample: bool = True,
                   model: nn.Module | None = None, correct_lam: bool = True, block_num: int | None = None,
                   beta: float = 1.2, gamma: float = 0.5, eta: float = 0.2, neigh_size: int = 4,
                   saliency_mode: str = "eval") -> MixedBatch:
    """A reduced PuzzleMix: :func:`puzzlemix` with ``n_labels=2``,
    ``transport=False``, no adversarial noise and no clean loss.

    The mask is binary (each block from one image), the blocks stay in place
    (``inputs = m x + (1 - m) x[index]`` exactly) and the only extra cost over
    a static policy is the saliency pass and the min cut.  It is named apart
    so that tables never mistake it for the published method.
    """
    if saliency_mode is None:
        raise ValueError("saliency_mode must be 'eval' or 'train' for puzzlemix_lite, got None")
    return _puzzlemix(x, y, alpha, generator, per_sample, model, correct_lam, block_num, beta, gamma, eta,
                      neigh_size, 2, False, 0.8, None, 0.0, 10.0, 0.0, saliency_mode, "puzzlemix_lite")
