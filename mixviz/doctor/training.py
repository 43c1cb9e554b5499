"""Section 3: ``fit`` on generated clutter on the device, and exact resume.

* **fit**: 2 epochs of CutMix + DM on the 20-class clutter set (the small CNN
  on a small set with ``--quick`` or off CUDA; PreAct-ResNet-18 on 5 120
  images on CUDA).  Passes when every loss and metric is finite and in range.
* **resume**: the same run is interrupted in the middle of its second epoch
  and resumed from the checkpoint written at the end of the first; its final
  weights are compared with the unbroken run's.  Identical weights pass.  When
  they differ, a second unbroken run tells nondeterministic kernels (two
  unbroken runs differ too: reported with the distance and the operations
  PyTorch named as nondeterministic in the step checks) from a resume bug
  (two unbroken runs agree: a failure).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from mixviz.doctor.report import Check, fmt, run_check

__all__ = ["plan", "weight_distance", "checks"]


def plan(device: torch.device, quick: bool) -> dict[str, Any]:
    """The training configuration's size for this device and mode."""
    if device.type == "cuda" and not quick:
        return dict(model="preact_resnet18", batch_size=128, model_options={},
                    dataset_options=dict(n_train=5120, n_test=1000, objects="both"))
    return dict(model="smallcnn", batch_size=32, model_options=dict(width=8),
                dataset_options=dict(n_train=128, n_test=32, objects="both"))


def weight_distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[bool, float, float]:
    """``(identical, max |a - b|, max |a - b| / max |a|)`` over two state dicts."""
    if a.keys() != b.keys():
        raise ValueError("the two state dicts hold different tensors")
    identical = all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)
    floats = [k for k in a if a[k].is_floating_point()]
    diff = max((float((a[k].double() - b[k].double()).abs().max()) for k in floats if a[k].numel()), default=0.0)
    scale = max((float(a[k].double().abs().max()) for k in floats if a[k].numel()), default=0.0)
    return identical, diff, diff / scale if scale > 0 else diff


class _Interrupt(RuntimeError):
    """Raised from ``on_step`` to stop a run half-way, like a crash."""


def checks(device: torch.device, quick: bool, nondeterministic: list[str]) -> Iterator[Check]:
    from mixviz.train import TrainConfig, fit

    with tempfile.TemporaryDirectory() as tmp:
        base = TrainConfig(dataset="clutter", policy="cutmix", loss="dm", epochs=2, lr=0.05, seed=0,
                           device=str(device), progress=False, **plan(device, quick))
        runs: dict[str, Any] = {}

        def fit_check() -> tuple[str, str, dict[str, Any]]:
            run = runs["unbroken"] = fit(replace(base, out_dir=str(Path(tmp) / "a")))
            h = run.history
            values = [*h["train_loss"], *h["test_nll"], *h["test_acc"]]
            ok = len(h) == 2 and all(math.isfinite(v) for v in values) and 0 <= run.metrics["test_acc"] <= 1
            detail = (f"{base.model} on {base.dataset_options['n_train']} images, 2 epochs: train loss "
                      f"{h['train_loss'].iloc[0]:.3f} -> {h['train_loss'].iloc[-1]:.3f}, test accuracy "
                      f"{run.metrics['test_acc']:.3f}, {fmt(run.metrics['sec_per_epoch'])} s/epoch, "
                      f"{fmt(run.metrics['images_per_sec'])} images/s")
            return ("pass" if ok else "fail"), detail, {"history": h.to_dict("list"), "config": base.to_dict()}

        yield run_check("training", "fit 2 epochs on clutter", fit_check)
        if "unbroken" not in runs:
            yield Check("training", "resume from a mid-run checkpoint", "fail", "needs the fit above, which failed")
            return

        def resume_check() -> tuple[str, str, dict[str, Any]]:
            steps = base.dataset_options["n_train"] // base.batch_size

            def interrupt(epoch: int, step: int) -> None:
                if epoch == 1 and step == max(1, steps // 2):
                    raise _Interrupt

            broken = replace(base, out_dir=str(Path(tmp) / "b"))
            try:
                fit(broken, on_step=interrupt)
            except _Interrupt:
                pass
            else:
                return "fail", "the run was not interrupted (fewer steps than planned)", {}
            resumed = fit(broken, resume=True)
            same, diff, rel = weight_distance(runs["unbroken"].model.state_dict(), resumed.model.state_dict())
            data: dict[str, Any] = {"identical": same, "max_abs_diff": diff, "max_rel_diff": rel,
                                    "nondeterministic": nondeterministic}
            where = f"interrupted at step {max(1, steps // 2)} of epoch 2, resumed from the epoch-1 checkpoint"
            if same:
                return "pass", f"identical weights ({where})", data
            control = fit(replace(base, out_dir=str(Path(tmp) / "c")))
            _, control_diff, control_rel = weight_distance(runs["unbroken"].model.state_dict(),
                                                           control.model.state_dict())
            data.update(control_max_abs_diff=control_diff, control_max_rel_diff=control_rel)
            ops = ", ".join(nondeterministic) or "none named by PyTorch"
            if control_diff > 0:
                return "pass", (f"not identical ({where}): max |difference| {diff:.2e} ({rel:.2e} of the largest "
                                f"weight); two unbroken runs differ by {control_diff:.2e} as well: nondeterministic "
                                f"kernels on this device ({ops})"), data
            return "fail", (f"resumed weights differ by {diff:.2e} ({rel:.2e} relative) while two unbroken runs "
                            f"are identical ({where})"), data

        yield run_check("training", "resume from a mid-run checkpoint", resume_check)
