"""The policy registry, the one entry point :func:`mix`, the state hook
:func:`build_state` of policies that learn (AutoMix), and the
torchvision-style :class:`Mix` callable."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch

from mixviz._validation import as_images, as_labels, check_choice, check_labels, check_positive
from mixviz.mixing import dynamic, static
from mixviz.mixing.automix import AutoMixPolicy, automix
from mixviz.mixing.batch import MixedBatch
# by name: the package attribute ``puzzlemix`` is the policy function, not the module
from mixviz.mixing.puzzlemix import puzzlemix, puzzlemix_lite
from mixviz.mixing.manifold import manifold

__all__ = ["PolicyInfo", "POLICIES", "available", "policy_info", "mix", "Mix", "build_state", "split_options"]

# Arguments every policy function takes; the rest of its keyword-only
# parameters are its policy options.
_COMMON = ("alpha", "generator", "per_sample", "model")


@functools.lru_cache(maxsize=None)
def _options(fn: Callable[..., MixedBatch]) -> tuple[tuple[str, Any], ...]:
    """(name, default) of fn's keyword-only parameters that are policy options."""
    params = inspect.signature(fn).parameters.values()
    return tuple((p.name, p.default) for p in params
                 if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _COMMON)


@dataclass(frozen=True)
class PolicyInfo:
    """What a policy is, for tables, figures and notebooks.

    Attributes:
        name: the name passed to :func:`mix`.
        kind: ``"static"`` (data and random draws only) or ``"dynamic"``
            (looks at the model or the image content).
        has_mask: the batch carries a pixel mask ([B, 1, H, W]).
        needs_images: needs a 4-D image batch [B, C, H, W]; otherwise any
            [B, ...] input (e.g. 2-D points) works.
        needs_model: needs ``model=`` (with its default options).
        exact_lerp: ``inputs == mask * x + (1 - mask) * x[index]`` (or the
            lam-weighted average without a mask); False for ``resizemix``,
            which pastes a resized copy of the partner, and ``puzzlemix``,
            whose transport moves cells first (recorded in
            ``MixedBatch.transport``).
        summary: one line on what it does.
        fn: the policy function in :mod:`~mixviz.mixing.static`,
            :mod:`~mixviz.mixing.dynamic`, :mod:`~mixviz.mixing.puzzlemix`,
            :mod:`~mixviz.mixing.manifold` or :mod:`~mixviz.mixing.automix`.
        state: None, or the builder of the policy's learned state
            (``state(model, **options) -> nn.Module``, AutoMix's
            :class:`~mixviz.mixing.automix.AutoMixPolicy`); see :func:`build_state`.
        hidden: the policy mixes inside the network (Manifold Mixup): its
            batches carry ``layer`` and need :func:`mixviz.mixing.forward`.
        epoch_cost: seconds per training epoch relative to mixup's, measured
            on a 2-core CPU on the 16-px clutter presets (median over the 15
            runs per method of ``results/full``; ``puzzlemix_lite`` from its
            mixing time, the same as SaliencyMix's).  A rough guide, used to
            start the slowest runs of a grid first.
    """

    name: str
    kind: str
    has_mask: bool
    needs_images: bool
    needs_model: bool
    exact_lerp: bool
    summary: str
    fn: Callable[..., MixedBatch]
    state: Callable[..., torch.nn.Module] | None = None
    hidden: bool = False
    epoch_cost: float = 1.0

    @property
    def options(self) -> dict[str, Any]:
        """The policy's own options and their defaults (for a policy with a
        state, its state's options too)."""
        out = dict(_options(self.fn))
        if self.state is not None:
            out.update(_options(self.state))
        return out

    def as_dict(self) -> dict[str, Any]:
        """A plain row (no function) for a pandas table."""
        return {"name": self.name, "kind": self.kind, "has_mask": self.has_mask,
                "needs_images": self.needs_images, "needs_model": self.needs_model,
                "exact_lerp": self.exact_lerp, "stateful": self.state is not None, "hidden": self.hidden,
                "options": self.options, "summary": self.summary}


def _info(name: str, kind: str, fn: Callable[..., MixedBatch], *, mask: bool, images: bool,
          model: bool = False, exact: bool = True, summary: str,
          state: Callable[..., torch.nn.Module] | None = None, hidden: bool = False,
          cost: float = 1.0) -> PolicyInfo:
    return PolicyInfo(name, kind, mask, images, model, exact, summary, fn, state, hidden, cost)


POLICIES: Mapping[str, PolicyInfo] = MappingProxyType({p.name: p for p in (
    _info("none", "static", static.none, mask=False, images=False,
          summary="no mixing; lam = 1"),
    _info("mixup", "static", static.mixup, mask=False, images=False,
          summary="convex combination of the pair, lam ~ Beta(alpha, alpha)"),
    _info("cutmix", "static", static.cutmix, mask=True, images=True,
          summary="a random box from the partner, area 1 - lam"),
    _info("fmix", "static", static.fmix, mask=True, images=True,
          summary="binary mask from a thresholded low-frequency Fourier field"),
    _info("resizemix", "static", static.resizemix, mask=True, images=True, exact=False,
          summary="the whole partner, shrunk by tau ~ U(0.1, 0.8), pasted into a box clipped at the border"),
    _info("gridmix", "static", static.gridmix, mask=True, images=True,
          summary="the partner through a regular grid of holes of side sqrt(1 - lam) of their patch"),
    _info("smoothmix", "static", static.smoothmix, mask=True, images=True,
          summary="the partner through a soft Gaussian window"),
    _info("average", "static", static.average, mask=False, images=False,
          summary="plain average of the pair, lam = 0.5"),
    _info("manifold", "static", manifold, mask=False, images=False, exact=False, hidden=True,
          summary="the pair mixed at a random hidden layer inside the network"),
    _info("saliencymix", "dynamic", dynamic.saliencymix, mask=True, images=True, cost=1.7,
          summary="a box on the partner's saliency peak (OpenCV's fine-grained saliency; model-free)"),
    _info("puzzlemix", "dynamic", puzzlemix, mask=True, images=True, model=True, exact=False, cost=5.0,
          summary="graph-cut mask (0 / 0.5 / 1) keeping both images' salient blocks, which transport moves "
                  "under the mask"),
    _info("puzzlemix_lite", "dynamic", puzzlemix_lite, mask=True, images=True, model=True, cost=1.7,
          summary="reduced PuzzleMix: binary graph-cut mask, no transport"),
    _info("automix", "dynamic", automix, mask=True, images=True, model=True, state=AutoMixPolicy, cost=3.0,
          summary="mask predicted by a learned MixBlock from EMA features of the pair"),
)})


def available() -> dict[str, str]:
    """``{name: "static" | "dynamic"}`` for every policy."""
    return {name: info.kind for name, info in POLICIES.items()}


def policy_info(policy: str) -> PolicyInfo:
    """The :class:`PolicyInfo` of ``policy`` (ValueError if unknown)."""
    if not isinstance(policy, str):
        raise TypeError(f"policy must be a str, got {type(policy).__name__}")
    check_choice("policy", policy, POLICIES)
    return POLICIES[policy]


def _check_options(info: PolicyInfo, options: Mapping[str, Any]) -> None:
    if not options:
        return
    names = [name for name, _ in _options(info.fn)]
    unknown = sorted(set(options) - set(names))
    state_names = {name for name, _ in _options(info.state)} if info.state is not None else set()
    if unknown and set(unknown) <= state_names:
        raise TypeError(f"option(s) {', '.join(map(repr, unknown))} of policy {info.name!r} belong to its "
                        f"learned state: build it with mixing.build_state({info.name!r}, model, ...) and pass "
                        "it as model=")
    if unknown:
        allowed = ", ".join(names) or "none"
        raise TypeError(f"unknown option(s) for policy {info.name!r}: {', '.join(map(repr, unknown))}; "
                        f"allowed: {allowed}")


def split_options(policy: str, options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(state options, mix options)``: a config's ``policy_options`` split
    into those of the policy's learned state (:func:`build_state`) and those
    of :func:`mix` (everything else; :func:`mix` checks them).  For policies
    without a state the first dict is empty."""
    info = policy_info(policy)
    if not isinstance(options, Mapping):
        raise TypeError(f"options must be a mapping, got {type(options).__name__}")
    state_names = {name for name, _ in _options(info.state)} if info.state is not None else set()
    return ({k: v for k, v in options.items() if k in state_names},
            {k: v for k, v in options.items() if k not in state_names})


def build_state(policy: str, model: torch.nn.Module, **options: Any) -> torch.nn.Module | None:
    """The learned state of ``policy`` for the classifier ``model``, or None
    for a policy without one (every policy but ``automix``).

    A state is an ``nn.Module``: pass it to :func:`mix` as ``model=``, train
    its parameters that require grad together with the classifier's, call
    ``state.after_step(step, total_steps)`` after each optimizer step
    (``step`` 0-based) and save / load its ``state_dict()``.
    :func:`mixviz.train.fit` does all of that.  ``options`` may hold the
    policy's whole option dict (a config's ``policy_options``): only the
    state's own are used (see :func:`split_options`).
    """
    info = policy_info(policy)
    state_options, _ = split_options(policy, options)
    if info.state is None:
        return None
    return info.state(model, **state_options)


def mix(policy: str, x: torch.Tensor, y: torch.Tensor, *, alpha: float = 1.0,
        generator: torch.Generator | None = None, model: torch.nn.Module | None = None,
        per_sample: bool = True, num_classes: int | None = None, **options: Any) -> MixedBatch:
    """Mix a batch with the named policy and return a :class:`MixedBatch`.

    Args:
        policy: one of :func:`available` (``"none"``, ``"mixup"``,
            ``"cutmix"``, ``"fmix"``, ``"resizemix"``, ``"gridmix"``,
            ``"smoothmix"``, ``"average"``, ``"manifold"``, ``"saliencymix"``,
            ``"puzzlemix"``, ``"puzzlemix_lite"``, ``"automix"``).  ``manifold``
            mixes inside the network: run the model on its batch with
            :func:`mixviz.mixing.forward`.
        x: inputs [B, ...]; image policies need [B, C, H, W].  Float
            inputs (float16, bfloat16, float32, float64; channels-last too)
            are mixed in their dtype.  uint8 images are accepted, as by
            torchvision's CutMix, and mixed and returned as float32 scaled
            to [0, 1] (divided by 255, like ``v2.ToDtype(torch.float32,
            scale=True)``; torchvision's CutMix keeps uint8 instead).  The
            dynamic policies' saliency pass runs the model on the float
            images, under autocast for float16 / bfloat16.
        y: labels [B] of any integer dtype on x's device; the batch stores
            them as int64.
        alpha: ``lam ~ Beta(alpha, alpha)`` (> 0).
        generator: a ``torch.Generator`` on x's device; the same seed gives
            the same batch.
        model: the network being trained; needed by the dynamic policies
            that look at it (``POLICIES[policy].needs_model``, and
            saliencymix with ``saliency="gradient"``), ignored by the others.
            (``manifold`` batches must be run through
            :func:`mixviz.mixing.forward`, which raises for a model without
            hidden-layer access; every loss refuses a ``manifold`` batch that
            was not.)  For a policy with a learned state
            (``automix``) it is that state (:func:`build_state`).
        per_sample: one lam (and mask) per sample, or one for the batch.
        num_classes: when given, ``y`` must lie in ``[0, num_classes)``
            (ValueError otherwise).  The dynamic policies check ``y``
            against the model's output width in any case.
        **options: the policy's own options (``POLICIES[policy].options``),
            e.g. ``correct_lam`` (every policy), ``decay_power`` (fmix),
            ``scope``/``use_alpha``/``placement`` (resizemix),
            ``n_holes``/``hole_aspect_ratio``/``cut_area_ratio``/
            ``cut_aspect_ratio`` (gridmix), ``saliency`` (saliencymix),
            ``block_num``/``n_labels``/``transport``/``adv_p``/``clean_lam``/...
            (puzzlemix), ``layers`` (manifold).  Unknown
            names raise ``TypeError``; so do the options of a learned state
            (they go to :func:`build_state`).
    """
    info = policy_info(policy)
    _check_options(info, options)
    if num_classes is not None:
        check_positive("num_classes", num_classes, integer=True)
    x = as_images("x", x)
    y = as_labels("y", y, num_classes=num_classes)
    if info.kind == "dynamic":
        options = {**options, "model": model}
    return info.fn(x, y, alpha=alpha, generator=generator, per_sample=per_sample, **options)


class Mix:
    """A torchvision-style batch transform: ``Mix(policy, ...)(images,
    labels) -> (mixed images, soft targets [B, num_classes])``, like
    ``torchvision.transforms.v2.CutMix``.

    The last :class:`MixedBatch` is kept in ``last_batch`` for users who want
    lam, the mask or the partner index.  Dynamic policies need ``model=``.
    ``num_classes`` is required (keyword-only, as in torchvision) and the
    labels must lie in ``[0, num_classes)``.

    A policy that returns an ``aux_loss`` (PuzzleMix with ``clean_lam > 0``,
    AutoMix in train mode) has a loss term that an ``(images, targets)`` pair
    would drop: such a call raises ``ValueError`` unless the mixer was built
    with ``return_aux=True``; then every call returns ``(images, targets,
    aux_loss)`` (a zero scalar when the batch has none) and the training step
    adds ``aux_loss`` to its loss.

    >>> mixer = Mix("cutmix", alpha=1.0, num_classes=10)
    >>> images, targets = mixer(torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]))
    >>> targets.shape
    torch.Size([4, 10])
    """

    def __init__(self, policy: str, alpha: float = 1.0, *, num_classes: int,
                 generator: torch.Generator | None = None, model: torch.nn.Module | None = None,
                 per_sample: bool = True, return_aux: bool = False, **options: Any) -> None:
        info = policy_info(policy)
        check_positive("alpha", alpha)
        check_positive("num_classes", num_classes, integer=True)  # the width of the soft targets
        if not isinstance(return_aux, bool):
            raise TypeError(f"return_aux must be a bool, got {type(return_aux).__name__}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        if not isinstance(per_sample, bool):
            raise TypeError(f"per_sample must be a bool, got {type(per_sample).__name__}")
        if info.hidden:
            raise ValueError(f"policy {policy!r} mixes inside the network, so it cannot return mixed images; "
                             "use mixing.mix(...) and mixing.forward(model, batch)")
        if model is None and (info.needs_model or options.get("saliency") == "gradient"):
            raise ValueError(f"model is required for the dynamic policy {policy!r}")
        _check_options(info, options)
        self.policy = policy
        self.alpha = alpha
        self.num_classes = num_classes
        self.generator = generator
        self.model = model
        self.per_sample = per_sample
        self.return_aux = return_aux
        self.options = dict(options)
        self.last_batch: MixedBatch | None = None

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        check_labels("labels", labels, num_classes=self.num_classes)
        self.last_batch = None  # let the previous batch's tensors go before new ones are allocated
        batch = mix(self.policy, images, labels, alpha=self.alpha, generator=self.generator, model=self.model,
                    per_sample=self.per_sample, **self.options)
        self.last_batch = batch
        if batch.aux_loss is not None and not self.return_aux:
            raise ValueError(f"policy {self.policy!r} returned an aux_loss (a loss term of the policy itself) that "
                             "(images, targets) would drop: build Mix(..., return_aux=True) to get (images, "
                             "targets, aux_loss) and add aux_loss to the training loss"
                             + (", or pass clean_lam=0" if self.policy.startswith("puzzlemix") else ""))
        inputs = batch.inputs
        if type(images) is not torch.Tensor and isinstance(images, torch.Tensor):
            from torchvision import tv_tensors  # keep tv_tensors.Image an Image, as torchvision does

            if isinstance(images, tv_tensors.TVTensor):
                inputs = tv_tensors.wrap(inputs, like=images)
        targets = batch.soft_targets(self.num_classes)
        if self.return_aux:
            aux = batch.aux_loss if batch.aux_loss is not None else torch.zeros((), device=targets.device)
            return inputs, targets, aux
        return inputs, targets

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return (f"Mix(policy={self.policy!r}, alpha={self.alpha}, num_classes={self.num_classes}, "
                f"per_sample={self.per_sample}{', return_aux=True' if self.return_aux else ''}{extra})")
