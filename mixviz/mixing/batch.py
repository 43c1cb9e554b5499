"""`MixedBatch`: the one type that mixing policies produce and losses and
metrics consume."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields, replace

import torch
import torch.nn.functional as F

from mixviz._validation import check_positive


@dataclass
class MixedBatch:
    """A batch after mixing.

    Sample ``i`` of ``inputs`` mixes sample ``i`` of the original batch (share
    ``lam[i]``, label ``y_a[i]``) with sample ``index[i]`` (share ``1 - lam[i]``,
    label ``y_b[i] == y_a[index[i]]``).

    Attributes:
        inputs: the mixed inputs, same shape as the original batch.
        y_a: LongTensor [B], the original labels (labels of another integer
            dtype are stored as int64).
        y_b: LongTensor [B], the partner labels.
        index: LongTensor [B], the partner of each sample.
        lam: float tensor [B], the share of sample a (never a Python float).
        mask: None, or [B, 1, H, W] in [0, 1]: the share of each pixel that
            comes from sample a.  For mask policies ``lam == mask.mean((1,2,3))``.
        policy: the name of the policy that made the batch.
        aux_loss: None, or a scalar tensor that the policy adds to the training
            loss: a learning signal of the policy itself (AutoMix's mixer
            loss, PuzzleMix's clean-image loss).  The training step computes
            ``criterion(logits, batch) + aux_loss``; evaluation ignores it.
        transport: None, or int64 [B, 2, G, G]: the cells a policy moved
            before mixing (PuzzleMix's transport).  The image is split into a
            G x G grid of cells (rows ``r`` with ``floor(r G / H) = i`` form
            cell row ``i``, likewise columns: nearest-neighbour resizing's
            split, equal cells when G divides H and W);
            ``transport[i, 0, r, c]`` is the cell of sample ``i`` moved to cell
            ``(r, c)``, as a flat index ``r' G + c'``, or -1 where nothing was
            moved there; ``transport[i, 1]`` is the same for the partner
            ``x[index[i]]``.  Then ``inputs = mask * move(x, transport[:, 0])
            + (1 - mask) * move(x[index], transport[:, 1])`` with the empty
            cells painted in a fill colour.  :meth:`carry` moves any
            per-pixel map (object masks, saliency) the same way.
        layer: None when ``inputs`` are mixed (pixel space).  Otherwise the
            pair is mixed *inside the network* (Manifold Mixup): ``inputs``
            are the unmixed batch and the network mixes its layer ``layer``
            (a 0-dim int64 tensor on the batch's device, drawn from
            ``layers``; see :class:`mixviz.models.HiddenMix`).  Run the model
            with :func:`mixviz.mixing.forward`, which handles both cases.
        layers: the layers ``layer`` was drawn from (empty when ``layer`` is None).
        forwarded: set by :func:`mixviz.mixing.forward` once it has run a
            model that mixes inside the network on this batch.  Every mixviz
            loss refuses a batch with ``layer`` set and ``forwarded`` False:
            its logits then came from ``model(batch.inputs)``, i.e. unmixed
            inputs scored against mixed labels (see :meth:`check_forwarded`).
            Not an argument; :meth:`to` and ``dataclasses.replace`` reset it.
    """

    inputs: torch.Tensor
    y_a: torch.Tensor
    y_b: torch.Tensor
    index: torch.Tensor
    lam: torch.Tensor
    mask: torch.Tensor | None = None
    policy: str = "none"
    aux_loss: torch.Tensor | None = None
    transport: torch.Tensor | None = None
    layer: torch.Tensor | None = None
    layers: tuple[int, ...] = ()
    forwarded: bool = field(default=False, init=False, compare=False)

    def __post_init__(self) -> None:
        b = self.inputs.shape[0]
        for name in ("y_a", "y_b", "index", "lam"):
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"MixedBatch.{name} must be a torch.Tensor, got {type(value).__name__}")
            if value.shape != (b,):
                raise ValueError(f"MixedBatch.{name} must have shape [{b}], got {tuple(value.shape)}")
        for name in ("y_a", "y_b", "index"):  # int64 class ids whatever integer dtype came in
            value = getattr(self, name)
            if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
                raise TypeError(f"MixedBatch.{name} must be an integer tensor, got {value.dtype}")
            if value.dtype != torch.int64:
                setattr(self, name, value.long())
        if not self.lam.is_floating_point():
            raise TypeError(f"MixedBatch.lam must be a float tensor, got {self.lam.dtype}")
        if self.mask is not None:
            if self.mask.dim() != 4 or self.mask.shape[0] != b or self.mask.shape[1] != 1:
                raise ValueError(f"MixedBatch.mask must have shape [{b}, 1, H, W], got {tuple(self.mask.shape)}")
        if self.aux_loss is not None and (not isinstance(self.aux_loss, torch.Tensor) or self.aux_loss.dim() != 0):
            raise ValueError("MixedBatch.aux_loss must be None or a scalar (0-dim) tensor")
        if self.transport is not None:
            t = self.transport
            if (not isinstance(t, torch.Tensor) or t.dtype != torch.int64 or t.dim() != 4
                    or t.shape[:2] != (b, 2) or t.shape[2] != t.shape[3]):
                raise ValueError(f"MixedBatch.transport must be None or an int64 tensor [{b}, 2, G, G], got "
                                 f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}")
            if self.mask is None:
                raise ValueError("MixedBatch.transport needs a mask (it moves the cells under the mask)")
        if self.layer is None:
            if self.layers:
                raise ValueError("MixedBatch.layers must be empty when layer is None")
        else:
            if (not isinstance(self.layer, torch.Tensor) or self.layer.dim() != 0
                    or self.layer.dtype != torch.int64):
                raise ValueError("MixedBatch.layer must be None or a 0-dim int64 tensor")
            if (not isinstance(self.layers, tuple) or not self.layers
                    or any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in self.layers)):
                raise ValueError(f"MixedBatch.layers must be a non-empty tuple of ints >= 0 when layer is set, "
                                 f"got {self.layers!r}")

    @classmethod
    def unmixed(cls, x: torch.Tensor, y: torch.Tensor) -> "MixedBatch":
        """A batch with no mixing: every sample is its own partner, lam = 1."""
        index = torch.arange(x.shape[0], device=x.device)
        lam = torch.ones(x.shape[0], device=x.device, dtype=torch.float32)
        return cls(inputs=x, y_a=y, y_b=y, index=index, lam=lam, policy="none")

    def check_forwarded(self) -> None:
        """``ValueError`` when the batch is mixed inside the network
        (Manifold Mixup, ``layer`` set) but no model has mixed it yet through
        :func:`mixviz.mixing.forward`: logits from ``model(batch.inputs)``
        belong to the *unmixed* inputs, and a loss on them would train on
        unmixed images with mixed labels.  Losses call this."""
        if self.layer is not None and not self.forwarded:
            raise ValueError(
                f"this MixedBatch (policy {self.policy!r}) is mixed inside the network: its inputs are the "
                "unmixed batch, so logits from model(batch.inputs) would score unmixed inputs against mixed "
                "labels. Compute the logits with mixviz.mixing.forward(model, batch), which needs a model with "
                "hidden-layer access (mixviz.models: mlp, smallcnn, preact_resnet18); with any other model "
                "(e.g. a torchvision ResNet) use a pixel-space policy such as 'mixup' or 'cutmix'")

    def __repr__(self) -> str:
        """One line: shapes, dtypes and the lam range, not the tensors' values."""
        def shape(t: torch.Tensor | None) -> str:
            return "None" if t is None else f"{list(t.shape)} {str(t.dtype).replace('torch.', '')}"

        lam = self.lam.detach()
        lam_text = f"[{float(lam.min()):.3g}, {float(lam.max()):.3g}]" if lam.numel() else "[]"
        parts = [f"policy={self.policy!r}", f"inputs={shape(self.inputs)}", f"device={self.inputs.device}",
                 f"lam in {lam_text}", f"mask={shape(self.mask)}"]
        if self.aux_loss is not None:
            parts.append(f"aux_loss={float(self.aux_loss.detach()):.4g}")
        if self.transport is not None:
            parts.append(f"transport={shape(self.transport)}")
        if self.layer is not None:
            parts.append(f"layer={int(self.layer)} of {self.layers}, forwarded={self.forwarded}")
        return f"MixedBatch({', '.join(parts)})"

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def soft_targets(self, num_classes: int) -> torch.Tensor:
        """[B, C] targets ``lam * onehot(y_a) + (1 - lam) * onehot(y_b)`` (float32)."""
        check_positive("num_classes", num_classes, integer=True)
        lam = self.lam.to(torch.float32).unsqueeze(1)
        a = F.one_hot(self.y_a, num_classes).to(torch.float32)
        b = F.one_hot(self.y_b, num_classes).to(torch.float32)
        return lam * a + (1.0 - lam) * b

    def carry(self, maps: torch.Tensor, fill: float | torch.Tensor = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel maps of both sources where the mixed sample shows them.

        ``maps`` [B, C, H, W] belongs to the batch *before* mixing (e.g. object
        masks).  Returns ``(maps_a, maps_b)``: ``maps_a[i]`` is ``maps[i]`` and
        ``maps_b[i]`` is ``maps[index[i]]``, each moved by the batch's
        :attr:`transport` when it has one (cells that receive nothing get
        ``fill``, a number or a [C] tensor); without a transport they are
        returned in place.  So ``mask * maps_a + (1 - mask) * maps_b`` is what
        the mixed inputs show of the maps.
        """
        if not isinstance(maps, torch.Tensor) or maps.dim() != 4 or maps.shape[0] != len(self):
            raise ValueError(f"maps must be a tensor [{len(self)}, C, H, W], got "
                             f"{tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__}")
        index = self.index.to(maps.device)
        maps_a, maps_b = maps, maps[index]
        if self.transport is None:
            return maps_a, maps_b
        transport = self.transport.to(maps.device)
        return move_cells(maps_a, transport[:, 0], fill), move_cells(maps_b, transport[:, 1], fill)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "MixedBatch":
        """A copy with every tensor moved to ``device``."""
        moved = {}
        for f in fields(self):
            if not f.init:
                continue
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                value = value.to(device, non_blocking=non_blocking)
            moved[f.name] = value
        return replace(self, **moved)


def cell_index(size: int, cells: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The cell of each of ``size`` pixels when they are split into ``cells``
    runs as nearest-neighbour resizing does: ``floor(p * cells / size)``
    (exact integer arithmetic, int64 [size])."""
    return torch.arange(size, device=device) * cells // size


@functools.lru_cache(maxsize=32)
def _cell_tables(h: int, w: int, g: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For an h x w image split into g x g cells: the cell of every pixel
    [h*w], and for every source cell s and destination pixel p the pixel of s
    that p shows when s is moved to p's cell [g*g, h*w] (flat indices)."""
    rows, cols = cell_index(h, g, device), cell_index(w, g, device)
    row_start = (torch.arange(g + 1, device=device) * h + g - 1) // g  # first pixel of each cell, and the end
    col_start = (torch.arange(g + 1, device=device) * w + g - 1) // g
    r_off = torch.arange(h, device=device) - row_start[rows]  # offset of each pixel in its cell
    c_off = torch.arange(w, device=device) - col_start[cols]
    sr = torch.arange(g, device=device)
    r = row_start[sr, None] + torch.minimum(r_off[None, :], (row_start[sr + 1] - row_start[sr] - 1)[:, None])  # [g, h]
    q = col_start[sr, None] + torch.minimum(c_off[None, :], (col_start[sr + 1] - col_start[sr] - 1)[:, None])  # [g, w]
    table = (r[:, None, :, None] * w + q[None, :, None, :]).reshape(g * g, h * w)
    return (rows[:, None] * g + cols[None, :]).reshape(-1), table


def move_cells(maps: torch.Tensor, sources: torch.Tensor, fill: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Move the cells of per-sample maps: ``out[i]`` shows in cell ``j`` of a
    G x G grid the cell ``sources[i, j]`` of ``maps[i]``, or ``fill`` where
    ``sources`` is -1.

    ``maps`` is [B, C, H, W], ``sources`` int64 [B, G, G] (flat cell indices);
    cells follow :func:`cell_index`.  When G divides H and W every cell has
    the same size and this is an exact permutation of pixel blocks.  Otherwise
    cells differ by at most one pixel per side and a pixel at offset ``o`` in
    its cell takes the pixel at offset ``min(o, size - 1)`` of the source
    cell.  ``fill`` is a number or a [C] tensor.  One gather, no loop.
    """
    b, c, h, w = maps.shape
    g = sources.shape[-1]
    pixel_cell, table = _cell_tables(h, w, g, maps.device)
    src = sources.reshape(b, g * g)[:, pixel_cell]  # [B, H*W]: the source cell each pixel shows
    flat = table[src.clamp_min(0), torch.arange(h * w, device=maps.device)]
    out = maps.reshape(b, c, h * w).gather(2, flat.unsqueeze(1).expand(b, c, h * w))
    fill = torch.as_tensor(fill, dtype=maps.dtype, device=maps.device)
    if fill.dim() == 1:
        fill = fill[None, :, None]
    out = torch.where((src < 0).unsqueeze(1), fill, out).reshape(b, c, h, w)
    if maps.is_contiguous(memory_format=torch.channels_last) and not maps.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)  # keep the caller's layout
    return out
