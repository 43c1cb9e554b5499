"""What the Decoupled Mixup (DM) loss does to one prediction: the numbers
behind the DM notebook, every one computed by :mod:`mixviz.losses`.

Notation: a mixed sample of class ``a`` (share ``lam``) and class ``b``
(share ``1 - lam``) among ``C`` classes; ``z`` its logits, ``p = softmax(z)``.

* mixup CE: ``MCE = -(lam log p_a + (1 - lam) log p_b)``
  (:func:`mixviz.losses.mixup_cross_entropy`);
* DM: ``MCE + w_a dec_a + w_b dec_b`` with ``dec_i = -log(p_i / (p_i + r))``,
  ``r = sum_{c not in {a, b}} p_c`` the mass on the other classes, and
  ``w_a = eta lam^q``, ``w_b = eta (1 - lam)^q`` (``q = lam_power``; ``mode``
  keeps both weights, or only the one of the class whose share is below /
  at least ``thr``) (:func:`mixviz.losses.decoupled_mixup_loss`).

On the probability simplex both losses have their infimum at ``p = (lam,
1 - lam)`` with ``r = 0``; they differ in the way there.  MCE's gradient on
``z_a`` is ``p_a - lam``: a prediction more confident in ``a`` than ``lam`` is
pushed *down*.  The decoupled term's gradient on ``z_i`` is
``-w_i r / (p_i + r)``: it only ever raises each mixed class against the
other classes, never against its partner, so a confident ``p_a`` and a
confident ``p_b`` are both rewarded.  Alone, the decoupled term is smallest
along ``p_a + p_b = 1`` whatever the split.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from mixviz._extras import require

require("pandas")  # the 'analysis' extra: an ImportError here names the pip install line
import pandas as pd  # noqa: E402
import torch
from torch import nn

from mixviz._validation import check_choice, check_labels, check_positive, validation
from mixviz.mixing.batch import MixedBatch

#: The losses compared: name -> row label of the tables.
LOSS_NAMES = {"mixup_ce": "mixup CE", "dm": "DM"}
#: Models of :func:`sgd_trace`.
TRACE_MODELS = ("linear", "logits", "smallcnn")


def _check_number(name: str, value: Any, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"[{lo}, {hi}]" if lo is not None and hi is not None else (f">= {lo}" if lo is not None else "finite")
        raise ValueError(f"{name} must be {bounds}, got {value!r}")
    return float(value)


def _dm_options(eta: float, mode: str, lam_power: float, thr: float) -> dict[str, Any]:
    from mixviz.losses import DM_MODES

    check_positive("eta", eta, allow_zero=True)
    check_choice("mode", mode, DM_MODES)
    check_positive("lam_power", lam_power, allow_zero=True)
    _check_number("thr", thr, 0.0, 1.0)
    if not 0.0 < thr < 1.0:
        raise ValueError(f"thr must lie in the open interval (0, 1), got {thr!r}")
    return dict(eta=float(eta), mode=mode, lam_power=float(lam_power), thr=float(thr))


def _losses(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: torch.Tensor | float,
            options: dict[str, Any], reduction: str) -> dict[str, torch.Tensor]:
    from mixviz.losses import decoupled_mixup_loss, mixup_cross_entropy

    return {"mixup_ce": mixup_cross_entropy(logits, y_a, y_b, lam, reduction=reduction),
            "dm": decoupled_mixup_loss(logits, y_a, y_b, lam, reduction=reduction, **options)}


# --------------------------------------------------------------------------- one prediction


def loss_table(lam: float = 0.7, *, eta: float = 0.1, mode: str = "both", lam_power: float = 0.0,
               thr: float = 0.5, z_a: float = 2.0, z_b: float = 0.0, z_rest: float = 0.0,
               num_classes: int = 10) -> pd.DataFrame:
    """Mixup CE and DM on one prediction, with their gradients.

    The logits are ``z_a`` for class a (share ``lam``), ``z_b`` for class b
    and ``z_rest`` for each of the ``num_classes - 2`` other classes.

    Returns:
        Rows ``mixup CE``, ``DM`` and ``DM - mixup CE`` (the decoupled part,
        by subtraction); columns ``loss``, ``grad_z_a``, ``grad_z_b``,
        ``grad_z_rest`` (d loss / d z_c for one other class: all are equal),
        and the prediction ``p_a``, ``p_b``, ``p_rest`` (the summed mass of
        the other classes).  A negative gradient raises that logit under
        gradient descent.
    """
    lam = _check_number("lam", lam, 0.0, 1.0)
    options = _dm_options(eta, mode, lam_power, thr)
    for name, value in (("z_a", z_a), ("z_b", z_b), ("z_rest", z_rest)):
        _check_number(name, value)
    check_positive("num_classes", num_classes, integer=True)
    if num_classes < 3:
        raise ValueError(f"num_classes must be >= 3 (two mixed classes and at least one other), got {num_classes}")
    base = torch.tensor([[z_a, z_b] + [z_rest] * (num_classes - 2)], dtype=torch.float64)
    y_a, y_b = torch.tensor([0]), torch.tensor([1])
    rows = {}
    for name in LOSS_NAMES:
        z = base.clone().requires_grad_(True)
        loss = _losses(z, y_a, y_b, lam, options, "sum")[name]
        (grad,) = torch.autograd.grad(loss, z)
        rows[LOSS_NAMES[name]] = [float(loss.detach()), *grad[0, :3].tolist()]
    rows["DM - mixup CE"] = [d - m for d, m in zip(rows["DM"], rows["mixup CE"])]
    p = base.softmax(1)[0]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["loss", "grad_z_a", "grad_z_b", "grad_z_rest"])
    table["p_a"], table["p_b"], table["p_rest"] = float(p[0]), float(p[1]), float(p[2:].sum())
    return table


# --------------------------------------------------------------------------- the (p_a, p_b) plane


def _has_decoupled_term(lam: float, options: dict[str, Any]) -> bool:
    """Whether DM keeps a weight for class a or b at this lam (the weights
    of :func:`mixviz.losses.decoupled_mixup_loss`)."""
    from mixviz.losses.dm import UNMIXED_SHARE, _dm_weights

    shares = torch.tensor([[lam, 1.0 - lam]], dtype=torch.float64)
    plain = shares.amin(1, keepdim=True) <= UNMIXED_SHARE
    weights = _dm_weights(shares, plain, options["eta"], options["mode"], options["thr"], options["lam_power"])
    return bool((weights > 0).any())


def loss_grid(lam: float = 0.7, *, eta: float = 0.1, mode: str = "both", lam_power: float = 0.0,
              thr: float = 0.5, num_classes: int = 10, resolution: int = 100) -> dict[str, Any]:
    """Each loss over the plane of predictions ``(p_a, p_b)``.

    The grid holds the cell centres ``p = (k + 1/2) / resolution``; at cell
    ``(p_a, p_b)`` the logits are ``z_c = log p_c`` with the rest mass
    ``r = 1 - p_a - p_b`` spread evenly over the ``num_classes - 2`` other
    classes.  Cells with ``p_a + p_b >= 1`` are not predictions (NaN).  The
    losses are those of :mod:`mixviz.losses` on all cells at once.

    Returns:
        ``{"p": [R] cell centres, "step": 1 / R, "mixup_ce": [R, R],
        "dm": [R, R], "decoupled": [R, R] (DM - mixup CE), "argmin":
        {name: (p_a, p_b)}}`` and the settings (``lam``, ``eta``, ``mode``,
        ``lam_power``, ``thr``, ``num_classes``); arrays are indexed ``[i_b, i_a]`` (rows: p_b,
        columns: p_a), as ``imshow(..., origin="lower")`` draws them.  The
        argmin of ``decoupled`` is NaN when that part is zero everywhere
        (``eta = 0``, or a mode that keeps neither class).
    """
    lam = _check_number("lam", lam, 0.0, 1.0)
    options = _dm_options(eta, mode, lam_power, thr)
    check_positive("num_classes", num_classes, integer=True)
    check_positive("resolution", resolution, integer=True)
    if num_classes < 3:
        raise ValueError(f"num_classes must be >= 3 (two mixed classes and at least one other), got {num_classes}")
    if resolution < 3:
        raise ValueError(f"resolution must be >= 3, got {resolution}")
    p = (torch.arange(resolution, dtype=torch.float64) + 0.5) / resolution
    p_b, p_a = torch.meshgrid(p, p, indexing="ij")
    rest = 1.0 - p_a - p_b
    ok = rest > 1e-12
    rest_each = rest.clamp_min(1e-12) / (num_classes - 2)
    probs = torch.stack([p_a, p_b, *[rest_each] * (num_classes - 2)], dim=-1).reshape(-1, num_classes)
    logits = probs.log()
    n = logits.shape[0]
    y_a = torch.zeros(n, dtype=torch.long)
    y_b = torch.ones(n, dtype=torch.long)
    values = {k: v.reshape(resolution, resolution) for k, v in _losses(logits, y_a, y_b, lam, options, "none").items()}
    values["decoupled"] = values["dm"] - values["mixup_ce"]
    if not _has_decoupled_term(lam, options):  # exactly 0, not the rounding of two ways to compute mixup CE
        values["decoupled"] = torch.zeros_like(values["dm"])
    out: dict[str, Any] = {"p": p.numpy(), "step": 1.0 / resolution, "lam": lam, "num_classes": num_classes,
                           **options}
    argmin = {}
    for name, v in values.items():
        v = torch.where(ok, v, torch.full_like(v, math.nan))
        out[name] = v.numpy()
        flat = torch.where(ok, v, torch.full_like(v, math.inf)).reshape(-1)
        if name == "decoupled" and not _has_decoupled_term(lam, options):
            argmin[name] = (math.nan, math.nan)
            continue
        k = int(flat.argmin())
        argmin[name] = (float(p[k % resolution]), float(p[k // resolution]))
    out["argmin"] = argmin
    return out


# --------------------------------------------------------------------------- SGD on one mixed batch


class _FreeLogits(nn.Module):
    """One trainable logit vector per sample: the loss alone decides where
    the prediction goes (no shared weights, no input)."""

    def __init__(self, batch: int, num_classes: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(batch, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits


def _trace_model(model: str, mixed: MixedBatch, num_classes: int, width: int) -> nn.Module:
    if model == "logits":
        return _FreeLogits(len(mixed), num_classes)
    if model == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(mixed.inputs.shape[1:])), num_classes))
    from mixviz.models import build

    return build("smallcnn", num_classes, tuple(mixed.inputs.shape[1:]), width=width)


def sgd_trace(mixed: MixedBatch, num_classes: int, *, steps: int = 300, lr: float = 0.01, momentum: float = 0.9,
              eta: float = 0.1, mode: str = "both", lam_power: float = 0.0, thr: float = 0.5,
              model: str = "linear", width: int = 8, seed: int = 0) -> pd.DataFrame:
    """Train the same start on one fixed mixed batch with mixup CE and with DM.

    ``model`` (initialised from ``seed``; the same start for both losses):

    * ``"linear"``: softmax regression on the pixels (``Flatten`` + ``Linear``),
      a few milliseconds per step on a CPU;
    * ``"smallcnn"``: :class:`mixviz.models.SmallCNN` of ``width`` (about 50x
      slower);
    * ``"logits"``: one free logit vector per sample, starting at 0, with the
      summed loss (each vector gets the gradient of its own sample): the loss
      alone decides where each prediction goes.

    Full-batch SGD with ``momentum`` for ``steps`` steps on ``mixed``.

    Recorded at every step from that step's forward pass (before the update),
    as means over the pairs of two different classes: ``p_a`` and ``p_b``
    (the softmax probability of each mixed class), ``p_major`` / ``p_minor``
    (of the class with the larger / smaller share), ``p_rest`` (the mass of
    the other classes) and ``top2`` (the two top classes are exactly the
    pair); ``loss`` is the mean loss per sample.  Values stay on the
    device until the end (no host sync per step).

    Returns:
        One row per (loss, step) with the columns ``loss_name`` (``"mixup_ce"``
        / ``"dm"``), ``step``, ``loss``, ``p_a``, ``p_b``, ``p_major``,
        ``p_minor``, ``p_rest``, ``top2``; ``attrs["lam_mean"]`` and
        ``attrs["share_major"]`` hold the mean targets.
    """
    if not isinstance(mixed, MixedBatch):
        raise TypeError(f"mixed must be a MixedBatch, got {type(mixed).__name__}")
    check_positive("num_classes", num_classes, integer=True)
    check_labels("mixed.y_a", mixed.y_a, num_classes)
    check_labels("mixed.y_b", mixed.y_b, num_classes)
    check_positive("steps", steps, integer=True)
    check_positive("lr", lr)
    _check_number("momentum", momentum, 0.0, 1.0)
    check_positive("width", width, integer=True)
    check_choice("model", model, TRACE_MODELS)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    options = _dm_options(eta, mode, lam_power, thr)
    pair = mixed.y_a.ne(mixed.y_b)
    if not bool(pair.any()):
        raise ValueError("mixed must hold at least one pair of two different classes")
    lam = mixed.lam.to(torch.float32)
    if not bool(((lam >= 0) & (lam <= 1)).all()):
        raise ValueError("mixed.lam must lie in [0, 1]")
    major_is_a = lam >= 0.5
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        start = _trace_model(model, mixed, num_classes, width)
    reduction = "sum" if model == "logits" else "mean"
    start_state = {k: v.clone() for k, v in start.state_dict().items()}
    frames = []
    with validation(False):  # checked above: no host sync per step
        for name in LOSS_NAMES:
            frames.append(_train_trace(name, start, start_state, mixed, lam, pair, major_is_a, options, steps, lr,
                                       momentum, reduction))
    out = pd.concat(frames, ignore_index=True)
    out.attrs["lam_mean"] = float(lam[pair].mean())
    out.attrs["share_major"] = float(torch.where(major_is_a, lam, 1 - lam)[pair].mean())
    return out


def _train_trace(name: str, start: nn.Module, start_state: dict[str, torch.Tensor], mixed: MixedBatch,
                 lam: torch.Tensor, pair: torch.Tensor, major_is_a: torch.Tensor, options: dict[str, Any],
                 steps: int, lr: float, momentum: float, reduction: str) -> pd.DataFrame:
    """One loss of :func:`sgd_trace`: SGD from ``start_state``, stats per step."""
    scale = float(len(mixed)) if reduction == "sum" else 1.0  # recorded: the mean loss per sample
    net = start
    net.load_state_dict(start_state)  # the same start for every loss
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
    records = []
    for _ in range(steps):
        logits = net(mixed.inputs)
        loss = _losses(logits, mixed.y_a, mixed.y_b, lam, options, reduction)[name]
        with torch.no_grad():  # before the step: free logits are the parameters, updated in place
            records.append(torch.cat([loss.detach().reshape(1) / scale,
                                      _trace_stats(logits.detach(), mixed, pair, major_is_a)]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    values = torch.stack(records).cpu().numpy()
    frame = pd.DataFrame(values, columns=["loss", "p_a", "p_b", "p_major", "p_minor", "p_rest", "top2"])
    frame.insert(0, "step", np.arange(steps))
    frame.insert(0, "loss_name", name)
    return frame


def _trace_stats(logits: torch.Tensor, mixed: MixedBatch, pair: torch.Tensor, major_is_a: torch.Tensor) -> torch.Tensor:
    """``[p_a, p_b, p_major, p_minor, p_rest, top2]`` means over ``pair``."""
    probs = logits.float().softmax(1)
    p_ab = probs.gather(1, torch.stack((mixed.y_a, mixed.y_b), 1))
    p_a, p_b = p_ab[:, 0], p_ab[:, 1]
    p_major = torch.where(major_is_a, p_a, p_b)
    p_minor = torch.where(major_is_a, p_b, p_a)
    top = logits.topk(2, dim=1).indices
    top2 = ((top[:, 0] == mixed.y_a) & (top[:, 1] == mixed.y_b)) | ((top[:, 0] == mixed.y_b) & (top[:, 1] == mixed.y_a))
    stats = torch.stack([p_a, p_b, p_major, p_minor, 1.0 - p_a - p_b, top2.float()], 1)
    return stats[pair].mean(0)
