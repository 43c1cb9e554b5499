"""The run store: a config's hash -> ``runs/<id>/``.

Each run directory holds ``config.json``, ``history.csv`` (one row per epoch),
``checkpoint.pt`` (written atomically every epoch), the lock file ``.lock``
and, once the run has finished, ``metrics.json`` -- its presence marks a
finished run.  :func:`load_or_train` trains a config once and loads it
afterwards, so plotting code and notebooks never train twice; an interrupted
run is resumed from its last checkpoint.

Run stores get shared (a teacher hands out a ``runs/`` folder, a researcher
downloads someone's runs), so the store guards three things:

* **Loading never runs code.**  Checkpoints are read with
  ``torch.load(..., weights_only=True)`` (:func:`mixviz.ioutil.load_checkpoint`):
  a file that asks for anything beyond tensors, numbers, strings, lists and
  dicts raises :class:`UnsafeCheckpointError`, and nothing in it is run.
  :func:`load_or_train` raises it too rather than overwrite the file.
* **One trainer per run.**  :func:`load_or_train` holds an operating-system
  lock on ``runs/<id>/.lock`` (filelock's ``FileLock``: ``fcntl.flock`` on
  Linux and macOS) while it decides, trains and writes.  A second process that
  asks for the same run says once that it waits, then loads the finished run.
  The OS drops the lock when its holder dies, even by ``kill -9``, so the next
  caller takes over and resumes from the last checkpoint.  Finished runs are
  loaded without taking the lock, so a read-only store works.  Under
  ``torch.distributed`` only rank 0 takes the lock and writes; it tells the
  other ranks whether to load or to train.
* **A damaged run is trained again, not a traceback.**  A finished run whose
  files do not load (a cut ``metrics.json``, a missing ``history.csv``, a
  ``config.json`` of unknown fields, a cut checkpoint) is treated as
  unfinished, with one :class:`DamagedRunWarning` that names the folder: it is
  resumed from its checkpoint when that one is good (then finishing it takes
  no training), else trained again from scratch.

The store's root is ``runs/`` in the current directory, or ``$MIXVIZ_RUNS``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from mixviz._extras import require

require("pandas")  # the 'analysis' extra: an ImportError here names the pip install line
import pandas as pd  # noqa: E402
import torch

from mixviz.ioutil import (
    DamagedCheckpointError,
    UnsafeCheckpointError,
    atomic_write_text,
    load_checkpoint,
)
from mixviz.train import CHECKPOINT, Run, TrainConfig, _dist_info, fit

__all__ = ["config_id", "default_root", "run_dir", "is_finished", "load_run", "load_or_train",
           "UnsafeCheckpointError", "DamagedRunError", "DamagedRunWarning", "LOCK_FILE"]

LOCK_FILE = ".lock"
# What fit writes into every checkpoint; a checkpoint without them cannot be resumed.
_CHECKPOINT_KEYS = ("config", "epoch", "model", "optimizer", "scheduler", "criterion", "rng", "history")


class DamagedRunError(ValueError):
    """A file of a stored run is missing, cut short or not what mixviz writes.
    The message names the file and what is wrong with it."""


class DamagedRunWarning(UserWarning):
    """:func:`load_or_train` found a damaged run and trains it again."""


def default_root() -> Path:
    """``$MIXVIZ_RUNS`` if set, else ``./runs``."""
    return Path(os.environ.get("MIXVIZ_RUNS", "runs"))


def _canonical(config: TrainConfig) -> str:
    """The identity of ``config`` as canonical JSON (tuples and lists alike)."""
    return json.dumps(config.identity(), sort_keys=True, default=str)


def config_id(config: TrainConfig) -> str:
    """A readable, stable id: ``<dataset>-<model>-<policy>-<loss>-s<seed>-<hash>``.

    The hash covers every field that changes the result
    (:meth:`TrainConfig.identity`), as canonical JSON.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    digest = hashlib.sha256(_canonical(config).encode()).hexdigest()[:12]
    return f"{config.dataset}-{config.model}-{config.policy}-{config.loss}-s{config.seed}-{digest}"


def run_dir(config: TrainConfig, root: str | os.PathLike | None = None) -> Path:
    return Path(root if root is not None else default_root()) / config_id(config)


def is_finished(path: str | os.PathLike) -> bool:
    path = Path(path)
    return (path / "metrics.json").exists() and (path / CHECKPOINT).exists()


def _nan(value: Any) -> Any:
    return math.nan if value is None else value


# ----------------------------------------------------------------------------
# loading a finished run


def load_run(path: str | os.PathLike, device: str | torch.device = "cpu") -> Run:
    """Load a finished run: its config, model weights, history and metrics.

    Raises:
        FileNotFoundError: ``path`` holds no finished run.
        DamagedRunError: a file of the run is missing, cut short or not what
            mixviz writes (the message names it).
        UnsafeCheckpointError: the checkpoint asks for objects that mixviz
            does not load; nothing in it has been run.
        mixviz.data.DatasetNotFoundError: the run's dataset, which its model
            is built from, is not on disk.
    """
    path = Path(path)
    if not is_finished(path):
        raise FileNotFoundError(f"{path} holds no finished run (metrics.json and {CHECKPOINT} are needed)")
    return _load_finished(path, device)


def _load_finished(path: Path, device: str | torch.device, expected: TrainConfig | None = None) -> Run:
    """:func:`load_run`; with ``expected``, the stored config must be that one
    (and its ``data_root`` is where the dataset is looked for)."""
    from mixviz import data, losses, mixing, models

    config = _read_config(path, expected)
    metrics = _read_metrics(path)
    history = _read_history(path, config)
    try:
        ckpt = load_checkpoint(path / CHECKPOINT)
    except (DamagedCheckpointError, FileNotFoundError) as err:
        raise DamagedRunError(str(err)) from err
    missing = [k for k in ("model", "criterion") if k not in ckpt]
    if missing:
        raise DamagedRunError(f"{path / CHECKPOINT} lacks {', '.join(missing)}")
    data_root = expected.data_root if expected is not None else config.data_root
    try:
        train_set = data.load(config.dataset, "train", root=data_root, **config.dataset_options)
    except data.DatasetNotFoundError as err:
        raise data.DatasetNotFoundError(
            f"the run in {path} is stored, but its model is built from dataset {config.dataset!r}, "
            f"which is not here: {err}") from None
    model = models.build(config.model, train_set.num_classes, tuple(train_set.in_shape), mean=train_set.mean,
                         std=train_set.std, **config.model_options)
    criterion = losses.build(config.loss, num_classes=train_set.num_classes, **config.loss_options)
    try:
        model.load_state_dict(ckpt["model"])
        criterion.load_state_dict(ckpt["criterion"])
        policy_state = mixing.build_state(config.policy, model, **config.policy_options)  # AutoMix's mixer
        if policy_state is not None:
            if "policy_state" not in ckpt:
                raise DamagedRunError(f"{path / CHECKPOINT} lacks policy_state (the learned state of "
                                      f"policy {config.policy!r})")
            policy_state.load_state_dict(ckpt["policy_state"])
    except (RuntimeError, TypeError, AttributeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DamagedRunError(f"{path / CHECKPOINT} does not fit the model and loss of its config ({first})") from err
    model.to(device).eval()
    if policy_state is not None:
        policy_state.to(device).eval()
    return Run(config=config, model=model, history=history, metrics=metrics, path=path, criterion=criterion,
               policy_state=policy_state)


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DamagedRunError(f"{file} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DamagedRunError(f"{file} is cut short or not JSON ({err})") from None


def _read_config(path: Path, expected: TrainConfig | None) -> TrainConfig:
    file = path / "config.json"
    values = _read_json(file)
    if not isinstance(values, dict):
        raise DamagedRunError(f"{file} holds a {type(values).__name__}, not a configuration")
    try:
        config = TrainConfig.from_dict(values)
    except (ValueError, TypeError) as err:
        raise DamagedRunError(f"{file} is not a configuration this version of mixviz knows ({err})") from None
    if expected is not None and _canonical(config) != _canonical(expected):
        raise DamagedRunError(f"{file} describes another configuration than the one asked for")
    return config


def _read_metrics(path: Path) -> dict[str, Any]:
    file = path / "metrics.json"
    values = _read_json(file)
    if not isinstance(values, dict) or "test_acc" not in values:
        raise DamagedRunError(f"{file} does not hold the metrics of a finished run")
    return {k: _nan(v) for k, v in values.items()}


def _read_history(path: Path, config: TrainConfig) -> pd.DataFrame:
    file = path / "history.csv"
    try:
        raw = file.read_bytes()
        history = pd.read_csv(io.BytesIO(raw))
    except FileNotFoundError:
        raise DamagedRunError(f"{file} is missing") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DamagedRunError(f"{file} is not a table ({err})") from None
    # fit writes one row per epoch and ends every line with a newline; a cut file breaks one or the other
    epochs = history["epoch"].tolist() if "epoch" in history else []
    if not raw.endswith(b"\n") or epochs != list(range(1, config.epochs + 1)):
        raise DamagedRunError(f"{file} is cut short: it should hold one row for each of {config.epochs} epochs")
    return history


# ----------------------------------------------------------------------------
# load or train, one process at a time


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def load_or_train(config: TrainConfig, root: str | os.PathLike | None = None, *,
                  retrain: bool = False, device: str | torch.device | None = None,
                  log: Callable[[str], Any] | None = _stderr) -> Run:
    """Return the finished run of ``config`` from the store, training it first
    if needed (resuming an interrupted run from its checkpoint).

    ``retrain=True`` discards a finished run and trains again.  The returned
    model lives on ``device`` (default: the device it was trained on when
    freshly trained, the CPU when loaded).

    Only one process trains a run: the others wait for it (the lock is
    ``<run folder>/.lock``, see the module docstring) and then load what it
    stored.  ``log`` is called once with a line saying which run a caller
    waits for (default: standard error; ``None``: silent).  A damaged run is
    trained again with one :class:`DamagedRunWarning`.

    Raises:
        UnsafeCheckpointError: the run's checkpoint asks for objects that
            mixviz does not load (delete it, or pass ``retrain=True``).
        mixviz.data.DatasetNotFoundError: the run must be trained or loaded
            and its dataset is not on disk; the message names the run folder.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not isinstance(retrain, bool):
        raise TypeError(f"retrain must be a bool, got {type(retrain).__name__}")
    if log is not None and not callable(log):
        raise TypeError(f"log must be a callable taking one line of text, or None; got {type(log).__name__}")
    path = run_dir(config, root)
    rank, world = _dist_info()
    if world > 1:
        run = _load_or_train_distributed(config, path, retrain, log, rank)
    else:
        run = None
        if not retrain and is_finished(path):
            try:
                run = _load_finished(path, "cpu", expected=config)
            except DamagedRunError:
                pass  # looked at again under the lock: another process may be repairing it right now
        if run is None:
            with _run_lock(path, log):
                run = _prepare(config, path, retrain)
                if run is None:
                    run = _train(config, path, writer=True)
    if device is not None:
        run.model.to(device)
        if run.policy_state is not None:  # AutoMix's mixer goes with its classifier
            run.policy_state.to(device)
    return run


@contextlib.contextmanager
def _run_lock(path: Path, log: Callable[[str], Any] | None) -> Iterator[None]:
    """Hold the run's lock ``path/.lock``; say once (through ``log``) that we
    wait when another process holds it."""
    from filelock import FileLock, Timeout

    path.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path / LOCK_FILE))
    try:
        lock.acquire(blocking=False)
    except Timeout:
        if log is not None:
            log(f"mixviz: run {path.name} is being trained by another process; waiting for it to finish "
                f"(lock {path / LOCK_FILE})")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _prepare(config: TrainConfig, path: Path, retrain: bool) -> Run | None:
    """Under the lock: the finished run if it loads; else ``None`` after
    clearing what cannot be resumed, with one warning when something was
    damaged."""
    if retrain:
        for name in ("metrics.json", CHECKPOINT):
            (path / name).unlink(missing_ok=True)
        return None
    problems = []
    if is_finished(path):
        try:
            return _load_finished(path, "cpu", expected=config)
        except DamagedRunError as err:
            problems.append(str(err))
    elif (path / "metrics.json").exists():
        problems.append(f"{path / CHECKPOINT} is missing")
    (path / "metrics.json").unlink(missing_ok=True)  # unfinished from here on; fit writes it at the end
    if (path / CHECKPOINT).exists():
        problem = _checkpoint_problem(path, config)
        if problem is not None:
            problems.append(problem)
            (path / CHECKPOINT).unlink()
    if problems:
        action = ("resuming it from its checkpoint" if (path / CHECKPOINT).exists()
                  else "training it again from scratch")
        warnings.warn(DamagedRunWarning(f"the run in {path} is damaged: {'; '.join(problems)}. "
                                        f"Treating it as unfinished and {action}."), stacklevel=3)
        (path / "history.csv").unlink(missing_ok=True)  # rewritten from the checkpoint's history by _train
    return None


def _checkpoint_problem(path: Path, config: TrainConfig) -> str | None:
    """Why ``fit(resume=True)`` could not continue from the run's checkpoint
    (``None``: it can).  An unsafe checkpoint raises."""
    file = path / CHECKPOINT
    try:
        ckpt = load_checkpoint(file)
    except DamagedCheckpointError as err:
        return str(err)
    missing = [k for k in _CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        return f"{file} lacks {', '.join(missing)}"
    try:
        saved = TrainConfig.from_dict(ckpt["config"])
    except (ValueError, TypeError) as err:
        return f"{file} holds a configuration this version of mixviz does not know ({err})"
    if _canonical(saved) != _canonical(config):
        return f"{file} was made with another configuration"
    return None


def _train(config: TrainConfig, path: Path, *, writer: bool) -> Run:
    from mixviz import data

    try:
        run = fit(replace(config, out_dir=str(path)), resume=True)
    except data.DatasetNotFoundError as err:
        raise data.DatasetNotFoundError(f"the run in {path} must be trained, and its dataset "
                                        f"{config.dataset!r} is not here: {err}") from None
    if writer and not (path / "history.csv").exists():
        # the file fit writes every epoch; it writes none when the checkpoint was already at the last epoch
        atomic_write_text(path / "history.csv", run.history.to_csv(index=False))
    return run


def _load_or_train_distributed(config: TrainConfig, path: Path, retrain: bool,
                               log: Callable[[str], Any] | None, rank: int) -> Run:
    """:func:`load_or_train` under torch.distributed: rank 0 takes the lock,
    looks at the store and broadcasts ``"load"`` or ``"train"``; then every
    rank loads the run, or every rank calls :func:`fit` (which writes on rank
    0 only).  An error on rank 0 is broadcast too, so no rank waits forever.

    The other ranks wait in the broadcast while rank 0 waits for the lock, so
    a wait longer than the process group's timeout ends in a timeout error.
    """
    import torch.distributed as dist

    decision: list[Any] = [None]
    run = None
    with contextlib.ExitStack() as stack:
        if rank == 0:
            try:
                stack.enter_context(_run_lock(path, log))
                run = _prepare(config, path, retrain)
                decision[0] = "load" if run is not None else "train"
            except Exception as err:
                decision[0] = _portable(err)
                dist.broadcast_object_list(decision, src=0, device=_object_device())
                raise
        dist.broadcast_object_list(decision, src=0, device=_object_device())
        if isinstance(decision[0], Exception):
            raise decision[0]  # every rank fails the way rank 0 did
        if decision[0] == "load":
            return run if run is not None else _load_finished(path, "cpu", expected=config)
        return _train(config, path, writer=rank == 0)


def _portable(err: Exception) -> Exception:
    """``err`` if it survives pickling (to go to the other ranks), else a
    RuntimeError with its message."""
    import pickle

    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")


def _object_device() -> torch.device | None:
    """Where ``broadcast_object_list`` stages its bytes: this rank's GPU under
    NCCL (as :func:`fit` picks it), the CPU otherwise."""
    import torch.distributed as dist

    if dist.get_backend() != "nccl":
        return None
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", dist.get_rank() % torch.cuda.device_count())))
