"""Exercises of the notebooks: a student writes a short function, a check
compares it with the package's own implementation on random inputs.

Each exercise has a reference solution (:data:`SOLUTIONS`) and a check
(:data:`CHECKS`) that raises ``AssertionError`` naming what differs; the tests
run every reference solution through its check, so a notebook's check cell
cannot rot.  In a notebook, :func:`check` runs one and prints the outcome
without raising, so the notebook still runs top to bottom while the stub is
unfilled:

>>> from mixviz import exercises
>>> def my_dm_loss(logits, y_a, y_b, lam, eta=1.0):
...     raise NotImplementedError  # the student's stub
>>> exercises.check("dm_loss", my_dm_loss)
dm_loss: not done yet (the function raises NotImplementedError): fill it in and run this cell again.
False
>>> exercises.check("dm_loss", exercises.SOLUTIONS["dm_loss"])
dm_loss: correct, it matches mixviz on random inputs.
True
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["EXERCISES", "SOLUTIONS", "CHECKS", "check", "solution_source", "check_mix_pair", "check_mixup_ce",
           "check_ece", "check_mixed_top2", "check_pointing", "check_dm_loss"]

#: Exercise name -> (notebook, what to write).
EXERCISES = {
    "mix_pair": ("01_mixed_samples", "mix two batches by mixup and build their soft labels"),
    "mixup_ce": ("02_decision_boundaries", "the mixup cross-entropy"),
    "ece": ("03_calibration", "the expected calibration error with equal-width bins"),
    "mixed_top2": ("04_top1_top2_mismatch", "Top-1 and Top-2 accuracy on mixed images"),
    "pointing": ("05_saliency", "the pointing game"),
    "dm_loss": ("06_dm_loss", "the Decoupled Mixup loss in ten lines"),
}


# --------------------------------------------------------------------------- reference solutions


def _mix_pair(x: torch.Tensor, y: torch.Tensor, lam: torch.Tensor, index: torch.Tensor,
              num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup of ``x`` with ``x[index]`` at a share ``lam`` ([B]) of ``x``; the soft labels."""
    w = lam.view(-1, *([1] * (x.dim() - 1)))
    inputs = w * x + (1 - w) * x[index]
    targets = lam[:, None] * F.one_hot(y, num_classes) + (1 - lam[:, None]) * F.one_hot(y[index], num_classes)
    return inputs, targets


def _mixup_ce(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``mean(-(lam log p[a] + (1 - lam) log p[b]))``."""
    logp = logits.log_softmax(dim=1)
    return -(lam * logp.gather(1, y_a[:, None])[:, 0] + (1 - lam) * logp.gather(1, y_b[:, None])[:, 0]).mean()


def _ece(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """``sum_b (n_b / N) |acc_b - conf_b|`` over equal-width bins of the top probability (a
    confidence on a bin edge goes to the upper bin; 1.0 to the last)."""
    conf, pred = probs.max(dim=1)
    right = pred.eq(labels).float()
    bins = (conf * n_bins).floor().long().clamp(0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        inside = bins == b
        if inside.any():
            total += float(inside.float().mean() * (right[inside].mean() - conf[inside].mean()).abs())
    return total


def _mixed_top2(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor) -> tuple[float, float]:
    """Top-1: the top class is ``y_a`` or ``y_b``; Top-2: the two top classes are exactly them (pairs of two
    classes only)."""
    top = logits.topk(2, dim=1).indices
    top1 = (top[:, 0].eq(y_a) | top[:, 0].eq(y_b)).float().mean()
    both = (top[:, 0].eq(y_a) & top[:, 1].eq(y_b)) | (top[:, 0].eq(y_b) & top[:, 1].eq(y_a))
    pairs = y_a.ne(y_b)
    return float(top1), float(both[pairs].float().mean())


def _pointing(attr: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Is each map's brightest pixel (the first on ties) on the object (mask > 0.5)? An all-zero map misses."""
    flat = attr.flatten(1)
    peak = flat.argmax(dim=1, keepdim=True)
    return (mask.flatten(1) > 0.5).gather(1, peak)[:, 0] & (flat.amax(dim=1) > 0)


def _dm_loss(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: torch.Tensor,
             eta: float = 1.0) -> torch.Tensor:
    """Mixup CE + eta * sum over i in {a, b} of -log softmax without the partner, at class i (pairs a != b)."""
    mce = _mixup_ce(logits, y_a, y_b, lam)
    rows = torch.arange(len(logits))
    no_b, no_a = logits.clone(), logits.clone()
    no_b[rows, y_b] = float("-inf")  # the softmax of class a without its partner b
    no_a[rows, y_a] = float("-inf")
    dec_a = -no_b.log_softmax(dim=1)[rows, y_a]
    dec_b = -no_a.log_softmax(dim=1)[rows, y_b]
    return mce + eta * (dec_a + dec_b).mean()


#: Exercise name -> reference solution.
SOLUTIONS: dict[str, Callable[..., Any]] = {"mix_pair": _mix_pair, "mixup_ce": _mixup_ce, "ece": _ece,
                                            "mixed_top2": _mixed_top2, "pointing": _pointing, "dm_loss": _dm_loss}


# --------------------------------------------------------------------------- checks


def _close(name: str, got: Any, want: torch.Tensor | float, atol: float = 1e-5) -> None:
    got_t = torch.as_tensor(got, dtype=torch.float64)
    want_t = torch.as_tensor(want, dtype=torch.float64)
    assert got_t.shape == want_t.shape, f"{name}: shape {tuple(got_t.shape)}, expected {tuple(want_t.shape)}"
    diff = float((got_t - want_t).abs().max()) if got_t.numel() else 0.0
    assert diff <= atol, f"{name}: differs from mixviz by up to {diff:.3g} (allowed {atol:g})"


def _pairs(gen: torch.Generator, batch: int = 64, classes: int = 10) -> tuple[torch.Tensor, ...]:
    logits = torch.randn(batch, classes, generator=gen) * 3
    y_a = torch.randint(0, classes, (batch,), generator=gen)
    y_b = (y_a + torch.randint(1, classes, (batch,), generator=gen)) % classes  # always another class
    lam = torch.rand(batch, generator=gen) * 0.9 + 0.05
    return logits, y_a, y_b, lam


def check_mix_pair(fn: Callable[..., Any]) -> None:
    """``fn(x, y, lam, index, num_classes) -> (inputs, targets)`` against :class:`mixviz.mixing.MixedBatch`."""
    from mixviz.mixing import MixedBatch

    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(16, 3, 8, 8, generator=gen), torch.randint(0, 10, (16,), generator=gen)
    lam, index = torch.rand(16, generator=gen), torch.randperm(16, generator=gen)
    inputs, targets = fn(x, y, lam, index, 10)
    want = torch.lerp(x[index], x, lam.view(-1, 1, 1, 1))
    _close("inputs", inputs, want)
    batch = MixedBatch(inputs=want, y_a=y, y_b=y[index], index=index, lam=lam)
    _close("targets", targets, batch.soft_targets(10))


def check_mixup_ce(fn: Callable[..., Any]) -> None:
    """``fn(logits, y_a, y_b, lam) -> mean loss`` against :func:`mixviz.losses.mixup_cross_entropy`."""
    from mixviz.losses import mixup_cross_entropy

    logits, y_a, y_b, lam = _pairs(torch.Generator().manual_seed(2))
    _close("loss", fn(logits, y_a, y_b, lam), mixup_cross_entropy(logits, y_a, y_b, lam))


def check_ece(fn: Callable[..., Any]) -> None:
    """``fn(probs, labels, n_bins) -> float`` against :func:`mixviz.metrics.expected_calibration_error`."""
    from mixviz.metrics import expected_calibration_error

    gen = torch.Generator().manual_seed(3)
    for n_bins in (15, 5):
        probs = (torch.randn(500, 10, generator=gen) * 2).softmax(dim=1)
        labels = torch.randint(0, 10, (500,), generator=gen)
        _close(f"ECE with {n_bins} bins", fn(probs, labels, n_bins), expected_calibration_error(probs, labels, n_bins),
               atol=1e-4)


def check_mixed_top2(fn: Callable[..., Any]) -> None:
    """``fn(logits, y_a, y_b) -> (top1, top2)`` against :func:`mixviz.metrics.mixed_topk_accuracy`."""
    from mixviz.metrics import mixed_topk_accuracy

    logits, y_a, y_b, _ = _pairs(torch.Generator().manual_seed(4), batch=200, classes=4)
    y_b[:20] = y_a[:20]  # a few pairs of one class: not counted by Top-2
    _close("(top1, top2)", fn(logits, y_a, y_b), mixed_topk_accuracy(logits, y_a, y_b))


def check_pointing(fn: Callable[..., Any]) -> None:
    """``fn(attr, mask) -> bool [B]`` against :func:`mixviz.saliency.pointing_game`."""
    from mixviz.saliency import pointing_game

    gen = torch.Generator().manual_seed(5)
    attr = torch.rand(32, 1, 8, 8, generator=gen)
    attr[0] = 0.0  # an empty map points nowhere
    mask = (torch.rand(32, 1, 8, 8, generator=gen) > 0.6).float()
    got = torch.as_tensor(fn(attr, mask))
    assert got.dtype == torch.bool, f"hits: dtype {got.dtype}, expected torch.bool (one True/False per map)"
    _close("hits", got.float(), pointing_game(attr, mask).float())


def check_dm_loss(fn: Callable[..., Any]) -> None:
    """``fn(logits, y_a, y_b, lam, eta) -> mean loss`` against :class:`mixviz.losses.DecoupledMixupLoss`
    (mode ``"both"``, λ power 0) on pairs of two classes."""
    from mixviz.losses import DecoupledMixupLoss
    from mixviz.mixing import MixedBatch

    for eta in (1.0, 0.1):
        logits, y_a, y_b, lam = _pairs(torch.Generator().manual_seed(6))
        batch = MixedBatch(inputs=torch.zeros(len(lam), 1), y_a=y_a, y_b=y_b, index=torch.arange(len(lam)), lam=lam)
        _close(f"loss at eta = {eta}", fn(logits, y_a, y_b, lam, eta), DecoupledMixupLoss(eta=eta)(logits, batch),
               atol=1e-4)


#: Exercise name -> check (raises AssertionError naming what differs).
CHECKS: dict[str, Callable[[Callable[..., Any]], None]] = {
    "mix_pair": check_mix_pair, "mixup_ce": check_mixup_ce, "ece": check_ece, "mixed_top2": check_mixed_top2,
    "pointing": check_pointing, "dm_loss": check_dm_loss}


def check(name: str, fn: Callable[..., Any]) -> bool:
    """Run exercise ``name``'s check on ``fn`` and print the outcome: correct,
    not done yet (``fn`` raises NotImplementedError) or what differs.  Never
    raises for a wrong answer, so a notebook runs top to bottom."""
    if name not in CHECKS:
        raise ValueError(f"name must be one of {', '.join(CHECKS)}, got {name!r}")
    if not callable(fn):
        raise TypeError(f"fn must be a function, got {type(fn).__name__}")
    try:
        CHECKS[name](fn)
    except NotImplementedError:
        print(f"{name}: not done yet (the function raises NotImplementedError): fill it in and run this cell again.")
        return False
    except AssertionError as err:
        print(f"{name}: not right yet: {err}")
        return False
    except Exception as err:  # a student's bug: say what it was, do not stop the notebook
        print(f"{name}: your function raised {type(err).__name__}: {err}")
        return False
    print(f"{name}: correct, it matches mixviz on random inputs.")
    return True


def solution_source(name: str) -> str:
    """The source of exercise ``name``'s reference solution (for a teacher)."""
    if name not in SOLUTIONS:
        raise ValueError(f"name must be one of {', '.join(SOLUTIONS)}, got {name!r}")
    return inspect.getsource(SOLUTIONS[name])
