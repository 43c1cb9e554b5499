"""AutoMix (Liu et al., ECCV 2022): a learned mixer, a mixing policy with state.

The mixer.  A :class:`MixBlock` looks at features of the pair -- layer
``layer`` of a momentum (EMA) copy of the classifier, 8x8 at 32 px -- and
predicts, by cross-attention from each position of image a to the positions
of its partner b, the share of b at every position; the logits are upsampled
to the image (nearest) and squashed by a sigmoid.  ``mask = 1 - s`` is the
share of a, and ``inputs = mask * x + (1 - mask) * x[index]``.

One training step (openmixup's ``AutoMixup.forward_train``, CIFAR config):

1. Draw the backbone pair ``(index, lam)`` and the mixer pair
   ``(index_mb, lam_mb)``, both ``lam ~ Beta(alpha, alpha)``.
2. ``feat`` = layer ``layer`` of the EMA network on the clean batch (train
   mode: batch statistics, its BatchNorm buffers move; no gradient).
3. The MixBlock gives ``mask_mb`` (with gradient) and ``mask_bb``
   (detached).  ``lam_margin``: where ``lam <= 0.08`` or ``>= 0.92`` the
   backbone mask is the constant ``lam`` (plain mixup for that sample).
4. Losses, all summed and stepped by one optimizer:

   * the backbone's loss on ``x_bb = mask_bb x + (1 - mask_bb) x[index]``:
     the configured criterion (mixup CE or DM) -- this is the ``MixedBatch``
     the policy returns;
   * the clean-image cross-entropy of the classifier, ``CE(f(x), y)``;
   * the generation loss: the mixup CE with ``lam_mb`` of the *frozen* EMA
     network on ``x_mb = mask_mb x + (1 - mask_mb) x[index_mb]``.  The EMA's
     parameters take no gradient, so it reaches the MixBlock only, through
     the mask;
   * the mask-mean loss ``mask_loss * max(0, |mean(mask_mb) - lam_mb| -
     mask_margin)`` (MixBlock only).

   The last three are the policy's own learning signal and go into
   ``MixedBatch.aux_loss``; the training step adds it to the criterion.
5. After the optimizer step: ``ema <- m ema + (1 - m) f`` over the
   *parameters* (BatchNorm buffers are the EMA's own, as in the original),
   with ``m = momentum`` for the first ``momentum_warmup`` of the run and then
   ``m = end - (end - momentum) (cos(pi t / T) + 1) / 2`` for step ``t`` of
   ``T`` (openmixup's ``CosineScheduleHook``: 0.999 -> 0.999999).

Defaults are the authors' CIFAR-100 ResNet-18 config (alpha 2 is the
caller's ``alpha``; the training config keeps its own).

Cost: two more passes through the network than a mixup step (the clean CE,
forward and backward; the generation loss, forward and a backward to the
input) plus the EMA's partial pass on the clean batch: about 3x a mixup step
(small CNN on the CPU, ``benchmarks/bench_mixing.py``).

How a stateful policy fits the package (one mechanism, no special cases):

* The state is this ``nn.Module``, :class:`AutoMixPolicy`: the MixBlock
  (trainable), the EMA network (frozen) and a reference to the classifier
  (not a submodule: its weights are the model's, saved once).  The registry
  builds it: ``mixing.build_state("automix", classifier, **options)``;
  stateless policies give None.  AutoMix's options are options of the state,
  not of :func:`~mixviz.mixing.mix`.
* ``mix("automix", x, y, model=state)`` returns a ``MixedBatch`` with the
  mask and ``lam = mask mean``; a plain classifier as ``model`` raises
  ``ValueError``.  In train mode the state also draws the mixer branch and
  computes ``aux_loss``; in eval mode (figures) it only predicts the mask,
  with the EMA network in eval mode.
* ``fit`` builds the state once, puts its trainable parameters in the
  optimizer (the same SGD and learning rate, as the authors), passes it to
  ``make_step`` (which gives it to ``mix`` and calls ``after_step(step,
  total_steps)`` after every optimizer step), checkpoints
  ``state.state_dict()`` (tensors only) and restores it on resume, so a
  resumed run ends with the same weights.  ``load_run`` rebuilds it:
  ``Run.policy_state``, and ``Run.mixer`` is what figures pass as ``model=``.
* DistributedDataParallel: the clean-image CE runs through the bare
  classifier, whose gradients DDP reduces together with the rest; the
  MixBlock's gradients are averaged over the ranks by hooks on its
  parameters (the state must then be built on every rank); the EMA
  follows the synchronised weights, so it is the same everywhere.

Deviations from the authors' code, and choices they leave open:

* One head.  The original has two heads (clean and mixed, ``head_one`` /
  ``head_mix``) and EMA copies of both; mixviz models have one, so the clean
  CE, the mixed loss and the generation loss share it (the EMA copies the
  whole classifier).  The original evaluates the EMA network; mixviz
  evaluates the trained classifier, like every other policy.
* ``lam`` of the returned batch is the mask mean (the share of a actually
  shown), as for every mask policy here; the original weights the backbone's
  mixed loss with the sampled ``lam_bb``.  The generation loss keeps the
  sampled ``lam_mb``, as in the original.
* ``per_sample=True`` (the default of ``mix`` and what ``fit`` uses) draws a
  lam per sample and the mask-mean loss is then averaged over per-sample
  means; ``per_sample=False`` is the original's one lam per batch and one
  mean over the whole batch.  Since the CIFAR MixBlock does not see lam
  (``lam_concat=False``), lam matters for the mixer only through that loss.
* Features: ``layer`` defaults to the input of the last stage (``S - 1``):
  ``layer3`` of the PreAct-ResNet-18 (the original's stage 3, 8x8 at 32 px;
  pre-activation blocks where the original's are post-activation) and, for
  the small CNN, the output of stage 2 after its pool (also 8x8 at 32 px).
  The EMA's clean pass stops there (the original runs every stage, which
  only moves the later BatchNorm buffers of the EMA).
* The mask is upsampled to the image size (``F.interpolate(size=...)``)
  rather than by the fixed factor ``2 ** mask_layer``; at 32 px both give 4.
* Weight decay follows mixviz's rule (none on biases), for the MixBlock too.
  The learning-rate schedule is the training config's (``fit``: cosine to 0);
  the authors' CIFAR config decays only from 0.1 to 0.05, which its comment
  ties to the EMA network.
* Under DistributedDataParallel each rank's EMA BatchNorm buffers follow its
  own shard (they are used in eval mode only); a checkpoint holds rank 0's.
* The MixBlock runs once on both branches stacked (the same numbers as two
  calls).  ``mask_adjust`` (0 on CIFAR) and SAMix's extra options are left out.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from mixviz._validation import as_labels, autocast_like, check_choice, check_positive
from mixviz.mixing.batch import MixedBatch
from mixviz.mixing.static import _check_batch, _draw_pairs, _expand, _masked_batch, _take

__all__ = ["MixBlock", "AutoMixPolicy", "automix"]

UPSAMPLING = ("nearest", "bilinear", "bicubic")


class MixBlock(nn.Module):
    """The AutoMix mask generator (openmixup's ``PixelMixBlock``, mode ``none_v_``).

    For anchor features ``a`` and partner features ``b`` ([B, C, h, w]):

        q = W_q a,  k = W_q b   (one shared 1x1 conv C -> C // reduction, with bias)
        v = W_v b               (1x1 conv C -> 1, with bias)
        P = softmax_j(q_i . k_j / sqrt(C // reduction))      [B, hw, hw]
        s = sigmoid(upsample(P v))                            partner share

    and returns ``1 - s`` ([B, 1, H, W], float32), the share of a.  With
    ``lam_concat`` a constant channel ``lam`` is appended to ``a`` and
    ``1 - lam`` to ``b`` first (openmixup's ImageNet setting; off on CIFAR).
    Weights start as N(0, 0.01) and biases at 0, so an untrained block gives
    ``s`` close to 0.5.  The attention runs in float32, also under autocast.
    """

    def __init__(self, channels: int, *, reduction: int = 2, lam_concat: bool = False,
                 upsample: str = "nearest") -> None:
        super().__init__()
        check_positive("channels", channels, integer=True)
        check_positive("reduction", reduction, integer=True)
        if not isinstance(lam_concat, bool):
            raise TypeError(f"lam_concat must be a bool, got {type(lam_concat).__name__}")
        check_choice("upsample", upsample, UPSAMPLING)
        self.lam_concat, self.upsample = lam_concat, upsample
        width = channels + int(lam_concat)
        self.inner = max(channels // reduction, 1)
        self.query = nn.Conv2d(width, self.inner, 1)
        self.value = nn.Conv2d(width, 1, 1)
        for conv in (self.query, self.value):
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, a: torch.Tensor, b: torch.Tensor, lam: torch.Tensor,
                size: tuple[int, int]) -> torch.Tensor:
        n, _, h, w = a.shape
        with torch.autocast(a.device.type, enabled=False):
            a, b = a.float(), b.float()
            if self.lam_concat:
                lam_map = lam.float().view(n, 1, 1, 1).expand(n, 1, h, w)
                a, b = torch.cat([a, lam_map], 1), torch.cat([b, 1.0 - lam_map], 1)
            q = self.query(a).flatten(2)                          # [B, C', hw]
            k = self.query(b).flatten(2)                          # [B, C', hw]
            v = self.value(b).flatten(2)                          # [B, 1, hw]
            attn = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(self.inner), dim=-1)
            logits = (attn @ v.transpose(1, 2)).view(n, 1, h, w)  # partner share, anchor positions
            extra = {} if self.upsample == "nearest" else {"align_corners": False}
            logits = F.interpolate(logits, size=size, mode=self.upsample, **extra)
            return torch.sigmoid(-logits)                         # 1 - sigmoid(logits): share of a


class AutoMixPolicy(nn.Module):
    """The state of the ``automix`` policy: MixBlock + EMA network (see the module docstring).

    Build it with ``mixing.build_state("automix", model, **options)`` (or
    directly), pass it to ``mix("automix", x, y, model=state)``, train its
    parameters with the classifier's, and call :meth:`after_step` after each
    optimizer step.

    Args:
        model: the classifier being trained (a mixviz ``smallcnn`` or
            ``preact_resnet18``: the MixBlock reads one of its hidden layers).
            Not wrapped in DistributedDataParallel.
        layer: the layer whose features the MixBlock reads (1 .. number of
            stages); default: the input of the last stage.
        momentum: the EMA momentum at the start (0.999).
        momentum_end: the EMA momentum at the end of the run (0.999999).
        momentum_warmup: the fraction of the run at constant ``momentum``
            before the cosine ramp (0.1).
        mask_loss: the weight of the mask-mean loss (0.1).
        mask_margin: its margin (0.1).
        lam_margin: the backbone mask is the constant lam where
            ``lam <= lam_margin`` or ``lam >= 1 - lam_margin`` (0.08).
        reduction: the MixBlock's channel reduction (2).
        lam_concat: give the MixBlock lam as an extra channel (False on CIFAR).
        upsample: ``"nearest"`` (the CIFAR config), ``"bilinear"`` or ``"bicubic"``.
    """

    def __init__(self, model: nn.Module, *, layer: int | None = None, momentum: float = 0.999,
                 momentum_end: float = 0.999999, momentum_warmup: float = 0.1, mask_loss: float = 0.1,
                 mask_margin: float = 0.1, lam_margin: float = 0.08, reduction: int = 2,
                 lam_concat: bool = False, upsample: str = "nearest") -> None:
        super().__init__()
        from mixviz.models import check_staged

        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(model, nn.parallel.DistributedDataParallel):
            raise ValueError("model must be the bare classifier, not its DistributedDataParallel wrapper")
        net = check_staged(model, purpose="AutoMix (its MixBlock reads a hidden layer)")
        if layer is None:
            layer = net.num_stages - 1
        if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= net.num_stages:
            raise ValueError(f"layer must be an int in [1, {net.num_stages}] for a {type(net).__name__}, "
                             f"got {layer!r}")
        for name, value in (("momentum", momentum), ("momentum_end", momentum_end),
                            ("momentum_warmup", momentum_warmup)):
            check_positive(name, value, allow_zero=True)
            if value > 1:
                raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
        if momentum_end < momentum:
            raise ValueError(f"momentum_end must be >= momentum ({momentum}), got {momentum_end!r}")
        check_positive("mask_loss", mask_loss, allow_zero=True)
        check_positive("mask_margin", mask_margin, allow_zero=True)
        check_positive("lam_margin", lam_margin, allow_zero=True)
        if lam_margin >= 0.5:
            raise ValueError(f"lam_margin must lie in [0, 0.5), got {lam_margin!r}")
        self.layer = layer
        self.momentum, self.momentum_end, self.momentum_warmup = momentum, momentum_end, momentum_warmup
        self.mask_loss, self.mask_margin, self.lam_margin = mask_loss, mask_margin, lam_margin
        self.mix_block = MixBlock(net.stage_channels[layer - 1], reduction=reduction, lam_concat=lam_concat,
                                  upsample=upsample)
        self.ema = copy.deepcopy(model).requires_grad_(False)
        self.ema.train(self.training)
        object.__setattr__(self, "_classifier", model)  # a reference, not a submodule
        self._average_gradients_over_ranks()

    @property
    def classifier(self) -> nn.Module:
        """The classifier being trained (the online network)."""
        return self._classifier

    def extra_repr(self) -> str:
        return (f"layer={self.layer}, momentum={self.momentum}, momentum_end={self.momentum_end}, "
                f"mask_loss={self.mask_loss}, mask_margin={self.mask_margin}, lam_margin={self.lam_margin}")

    def _average_gradients_over_ranks(self) -> None:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        world = dist.get_world_size()

        def average(p: torch.Tensor) -> None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)

        for p in self.mix_block.parameters():
            p.register_post_accumulate_grad_hook(average)

    # ------------------------------------------------------------------ EMA

    def momentum_at(self, step: int, total_steps: int | None) -> float:
        """The EMA momentum after step ``step`` (0-based) of ``total_steps``:
        ``momentum`` while ``step < int(momentum_warmup * total_steps)``, then
        ``end - (end - momentum) (cos(pi step / total) + 1) / 2``, and ``end``
        past the end.  Without ``total_steps``: ``momentum``."""
        if total_steps is None or total_steps <= 0 or step < int(self.momentum_warmup * total_steps):
            return self.momentum
        t = min(step, total_steps) / total_steps
        return self.momentum_end - (self.momentum_end - self.momentum) * (math.cos(math.pi * t) + 1) / 2

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int | None) -> None:
        """The EMA update after optimizer step ``step`` (0-based) of ``total_steps``."""
        weight = 1.0 - self.momentum_at(step, total_steps)
        ema = [p for p in self.ema.parameters()]
        online = [p.detach() for p in self.classifier.parameters()]
        torch._foreach_lerp_(ema, online, weight)

    # ------------------------------------------------------------------ masks and losses

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Layer ``layer`` of the EMA network on ``x`` (no gradient), [B, C, h, w]."""
        with torch.no_grad(), autocast_like(x):
            feat = self.ema.hidden(x, self.layer)
        if feat.dim() != 4:
            raise ValueError(f"AutoMix needs a convolutional model: its layer {self.layer} must be a feature map "
                             f"[B, C, h, w], got shape {tuple(feat.shape)} (use smallcnn or preact_resnet18)")
        return feat

    def _margin(self, mask: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        if self.lam_margin <= 0:
            return mask
        edge = (lam <= self.lam_margin) | (lam >= 1.0 - self.lam_margin)
        const = lam.to(mask.dtype).view(-1, 1, 1, 1).expand_as(mask)
        return torch.where(edge.view(-1, 1, 1, 1), const, mask)

    def learning_signal(self, x: torch.Tensor, y: torch.Tensor, index_mb: torch.Tensor, lam_mb: torch.Tensor,
                        mask_mb: torch.Tensor) -> torch.Tensor:
        """Generation loss (through the frozen EMA) + mask-mean loss + clean CE, a scalar."""
        b = x.shape[0]
        lam_b = _expand(lam_mb, b)
        mixed = torch.lerp(_take(x, index_mb), x, mask_mb.to(x.dtype))
        with autocast_like(x):
            logits = self.ema(mixed)
        y = as_labels("y", y, num_classes=logits.shape[-1])  # the model's output width is the class count
        logp = F.log_softmax(logits.float(), dim=1)
        nll_a = -logp.gather(1, y[:, None])[:, 0]
        nll_b = -logp.gather(1, y[index_mb][:, None])[:, 0]
        generation = (lam_b * nll_a + (1.0 - lam_b) * nll_b).mean()
        if lam_mb.numel() == 1:
            gap = (mask_mb.mean() - lam_mb[0]).abs()
        else:
            gap = (mask_mb.mean((1, 2, 3)) - lam_b).abs()
        mask_term = self.mask_loss * F.relu(gap - self.mask_margin).mean()
        with autocast_like(x):
            clean_logits = self.classifier(x)
        clean = F.cross_entropy(clean_logits.float(), y)
        return generation + mask_term + clean


def _check_state(model: object) -> AutoMixPolicy:
    if isinstance(model, AutoMixPolicy):
        return model
    if model is None:
        raise ValueError("model is required for the policy 'automix': pass the AutoMix state, "
                         "model=mixing.build_state('automix', classifier) (its learned mixer)")
    raise ValueError(f"model must be the AutoMix state built by mixing.build_state('automix', classifier) "
                     f"(it holds the learned MixBlock and the EMA network), got a {type(model).__name__}; "
                     "an untrained mixer would only give masks of about 0.5 everywhere")


def automix(x: torch.Tensor, y: torch.Tensor, *, alpha: float = 1.0, generator: torch.Generator | None = None,
            per_sample: bool = True, model: AutoMixPolicy | None = None) -> MixedBatch:
    """AutoMix: the mask of each pair comes from the learned MixBlock of
    ``model`` (an :class:`AutoMixPolicy`); see the module docstring.

    Draws ``index`` and ``lam ~ Beta(alpha, alpha)`` (first, like every
    policy, so the same seed gives the same partners), then, in train mode,
    the mixer pair.  Returns ``inputs = mask x + (1 - mask) x[index]`` with
    ``lam = mask.mean((1, 2, 3))``; in train mode ``aux_loss`` holds the
    policy's own losses.  ``x`` [B, C, H, W].
    """
    _check_batch(x, y, alpha=alpha, generator=generator, per_sample=per_sample, images=True, policy="automix")
    state = _check_state(model)
    b, _, height, width = x.shape
    index, lam = _draw_pairs(x, alpha, generator, per_sample)
    if not state.training:
        feat = state.features(x)
        with torch.no_grad():
            mask = state.mix_block(feat, feat[index], _expand(lam, b), (height, width))
        return _masked_batch(x, y, index, lam, state._margin(mask, lam), "automix", True)
    index_mb, lam_mb = _draw_pairs(x, alpha, generator, per_sample)
    feat = state.features(x)
    anchors = torch.cat([feat, feat])
    partners = torch.cat([feat[index_mb], feat[index]])
    masks = state.mix_block(anchors, partners, torch.cat([_expand(lam_mb, b), _expand(lam, b)]), (height, width))
    mask_mb, mask_bb = masks[:b], masks[b:].detach()
    aux = state.learning_signal(x, y, index_mb, lam_mb, mask_mb)
    out = _masked_batch(x, y, index, lam, state._margin(mask_bb, lam), "automix", True)
    return replace(out, aux_loss=aux)

