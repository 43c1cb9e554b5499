"""The ``mixviz`` command: ``mixviz train | reproduce | compare | figures | slides | bench | doctor``.

``mixviz --help`` and ``mixviz --version`` answer at once: they import
neither torch nor pandas.  A command's own parser (and the modules behind
it) is built only when that command is named.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main", "build_parser", "COMMANDS"]

# name -> one-line help; `mixviz --help` lists these without importing the modules behind them
COMMANDS = {
    "train": "train one configuration (cached in the run store)",
    "reproduce": "train cells of a committed comparison again and check that its claims hold",
    "compare": "train a grid of regimes x methods x seeds and tabulate the results",
    "figures": "train what is missing and write every picture and its numbers",
    "slides": "write a 16:9 PDF deck of the pictures a lecturer shows",
    "bench": "time the training step of every method on this machine",
    "doctor": "check that this install works on this machine, and how fast it trains",
}


class _Formatter(argparse.HelpFormatter):
    """Descriptions are not %-formatted by argparse (help strings are): show a
    description's escaped ``%%`` as ``%``."""

    def _format_text(self, text: str) -> str:
        if "%%" in text and "%(prog)" not in text:
            text = text.replace("%%", "%")
        return super()._format_text(text)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


def _option(text: str) -> tuple[str, Any]:
    """Parse ``key=value``; the value as a Python literal when it is one."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        parsed: Any = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value
    return key.strip(), parsed


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    from mixviz.semi import SEMI_MODES, TEACHERS
    from mixviz.train import AMP_MODES, LOSSES, OPTIMIZERS, SCHEDULERS, TrainConfig

    d = TrainConfig.__dataclass_fields__
    g = p.add_argument_group("what to train")
    g.add_argument("--dataset", default=d["dataset"].default,
                   help="data set: moons, spirals, digits, clutter (offline); cifar10, cifar100, stl10, imagefolder "
                        "(need files or --download). Default: %(default)s")
    g.add_argument("--model", default=d["model"].default,
                   help="mlp (2-D points), smallcnn, preact_resnet18, or a torchvision ResNet name. Default: %(default)s")
    g.add_argument("--policy", default=d["policy"].default,
                   help="mixing policy: none, mixup, cutmix, fmix, resizemix, gridmix, smoothmix, average, "
                        "manifold (Manifold Mixup, mixes inside the network), saliencymix, puzzlemix, "
                        "automix (a learned mixer; its options, e.g. --policy-option momentum=0.999, set up its "
                        "state). Default: %(default)s")
    g.add_argument("--loss", default=d["loss"].default, choices=LOSSES,
                   help="ce: plain cross-entropy; mixup_ce: mixup cross-entropy; dm: Decoupled Mixup; "
                        "midpoint: soft labels for the average policy. Default: %(default)s")
    g.add_argument("--alpha", type=float, default=d["alpha"].default,
                   help="Beta(alpha, alpha) parameter of the mixing ratio. Default: %(default)s")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=d["epochs"].default, help="passes over the data. Default: %(default)s")
    g.add_argument("--batch-size", type=int, default=d["batch_size"].default,
                   help="samples per step (global, over all processes). Default: %(default)s")
    g.add_argument("--lr", type=float, default=d["lr"].default, help="peak learning rate. Default: %(default)s")
    g.add_argument("--optimizer", default=d["optimizer"].default, choices=OPTIMIZERS,
                   help="Default: %(default)s (with Nesterov momentum)")
    g.add_argument("--momentum", type=float, default=d["momentum"].default, help="SGD momentum. Default: %(default)s")
    g.add_argument("--weight-decay", type=float, default=d["weight_decay"].default,
                   help="weight decay on weights (not on biases and norms). Default: %(default)s")
    g.add_argument("--scheduler", default=d["scheduler"].default, choices=SCHEDULERS,
                   help="learning-rate schedule, stepped every batch. Default: %(default)s")
    g.add_argument("--warmup-epochs", type=int, default=d["warmup_epochs"].default,
                   help="linear warm-up epochs. Default: %(default)s")
    g.add_argument("--label-noise", type=float, default=None, metavar="P",
                   help="flip each training label with probability P to another class (noisy-label training; the "
                        "test split stays clean). Same as --dataset-option label_noise=P")
    g.add_argument("--noise-kind", default=None, choices=("symmetric", "pair"),
                   help="symmetric: a uniformly drawn other class; pair: the next class (c -> c + 1 mod C). "
                        "Default: symmetric")
    g.add_argument("--eval-every", type=int, default=d["eval_every"].default, metavar="N",
                   help="evaluate every N epochs (and after the last). Default: %(default)s")
    g.add_argument("--seed", type=int, default=d["seed"].default,
                   help="seed of every random draw (data order, augmentation, mixing). Default: %(default)s")
    g = p.add_argument_group("semi-supervised training (FixMatch; + mixup / DM with --policy mixup)")
    g.add_argument("--labels-per-class", type=int, default=d["labels_per_class"].default,
                   help="keep this many labels per class (drawn by --seed); the rest of the training split is "
                        "used without its labels (--semi fixmatch) or not at all (--semi none). Default: every label")
    g.add_argument("--semi", default=d["semi"].default, choices=SEMI_MODES,
                   help="fixmatch: pseudo-labels on unlabelled images (needs --labels-per-class); none: "
                        "supervised only. Default: %(default)s")
    g.add_argument("--mu", type=int, default=d["mu"].default,
                   help="unlabelled images per labelled image in a step. Default: %(default)s")
    g.add_argument("--tau", type=float, default=d["tau"].default,
                   help="confidence a pseudo-label needs to be used, in (0, 1]. Default: %(default)s")
    g.add_argument("--lambda-u", type=float, default=d["lambda_u"].default,
                   help="weight of the unlabelled (consistency) loss. Default: %(default)s")
    g.add_argument("--teacher", default=d["teacher"].default, choices=TEACHERS,
                   help="who makes the pseudo-labels: ema (moving average of the weights) or the student. "
                        "Default: %(default)s")
    g.add_argument("--ema-momentum", type=float, default=d["ema_momentum"].default,
                   help="momentum of the ema teacher, in [0, 1). Default: %(default)s")
    g = p.add_argument_group("options passed to the parts (repeatable KEY=VALUE)")
    g.add_argument("--policy-option", action="append", type=_option, default=[], metavar="KEY=VALUE",
                   help="e.g. --policy-option correct_lam=False")
    g.add_argument("--loss-option", action="append", type=_option, default=[], metavar="KEY=VALUE",
                   help="e.g. --loss-option eta=0.1 --loss-option mode=less")
    g.add_argument("--dataset-option", action="append", type=_option, default=[], metavar="KEY=VALUE",
                   help="e.g. --dataset-option n_train=2000")
    g.add_argument("--model-option", action="append", type=_option, default=[], metavar="KEY=VALUE",
                   help="e.g. --model-option width=64")
    g = p.add_argument_group("where and how")
    g.add_argument("--device", default=d["device"].default,
                   help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps. Default: %(default)s")
    g.add_argument("--amp", default=d["amp"].default, choices=AMP_MODES,
                   help="bf16 autocast: auto = on for CUDA only. Default: %(default)s")
    g.add_argument("--no-augment", dest="augment", action="store_false", default=None,
                   help="turn off random crop and flip (on by default for natural-image sets)")
    g.add_argument("--data-root", default=None, help="where online data sets live (default ~/.cache/mixviz/data)")
    g.add_argument("--download", action="store_true", help="download CIFAR/STL-10 if missing")
    g.add_argument("--num-workers", type=int, default=d["num_workers"].default,
                   help="DataLoader workers for folder data sets. Default: %(default)s")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def _config_from_args(args: argparse.Namespace) -> Any:
    from mixviz.train import TrainConfig

    return TrainConfig(
        dataset=args.dataset, model=args.model, policy=args.policy, loss=args.loss, alpha=args.alpha,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
        momentum=args.momentum, weight_decay=args.weight_decay, scheduler=args.scheduler,
        warmup_epochs=args.warmup_epochs, seed=args.seed, device=args.device, amp=args.amp,
        augment=args.augment, policy_options=dict(args.policy_option), loss_options=dict(args.loss_option),
        dataset_options=_dataset_options(args), model_options=dict(args.model_option), eval_every=args.eval_every,
        data_root=args.data_root, download=args.download, num_workers=args.num_workers, progress=args.progress,
        semi=args.semi, labels_per_class=args.labels_per_class, mu=args.mu, tau=args.tau, lambda_u=args.lambda_u,
        teacher=args.teacher, ema_momentum=args.ema_momentum,
    )


def _dataset_options(args: argparse.Namespace) -> dict[str, Any]:
    """--dataset-option KEY=VALUE pairs, with --label-noise / --noise-kind on top."""
    options = dict(args.dataset_option)
    if args.label_noise is not None:
        options["label_noise"] = args.label_noise
    if args.noise_kind is not None:
        options["noise_kind"] = args.noise_kind
    return options


def _cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from mixviz import runs
    from mixviz.train import _dist_info, fit

    config = _config_from_args(args)
    distributed = _init_distributed()
    try:
        if args.out is not None:
            run = fit(replace(config, out_dir=args.out), resume=args.resume)
        else:  # under torchrun too: rank 0 takes the run's lock and decides for every rank
            run = runs.load_or_train(config, args.runs, retrain=args.retrain)
        rank, _ = _dist_info()
        if rank == 0:
            shown = {k: run.metrics[k] for k in ("test_acc", "nll", "ece", "mixed_top1", "mixed_top2",
                                                  "sec_per_epoch", "epochs", "device", "n_labelled", "mask_rate",
                                                  "pseudo_acc") if k in run.metrics}
            print(json.dumps(shown, indent=2, default=str))
            if run.path is not None:
                from mixviz.ioutil import shown_path

                print(f"run stored in {shown_path(run.path)}")
    finally:
        if distributed:
            import torch.distributed as dist

            dist.destroy_process_group()
    return 0


def _init_distributed() -> bool:
    """Join the process group when started by torchrun (WORLD_SIZE > 1)."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    return True


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from mixviz.experiments.reproduce import run_command

    return run_command(args)


def _add_reproduce(sub: Any) -> None:
    p = sub.add_parser(
        "reproduce", help=COMMANDS["reproduce"],
        description="Re-train cells of RESULTS_DIR/results.csv (a seeded random sample, or regimes x methods; "
                    "default every row) from the same configs into a fresh run store, recompute every paired "
                    "difference of RESULTS_DIR/effects.csv whose two methods were re-run, and write "
                    "RESULTS_DIR/reproduce.md: this machine, each claim's committed and re-run verdict, and the "
                    "per-run deviation of test accuracy. A starred claim agrees when the re-run has the same "
                    "sign, an unstarred one when the re-run interval includes 0. Exit code 1, naming the "
                    "claim, when a starred claim flips sign; else 0.")
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="a folder written by mixviz compare")
    p.add_argument("--sample", type=int, default=None, metavar="N",
                   help="re-train N rows drawn at random (seeded by --seed) instead of regimes x methods")
    p.add_argument("--regimes", nargs="+", default=None, help="only these regimes (commas or spaces)")
    p.add_argument("--methods", nargs="+", default=None,
                   help="only these methods, as in the method column, e.g. none+ce,mixup+mixup_ce,cutmix+dm")
    p.add_argument("--seed", type=int, default=0, help="seed of the --sample draw. Default: %(default)s")
    p.add_argument("--jobs", type=int, default=1,
                   help="worker processes, as for mixviz compare (2 on a 2-core CPU). Default: %(default)s")
    p.add_argument("--runs", default=None,
                   help="the fresh run store to train into (default RESULTS_DIR/reproduce/runs; never the store "
                        "the results came from)")
    p.add_argument("--preset", default=None,
                   help="the preset that made the results (default: the folder's name, e.g. results/full -> full)")
    p.add_argument("--stored-runs", default=None,
                   help="a run store to read a run's config.json from when the preset no longer builds it (read "
                        "only; default runs/ or $MIXVIZ_RUNS)")
    p.set_defaults(func=_cmd_reproduce)


def _version() -> str:
    from mixviz import __version__  # the package's __init__ imports nothing heavy

    return __version__


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``mixviz`` parser.  With ``command`` (one of :data:`COMMANDS`) only
    that command's parser is built in full (importing what it needs); the
    others are listed by name.  ``command=""`` builds none (``--help``,
    ``--version``); None builds every one."""
    parser = _Parser(
        prog="mixviz",
        description="Train classifiers with mixup policies and the Decoupled Mixup loss, compare them, "
                    "and draw the pictures that show what each does.")
    parser.add_argument("--version", action="version", version=f"mixviz {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    full = set(COMMANDS) if command is None else {command} & set(COMMANDS)
    for name, text in COMMANDS.items():
        if name not in full:
            sub.add_parser(name, help=text, add_help=False)
        elif name == "train":
            _register_train(sub)
        elif name == "reproduce":
            _add_reproduce(sub)
        else:
            import importlib

            module = importlib.import_module({"compare": "mixviz.experiments"}.get(name, f"mixviz.{name}"))
            module.register_command(sub)
    return parser


def _register_train(sub: Any) -> None:
    p = sub.add_parser("train", help=COMMANDS["train"],
                       description="Train one configuration. Runs are stored under runs/<id>/ (or $MIXVIZ_RUNS) "
                                   "keyed by a hash of the configuration: a finished run is loaded, not trained "
                                   "again, and an interrupted one resumes from its last checkpoint. Under torchrun "
                                   "(torchrun --nproc_per_node N -m mixviz train ...) it trains with "
                                   "DistributedDataParallel.")
    _add_train_arguments(p)
    g = p.add_argument_group("run store")
    g.add_argument("--runs", default=None, help="root of the run store (default runs/ or $MIXVIZ_RUNS)")
    g.add_argument("--retrain", action="store_true", help="train again even if the run is stored")
    g.add_argument("--out", default=None,
                   help="train into this directory instead of the run store (checkpoints, history, metrics)")
    g.add_argument("--resume", action="store_true", help="with --out: continue from the checkpoint there")
    p.set_defaults(func=_cmd_train)


def _command_of(argv: Sequence[str]) -> str:
    """The command named in ``argv`` (its first word not an option), or ""."""
    word = next((a for a in argv if not a.startswith("-")), "")
    return word if word in COMMANDS else ""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from mixviz._extras import explain

    try:
        parser = build_parser(_command_of(argv))
    except ImportError as err:  # a command whose optional dependencies are missing
        message = explain(err)
        if message is None:
            raise
        print(f"mixviz: error: {message}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"mixviz {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ImportError as err:
        message = explain(err)
        if message is None:
            raise
        print(f"mixviz {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
