"""The mixed-sample gallery at a size a class can read: the clutter images
generated at :data:`GALLERY_SIZE` pixels (the same scenes as the 16 px sets
the models were trained on: the generator draws every position and size as a
share of the side), mixed by each policy with one seed, in groups of at most
:data:`GALLERY_MAX_POLICIES` policies per figure.

Policies that ask a model where the objects are were trained at a smaller
size.  Their model sees each large image through :class:`AtResolution`: the
image is area-downsampled to the model's side, so the input-gradient saliency
PuzzleMix uses is the small model's gradient spread back evenly over each
block of ``k x k`` pixels (``k = GALLERY_SIZE / model side``).  A policy with
a learned state (AutoMix's mixer, which reads the features of its own small
model) is left out of the large gallery (:func:`gallery_policies`), and the
figure's title says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mixviz._validation import check_positive, check_tensor
from mixviz.analysis._common import EVAL_ALPHA, EVAL_SEED
from mixviz.analysis.mixed import fixed_mixed_batch, gallery_batches
from mixviz.mixing.batch import MixedBatch

__all__ = ["GALLERY_SIZE", "GALLERY_ROWS", "GALLERY_MAX_POLICIES", "PUZZLEMIX_BLOCKS", "AtResolution",
           "gallery_policies", "gallery_groups", "block_title", "large_gallery_batches", "mask_block_grid"]

#: Side in pixels of the gallery's images.
GALLERY_SIZE = 64
#: Mixed samples (rows) per gallery figure.
GALLERY_ROWS = 3
#: Policies (columns of mixed images) per gallery figure: six columns and their masks fit a slide.
GALLERY_MAX_POLICIES = 6
#: PuzzleMix's block grids: with ``block_num=None`` (its default) it draws n from these (those <= the side)
#: once per batch, as the authors' code draws ``2 ** randint(1, 5)``; see :mod:`mixviz.mixing.puzzlemix`.
PUZZLEMIX_BLOCKS = (2, 4, 8, 16)


class AtResolution(nn.Module):
    """``model`` applied to its input area-downsampled to ``size x size``.

    ``forward(x) = model(F.interpolate(x, size, mode="area"))``.  The input
    gradient of this module is the small model's input gradient, divided by
    ``k**2`` and repeated over each ``k x k`` block (``k = H / size``): the
    saliency of the small model on the large image, upsampled by nearest
    neighbour.  Used to let models trained at 16 px serve the dynamic policies
    of the 64 px gallery.  ``train()`` / ``eval()`` reach the wrapped model.
    """

    def __init__(self, model: nn.Module, size: int) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        check_positive("size", size, integer=True)
        self.model = model
        self.size = size
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, ndim=4)
        if x.shape[-2] % self.size or x.shape[-1] % self.size:
            raise ValueError(f"x must have a side that is a multiple of size = {self.size}, got shape "
                             f"{tuple(x.shape)}")
        return self.model(F.interpolate(x, size=(self.size, self.size), mode="area"))


def gallery_policies(policies: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(shown, left_out)``: the policies the large gallery can draw, and
    those with a learned state (AutoMix), whose mixer is tied to the model
    and image size it was trained with."""
    from mixviz.mixing import policy_info

    if isinstance(policies, str):
        raise TypeError("policies must be a sequence of policy names, not a str")
    shown = [p for p in policies if policy_info(p).state is None]
    return shown, [p for p in policies if p not in shown]


def gallery_groups(batches: Mapping[str, MixedBatch],
                   max_columns: int = GALLERY_MAX_POLICIES) -> dict[str, dict[str, MixedBatch]]:
    """The columns of each gallery figure: ``{"static": {key: batch}, "dynamic":
    {...}}`` by the registry's kind of each batch's policy (empty groups
    dropped); a group of more than ``max_columns`` batches is split into
    ``"static"``, ``"static 2"``, ... of at most that many."""
    from mixviz.mixing import policy_info

    if not isinstance(batches, Mapping):
        raise TypeError(f"batches must be a dict {{column title: MixedBatch}}, got {type(batches).__name__}")
    check_positive("max_columns", max_columns, integer=True)
    out: dict[str, dict[str, MixedBatch]] = {}
    for kind in ("static", "dynamic"):
        members = [(k, b) for k, b in batches.items() if policy_info(b.policy).kind == kind]
        for start in range(0, len(members), max_columns):
            key = kind if start == 0 else f"{kind} {start // max_columns + 1}"
            out[key] = dict(members[start:start + max_columns])
    return out


def block_title(policy: str, n: int) -> str:
    """The column title of ``policy`` mixed on an ``n x n`` block grid."""
    return f"{policy}\n{n} x {n} blocks"


def large_gallery_batches(images: torch.Tensor, labels: torch.Tensor, policies: Sequence[str], *,
                          models: Mapping[str, nn.Module] | None = None, model_size: int | None = None,
                          blocks: Sequence[int] | None = PUZZLEMIX_BLOCKS, seed: int = EVAL_SEED,
                          alpha: float = EVAL_ALPHA) -> dict[str, MixedBatch]:
    """:func:`~mixviz.analysis.gallery_batches` on large images, the models
    seeing them at ``model_size`` pixels (:class:`AtResolution`; None: at
    the images' own size).

    PuzzleMix draws its block grid once per batch from :data:`PUZZLEMIX_BLOCKS`;
    with ``blocks`` (those <= the side are kept) each PuzzleMix policy is mixed
    once per block number instead (``block_num=n``, same seed: same partners
    and lam), under the key :func:`block_title`; ``blocks=None``: one batch
    with the policy's own draw, under its name.

    ``models``: ``{policy: module}`` for the dynamic policies (see
    :func:`~mixviz.analysis.dynamic_models`).  A policy with a learned state
    is refused when ``model_size`` differs from the images' side (its mixer
    reads features of the small model: see :func:`gallery_policies`).
    """
    from mixviz.mixing import policy_info

    check_tensor("images", images, ndim=4, floating=True)
    if isinstance(policies, str) or not policies:
        raise ValueError("policies must be a non-empty sequence of policy names")
    models = dict(models or {})
    side = images.shape[-1]
    if model_size is not None and model_size != side:
        check_positive("model_size", model_size, integer=True)
        if side % model_size or images.shape[-2] % model_size:
            raise ValueError(f"model_size must divide the images' side ({tuple(images.shape[-2:])}), "
                             f"got {model_size}")
        learned = [p for p in policies if policy_info(p).state is not None]
        if learned:
            raise ValueError(f"policies must not hold a policy with a learned state when model_size "
                             f"({model_size}) differs from the images' side ({side}): {learned}; "
                             f"leave them out (gallery_policies)")
        models = {p: AtResolution(m, model_size) for p, m in models.items()}
    if blocks is not None:
        if isinstance(blocks, (str, bytes)) or not blocks:
            raise ValueError(f"blocks must be a non-empty sequence of block numbers or None, got {blocks!r}")
        for n in blocks:
            check_positive("blocks", n, integer=True)
        blocks = [n for n in blocks if n <= min(images.shape[-2:])]
    plain = [p for p in policies if blocks is None or not p.startswith("puzzlemix")]
    drawn = gallery_batches(images, labels, plain, models=models, seed=seed, alpha=alpha) if plain else {}
    out = {}
    for p in policies:
        if p in drawn:
            out[p] = drawn[p]
            continue
        for n in blocks or ():
            out[block_title(p, n)] = fixed_mixed_batch(p, images, labels, seed=seed, alpha=alpha,
                                                       model=models.get(p), block_num=n)
    return out


def mask_block_grid(mask: torch.Tensor, choices: Sequence[int] = PUZZLEMIX_BLOCKS) -> int | None:
    """The coarsest ``n`` of ``choices`` such that every mask of ``mask``
    ([B, 1, H, W]) is constant on each block of an ``n x n`` grid
    (``H / n x W / n`` pixels), or None when none is.  For a PuzzleMix batch
    this names the block grid its graph cut worked on (one per batch)."""
    check_tensor("mask", mask, ndim=4)
    if isinstance(choices, (str, bytes)) or not choices:
        raise ValueError(f"choices must be a non-empty sequence of block numbers, got {choices!r}")
    h, w = mask.shape[-2:]
    for n in sorted(choices):
        check_positive("choices", n, integer=True)
        if h % n or w % n:
            continue
        blocks = mask.reshape(mask.shape[0], mask.shape[1], n, h // n, n, w // n)
        if bool((blocks.amax((3, 5)) == blocks.amin((3, 5))).all()):
            return n
    return None
