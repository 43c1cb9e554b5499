"""Fixed mixed evaluation sets: the same images mixed the same way for every
model, so that differences between models come from the models and not from
the draw."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch

from mixviz._validation import check_choice, check_labels, check_tensor
from mixviz.analysis._common import EVAL_ALPHA, EVAL_SEED, _is_run, check_images, named_models
from mixviz.mixing.batch import MixedBatch

#: Policies :func:`mix_at_lam` can mix at a chosen lam.
LAM_POLICIES = ("none", "mixup", "average", "cutmix", "fmix", "gridmix", "smoothmix")


def fixed_mixed_batch(policy: str, images: torch.Tensor, labels: torch.Tensor, *, seed: int = EVAL_SEED,
                      alpha: float = EVAL_ALPHA, model: torch.nn.Module | None = None,
                      logits_fn: Any = None, **options: Any) -> MixedBatch:
    """``images`` mixed by ``policy`` with a CPU generator seeded ``seed``.

    The same seed gives the same partners and, for static policies, the same
    lam and masks for every call, so every model is evaluated on the same
    mixed set.  Dynamic policies also look at ``model`` (required for them);
    its train/eval mode is restored afterwards; ``logits_fn`` takes its
    output to the logits when it is not a tensor.  The returned tensors are
    detached; the rest of the batch (``transport``, ...) is kept.
    """
    from mixviz.mixing import mix, policy_info

    info = policy_info(policy)
    check_images(images, labels)
    if info.needs_model and model is None:
        raise ValueError(f"model is required for the dynamic policy {policy!r}")
    if model is not None and not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or None, got {type(model).__name__}")
    if model is not None and logits_fn is not None:
        from mixviz.models import with_logits_fn

        model = with_logits_fn(model, logits_fn)
    generator = torch.Generator(device=images.device).manual_seed(seed)
    was_training = model.training if model is not None else False
    try:
        with torch.enable_grad():
            mixed = mix(policy, images, labels, alpha=alpha, generator=generator, model=model, **options)
    finally:
        if model is not None:
            model.train(was_training)
    return replace(mixed, inputs=mixed.inputs.detach(), lam=mixed.lam.detach(),
                   mask=None if mixed.mask is None else mixed.mask.detach(),
                   aux_loss=None if mixed.aux_loss is None else mixed.aux_loss.detach())


#: Box heights tried around ``sqrt(1 - lam) H`` by :func:`fitted_box_mask` (the one whose area is closest wins).
BOX_SEARCH = 1


def fitted_box_mask(lam: torch.Tensor, height: int, width: int, *,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """CutMix-like masks [n, 1, H, W] whose box lies wholly inside the image,
    so that the share of image a is the requested ``lam`` up to rounding.

    The box from the partner covers ``(1 - lam) H W`` pixels: its height
    ``h`` is the one of the ``2 BOX_SEARCH + 1`` whole numbers around
    ``sqrt(1 - lam) H`` whose width ``w = round((1 - lam) H W / h)`` (at most
    W) gives the area closest to ``(1 - lam) H W``, and its top-left corner is
    uniform over the places where the whole box fits.  The realised share
    ``1 - h w / (H W)`` is then within half a box row (``h / (2 H W)``, at
    most one pixel row) of ``lam``.  This is for pictures at a chosen lam;
    training uses :func:`mixviz.mixing.box_mask` (the authors' box, centred
    anywhere and clipped at the border, so its realised share is larger than
    its lam).
    """
    from mixviz.mixing.masks import _box_between

    n = lam.shape[0]
    target = (1.0 - lam.to(torch.float64).clamp(0.0, 1.0)) * height * width  # [n] pixels from the partner
    ideal = torch.sqrt(target / (height * width)) * height
    offsets = torch.arange(-BOX_SEARCH, BOX_SEARCH + 1, device=lam.device, dtype=torch.float64)
    h = (ideal.round()[:, None] + offsets).clamp(1, height)  # [n, k] candidate heights
    w = (target[:, None] / h).round().clamp(0, width)
    err = (h * w - target[:, None]).abs() + 1e-6 * (h / height - w / width).abs()  # ties: the squarer box
    best = err.argmin(dim=1, keepdim=True)
    h, w = h.gather(1, best)[:, 0], w.gather(1, best)[:, 0]
    h = torch.where(w > 0, h, torch.zeros_like(h))  # no pixels from the partner: no box
    u = torch.rand((2, n), generator=generator, device=lam.device, dtype=torch.float64)
    y1 = (u[0] * (height - h + 1)).floor().clamp(max=height - h)
    x1 = (u[1] * (width - w + 1)).floor().clamp(max=width - w)
    return _box_between(y1, y1 + h, x1, x1 + w, height, width)


def _mask_function(policy: str) -> Callable[..., torch.Tensor] | None:
    from mixviz.mixing import fourier_mask, gaussian_mask, grid_mask

    return {"cutmix": fitted_box_mask, "fmix": fourier_mask, "gridmix": grid_mask,
            "smoothmix": gaussian_mask}.get(policy)


def mix_at_lam(policy: str, x: torch.Tensor, y: torch.Tensor, lam: float, *, seed: int = EVAL_SEED) -> MixedBatch:
    """Mix ``x`` by ``policy`` at a chosen ``lam`` instead of a Beta draw
    (the lam slider of the mixed-samples notebook).

    Partners are ``index = randperm(B)`` from a generator seeded ``seed``.
    Mixup: ``inputs = lam x + (1 - lam) x[index]``.  Mask policies use the
    policy's own mask function (``fourier_mask``, ``grid_mask``,
    ``gaussian_mask``) at ``lam``, except CutMix, whose box is fitted inside
    the image (:func:`fitted_box_mask`: the training box is clipped at the
    border, which would show more of a than ``lam`` says):
    ``inputs = m x + (1 - m) x[index]`` and the returned lam is the mask
    mean (the share of a actually shown; for CutMix within one pixel row of
    ``lam``).  ``average`` always has lam = 0.5
    and ``none`` lam = 1.  Other policies (ResizeMix, the dynamic ones) draw
    their own geometry and are not supported: use :func:`fixed_mixed_batch`.
    """
    from mixviz.mixing import mix

    check_choice("policy", policy, LAM_POLICIES)
    check_tensor("x", x, floating=True)
    check_labels("y", y, batch=x.shape[0])
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be a number in [0, 1], got {lam!r}")
    generator = torch.Generator(device=x.device).manual_seed(seed)
    if policy in ("none", "average"):
        return mix(policy, x, y, generator=generator)
    b = x.shape[0]
    index = torch.randperm(b, generator=generator, device=x.device)
    lam_t = torch.full((b,), float(lam), dtype=torch.float32, device=x.device)
    if policy == "mixup":
        inputs = torch.lerp(x[index], x, lam_t.view(-1, *([1] * (x.dim() - 1))).to(x.dtype))
        return MixedBatch(inputs=inputs, y_a=y, y_b=y[index], index=index, lam=lam_t, policy="mixup")
    check_tensor("x", x, ndim=4)
    mask = _mask_function(policy)(lam_t, x.shape[2], x.shape[3], generator=generator)
    inputs = torch.lerp(x[index], x, mask.to(x.dtype))
    return MixedBatch(inputs=inputs, y_a=y, y_b=y[index], index=index, lam=mask.mean((1, 2, 3)), mask=mask,
                      policy=policy)


def dynamic_models(models: Mapping[str, Any], policies: Sequence[str]) -> dict[str, torch.nn.Module]:
    """A model for each dynamic policy in ``policies`` (dynamic mixing asks a
    model where the objects are): from ``models`` (``{method: module or
    Run}``, methods named ``"<policy>+<loss>"``) the one named
    ``"<policy>+mixup_ce"``, else any ``"<policy>+..."``, else ``"none+ce"``.
    A policy with a learned state (AutoMix) mixes only with the trained state
    of one of its own runs (``Run.mixer``, or the state module itself): there
    is no fallback to another model."""
    from mixviz.mixing import policy_info

    if not isinstance(models, Mapping):
        raise TypeError(f"models must be a dict {{method: module or Run}}, got {type(models).__name__}")
    if models:
        named_models(models, allow_list=False)  # type checks
    if isinstance(policies, str):
        raise TypeError("policies must be a sequence of policy names, not a str")
    out = {}
    for policy in policies:
        info = policy_info(policy)
        if not info.needs_model:
            continue
        candidates = [f"{policy}+mixup_ce", *[m for m in models if m.startswith(f"{policy}+")]]
        if info.state is None:
            candidates.append("none+ce")
        chosen = next((m for m in candidates if m in models), None)
        if chosen is None:
            need = f"a model named '{policy}+...'" + (" (its trained mixer)" if info.state is not None
                                                      else " or 'none+ce'")
            raise ValueError(f"models must hold {need} to mix with the dynamic policy {policy!r}; has "
                             f"{sorted(models)}")
        obj = models[chosen]
        if _is_run(obj):
            obj = obj.mixer if info.state is not None else obj.model
        out[policy] = obj
    return out


def mixable_policies(models: Mapping[str, Any], policies: Sequence[str] | None = None) -> list[str]:
    """The mixing policies of ``policies`` (default: every registered one but
    ``"none"``) that :func:`dynamic_models` can serve from ``models``
    (``{method: module or Run}``): every policy without a learned state, and a
    learned one (AutoMix) only when ``models`` holds one of its runs."""
    from mixviz.mixing import available, policy_info

    if not isinstance(models, Mapping):
        raise TypeError(f"models must be a dict {{method: module or Run}}, got {type(models).__name__}")
    if isinstance(policies, str):
        raise TypeError("policies must be a sequence of policy names, not a str")
    names = [p for p in available() if p != "none"] if policies is None else list(policies)
    return [p for p in names
            if policy_info(p).state is None or any(m.startswith(f"{p}+") for m in models)]


def gallery_batches(images: torch.Tensor, labels: torch.Tensor, policies: Sequence[str], *,
                    models: Mapping[str, torch.nn.Module] | None = None, seed: int = EVAL_SEED,
                    alpha: float = EVAL_ALPHA) -> dict[str, MixedBatch]:
    """``{policy: MixedBatch}``: the same images mixed by each policy with the
    same seed (so the same partners: every policy draws its permutation first),
    for :func:`mixviz.viz.mixed_samples_gallery`.  ``models``: ``{policy:
    module}`` for the dynamic policies (see :func:`dynamic_models`)."""
    if isinstance(policies, str) or not policies:
        raise ValueError("policies must be a non-empty sequence of policy names")
    models = models or {}
    return {p: fixed_mixed_batch(p, images, labels, seed=seed, alpha=alpha, model=models.get(p)) for p in policies}


def visible_objects(mixed: MixedBatch, object_masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The visible part of object a and of object b in each mixed image:
    ``m o_a`` and ``(1 - m) o_b`` ([B, 1, H, W]); whole objects when the
    policy has no mask (mixup fades, it does not cut)."""
    if not isinstance(mixed, MixedBatch):
        raise TypeError(f"mixed must be a MixedBatch, got {type(mixed).__name__}")
    check_tensor("object_masks", object_masks, ndim=4)
    obj_a = object_masks.to(torch.float32)
    obj_b = obj_a[mixed.index.to(obj_a.device)]
    if mixed.mask is None:
        return obj_a, obj_b
    m = mixed.mask.to(obj_a.device, torch.float32)
    return m * obj_a, (1.0 - m) * obj_b


def pick_mixed_sample(mixed: MixedBatch, object_masks: torch.Tensor, *, min_visible: float = 0.6,
                      lam_range: tuple[float, float] = (0.3, 0.7)) -> int:
    """The first mixed sample of two different classes with both objects at
    least ``min_visible`` visible and lam in ``lam_range`` (a sample in which
    both labels are right); if none, the pair of two classes whose worse
    visible object is the most visible."""
    from mixviz.metrics import object_visibility

    if not isinstance(mixed, MixedBatch):
        raise TypeError(f"mixed must be a MixedBatch, got {type(mixed).__name__}")
    vis_a, vis_b = object_visibility(mixed, object_masks)
    worst = torch.fmin(vis_a, vis_b).nan_to_num(-1.0)
    worst = torch.where(mixed.y_a.ne(mixed.y_b).to(worst.device), worst, torch.full_like(worst, -2.0))
    lam = mixed.lam.to(worst.device)
    good = (worst >= min_visible) & (lam >= lam_range[0]) & (lam <= lam_range[1])
    if bool(good.any()):
        return int(good.nonzero()[0, 0])
    return int(worst.argmax())
