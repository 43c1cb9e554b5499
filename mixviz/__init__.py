"""mixviz: make mixup training visible.

Mixing policies (:mod:`mixviz.mixing`), the Decoupled Mixup loss and its
relatives (:mod:`mixviz.losses`), offline and online data (:mod:`mixviz.data`),
models (:mod:`mixviz.models`), a training loop (:mod:`mixviz.train`), a run
store (:mod:`mixviz.runs`), metrics, saliency and pictures.

``import mixviz`` is cheap (it does not import torch): the subpackages
and :func:`validation` load on first use (``mixviz.mixing`` after
``import mixviz`` works, PEP 562).  ``pip install
mixviz`` brings the torch-only core (mixing, losses, models); the others
need ``pip install "mixviz[analysis]"`` (see :mod:`mixviz._extras`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# the modules reachable as attributes of the package, loaded when first used
SUBMODULES = ("analysis", "augment", "batches", "bench", "cli", "config", "data", "doctor", "experiments",
              "figures", "ioutil", "losses", "metrics", "mixing", "models", "report", "runs", "saliency", "semi",
              "stats", "train", "viz")

__all__ = ["validation", "value_checks_enabled", "__version__"]  # not the subpackages: * stays cheap

if TYPE_CHECKING:  # for type checkers and IDEs: the lazy attributes are these
    from mixviz import losses, mixing, models  # noqa: F401
    from mixviz._validation import validation, value_checks_enabled  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in ("validation", "value_checks_enabled"):  # they import torch: loaded on first use
        from mixviz import _validation

        value = getattr(_validation, name)
        globals()[name] = value
        return value
    if name in SUBMODULES:
        return importlib.import_module(f"mixviz.{name}")  # sets the attribute, so this runs once per name
    raise AttributeError(f"module 'mixviz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(SUBMODULES) | {"validation", "value_checks_enabled"})
