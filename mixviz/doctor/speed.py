"""Section 4: how fast this machine trains.

* **Epoch time**: PreAct-ResNet-18 on a CIFAR-100-shaped set (50 000
  generated 3x32x32 images, 100 classes, batch 128) kept on the device,
  mixup + mixup CE, bf16 autocast and channels_last on CUDA
  (:func:`mixviz.bench.epoch_speed`); on a CPU the epoch is extrapolated
  from a few steps.  Last (it takes longest), the same through
  ``torch.compile`` where it works (a failing compile is reported, not failed).
* **Step cost per method**: the training step of every policy (mixup CE; DM
  too for mixup and CutMix) against the mixup step, timed in one interleaved
  run (:func:`mixviz.bench.time_methods`).
* **DM loss**: forward + backward at B = 256, C = 100 and 1000 against the
  soft-target cross-entropy (:func:`mixviz.bench.loss_speed`), eager and fused.

``--quick`` times the step of mixup (with both losses), CutMix, SaliencyMix,
PuzzleMix and AutoMix only, and the loss at C = 100 only.

Timings are measurements ("info"); a timing that cannot run fails, named.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from mixviz.doctor.report import Check, fmt, run_check

__all__ = ["epoch_plan", "ratio_plan", "loss_plan", "methods", "compiled_epoch", "checks"]


def epoch_plan(device: torch.device, quick: bool) -> dict[str, Any]:
    """Arguments of :func:`mixviz.bench.epoch_speed` for this device and mode
    (two "epochs": the first is warm-up)."""
    if device.type == "cuda":
        return dict(batch_size=128, n=50_000, epochs=3) if not quick else dict(batch_size=128, epochs=2, steps=20)
    return dict(batch_size=128, epochs=2, steps=2) if not quick else dict(batch_size=8, epochs=2, steps=1)


def ratio_plan(device: torch.device, quick: bool) -> dict[str, Any]:
    """Arguments of :func:`mixviz.bench.time_methods` for this device and mode."""
    if device.type == "cuda":
        return dict(model="preact_resnet18", batch_size=128, num_classes=100, steps=5 if not quick else 2,
                    rounds=3 if not quick else 2)
    if not quick:
        return dict(model="smallcnn", batch_size=128, num_classes=100, steps=3, rounds=3)
    return dict(model="smallcnn", batch_size=16, num_classes=20, steps=1, rounds=2, model_options=dict(width=8))


def loss_plan(device: torch.device, quick: bool) -> dict[str, Any]:
    """Arguments of :func:`mixviz.bench.loss_speed` (besides the size)."""
    if quick:
        return dict(rounds=5, calls=5, compile=False)
    return dict(rounds=20, calls=20, compile=True)


# The methods whose step cost the issue asks for (the rest are timed without --quick).
QUICK_POLICIES = ("mixup", "cutmix", "saliencymix", "puzzlemix", "automix")


def methods(policies: list[str], quick: bool = False) -> tuple[tuple[str, str], ...]:
    """Mixup (mixup CE and DM) first, CutMix with both losses, then every
    other policy with mixup CE; plain training (none + CE) last.  With
    ``quick``, only the policies of :data:`QUICK_POLICIES` (DM with mixup only)."""
    out = [("mixup", "mixup_ce"), ("mixup", "dm"), ("cutmix", "mixup_ce"), ("cutmix", "dm")]
    out = [m for m in out if m[0] in policies]
    out += [(p, "mixup_ce") for p in policies if p not in ("mixup", "cutmix", "none")]
    if "none" in policies:
        out.append(("none", "ce"))
    if quick:
        out = [m for m in out if m[0] in QUICK_POLICIES and m != ("cutmix", "dm")]
    return tuple(out)


def _epoch_detail(res: dict[str, Any]) -> str:
    how = "bf16 + channels_last" if res["amp"] else "fp32"
    text = (f"{fmt(res['sec_per_epoch'])} s per epoch, {fmt(res['images_per_sec'])} images/s ({res['model']}, batch "
            f"{res['batch_size']}, {how}, data on {res['device']}")
    if res["extrapolated"]:
        text += f"; extrapolated from {res['steps_timed']} step(s)"
    if res["compile"]:
        text += f"; first compiled step {res['compile_sec']:.1f} s"
    return text + ")"


def compiled_epoch(device: torch.device, quick: bool, plan: dict[str, Any],
                   force: bool = False) -> tuple[str, str, dict[str, Any]]:
    """The epoch through ``torch.compile`` (CUDA without ``--quick``, or when
    ``force``d).  A compile that fails is reported ("info": eager numbers
    only) with its error, not failed: the issue asks for it where it works."""
    from mixviz import bench

    if not force and quick:
        return "skip", "not tried with --quick (compiling the model takes minutes)", {}
    if not force and device.type != "cuda":
        return "skip", "not tried on a CPU (compiling the model takes minutes and the epoch is extrapolated)", {}
    try:
        res = bench.epoch_speed(device=str(device), compile=True, **plan)
    except Exception as err:  # noqa: BLE001 -- "with torch.compile where it works"
        error = f"{type(err).__name__}: {err}"
        return "info", f"torch.compile failed here, eager numbers only ({error})"[:600], {"compile_error": error[:2000]}
    return "info", _epoch_detail(res), res


def checks(device: torch.device, quick: bool, policies: list[str], broken: set[str]) -> Iterator[Check]:
    from mixviz import bench

    plan = epoch_plan(device, quick)

    def eager_epoch() -> tuple[str, str, dict[str, Any]]:
        res = bench.epoch_speed(device=str(device), **plan)
        return "info", _epoch_detail(res), res

    yield run_check("speed", "PreAct-ResNet-18 epoch, CIFAR-100-shaped", eager_epoch)

    chosen = tuple(m for m in methods(policies, quick) if m[0] not in broken)

    def ratios() -> Check:
        options = ratio_plan(device, quick)
        table = bench.time_methods(chosen, device=str(device), **options)
        rows = [{"policy": r.policy, "loss": r.loss, "ms_per_step": 1e3 * r.sec_per_step, "vs_mixup": r.vs_mixup,
                 "images_per_sec": r.images_per_sec} for r in table.itertuples()]
        skipped = f"; left out (their step failed above): {', '.join(sorted(broken))}" if broken else ""
        detail = (f"{options['model']}, batch {options['batch_size']}, {options['num_classes']} classes, median of "
                  f"{options['rounds']} interleaved rounds of {options['steps']} step(s){skipped}")
        return Check("speed", "", "info", detail, data={"rows": rows, **options}, table=rows)

    yield run_check("speed", "training step per method vs the mixup step", ratios)

    for num_classes in (100,) if quick else (100, 1000):
        def losses_timing(num_classes: int = num_classes) -> Check:
            options = loss_plan(device, quick)
            failed = ""
            try:
                table = bench.loss_speed(batch=256, num_classes=num_classes, device=str(device), **options)
            except Exception as err:  # noqa: BLE001 -- the fused loss is optional: time the eager one
                if not options["compile"]:
                    raise
                failed = f"; the fused DM failed ({type(err).__name__}: {err})"[:400]
                table = bench.loss_speed(batch=256, num_classes=num_classes, device=str(device),
                                         **{**options, "compile": False})
            rows = [{"loss": r.loss, "us_per_call": r.us_per_call, "vs_soft_ce": r.vs_soft_ce}
                    for r in table.itertuples()]
            compile_sec = table.attrs.get("compile_sec")
            detail = (f"forward + backward, median of {options['rounds']} interleaved rounds of {options['calls']} "
                      "calls" + (f"; the fused DM (compile=True) compiled in {compile_sec:.1f} s" if compile_sec
                                 else "; fused DM not timed (--quick)" if quick else "") + failed)
            return Check("speed", "", "info", detail,
                         data={"rows": rows, "batch": 256, "num_classes": num_classes, "compile_sec": compile_sec},
                         table=rows)

        yield run_check("speed", f"DM loss vs soft-target CE, B=256, C={num_classes}", losses_timing)

    # last: compiling the model takes the longest, and the report is kept after every check
    yield run_check("speed", "PreAct-ResNet-18 epoch with torch.compile",
                    lambda: compiled_epoch(device, quick, plan))
