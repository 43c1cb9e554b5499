"""File input and output.

Atomic writes: write a temporary file beside the target, flush it to disk,
then rename it over the target, so a reader (or a run killed half-way) never
sees a partial file.

Safe checkpoints: :func:`save_checkpoint` checks that a checkpoint holds only
tensors, numbers, strings, lists and dicts before it writes it, and
:func:`load_checkpoint` reads it with ``torch.load(..., weights_only=True)``,
so that opening a run store that came from elsewhere can never run code from
its files.  Every ``torch.load`` of mixviz goes through :func:`load_checkpoint`.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def _atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results and figures are meant to be read
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return _atomic(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if isinstance(value, float) and value != value:
        return None  # NaN is not JSON
    return value


def atomic_write_json(path: str | os.PathLike, value: Any) -> Path:
    return atomic_write_text(path, json.dumps(_jsonable(value), indent=2, sort_keys=True) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    return _atomic(path, lambda f: torch.save(obj, f))


# ----------------------------------------------------------------------------
# checkpoints: saved only in types that load without running code

class UnsafeCheckpointError(ValueError):
    """A checkpoint file holds objects that mixviz does not load.

    mixviz reads checkpoints with ``torch.load(..., weights_only=True)``: only
    tensors, numbers, strings, ``None``, lists, tuples and dicts are rebuilt,
    and nothing in the file can run code.  A file that asks for any other
    object (a class, a function such as ``os.system``) is refused with this
    error; it names the file and the objects it asked for.
    """

    def __init__(self, path: str | os.PathLike, objects: list[str] | None = None) -> None:
        self.path = Path(path)
        self.objects = sorted(objects or [])
        named = f" ({', '.join(self.objects)})" if self.objects else ""
        super().__init__(
            f"{self.path} holds objects that mixviz does not load{named}: a checkpoint may hold only tensors, "
            f"numbers, strings, lists and dicts. It was not written by mixviz or has been altered; loading it "
            f"with plain pickle could run code. Delete the file (or its run folder) to train the run again.")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.path, self.objects)


class DamagedCheckpointError(ValueError):
    """A checkpoint file cannot be read: empty, truncated, or not written by
    ``torch.save``.  The message names the file and what went wrong."""


# Leaf types that torch.load(weights_only=True) rebuilds without extra allowances.
_SAFE_LEAVES = (type(None), bool, int, float, str, torch.dtype, torch.device, torch.Size)
_SAFE_TENSORS = (torch.Tensor, torch.nn.Parameter)


def check_checkpoint_types(obj: Any, name: str = "checkpoint") -> None:
    """Check that ``obj`` is made only of types a checkpoint may hold.

    Allowed: ``None``, ``bool``, ``int``, ``float``, ``str``, plain tensors
    (``torch.Tensor``, ``nn.Parameter``; not subclasses), ``torch.dtype``,
    ``torch.device``, ``torch.Size``, and ``list``, ``tuple``, ``dict`` and
    ``OrderedDict`` of these (dict keys: ``str`` or ``int``).  These are the
    types ``torch.load(..., weights_only=True)`` rebuilds by default, so a
    checkpoint that passes this check always loads in :func:`load_checkpoint`.

    :func:`save_checkpoint` calls it before writing.  State that is kept in
    other types must be converted first: a numpy array with
    ``torch.from_numpy`` or ``.tolist()``, a numpy scalar with ``.item()``, a
    dataclass with ``dataclasses.asdict``.  (Allowing another type would need
    ``torch.serialization.add_safe_globals`` with exactly that type and an
    entry in ``_SAFE_LEAVES`` here.)

    Raises:
        TypeError: naming the first entry of another type, e.g.
            ``checkpoint['rng']['numpy']['key'] is a numpy.ndarray``.
    """
    kind = type(obj)
    if kind in _SAFE_LEAVES or kind in _SAFE_TENSORS:
        return
    if kind in (list, tuple):
        for i, item in enumerate(obj):
            check_checkpoint_types(item, f"{name}[{i}]")
        return
    if kind in (dict, OrderedDict):
        for key, value in obj.items():
            if type(key) not in (str, int):
                raise TypeError(f"{name} has a key {key!r} of type {_type_name(key)}; checkpoint dict keys must be "
                                f"str or int")
            check_checkpoint_types(value, f"{name}[{key!r}]")
        return
    raise TypeError(f"{name} is a {_type_name(obj)}; a checkpoint may hold only tensors, numbers, strings, None, "
                    f"lists, tuples and dicts (so that it loads with torch.load(weights_only=True)). Convert it "
                    f"first, e.g. a numpy array with torch.from_numpy or .tolist(), a numpy scalar with .item()")


def _type_name(obj: Any) -> str:
    kind = type(obj)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def save_checkpoint(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write checkpoint ``obj`` to ``path`` atomically, after
    :func:`check_checkpoint_types` has checked that it will load again."""
    if not isinstance(obj, dict):
        raise TypeError(f"obj must be a dict, got {type(obj).__name__}")
    check_checkpoint_types(obj)
    return atomic_torch_save(obj, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint safely: ``torch.load(path, weights_only=True)``,
    tensors on the CPU (``load_state_dict`` copies them to the model's device).

    Raises:
        FileNotFoundError: there is no file at ``path``.
        UnsafeCheckpointError: the file asks for objects other than the types
            of :func:`check_checkpoint_types`; nothing in it has been run.
        DamagedCheckpointError: the file is empty, truncated or not a
            checkpoint, or holds something other than a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        objects = _unsafe_globals(path, err)
        if objects:
            # from None: torch's own message suggests weights_only=False, which is what must not be done here
            raise UnsafeCheckpointError(path, objects) from None
        raise DamagedCheckpointError(f"{path} is damaged or not a checkpoint ({_first_line(err)})") from err
    except (RuntimeError, EOFError) as err:  # what torch's zip reader raises for a cut or garbled file
        raise DamagedCheckpointError(f"{path} is damaged or not a checkpoint ({_first_line(err)})") from err
    if not isinstance(obj, dict):
        raise DamagedCheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    return obj


def _unsafe_globals(path: Path, err: Exception) -> list[str]:
    """The classes and functions a refused checkpoint asked for (empty when
    it was refused for another reason, e.g. a garbled pickle)."""
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        if found:
            return list(found)
    except Exception:  # not a zip checkpoint, or an older torch
        pass
    return re.findall(r"GLOBAL ([\w.]+)", str(err))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def repository_root(start: str | os.PathLike | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the current
    directory) that holds ``pyproject.toml`` or ``.git``: the repository a
    user works in, or None outside any."""
    here = Path.cwd() if start is None else Path(start)
    for folder in (here.resolve(), *here.resolve().parents):
        if (folder / "pyproject.toml").is_file() or (folder / ".git").exists():
            return folder
    return None


def shown_path(path: str | os.PathLike, start: str | os.PathLike | None = None) -> str:
    """``path`` as printed for a reader (and kept in a notebook's output):
    relative to ``start`` (default: the current directory) when it lies
    inside ``start`` or inside the repository that holds ``start``
    (``runs/x`` from the root, ``../runs/x`` from ``notebooks/``), so that the
    output does not carry the folders of the machine that made it; else
    under ``~`` when in the home folder; else absolute.

    >>> shown_path("/tmp/a/b.png", start="/tmp/a")
    'b.png'
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    here = (Path.cwd() if start is None else Path(start)).resolve()
    target = Path(os.path.abspath(Path(path).expanduser()))
    for base in (here, repository_root(here)):
        if base is not None and target.is_relative_to(base):
            return os.path.relpath(target, here)
    home = Path.home()
    if target.is_relative_to(home):
        return str(Path("~") / target.relative_to(home))
    return str(target)
