"""Training batches on the device: an in-memory dataset moved there once and
cut into batches (:class:`_DeviceBatches`), or a folder dataset through a
DataLoader (:class:`_LoaderBatches`); both draw the epoch's order from
``(seed, epoch)`` alone and shard one global batch over distributed ranks.
And what every step does to a batch before the model sees it: uint8 -> float
(:func:`_as_float`), channels_last on CUDA (:func:`_maybe_channels_last`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

def _as_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [0, 1]; float tensors unchanged."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x.float()


def _maybe_channels_last(x: torch.Tensor, on: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if on and x.dim() == 4 else x


def _epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The sample order of epoch ``epoch``: a permutation drawn from a CPU
    generator seeded by ``(seed, epoch)``, so it needs no saved state."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def _shard_steps(n: int, batch_size: int, world: int) -> int:
    if batch_size % world:
        raise ValueError(f"batch_size ({batch_size}) must be divisible by the number of processes ({world})")
    if n < batch_size:
        raise ValueError(f"batch_size ({batch_size}) is larger than the training set ({n} samples)")
    return n // batch_size  # the last partial batch is dropped, as timm does


class _DeviceBatches:
    """Batches of an in-memory dataset, kept on the device.

    ``batch_size`` is the global batch: under torch.distributed, step ``s`` of
    every rank takes its stride ``rank::world`` of the same global batch, so
    DistributedDataParallel's averaged gradient is the gradient of the global
    batch.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int,
                 device: torch.device, rank: int = 0, world: int = 1) -> None:
        self.steps = _shard_steps(len(labels), batch_size, world)
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.batch_size, self.seed, self.device = batch_size, seed, device
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return self.steps

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = _epoch_order(len(self.labels), self.seed, epoch)[: self.steps * self.batch_size]
        order = order.view(self.steps, self.batch_size)[:, self.rank::self.world].to(self.device)
        for idx in order:
            yield self.images[idx], self.labels[idx]


class _LoaderBatches:
    """Batches of a folder dataset through a DataLoader (workers decode the
    images); the same global-batch sharding as :class:`_DeviceBatches`."""

    def __init__(self, dataset: Any, batch_size: int, seed: int, device: torch.device,
                 num_workers: int, rank: int = 0, world: int = 1) -> None:
        self.steps = _shard_steps(len(dataset), batch_size, world)
        self.dataset = dataset
        self.batch_size, self.seed, self.device = batch_size, seed, device
        self.num_workers = num_workers
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return self.steps

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = _epoch_order(len(self.dataset), self.seed, epoch)[: self.steps * self.batch_size]
        order = order.view(self.steps, self.batch_size)[:, self.rank::self.world].reshape(-1).tolist()
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(self.dataset, order), batch_size=self.batch_size // self.world,
            shuffle=False, num_workers=self.num_workers, pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
