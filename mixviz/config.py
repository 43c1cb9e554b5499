"""What defines a training run (:class:`TrainConfig`) and what one gives
back (:class:`Run`).  :mod:`mixviz.train` trains a config; :mod:`mixviz.runs`
stores a run under the hash of its config.  Both names are also importable
from :mod:`mixviz.train`.

The rules of the semi-supervised fields (:func:`check_semi_fields`,
:func:`is_semi`, :data:`SEMI_FIELDS`) live here with the fields they check, so
that the config needs nothing of :mod:`mixviz.semi`, which trains them."""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mixviz._extras import require

require("pandas")  # the 'analysis' extra: an ImportError here names the pip install line
import pandas as pd  # noqa: E402
from torch import nn

from mixviz._validation import check_choice, check_positive

__all__ = ["TrainConfig", "Run", "OPTIMIZERS", "SCHEDULERS", "AMP_MODES", "LOSSES", "REVISIONS", "SEMI_MODES",
           "TEACHERS", "SEMI_FIELDS", "is_semi", "check_tau", "check_semi_fields"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("cosine", "none")
AMP_MODES = ("auto", "bf16", "off")
LOSSES = ("ce", "mixup_ce", "dm", "midpoint")
SEMI_MODES = ("none", "fixmatch")
TEACHERS = ("ema", "student")
# TrainConfig fields that only matter on the semi-supervised path.
SEMI_FIELDS = ("semi", "labels_per_class", "mu", "tau", "lambda_u", "teacher", "ema_momentum")
# Mixed terms need a policy that mixes a labelled batch with a second batch (L x U); mixup does.
SEMI_POLICIES = ("none", "mixup")
# Data sets with an in-memory image training split (the others hold points or read folders lazily).
IMAGE_SETS = ("digits", "clutter", "cifar10", "cifar100", "stl10")


#: Revisions of the policies and losses whose behaviour changed for the same config, so that the run store
#: never serves a run trained with the old behaviour as a current one.  A name absent here is at its first
#: revision and leaves the identity (and the ids of runs stored before) unchanged.  Revision 2: DM gives unmixed
#: rows (smaller share <= 1e-3) the mixup CE; ResizeMix, GridMix and SaliencyMix follow the authors' code.
REVISIONS: dict[str, dict[str, int]] = {"policy": {"resizemix": 2, "gridmix": 2, "saliencymix": 2},
                                        "loss": {"dm": 2}}


@dataclass
class TrainConfig:
    """Everything that defines a training run.

    Two configs that are equal train the same run; :func:`mixviz.runs.config_id`
    hashes the fields that change the result (not ``progress``, ``out_dir``,
    ``num_workers``, ``data_root`` or ``download``).

    Semi-supervised training (:mod:`mixviz.semi`): ``labels_per_class`` keeps
    that many labels per class (the rest of the training split is used
    without labels, or not at all with ``semi="none"``); ``semi="fixmatch"``
    adds FixMatch's loss on ``mu`` unlabelled images per labelled one, with
    pseudo-labels kept at confidence ``>= tau`` and weight ``lambda_u``, from
    the ``teacher`` (``"ema"`` of the weights with ``ema_momentum``, or the
    ``"student"``); ``policy="mixup"`` with ``loss="mixup_ce"`` or ``"dm"``
    adds the mixed labelled and labelled x pseudo-labelled terms.
    """

    dataset: str = "clutter"
    model: str = "smallcnn"
    policy: str = "none"
    loss: str = "ce"
    alpha: float = 1.0
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    scheduler: str = "cosine"
    warmup_epochs: int = 0
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    augment: bool | None = None
    eval_policy: str = "auto"
    eval_alpha: float = 1.0
    eval_every: int = 1            # evaluate (test metrics, memorisation) every N epochs and at the last one
    dataset_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    policy_options: dict[str, Any] = field(default_factory=dict)
    loss_options: dict[str, Any] = field(default_factory=dict)
    out_dir: str | None = None
    data_root: str | None = None
    download: bool = False
    num_workers: int = 2
    progress: bool = True
    semi: str = "none"
    labels_per_class: int | None = None
    mu: int = 7
    tau: float = 0.95
    lambda_u: float = 1.0
    teacher: str = "ema"
    ema_momentum: float = 0.999

    # Fields that do not change what is trained: left out of the run id.
    NOT_IDENTITY = ("out_dir", "data_root", "download", "num_workers", "progress")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field; raise ``ValueError``/``TypeError`` naming it."""
        from mixviz import data, mixing, models

        check_choice("dataset", self.dataset, data.available())
        check_choice("model", self.model, models.available())
        check_choice("policy", self.policy, mixing.available())
        check_choice("loss", self.loss, LOSSES)
        check_positive("alpha", self.alpha)
        check_positive("epochs", self.epochs, integer=True)
        check_positive("batch_size", self.batch_size, integer=True)
        check_positive("lr", self.lr)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_positive("momentum", self.momentum, allow_zero=True)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_choice("scheduler", self.scheduler, SCHEDULERS)
        check_positive("warmup_epochs", self.warmup_epochs, allow_zero=True, integer=True)
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs must be < epochs ({self.epochs}), got {self.warmup_epochs}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "mps", "cuda") or self.device.startswith("cuda:")
        ):
            raise ValueError(f"device must be 'auto', 'cpu', 'mps', 'cuda' or 'cuda:N'; got {self.device!r}")
        check_choice("amp", self.amp, AMP_MODES)
        if self.augment is not None and not isinstance(self.augment, bool):
            raise TypeError(f"augment must be True, False or None (the dataset's default), got {self.augment!r}")
        if self.eval_policy != "auto":
            check_choice("eval_policy", self.eval_policy, mixing.available())
            if mixing.policy_info(self.eval_policy).state is not None:
                raise ValueError(f"eval_policy must be a policy without a learned state, got "
                                 f"{self.eval_policy!r} (evaluation mixes with the classifier only)")
        check_positive("eval_alpha", self.eval_alpha)
        check_positive("eval_every", self.eval_every, integer=True)
        for name in ("dataset_options", "model_options", "policy_options", "loss_options"):
            if not isinstance(getattr(self, name), dict):
                raise TypeError(f"{name} must be a dict, got {type(getattr(self, name)).__name__}")
        check_positive("num_workers", self.num_workers, allow_zero=True, integer=True)
        check_semi_fields(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """The fields that decide the result (what the run store hashes).  The
        semi-supervised fields count only on that path (``labels_per_class``
        or ``semi`` set), so fully supervised runs keep their earlier ids."""
        skip = set(self.NOT_IDENTITY) | (set() if is_semi(self) else set(SEMI_FIELDS))
        identity = {k: v for k, v in asdict(self).items() if k not in skip}
        revision = {kind: REVISIONS[kind][name] for kind, name in (("policy", self.policy), ("loss", self.loss))
                    if name in REVISIONS[kind]}
        if revision:
            identity["revision"] = revision
        return identity

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        return cls(**values)


def is_semi(config: Any) -> bool:
    """True when ``config`` trains on a labelled subset (``labels_per_class``) or with ``semi`` set."""
    return config.semi != "none" or config.labels_per_class is not None


def check_tau(tau: Any) -> None:
    """``tau``, the confidence a pseudo-label needs, is a number in (0, 1]."""
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real):
        raise TypeError(f"tau must be a number in (0, 1], got {type(tau).__name__}")
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"tau must lie in (0, 1] (the confidence a pseudo-label needs), got {tau!r}")


def check_semi_fields(config: Any) -> None:
    """Check the semi-supervised fields of a TrainConfig; ``ValueError``/``TypeError`` naming the field."""
    check_choice("semi", config.semi, SEMI_MODES)
    k = config.labels_per_class
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(f"labels_per_class must be an int >= 1 or None, got {type(k).__name__}")
        if k < 1:
            raise ValueError(f"labels_per_class must be >= 1 (or None: every label), got {k}")
    if isinstance(config.mu, bool) or not isinstance(config.mu, int):
        raise TypeError(f"mu must be an int >= 1 (unlabelled images per labelled image), got {config.mu!r}")
    if config.mu < 1:
        raise ValueError(f"mu must be >= 1 (unlabelled images per labelled image), got {config.mu}")
    check_tau(config.tau)
    check_positive("lambda_u", config.lambda_u, allow_zero=True)
    check_choice("teacher", config.teacher, TEACHERS)
    m = config.ema_momentum
    if isinstance(m, bool) or not isinstance(m, numbers.Real):
        raise TypeError(f"ema_momentum must be a number in [0, 1), got {type(m).__name__}")
    if not 0.0 <= m < 1.0:
        raise ValueError(f"ema_momentum must lie in [0, 1), got {m!r}")
    if config.semi == "fixmatch" and k is None:
        raise ValueError("semi='fixmatch' needs labels_per_class (the labels kept per class; the rest of the "
                         "training split is used without its labels)")
    if not is_semi(config):
        return
    if config.policy not in SEMI_POLICIES:
        raise ValueError(f"policy must be one of {', '.join(map(repr, SEMI_POLICIES))} for semi-supervised "
                         f"training (mixup mixes labelled images with each other and with unlabelled ones); "
                         f"got {config.policy!r}")
    allowed = ("ce",) if config.policy == "none" else ("mixup_ce", "dm")
    if config.loss not in allowed:
        raise ValueError(f"loss must be one of {', '.join(map(repr, allowed))} with policy {config.policy!r} "
                         f"in semi-supervised training; got {config.loss!r}")
    if config.dataset not in IMAGE_SETS:
        raise ValueError(f"semi-supervised training (semi / labels_per_class) needs a data set whose training "
                         f"split is held in memory as images ({', '.join(IMAGE_SETS)}); dataset "
                         f"{config.dataset!r} has none (2-D points, or pictures read from folders)")


@dataclass
class Run:
    """A trained run: the model, its per-epoch history and final metrics.

    ``policy_state`` is the learned state of the run's policy (AutoMix's
    mixer), None for other policies.
    """

    config: TrainConfig
    model: nn.Module
    history: pd.DataFrame
    metrics: dict[str, Any]
    path: Path | None = None
    criterion: nn.Module | None = None
    policy_state: nn.Module | None = None

    @property
    def mixer(self) -> nn.Module:
        """What to pass as ``model=`` to ``mixing.mix(config.policy, ...)``:
        the trained policy state when there is one, else the model."""
        return self.policy_state if self.policy_state is not None else self.model
