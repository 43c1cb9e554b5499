"""Section 2: does every policy x loss train on the device, and does the device
compute what the CPU computes?

For every policy of :func:`mixviz.mixing.available` and every loss of
:data:`mixviz.losses.LOSSES`:

* **one training step** on a small clutter batch on the device (the real
  step of :func:`mixviz.train.make_step`: augmentation, mixing with a
  generator on the device, forward, loss, backward, SGD), in fp32 and, on
  CUDA, in bf16 autocast with channels_last.  It passes when the loss, every
  gradient and every weight after the step are finite.  On CUDA the fp32
  step runs with ``torch.use_deterministic_algorithms(True, warn_only=True)``
  so that PyTorch names the operations that have no deterministic kernel.
* **CPU against the device** (when the device is not the CPU): the batch is
  mixed *once* on the CPU, the same :class:`~mixviz.mixing.MixedBatch` and a
  copy of the same weights are moved to the device, and the fp32 loss and the
  gradient with respect to the mixed inputs are compared, with TF32 off:
  ``|loss_dev - loss_cpu| <= LOSS_RTOL * max(1, |loss_cpu|)`` and
  ``max |g_dev - g_cpu| <= GRAD_RTOL * max |g_cpu|``.

Then captum Grad-CAM and the mixed Top-1/Top-2 metric on the device (both
against the CPU), and a one-process ``torch.distributed`` all-reduce (NCCL
on CUDA, gloo otherwise).

How a policy gets what it needs: :func:`policy_model` is the one place.  A
policy that needs something the doctor cannot build there fails its checks,
named; it is never skipped.
"""

from __future__ import annotations

import copy
import math
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from mixviz.doctor.report import Check, run_check

__all__ = ["Precision", "precisions", "policy_model", "forward", "loss_options", "compare", "LOSS_RTOL",
           "GRAD_RTOL", "checks"]

LOSS_RTOL = 1e-4   # loss: |dev - cpu| <= LOSS_RTOL * max(1, |cpu|)
GRAD_RTOL = 1e-3   # input gradient: max |dev - cpu| <= GRAD_RTOL * max |cpu|
BATCH = 16
WIDTH = 8          # of the small CNN the checks train


@dataclass(frozen=True)
class Precision:
    """How a training step runs: ``amp`` is bf16 autocast."""

    name: str
    amp: bool
    channels_last: bool


def precisions(device: torch.device) -> list[Precision]:
    """fp32 everywhere; on CUDA also bf16 autocast with channels_last (what
    :func:`mixviz.train.fit` uses there).  CPUs and MPS get fp32 only."""
    fp32 = Precision("fp32", amp=False, channels_last=False)
    if device.type == "cuda":
        return [fp32, Precision("bf16 + channels_last", amp=True, channels_last=True)]
    return [fp32]


def policy_model(policy: str, model: nn.Module) -> nn.Module | None:
    """What ``mixing.mix(policy, ..., model=...)`` gets: the one place where
    the doctor learns how a policy that needs a model or a learned state gets one.

    * a policy with a learned state (``PolicyInfo.state``, e.g. AutoMix's
      mixer) gets it from ``mixing.build_state(policy, model)``;
    * a dynamic policy (or one that says ``needs_model``) gets the classifier;
    * static policies get None.

    Anything a new kind of policy needs goes here.  What cannot be built
    raises, and that policy's checks fail with the reason.
    """
    from mixviz import mixing

    info = mixing.policy_info(policy)
    if getattr(info, "state", None) is not None:
        build_state = getattr(mixing, "build_state", None)
        if build_state is None:
            raise RuntimeError(f"policy {policy!r} has a learned state, but mixviz.mixing has no build_state()")
        return build_state(policy, model)
    return model if info.kind == "dynamic" or info.needs_model else None


def forward(model: nn.Module, mixed: Any) -> torch.Tensor:
    """Logits of ``model`` on a mixed batch: ``mixing.forward`` where the
    package has it (policies that mix inside the network, Manifold Mixup),
    ``model(mixed.inputs)`` otherwise."""
    from mixviz import mixing

    fwd = getattr(mixing, "forward", None)
    return fwd(model, mixed) if fwd is not None else model(mixed.inputs)


def loss_options(policy: str, loss: str) -> dict[str, Any]:
    """The options a loss trains with for ``policy``: the authors' DM
    settings for ``"dm"`` (as ``mixviz bench`` uses them), defaults otherwise."""
    from mixviz.losses import dm_defaults

    if loss == "dm":
        return dm_defaults(policy)
    return {}


def compare(ref: tuple[torch.Tensor, torch.Tensor], got: tuple[torch.Tensor, torch.Tensor], *,
            loss_rtol: float = LOSS_RTOL, grad_rtol: float = GRAD_RTOL) -> tuple[bool, float, float]:
    """``(ok, loss_err, grad_err)`` for ``(loss, input_grad)`` of the CPU
    (``ref``) and of the device (``got``): ``loss_err = |got - ref| / max(1,
    |ref|)``, ``grad_err = max |g_got - g_ref| / max |g_ref|`` (the absolute
    difference when the reference gradient is all zero).  Non-finite values
    never pass."""
    (loss_ref, grad_ref), (loss_got, grad_got) = ref, got
    loss_ref, loss_got = float(loss_ref), float(loss_got)
    grad_ref, grad_got = grad_ref.detach().double().cpu(), grad_got.detach().double().cpu()
    if grad_ref.shape != grad_got.shape:
        raise ValueError(f"the gradients differ in shape: {tuple(grad_ref.shape)} and {tuple(grad_got.shape)}")
    loss_err = abs(loss_got - loss_ref) / max(1.0, abs(loss_ref))
    scale = float(grad_ref.abs().max()) if grad_ref.numel() else 0.0
    diff = float((grad_got - grad_ref).abs().max()) if grad_ref.numel() else 0.0
    grad_err = diff / scale if scale > 0 else diff
    finite = all(math.isfinite(v) for v in (loss_ref, loss_got, loss_err, grad_err))
    return finite and loss_err <= loss_rtol and grad_err <= grad_rtol, loss_err, grad_err


@contextmanager
def strict_fp32(device: torch.device) -> Iterator[None]:
    """TF32 off for matmuls and convolutions on CUDA (fp32 really fp32)."""
    if device.type != "cuda":
        yield
        return
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@contextmanager
def nondeterminism_watch(device: torch.device) -> Iterator[list[str]]:
    """On CUDA, run the block with deterministic algorithms in warn-only mode
    and collect the names of the operations PyTorch warns about (filled in
    when the block ends).  Elsewhere the list stays empty."""
    seen: list[str] = []
    if device.type != "cuda":
        yield seen
        return
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield seen
        finally:
            torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    seen.extend(nondeterministic_ops(str(w.message) for w in caught))


def nondeterministic_ops(messages: Any) -> list[str]:
    """Operation names from PyTorch's warn-only determinism warnings."""
    ops = []
    for text in messages:
        if "does not have a deterministic implementation" in text:
            ops.append(text.split(" does not have a deterministic implementation")[0].strip())
        elif "CuBLAS" in text and "deterministic" in text:
            ops.append("cuBLAS (CUBLAS_WORKSPACE_CONFIG not set)")
    return sorted(set(ops))


def _device_arg(device: torch.device) -> str:
    return str(device)


def sample_batch(device: torch.device, n: int = BATCH) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The first ``n`` images of a small 20-class clutter set, on ``device``."""
    from mixviz import data

    ds = data.load("clutter", "train", n_train=max(64, n), n_test=16, objects="both", seed=0)
    return ds.images[:n].to(device), ds.labels[:n].to(device), ds.num_classes


def step_check(policy: str, loss: str, precision: Precision, device: torch.device, x: torch.Tensor,
               y: torch.Tensor, num_classes: int) -> Check:
    """One real training step (see the module docstring)."""
    from mixviz import bench
    from mixviz.train import TrainConfig

    config = TrainConfig(dataset="clutter", model="smallcnn", policy=policy, loss=loss, epochs=1,
                         batch_size=len(y), device=_device_arg(device), amp="bf16" if precision.amp else "off",
                         progress=False, model_options=dict(width=WIDTH), seed=0)
    model, step = bench._setup(config, num_classes, tuple(x.shape[1:]), device, 4,
                               channels_last=precision.channels_last)
    watch = nondeterminism_watch(device) if not precision.amp else _nothing()
    with watch as seen:
        value = float(step(x, y))
    data: dict[str, Any] = {"loss_value": value, "nondeterministic": seen}
    name = f"{policy} + {loss}"
    if not math.isfinite(value):
        return Check("correctness", name, "fail", f"non-finite loss {value}", data=data)
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    if not grads:
        return Check("correctness", name, "fail", "no gradient reached the model", data=data)
    bad = [n for n, g in grads.items() if not bool(torch.isfinite(g).all())]
    if bad:
        return Check("correctness", name, "fail", f"non-finite gradient in {', '.join(bad[:3])}", data=data)
    bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        return Check("correctness", name, "fail", f"non-finite weights after the step: {', '.join(bad[:3])}",
                     data=data)
    convs = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]
    if precision.channels_last and not all(w.is_contiguous(memory_format=torch.channels_last) for w in convs):
        return Check("correctness", name, "fail", "the model is not in channels_last", data=data)
    data["short"] = f"loss {value:.3g}" + (f"; nondeterministic: {', '.join(seen)}" if seen else "")
    return Check("correctness", name, "pass", f"loss {value:.4g}", data=data)


@contextmanager
def _nothing() -> Iterator[list[str]]:
    yield []


def loss_and_input_grad(model: nn.Module, criterion: nn.Module, mixed: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The criterion's loss on ``mixed`` and its gradient with respect to the
    mixed inputs (fp32, the model in its current mode)."""
    inputs = mixed.inputs.detach().clone().requires_grad_(True)
    batch = replace(mixed, inputs=inputs)
    value = criterion(forward(model, batch).float(), batch)
    (grad,) = torch.autograd.grad(value, inputs)
    return value.detach(), grad.detach()


def compare_check(policy: str, loss: str, device: torch.device, x: torch.Tensor, y: torch.Tensor,
                  num_classes: int) -> Check:
    """Mix once on the CPU, move the batch and a copy of the weights, compare."""
    from mixviz import losses, mixing, models

    torch.manual_seed(0)
    model = models.build("smallcnn", num_classes, tuple(x.shape[1:]), width=WIDTH)
    criterion = losses.build(loss, num_classes, **loss_options(policy, loss))
    gen = torch.Generator().manual_seed(0)
    mixed = mixing.mix(policy, x, y, alpha=1.0, generator=gen, model=policy_model(policy, model))
    aux = None if mixed.aux_loss is None else mixed.aux_loss.detach()
    mixed = replace(mixed, inputs=mixed.inputs.detach(), aux_loss=aux)
    model_dev, criterion_dev = copy.deepcopy(model).to(device), copy.deepcopy(criterion).to(device)
    ref = loss_and_input_grad(model, criterion, mixed)
    with strict_fp32(device):
        got = loss_and_input_grad(model_dev, criterion_dev, mixed.to(device))
    ok, loss_err, grad_err = compare(ref, got)
    data = {"loss_cpu": float(ref[0]), "loss_device": float(got[0]), "loss_err": loss_err, "grad_err": grad_err,
            "loss_rtol": LOSS_RTOL, "grad_rtol": GRAD_RTOL, "short": f"loss {loss_err:.1e}, grad {grad_err:.1e}"}
    detail = (f"loss {float(ref[0]):.6g} (CPU) vs {float(got[0]):.6g}: rel. error {loss_err:.2e} "
              f"(<= {LOSS_RTOL:g}); input gradient rel. error {grad_err:.2e} (<= {GRAD_RTOL:g})")
    return Check("correctness", f"{policy} + {loss}", "pass" if ok else "fail", detail, data=data)


def gradcam_check(device: torch.device, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> Check:
    from mixviz import models, saliency

    torch.manual_seed(0)
    model = models.build("smallcnn", num_classes, tuple(x.shape[1:]), width=WIDTH)
    images, target = x[:4], y[:4]
    maps = saliency.attribute(copy.deepcopy(model).to(device), images, target, method="gradcam")
    want = (4, 1, *x.shape[-2:])
    if tuple(maps.shape) != want or maps.device.type != device.type:
        return Check("correctness", "captum Grad-CAM", "fail",
                     f"maps of shape {tuple(maps.shape)} on {maps.device}, expected {want} on {device}")
    if not bool(torch.isfinite(maps).all()) or float(maps.min()) < 0:
        return Check("correctness", "captum Grad-CAM", "fail", "maps are not finite and non-negative")
    if device.type == "cpu":
        return Check("correctness", "captum Grad-CAM", "pass", f"maps {want}, finite, non-negative")
    with strict_fp32(device):
        maps = saliency.attribute(copy.deepcopy(model).to(device), images, target, method="gradcam")
    ref = saliency.attribute(model, images.cpu(), target.cpu(), method="gradcam")
    err = float((maps.cpu() - ref).abs().max()) / max(float(ref.abs().max()), 1e-12)
    status = "pass" if err <= GRAD_RTOL else "fail"
    return Check("correctness", "captum Grad-CAM", status,
                 f"maps {want}; rel. difference to the CPU {err:.2e} (<= {GRAD_RTOL:g})", data={"err": err})


def mixed_metric_check(device: torch.device, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> Check:
    from mixviz import metrics, models

    torch.manual_seed(0)
    model = models.build("smallcnn", num_classes, tuple(x.shape[1:]), width=WIDTH).to(device).eval()
    with torch.no_grad():
        logits = model(x).float()
    y_b = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1)).to(device)]
    on_device = metrics.mixed_topk_accuracy(logits, y, y_b)
    on_cpu = metrics.mixed_topk_accuracy(logits.cpu(), y.cpu(), y_b.cpu())
    same = all(a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(on_device, on_cpu))
    scores = metrics.mixed_evaluation(model, x, y, policy="cutmix", seed=0)
    in_range = all(0.0 <= v <= 1.0 for v in scores.values() if not math.isnan(v))
    detail = (f"Top-1/Top-2 {on_device[0]:.3f}/{on_device[1]:.3f} on the device, "
              f"{on_cpu[0]:.3f}/{on_cpu[1]:.3f} on the CPU; mixed_evaluation(cutmix) {scores}")
    return Check("correctness", "", "pass" if same and in_range else "fail", detail,
                 data={"device": list(on_device), "cpu": list(on_cpu), "mixed_evaluation": scores})


def distributed_check(device: torch.device) -> Check:
    """A one-process all-reduce through ``torch.distributed`` (NCCL on CUDA)."""
    import torch.distributed as dist

    backend = "nccl" if device.type == "cuda" else "gloo"
    name = f"torch.distributed all-reduce ({backend}, 1 process)"
    if not dist.is_available():
        return Check("correctness", name, "fail", "torch.distributed is not available in this build")
    if dist.is_initialized():
        return Check("correctness", name, "skip", "a process group is already running in this process")
    with tempfile.TemporaryDirectory() as tmp:
        if device.type == "cuda":  # NCCL uses the current device; "cuda" alone names no index
            torch.cuda.set_device(device.index if device.index is not None else torch.cuda.current_device())
        dist.init_process_group(backend, init_method=f"file://{tmp}/store", rank=0, world_size=1)
        try:
            t = torch.arange(1.0, 5.0, device=device)
            dist.all_reduce(t)
            ok = torch.equal(t.cpu(), torch.arange(1.0, 5.0))
        finally:
            dist.destroy_process_group()
    return Check("correctness", name, "pass" if ok else "fail", "sum over one process is the tensor itself"
                 if ok else f"all_reduce changed the tensor: {t.tolist()}")


def checks(device: torch.device, policies: list[str], loss_names: list[str]) -> Iterator[Check]:
    x, y, num_classes = sample_batch(device)
    x_cpu, y_cpu = x.cpu(), y.cpu()
    for policy in policies:
        for loss in loss_names:
            for precision in precisions(device):
                yield run_check("correctness", f"{precision.name} step: {policy} + {loss}",
                                lambda: step_check(policy, loss, precision, device, x, y, num_classes),
                                policy=policy, loss=loss, column=f"{precision.name} step")
            if device.type != "cpu":
                yield run_check("correctness", f"CPU vs device: {policy} + {loss}",
                                lambda: compare_check(policy, loss, device, x_cpu, y_cpu, num_classes),
                                policy=policy, loss=loss, column="CPU vs device (fp32)")
    if device.type == "cpu":
        yield Check("correctness", "CPU vs device", "skip", "the device is the CPU: nothing to compare")
    yield run_check("correctness", "captum Grad-CAM", lambda: gradcam_check(device, x, y, num_classes))
    yield run_check("correctness", "mixed Top-1/Top-2 metric (cutmix)",
                    lambda: mixed_metric_check(device, x, y, num_classes))
    yield run_check("correctness", "torch.distributed", lambda: distributed_check(device))
