"""Batched data augmentation on the device: random crop (with zero padding)
and horizontal flip as tensor ops, one draw per sample from a generator."""

from __future__ import annotations

import torch

from mixviz._validation import check_positive, check_tensor


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
