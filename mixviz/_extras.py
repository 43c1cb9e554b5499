"""Optional dependencies: which ``pip install "mixviz[extra]"`` brings a module.

``pip install mixviz`` installs the torch-only core (:mod:`mixviz.mixing`,
:mod:`mixviz.losses`, :mod:`mixviz.models`).  The rest needs an extra:

* ``analysis``: torchvision, pandas, matplotlib, seaborn, captum,
  torchmetrics, scipy, scikit-learn -- the training loop and run store, data
  sets, metrics tables, statistics, analyses, pictures and the CLI's
  ``train | compare | figures | bench | doctor``;
* ``puzzlemix``: PyMaxflow, the graph cut of the ``puzzlemix`` policies;
* ``notebooks``, ``dev``, and ``all`` (everything).

:func:`require` imports a module or raises :class:`MissingExtraError` (an
``ImportError``) whose message names the ``pip install`` line.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRA_OF", "MissingExtraError", "require", "install_hint"]

# top-level module name -> (the extra that installs it, the package's name on PyPI)
EXTRA_OF: dict[str, tuple[str, str]] = {
    "torchvision": ("analysis", "torchvision"),
    "pandas": ("analysis", "pandas"),
    "matplotlib": ("analysis", "matplotlib"),
    "seaborn": ("analysis", "seaborn"),
    "captum": ("analysis", "captum"),
    "torchmetrics": ("analysis", "torchmetrics"),
    "scipy": ("analysis", "scipy"),
    "sklearn": ("analysis", "scikit-learn"),
    "maxflow": ("puzzlemix", "PyMaxflow"),
}


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message names the ``pip install`` line."""


def install_hint(module: str) -> str | None:
    """``'pip install "mixviz[extra]"'`` for an optional module (by its
    top-level name), or None when the module is not an optional dependency."""
    entry = EXTRA_OF.get(module.split(".")[0])
    return None if entry is None else f'pip install "mixviz[{entry[0]}]"'


def _message(module: str, feature: str | None) -> str:
    extra, package = EXTRA_OF[module.split(".")[0]]
    what = feature or f"this part of mixviz (the {extra!r} extra)"
    return f"{what} needs {package}, which is not installed: {install_hint(module)}"


def require(module: str, feature: str | None = None) -> ModuleType:
    """Import ``module`` (an optional dependency listed in :data:`EXTRA_OF`)
    and return it; :class:`MissingExtraError` naming the ``pip install`` line
    when it cannot be imported.  ``feature`` says what needs it."""
    if module.split(".")[0] not in EXTRA_OF:
        raise ValueError(f"module must be one of the optional dependencies {', '.join(EXTRA_OF)}; got {module!r}")
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(_message(module, feature), name=module) from err


def explain(err: BaseException) -> str | None:
    """The install line for an ``ImportError`` of an optional dependency
    (e.g. raised by a module that imports pandas at its top), else None."""
    if isinstance(err, MissingExtraError):
        return str(err)
    name = getattr(err, "name", None)
    if isinstance(err, ImportError) and name and install_hint(name):
        return _message(name, None)
    return None
