"""What every analysis shares: the fixed evaluation settings, the names of
training methods, and the one way models are passed in.

An analysis takes *models*: a single ``nn.Module`` returning ``[B, C]``
logits, a :class:`mixviz.train.Run` (its ``.model`` is used, and its config
names the method), or a dict ``{name: module or Run}``.  A list of Runs (for
example every seed of a grid) is accepted where a table has one row per
model.  :func:`named_models` turns any of these into one list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mixviz._validation import check_choice, check_labels, check_tensor

#: Seed of the fixed mixed evaluation set (the same for every model).
EVAL_SEED = 0
#: Mixing of the fixed evaluation set on images (the training loop's default
#: evaluation policy on images, so the numbers agree with a run's history).
EVAL_POLICY = "cutmix"
EVAL_ALPHA = 1.0
#: A mixed label is *mismatched* when it gives a class at least this share ...
MISMATCH_SHARE = 0.3
#: ... while less than this fraction of the class's object is visible.
MISMATCH_VISIBLE = 0.05


def method_name(config: Any) -> str:
    """``"<policy>+<loss>"`` of a :class:`mixviz.train.TrainConfig`, the method
    label of every table and figure."""
    from mixviz.train import TrainConfig

    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    return f"{config.policy}+{config.loss}"


def training_kind(policy: str, loss: str) -> str:
    """``"baseline"`` (no mixing), ``"DM"`` (the Decoupled Mixup loss), or the
    policy's kind in the mixing registry (``"static"`` / ``"dynamic"``)."""
    from mixviz.mixing import available

    check_choice("policy", policy, available())
    if not isinstance(loss, str):
        raise TypeError(f"loss must be a str, got {type(loss).__name__}")
    if loss == "dm":
        return "DM"
    if policy == "none":
        return "baseline"
    return available()[policy]


@dataclass
class NamedModel:
    """One model of an analysis: its ``name`` (a table's ``method`` column),
    the ``module`` and, for a Run, ``info`` = ``policy``, ``loss``, ``kind``
    and ``seed`` of its config (empty for a plain module)."""

    name: str
    module: nn.Module
    info: dict[str, Any] = field(default_factory=dict)


def _is_run(obj: Any) -> bool:
    from mixviz.train import Run

    return isinstance(obj, Run)


def _entry(name: str, obj: Any, where: str, logits_fn: Any = None) -> NamedModel:
    from mixviz.models import with_logits_fn

    if _is_run(obj):
        c = obj.config
        return NamedModel(name, with_logits_fn(obj.model, logits_fn), {"policy": c.policy, "loss": c.loss,
                                            "kind": training_kind(c.policy, c.loss), "seed": c.seed})
    if isinstance(obj, nn.Module):
        return NamedModel(name, with_logits_fn(obj, logits_fn))
    raise TypeError(f"{where} must be a torch.nn.Module (a classifier returning logits) or a mixviz.train.Run, "
                    f"got {type(obj).__name__}")


def named_models(models: Any, *, name: str = "models", allow_list: bool = True,
                 logits_fn: Any = None) -> list[NamedModel]:
    """The models of an analysis as a list of :class:`NamedModel`.

    Accepts an ``nn.Module`` (named ``"model"``), a Run (named
    ``"<policy>+<loss>"``), a non-empty dict ``{name: module or Run}`` or,
    with ``allow_list``, a non-empty list of modules and Runs (Runs are
    named by their method, modules ``"model <i>"``; names may repeat, e.g.
    the seeds of one method).  With ``logits_fn`` (model output -> logits,
    for models that return a tuple, a dict or an object) every module is
    wrapped in :class:`mixviz.models.LogitsOf`.
    """
    if isinstance(models, nn.Module) or _is_run(models):
        entry = _entry("model", models, name, logits_fn)
        if entry.info:
            entry.name = f"{entry.info['policy']}+{entry.info['loss']}"
        return [entry]
    if isinstance(models, Mapping):
        if not models:
            raise ValueError(f"{name} must not be empty")
        out = []
        for key, obj in models.items():
            if not isinstance(key, str):
                raise TypeError(f"{name} keys must be str (the names shown in tables), got {type(key).__name__}")
            out.append(_entry(key, obj, f"{name}[{key!r}]", logits_fn))
        return out
    if allow_list and isinstance(models, Sequence) and not isinstance(models, str):
        if not models:
            raise ValueError(f"{name} must not be empty")
        out = []
        for i, obj in enumerate(models):
            entry = _entry(f"model {i}", obj, f"{name}[{i}]", logits_fn)
            if entry.info:
                entry.name = f"{entry.info['policy']}+{entry.info['loss']}"
            out.append(entry)
        return out
    kinds = "an nn.Module, a Run, a dict {name: module or Run}" + (" or a list of them" if allow_list else "")
    raise TypeError(f"{name} must be {kinds}; got {type(models).__name__}")


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer; CPU if it has none)."""
    from mixviz.metrics import _model_device

    return _model_device(model)


def check_images(images: Any, labels: Any) -> None:
    """4-D float images and a label per image."""
    check_tensor("images", images, ndim=4, floating=True)
    check_labels("labels", labels, batch=images.shape[0])


def check_inputs(images: Any, labels: Any) -> None:
    """Float inputs ``[N, ...]`` (images or points) and a label per input."""
    check_tensor("images", images, floating=True)
    if images.dim() < 2:
        raise ValueError(f"images must be [N, ...] (one row per input), got shape {tuple(images.shape)}")
    check_labels("labels", labels, batch=images.shape[0])
