"""Where a run was trained: the machine record of every run.

A result on a 2-core CPU is one draw of that machine's floating point: the
same code and seed trained on another CPU of the same kind moved a single
quick run by up to 13 points (cutmix + dm, seed 0: 55.0 there, 68.0 in the
committed figures).  So every run records where it ran --
:func:`machine_info` goes into its ``metrics.json`` under ``"machine"`` (not
into its config: the run's id does not change) -- and ``results.csv`` carries
it as one short column, :func:`machine_text`.

>>> machine_text({"cpu": "Intel Xeon", "cores": 2, "threads": 1, "torch": "2.5.1", "device": "cpu"})
'Intel Xeon, 2 cores, 1 thread, torch 2.5.1, cpu'
>>> machine_text(None)
''
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__all__ = ["machine_info", "machine_text", "MACHINE_KEYS"]

#: The fields of a machine record.
MACHINE_KEYS = ("cpu", "cores", "threads", "torch", "device", "device_name")


def machine_info(device: Any = None) -> dict[str, Any]:
    """This process's machine: ``cpu`` (model name), ``cores``
    (``os.cpu_count()``), ``threads`` (``torch.get_num_threads()``: what this
    process trains with), ``torch`` (version), ``device`` (``str(device)``,
    default ``"cpu"``) and ``device_name`` (the GPU's name on CUDA, else the
    CPU's)."""
    import torch

    from mixviz.doctor.environment import cpu_name

    if device is not None and not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    dev = torch.device(device if device is not None else "cpu")
    cpu = cpu_name()
    name = cpu
    if dev.type == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(dev.index if dev.index is not None else torch.cuda.current_device())
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "device": str(dev), "device_name": name}


def machine_text(info: Mapping[str, Any] | None) -> str:
    """A machine record in one line, ``"<cpu>, <cores> cores, <threads>
    thread(s), torch <version>, <device>"`` (the GPU's name after a CUDA
    device); ``""`` for ``None`` (runs made before runs recorded it)."""
    if info is None or (isinstance(info, float) and info != info):  # a NaN cell of an older table
        return ""
    if not isinstance(info, Mapping):
        raise TypeError(f"info must be a mapping from machine_info() or None, got {type(info).__name__}")
    threads = info.get("threads")
    parts = [str(info.get("cpu", "?")), f"{info.get('cores', '?')} cores",
             f"{threads} thread{'' if threads == 1 else 's'}", f"torch {info.get('torch', '?')}"]
    device = str(info.get("device", "?"))
    if device.startswith("cuda") and info.get("device_name"):
        device += f" ({info['device_name']})"
    return ", ".join([*parts, device])
