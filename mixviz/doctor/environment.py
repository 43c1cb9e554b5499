"""Section 1: what is installed and what the device is."""

from __future__ import annotations

import importlib
import os
import platform
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import torch

from mixviz.doctor.report import Check, run_check

__all__ = ["device_info", "cpu_name", "package_versions", "checks"]

# (distribution name, import name, needed): what mixviz uses besides torch.
PACKAGES = (
    ("torchvision", "torchvision", True),
    ("numpy", "numpy", True),
    ("pandas", "pandas", True),
    ("matplotlib", "matplotlib", True),
    ("seaborn", "seaborn", True),
    ("scikit-learn", "sklearn", True),
    ("tqdm", "tqdm", True),
    ("captum", "captum", True),
    ("torchmetrics", "torchmetrics", True),
    ("PyMaxflow", "maxflow", True),
    ("gco-wrapper", "gco", False),
)


def device_info(device: torch.device) -> dict[str, Any]:
    """Name, memory and library versions of ``device`` (and the host's CPU count)."""
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
                            "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "platform": platform.platform()}
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        nccl = None
        if hasattr(torch.cuda, "nccl"):
            try:
                version = torch.cuda.nccl.version()
                nccl = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
            except Exception:  # noqa: BLE001 -- a build without NCCL
                nccl = None
        info.update(device_name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", gpus=torch.cuda.device_count(),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(), nccl=nccl,
                    bf16=torch.cuda.is_bf16_supported())
    else:
        info.update(device_name=cpu_name(), cuda=torch.version.cuda, cudnn=None, nccl=None)
    return info


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else the machine type."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def package_versions() -> list[dict[str, Any]]:
    """One row per package mixviz uses: installed version, importable, needed."""
    rows = []
    for dist, module, needed in PACKAGES:
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = None
        try:
            importlib.import_module(module)
            imports = True
        except Exception:  # noqa: BLE001 -- any import failure is reported, not raised
            imports = False
        rows.append({"package": dist, "version": version, "imports": imports, "needed": needed})
    return rows


def checks(device: torch.device) -> Iterator[Check]:
    def versions() -> tuple[str, str, dict[str, Any]]:
        info = device_info(device)
        parts = [f"torch {info['torch']}", f"Python {info['python']}", f"{info['cpu_cores']} CPU cores",
                 f"{info['torch_threads']} torch thread(s)"]
        if device.type == "cuda":
            parts += [f"{info['device_name']} ({info['memory_gib']} GiB, sm {info['capability']})",
                      f"CUDA {info['cuda']}", f"cuDNN {info['cudnn']}", f"NCCL {info['nccl']}"]
        return "info", ", ".join(parts), info

    yield run_check("environment", "torch, device and host", versions)

    def packages() -> Check:
        rows = package_versions()
        missing = [r["package"] for r in rows if r["needed"] and not r["imports"]]
        status = "fail" if missing else "pass"
        detail = (f"missing or broken: {', '.join(missing)}" if missing
                  else "every needed package imports (gco-wrapper is optional)")
        return Check("environment", "packages", status, detail, data={"packages": rows}, table=rows)

    yield run_check("environment", "packages", packages)
