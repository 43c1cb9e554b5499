"""``mixviz doctor``: does this install work on this machine, and how fast?

    mixviz doctor [--device auto|cpu|cuda[:N]] [--quick] [--out FILE]
                  [--sections LIST] [--policies LIST] [--losses LIST]

Four sections run in order; every check is named and says pass, fail, skip
(does not apply here, with the reason) or info (a measurement):

1. **Environment** (:mod:`.environment`): torch, torchvision, CUDA, cuDNN and
   NCCL versions, the device's name and memory, CPU cores, and the packages
   mixviz uses (captum, torchmetrics, PyMaxflow, ...).
2. **Correctness on the device** (:mod:`.correctness`): one real training
   step of every policy x loss on the device (fp32, and bf16 + channels_last
   on CUDA), finite loss, gradients and weights; the device's fp32 loss and
   input gradient against the CPU's on the same mixed batch; captum Grad-CAM
   and the mixed Top-1/Top-2 metric on the device; a one-process
   ``torch.distributed`` all-reduce (NCCL on CUDA).
3. **Training** (:mod:`.training`): ``fit`` for 2 epochs on generated clutter,
   then an interrupted run resumed from its mid-run checkpoint: identical
   weights, or (on nondeterministic kernels) how far apart and which kernels.
4. **Speed** (:mod:`.speed`): PreAct-ResNet-18 seconds per epoch and images/s
   on a CIFAR-100-shaped set on the device (bf16 + channels_last on CUDA,
   also through ``torch.compile`` where it works), the training step of every
   policy against the mixup step in one interleaved run, and the DM loss
   against soft-target cross-entropy.

The report is Markdown (``--out FILE``) and JSON (``FILE`` with ``.json``),
rewritten after every check so that an interrupted run leaves what it had.
The exit code is 0 when no check failed and 1 otherwise (the failing checks
are named); the speed goals at the end are reported, never failed.  An
unusable ``--device`` is an error (exit code 2).

``--quick`` shrinks every size (the small CNN for training, one step of
PreAct-ResNet-18 for its epoch time, no ``torch.compile``): about a minute on
a laptop CPU.  The policies and losses are those of
:func:`mixviz.mixing.available` and :data:`mixviz.losses.LOSSES`, so new ones
are checked without changes here; how a policy that needs a model or a
learned state gets one is :func:`mixviz.doctor.correctness.policy_model`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from mixviz.doctor.report import SECTIONS, Check, Report, fmt

__all__ = ["run", "goals", "Report", "Check", "SECTIONS", "register_command"]


def _check_device(device: Any) -> torch.device:
    from mixviz.train import resolve_device

    if not isinstance(device, str) or not (
        device in ("auto", "cpu", "mps", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())
    ):
        raise ValueError(f"device must be 'auto', 'cpu', 'mps', 'cuda' or 'cuda:N'; got {device!r}")
    return resolve_device(device)


def _names(name: str, given: Iterable[str] | None, allowed: Iterable[str]) -> list[str]:
    allowed = list(allowed)
    if given is None:
        return allowed
    if isinstance(given, str) or not all(isinstance(g, str) for g in given):
        raise TypeError(f"{name} must be a list of names, got {given!r}")
    unknown = [g for g in given if g not in allowed]
    if unknown:
        raise ValueError(f"{name} must be among {', '.join(allowed)}; got {', '.join(unknown)}")
    return list(given)


def _line(check: Check) -> str:
    detail = f" -- {check.detail}" if check.detail else ""
    return f"[{check.status}] {check.section}: {check.name}{detail} ({check.seconds:.1f} s)"


def run(device: str = "auto", *, quick: bool = False, out: str | Path | None = None,
        sections: Iterable[str] | None = None, policies: Iterable[str] | None = None,
        losses: Iterable[str] | None = None, echo: Callable[[str], Any] | None = print) -> Report:
    """Run the doctor's checks and return the :class:`Report`.

    Args:
        device: ``"auto"`` (CUDA, then MPS, then the CPU), ``"cpu"``,
            ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        quick: the small sizes of ``--quick``.
        out: write the report there (Markdown) and beside it (``.json``)
            after every check.
        sections: a subset of ``"environment"``, ``"correctness"``,
            ``"training"``, ``"speed"`` (default: all, in that order).
        policies, losses: restrict the policies and losses (default: every
            one the package has).
        echo: called with one line per finished check (None: silent).
    """
    from mixviz import losses as losses_module
    from mixviz import mixing

    dev = _check_device(device)
    if not isinstance(quick, bool):
        raise TypeError(f"quick must be True or False, got {quick!r}")
    chosen = _names("sections", sections, SECTIONS)
    policy_names = _names("policies", policies, mixing.available())
    loss_names = _names("losses", losses, losses_module.LOSSES)
    from mixviz.doctor import correctness, environment, speed, training

    info = environment.device_info(dev)
    report = Report(meta={"device_arg": device, "device": str(dev), "device_name": info["device_name"],
                          "quick": quick, "date": _dt.date.today().isoformat(), "torch": torch.__version__,
                          "cpu_cores": info["cpu_cores"], "load_average": _load(), "sections": chosen,
                          "policies": policy_names, "losses": loss_names})
    started, cpu_started = time.perf_counter(), time.process_time()
    for section in SECTIONS:
        if section not in chosen:
            continue
        if section == "environment":
            found = environment.checks(dev)
        elif section == "correctness":
            found = correctness.checks(dev, policy_names, loss_names)
        elif section == "training":
            found = training.checks(dev, quick, _nondeterministic(report))
        else:
            found = speed.checks(dev, quick, policy_names, _broken(report))
        for check in found:
            report.add(check)
            if echo is not None:
                echo(_line(check))
            report.meta["seconds"] = round(time.perf_counter() - started, 1)
            report.meta["cpu_seconds"] = round(time.process_time() - cpu_started, 1)
            report.goals = goals(report, dev)
            if out is not None:
                report.write(out)  # after every check: a run that is stopped keeps what it found
    return report


def _load() -> float | None:
    """The host's 1-minute load average (timings on a busy machine are slow)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _nondeterministic(report: Report) -> list[str]:
    return sorted({op for c in report.checks for op in c.data.get("nondeterministic", [])})


def _broken(report: Report) -> set[str]:
    """Policies whose fp32 training step failed (the speed section leaves them out)."""
    return {c.data["policy"] for c in report.checks
            if c.status == "fail" and c.data.get("column") == "fp32 step" and "policy" in c.data}


def _find(report: Report, name: str) -> Check | None:
    return next((c for c in report.checks if c.name == name and c.status in ("info", "pass")), None)


def goals(report: Report, device: torch.device) -> list[dict[str, Any]]:
    """The speed goals of the package against what the report measured."""
    rows: list[dict[str, Any]] = []
    epochs = [c.data for c in (_find(report, "PreAct-ResNet-18 epoch, CIFAR-100-shaped"),
                               _find(report, "PreAct-ResNet-18 epoch with torch.compile"))
              if c is not None and "sec_per_epoch" in c.data]
    if epochs:
        best = min(epochs, key=lambda d: d["sec_per_epoch"])
        how = ("torch.compile, " if best["compile"] else "") + ("bf16" if best["amp"] else "fp32")
        where = report.meta.get("device_name") if device.type == "cuda" else "this CPU, no GPU"
        rows.append({"goal": "PreAct-ResNet-18 epoch, CIFAR-100-shaped (50 000 images)",
                     "target": "<= 5 s on an H100/H200-class GPU (bf16, batch 128)",
                     "measured": f"{fmt(best['sec_per_epoch'])} s (batch {best['batch_size']}, {how}; {where}"
                                 + (", extrapolated)" if best["extrapolated"] else ")"),
                     "met": best["sec_per_epoch"] <= 5.0 if device.type == "cuda" else None})
    steps = _find(report, "training step per method vs the mixup step")
    if steps is not None:
        ratio = {(r["policy"], r["loss"]): r["vs_mixup"] for r in steps.data["rows"]}
        model = steps.data.get("model")
        for key, goal, limit in ((("mixup", "dm"), "DM step (mixup + DM) vs the mixup step", 1.02),
                                 (("puzzlemix", "mixup_ce"), "PuzzleMix (full) step vs the mixup step", 1.5)):
            if key in ratio:
                rows.append({"goal": goal, "target": f"<= {limit}x", "measured": f"{ratio[key]:.3f}x ({model})",
                             "met": ratio[key] <= limit})
    loss = _find(report, "DM loss vs soft-target CE, B=256, C=100")
    if loss is not None:
        limit = 1.5 if device.type == "cuda" else 2.0
        for row in loss.data["rows"]:
            if row["loss"].startswith("DM"):
                rows.append({"goal": f"{row['loss']} loss vs soft-target CE, B=256, C=100",
                             "target": f"<= {limit}x on {'a GPU' if device.type == 'cuda' else 'a CPU'}",
                             "measured": f"{row['vs_soft_ce']:.2f}x", "met": row["vs_soft_ce"] <= limit})
    return rows


def _list(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def _cmd_doctor(args: argparse.Namespace) -> int:
    report = run(args.device, quick=args.quick, out=args.out, sections=_list(args.sections),
                 policies=_list(args.policies), losses=_list(args.losses))
    print(f"\n{report.summary()} in {report.meta.get('seconds', 0):.0f} s "
          f"({report.meta.get('cpu_seconds', 0):.0f} s of CPU time)")
    if args.out is not None:
        print(f"report written to {args.out} and {Path(args.out).with_suffix('.json')}")
    if report.failed():
        names = "; ".join(f"{c.section}: {c.name}" for c in report.failed())
        print(f"mixviz doctor: failed: {names}", file=sys.stderr)
    return report.exit_code()


def register_command(sub: Any) -> None:
    p = sub.add_parser("doctor", help="check that this install works on this machine, and how fast it trains",
                       description="Check that this install works on this machine and how fast it trains: the "
                                   "environment, one training step of every mixing policy and loss on the device "
                                   "(and the same numbers as the CPU), training with exact resume, and speed. "
                                   "Exit code 0 when every check passes, 1 when one fails (the report names it).")
    p.add_argument("--device", default="auto",
                   help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps. Default: %(default)s")
    p.add_argument("--quick", action="store_true",
                   help="small sizes and no torch.compile: about a minute on a laptop CPU")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="write the report as Markdown to FILE and as JSON beside it (FILE with .json), "
                        "e.g. doctor.md")
    p.add_argument("--sections", default=None, metavar="LIST",
                   help=f"comma-separated sections to run, of {','.join(SECTIONS)}. Default: all")
    p.add_argument("--policies", default=None, metavar="LIST",
                   help="comma-separated mixing policies to check (default: every one the package has)")
    p.add_argument("--losses", default=None, metavar="LIST",
                   help="comma-separated losses to check (default: every one the package has)")
    p.set_defaults(func=_cmd_doctor)
