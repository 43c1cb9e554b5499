"""`MixedBatch`: the one type that mixing policies produce and losses and
metrics consume."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

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
        y_a: LongTensor [B], the original labels.
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
        layer: None when ``inputs`` are mixed (pixel space).  Otherwise the
            pair is mixed *inside the network* (Manifold Mixup): ``inputs``
            are the unmixed batch and the network mixes its layer ``layer``
            (a 0-dim int64 tensor on the batch's device, drawn from
            ``layers``; see :class:`mixviz.models.HiddenMix`).  Run the model
            with :func:`mixviz.mixing.forward`, which handles both cases.
        layers: the layers ``layer`` was drawn from (empty when ``layer`` is None).
    """

    inputs: torch.Tensor
    y_a: torch.Tensor
    y_b: torch.Tensor
    index: torch.Tensor
    lam: torch.Tensor
    mask: torch.Tensor | None = None
    policy: str = "none"
    aux_loss: torch.Tensor | None = None
    layer: torch.Tensor | None = None
    layers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        b = self.inputs.shape[0]
        for name in ("y_a", "y_b", "index", "lam"):
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"MixedBatch.{name} must be a torch.Tensor, got {type(value).__name__}")
            if value.shape != (b,):
                raise ValueError(f"MixedBatch.{name} must have shape [{b}], got {tuple(value.shape)}")
        if not self.lam.is_floating_point():
            raise TypeError(f"MixedBatch.lam must be a float tensor, got {self.lam.dtype}")
        if self.mask is not None:
            if self.mask.dim() != 4 or self.mask.shape[0] != b or self.mask.shape[1] != 1:
                raise ValueError(f"MixedBatch.mask must have shape [{b}, 1, H, W], got {tuple(self.mask.shape)}")
        if self.aux_loss is not None and (not isinstance(self.aux_loss, torch.Tensor) or self.aux_loss.dim() != 0):
            raise ValueError("MixedBatch.aux_loss must be None or a scalar (0-dim) tensor")
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

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def soft_targets(self, num_classes: int) -> torch.Tensor:
        """[B, C] targets ``lam * onehot(y_a) + (1 - lam) * onehot(y_b)`` (float32)."""
        check_positive("num_classes", num_classes, integer=True)
        lam = self.lam.to(torch.float32).unsqueeze(1)
        a = F.one_hot(self.y_a, num_classes).to(torch.float32)
        b = F.one_hot(self.y_b, num_classes).to(torch.float32)
        return lam * a + (1.0 - lam) * b

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "MixedBatch":
        """A copy with every tensor moved to ``device``."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                value = value.to(device, non_blocking=non_blocking)
            moved[f.name] = value
        return replace(self, **moved)
