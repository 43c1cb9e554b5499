"""The run store: a config's hash -> ``runs/<id>/``.

Each run directory holds ``config.json``, ``history.csv`` (one row per epoch),
``checkpoint.pt`` (written atomically every epoch) and, once the run has
finished, ``metrics.json`` -- its presence marks a finished run.
:func:`load_or_train` trains a config once and loads it afterwards, so
plotting code and notebooks never train twice; an interrupted run is resumed
from its last checkpoint.

The store's root is ``runs/`` in the current directory, or ``$MIXVIZ_RUNS``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mixviz.train import CHECKPOINT, Run, TrainConfig, fit

__all__ = ["config_id", "default_root", "run_dir", "is_finished", "load_run", "load_or_train"]


def default_root() -> Path:
    """``$MIXVIZ_RUNS`` if set, else ``./runs``."""
    return Path(os.environ.get("MIXVIZ_RUNS", "runs"))


def config_id(config: TrainConfig) -> str:
    """A readable, stable id: ``<dataset>-<model>-<policy>-<loss>-s<seed>-<hash>``.

    The hash covers every field that changes the result
    (:meth:`TrainConfig.identity`), as canonical JSON.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    blob = json.dumps(config.identity(), sort_keys=True, default=str).encode()
    digest = hashlib.sha256(blob).hexdigest()[:12]
    return f"{config.dataset}-{config.model}-{config.policy}-{config.loss}-s{config.seed}-{digest}"


def run_dir(config: TrainConfig, root: str | os.PathLike | None = None) -> Path:
    return Path(root if root is not None else default_root()) / config_id(config)


def is_finished(path: str | os.PathLike) -> bool:
    path = Path(path)
    return (path / "metrics.json").exists() and (path / CHECKPOINT).exists()


def _nan(value: Any) -> Any:
    return math.nan if value is None else value


def load_run(path: str | os.PathLike, device: str | torch.device = "cpu") -> Run:
    """Load a finished run: its config, model weights, history and metrics,
    and the trained state of a policy that learns (AutoMix's mixer, in eval
    mode, as ``Run.policy_state``; ``Run.mixer`` is what to mix with)."""
    from mixviz import data, losses, mixing, models

    path = Path(path)
    if not is_finished(path):
        raise FileNotFoundError(f"{path} holds no finished run (metrics.json and {CHECKPOINT} are needed)")
    config = TrainConfig.from_dict(json.loads((path / "config.json").read_text()))
    ckpt = torch.load(path / CHECKPOINT, map_location=device, weights_only=False)
    train_set = data.load(config.dataset, "train", root=config.data_root, **config.dataset_options)
    model = models.build(config.model, train_set.num_classes, tuple(train_set.in_shape), mean=train_set.mean,
                         std=train_set.std, **config.model_options)
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    policy_state = mixing.build_state(config.policy, model, **config.policy_options)
    if policy_state is not None:
        policy_state.load_state_dict(ckpt["policy_state"])
        policy_state.to(device).eval()
    criterion = losses.build(config.loss, num_classes=train_set.num_classes, **config.loss_options)
    criterion.load_state_dict(ckpt["criterion"])
    metrics = {k: _nan(v) for k, v in json.loads((path / "metrics.json").read_text()).items()}
    history = pd.read_csv(path / "history.csv")
    return Run(config=config, model=model, history=history, metrics=metrics, path=path, criterion=criterion,
               policy_state=policy_state)


def load_or_train(config: TrainConfig, root: str | os.PathLike | None = None, *,
                  retrain: bool = False, device: str | torch.device | None = None) -> Run:
    """Return the finished run of ``config`` from the store, training it first
    if needed (resuming an interrupted run from its checkpoint).

    ``retrain=True`` discards a finished run and trains again.  The returned
    model lives on ``device`` (default: the device it was trained on when
    freshly trained, the CPU when loaded).
    """
    path = run_dir(config, root)
    if is_finished(path) and not retrain:
        return load_run(path, device=device or "cpu")
    if retrain:
        for name in ("metrics.json", CHECKPOINT):
            if (path / name).exists():
                (path / name).unlink()
    run = fit(replace(config, out_dir=str(path)), resume=True)
    if device is not None:
        run.model.to(device)
        if run.policy_state is not None:  # AutoMix's mixer goes with its classifier
            run.policy_state.to(device)
    return run
