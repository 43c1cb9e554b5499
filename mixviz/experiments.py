"""Named presets and the comparison grid behind ``mixviz compare``.

A preset fixes the data, the model, the optimisation and the grid of
methods; :func:`compare` trains every cell through the run store
(:func:`mixviz.runs.load_or_train`, so finished runs are reused), writes one
row per run to ``results.csv`` (atomically, after each run) and a summary
(mean and standard deviation over seeds) as CSV and Markdown.

The grid: every policy with the mixup cross-entropy and with the Decoupled
Mixup loss (DM settings per policy from :func:`mixviz.losses.dm_defaults`);
``none`` with plain cross-entropy; ``average`` with the mixup cross-entropy
(the local soft label alone) and with the midpoint loss (local + global
soft label).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from mixviz._validation import check_choice, check_frame
from mixviz.ioutil import atomic_write_text
from mixviz.train import TrainConfig

__all__ = ["Preset", "PRESETS", "preset", "methods", "grid", "result_row", "compare", "summarize",
           "summary_markdown", "dm_effects", "write_plots", "RESULT_COLUMNS"]

POLICIES = ("none", "mixup", "cutmix", "fmix", "resizemix", "average", "saliencymix", "puzzlemix")

RESULT_COLUMNS = ["dataset", "model", "policy", "loss", "seed", "test_acc", "ece", "nll", "mixed_top1",
                  "mixed_top2", "sec_per_epoch", "epochs", "alpha", "eval_policy", "run_id"]

# Mixing ratios of the authors' CIFAR-100 baselines (as in OpenMixup's configs).
CIFAR_ALPHA = {"mixup": 1.0, "cutmix": 0.2, "fmix": 0.2, "resizemix": 1.0, "gridmix": 0.2,
               "saliencymix": 0.2, "puzzlemix": 1.0, "average": 1.0, "smoothmix": 0.2, "none": 1.0}


@dataclass(frozen=True)
class Preset:
    """A named experiment: base configs per dataset and the grid to run."""

    name: str
    description: str
    bases: dict[str, dict[str, Any]]            # dataset -> TrainConfig fields
    seeds: tuple[int, ...] = (0,)
    policies: tuple[str, ...] = POLICIES
    alpha: dict[str, float] = field(default_factory=dict)  # per policy; missing -> base alpha
    dm_kind: str = "cifar"
    # True: DM rows use the alpha of dm_defaults (the authors' DM runs: 0.2 on CIFAR);
    # False: the same alpha as the policy's mixup-CE row, so only the loss differs.
    dm_alpha: bool = False


# Clutter with shapes: learnable in a few CPU epochs (digit glyphs need 10+ epochs of a wider CNN).  At 12
# epochs plain training reaches about 90 % and the mixing policies are still climbing (they need more epochs
# to catch up: the full preset trains 15 on twice the data); 8 epochs left them 20-40 points behind.
_QUICK_CLUTTER = dict(model="smallcnn", epochs=12, batch_size=64, lr=0.05, weight_decay=5e-4,
                      dataset_options=dict(n_train=1536, n_test=512, objects="shapes"), model_options=dict(width=16))
_FULL_CLUTTER = dict(model="smallcnn", epochs=15, batch_size=64, lr=0.05, weight_decay=5e-4,
                     dataset_options=dict(n_train=3000, n_test=1000, objects="shapes"), model_options=dict(width=16))
_FULL_DIGITS = dict(model="smallcnn", epochs=15, batch_size=64, lr=0.05, weight_decay=5e-4,
                    dataset_options=dict(size=16), model_options=dict(width=16))
_CIFAR100 = dict(model="preact_resnet18", epochs=200, batch_size=100, lr=0.1, momentum=0.9, weight_decay=1e-4,
                 scheduler="cosine", optimizer="sgd")

PRESETS: dict[str, Preset] = {
    "quick": Preset("quick", "clutter (shapes), smallcnn (width 16), 12 epochs, 1 seed: a few minutes on a laptop CPU",
                    bases={"clutter": _QUICK_CLUTTER}, seeds=(0,)),
    "full": Preset("full", "clutter and digits, smallcnn (width 16), 15 epochs, 3 seeds: about an hour on a CPU",
                   bases={"clutter": _FULL_CLUTTER, "digits": _FULL_DIGITS}, seeds=(0, 1, 2)),
    "gpu-cifar100": Preset("gpu-cifar100", "CIFAR-100, PreAct-ResNet-18, the authors' settings: SGD 0.1, momentum "
                           "0.9, wd 1e-4, cosine, batch 100, 200 epochs, alpha and DM settings per policy (DM runs "
                           "with alpha 0.2, as the authors')",
                           bases={"cifar100": _CIFAR100}, seeds=(0, 1, 2), alpha=CIFAR_ALPHA, dm_alpha=True),
}


def preset(name: str) -> Preset:
    check_choice("preset", name, PRESETS)
    return PRESETS[name]


def methods(policy: str) -> list[str]:
    """The losses the grid pairs with ``policy``."""
    if policy == "none":
        return ["ce"]
    if policy == "average":
        return ["mixup_ce", "midpoint"]
    return ["mixup_ce", "dm"]


def method_config(base: dict[str, Any], dataset: str, policy: str, loss: str, seed: int,
                  alpha: float | None = None, dm_kind: str = "cifar", **overrides: Any) -> TrainConfig:
    """The config of one cell of the grid."""
    from mixviz.losses import dm_defaults

    fields_ = dict(base, dataset=dataset, policy=policy, loss=loss, seed=seed, progress=False)
    if alpha is not None:
        fields_["alpha"] = alpha
    if loss == "dm":
        dm = dm_defaults(policy, dm_kind)
        fields_["loss_options"] = {k: dm[k] for k in ("eta", "mode", "lam_power")}
    fields_.update(overrides)
    return TrainConfig(**fields_)


def grid(p: Preset, *, seeds: tuple[int, ...] | None = None, policies: tuple[str, ...] | None = None,
         datasets: tuple[str, ...] | None = None, **overrides: Any) -> list[TrainConfig]:
    """Every config of preset ``p`` (optionally fewer seeds/policies/datasets)."""
    from mixviz.losses import dm_defaults

    for pol in policies or ():
        check_choice("policies", pol, p.policies)
    for ds in datasets or ():
        check_choice("datasets", ds, p.bases)
    out = []
    for dataset, base in p.bases.items():
        if datasets and dataset not in datasets:
            continue
        for seed in seeds if seeds is not None else p.seeds:
            for policy in policies or p.policies:
                for loss in methods(policy):
                    alpha = p.alpha.get(policy)
                    if loss == "dm" and p.dm_alpha:
                        alpha = dm_defaults(policy, p.dm_kind)["alpha"]
                    out.append(method_config(base, dataset, policy, loss, seed, alpha, p.dm_kind, **overrides))
    return out


def result_row(run: Any, run_id: str) -> dict[str, Any]:
    m, c = run.metrics, run.config
    return {"dataset": c.dataset, "model": c.model, "policy": c.policy, "loss": c.loss, "seed": c.seed,
            "test_acc": m["test_acc"], "ece": m["ece"], "nll": m["nll"], "mixed_top1": m["mixed_top1"],
            "mixed_top2": m["mixed_top2"], "sec_per_epoch": m["sec_per_epoch"], "epochs": m["epochs"],
            "alpha": c.alpha, "eval_policy": m.get("eval_policy", ""), "run_id": run_id}


def _key(row: dict[str, Any] | pd.Series) -> tuple:
    return (row["dataset"], row["policy"], row["loss"], int(row["seed"]))


def compare(p: Preset | str, out: str | os.PathLike, *, resume: bool = False,
            runs_root: str | os.PathLike | None = None, seeds: tuple[int, ...] | None = None,
            policies: tuple[str, ...] | None = None, datasets: tuple[str, ...] | None = None,
            log: Any = print, plots: bool = True, **overrides: Any) -> pd.DataFrame:
    """Run the grid of preset ``p``; write ``results.csv``, ``summary.csv`` and
    ``summary.md`` in ``out``; return the results table.

    Rows are appended (atomically: the whole file is rewritten to a temp file
    and renamed) as runs finish, so a grid killed at any point loses no finished
    run and leaves no partial row.  ``resume=True`` keeps the rows already in
    ``out/results.csv`` and trains only what is missing; without it an existing
    results file is an error (so results of two grids never mix silently).
    With ``plots`` (default) it also draws :func:`write_plots`.
    """
    from mixviz.runs import config_id, load_or_train

    p = preset(p) if isinstance(p, str) else p
    out = Path(out)
    results_path = out / "results.csv"
    rows: list[dict[str, Any]] = []
    if results_path.exists():
        if not resume:
            raise ValueError(f"{results_path} exists; pass resume=True (--resume) to continue that grid "
                             f"or choose another out directory")
        rows = pd.read_csv(results_path).to_dict("records")
    done = {_key(r) for r in rows}
    configs = grid(p, seeds=seeds, policies=policies, datasets=datasets, **overrides)
    for i, config in enumerate(configs, 1):
        key = (config.dataset, config.policy, config.loss, config.seed)
        if key in done:
            continue
        t0 = time.perf_counter()
        run = load_or_train(config, runs_root)
        rows.append(result_row(run, config_id(config)))
        done.add(key)
        _write_table(pd.DataFrame(rows, columns=RESULT_COLUMNS), results_path)
        log(f"[{i}/{len(configs)}] {config.dataset} {config.policy}+{config.loss} seed {config.seed}: "
            f"acc {run.metrics['test_acc']:.3f}, {time.perf_counter() - t0:.1f} s")
    results = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    if results.empty:
        return results
    wanted = {(c.dataset, c.policy, c.loss, c.seed) for c in configs}
    results = results[[_key(r) in wanted for _, r in results.iterrows()]].reset_index(drop=True)
    summary = summarize(results)
    _write_table(summary, out / "summary.csv")
    atomic_write_text(out / "summary.md", summary_markdown(summary))
    if plots:
        write_plots(results, out)
    return results


def write_plots(results: pd.DataFrame, out: str | os.PathLike) -> list[Path]:
    """``<out>/accuracy_vs_time_<dataset>.png`` for each data set of
    ``results``: test accuracy against seconds per epoch, one point per method
    (mean ± std over seeds; static, dynamic and DM in different marks), drawn by
    :func:`mixviz.viz.method_comparison` and written atomically."""
    import matplotlib.pyplot as plt

    from mixviz import viz
    from mixviz.figures import DPI, PNG_COLORS

    check_frame("results", results, ["dataset", "policy", "loss", "sec_per_epoch", "test_acc"])
    paths = []
    for dataset, table in results.groupby("dataset", sort=False):
        fig = viz.method_comparison(table.reset_index(drop=True))
        try:
            paths.append(viz.save(fig, Path(out) / f"accuracy_vs_time_{dataset}.png", dpi=DPI, colors=PNG_COLORS))
        finally:
            plt.close(fig)
    return paths


def _write_table(table: pd.DataFrame, path: Path) -> None:
    atomic_write_text(path, table.to_csv(index=False))


SUMMARY_METRICS = ("test_acc", "ece", "nll", "mixed_top1", "mixed_top2", "sec_per_epoch")


def kind_of(policy: str, loss: str) -> str:
    """'DM' for the Decoupled Mixup loss, 'baseline' for no mixing, else the
    policy's kind (static/dynamic)."""
    from mixviz.mixing import available

    if loss == "dm":
        return "DM"
    if policy == "none":
        return "baseline"
    return available().get(policy, "static")


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds per (dataset, policy, loss),
    and seconds per epoch relative to mixup + mixup CE on the same data."""
    check_frame("results", results, ["dataset", "policy", "loss", *SUMMARY_METRICS])
    if results.empty:
        raise ValueError("results is empty: nothing to summarise")
    g = results.groupby(["dataset", "policy", "loss"], sort=False)
    table = g[list(SUMMARY_METRICS)].agg(["mean", "std"])
    table.columns = [f"{m}_{s}" for m, s in table.columns]
    table["seeds"] = g.size()
    table = table.reset_index()
    table["kind"] = [kind_of(p, l) for p, l in zip(table["policy"], table["loss"])]
    ref = table[(table["policy"] == "mixup") & (table["loss"] == "mixup_ce")].set_index("dataset")
    table["time_vs_mixup"] = [
        row.sec_per_epoch_mean / ref.loc[row.dataset, "sec_per_epoch_mean"] if row.dataset in ref.index else float("nan")
        for row in table.itertuples()]
    return table


def _pm(mean: float, std: float, scale: float = 1.0, digits: int = 1) -> str:
    if pd.isna(mean):
        return "–"
    if pd.isna(std):
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def dm_effects(summary: pd.DataFrame) -> pd.DataFrame:
    """DM minus the mixup cross-entropy on the same policy and data set, per
    metric, with the standard error of that difference over seeds
    (``sqrt(std_dm**2 / n_dm + std_ce**2 / n_ce)``; NaN with one seed).

    Columns: ``dataset``, ``policy``, then ``<metric>`` and ``<metric>_se`` for
    test_acc, ece, mixed_top1, mixed_top2 (fractions, like the summary).
    """
    check_frame("summary", summary, ["dataset", "policy", "loss", "seeds"] +
                [f"{m}_{s}" for m in ("test_acc", "ece", "mixed_top1", "mixed_top2") for s in ("mean", "std")])
    rows = []
    for (dataset, policy), g in summary.groupby(["dataset", "policy"], sort=False):
        by_loss = g.set_index("loss")
        if not {"dm", "mixup_ce"} <= set(by_loss.index):
            continue
        dm, ce = by_loss.loc["dm"], by_loss.loc["mixup_ce"]
        row: dict[str, Any] = {"dataset": dataset, "policy": policy}
        for m in ("test_acc", "ece", "mixed_top1", "mixed_top2"):
            row[m] = dm[f"{m}_mean"] - ce[f"{m}_mean"]
            row[f"{m}_se"] = math.sqrt(dm[f"{m}_std"] ** 2 / dm["seeds"] + ce[f"{m}_std"] ** 2 / ce["seeds"])
        rows.append(row)
    return pd.DataFrame(rows)


def _diff(value: float, se: float) -> str:
    text = f"{round(100 * value, 1) + 0.0:+.1f}".replace("-", "−")  # + 0.0: no "-0.0"
    return text if pd.isna(se) else f"{text} ± {100 * se:.1f}"


def _best(table: pd.DataFrame, kind: str) -> str:
    rows = table[table["kind"] == kind]
    if rows.empty:
        return "–"
    r = rows.loc[rows["test_acc_mean"].idxmax()]
    return f"{r['policy']} + {r['loss']} {100 * r['test_acc_mean']:.1f} %"


def summary_markdown(summary: pd.DataFrame) -> str:
    """The summary as Markdown tables, one per dataset (accuracies in %), each
    followed by DM's effect per policy (:func:`dm_effects`) and the best test
    accuracy of each kind of method."""
    effects = dm_effects(summary)
    parts = []
    for dataset, table in summary.groupby("dataset", sort=False):
        seeds = int(table["seeds"].max())
        parts.append(f"**{dataset}** (mean ± std over {seeds} seed{'s' if seeds > 1 else ''})\n")
        parts.append("| method | kind | test acc % | ECE % | NLL | mixed Top-1 % | mixed Top-2 % | s/epoch | time vs mixup |")
        parts.append("|---|---|---|---|---|---|---|---|---|")
        for r in table.itertuples():
            parts.append(
                f"| {r.policy} + {r.loss} | {r.kind} | {_pm(r.test_acc_mean, r.test_acc_std, 100)} | "
                f"{_pm(r.ece_mean, r.ece_std, 100)} | {_pm(r.nll_mean, r.nll_std, 1, 3)} | "
                f"{_pm(r.mixed_top1_mean, r.mixed_top1_std, 100)} | {_pm(r.mixed_top2_mean, r.mixed_top2_std, 100)} | "
                f"{_pm(r.sec_per_epoch_mean, r.sec_per_epoch_std, 1, 2)} | "
                f"{'–' if pd.isna(r.time_vs_mixup) else f'{r.time_vs_mixup:.2f}x'} |")
        parts.append("")
        mine = effects[effects["dataset"] == dataset] if len(effects) else effects
        if len(mine):
            spread = mine["test_acc_se"].notna().any()
            parts.append("DM minus mixup CE on the same policy, in points " +
                         ("(± standard error of the difference over seeds):\n" if spread else
                          "(one seed: no spread):\n"))
            parts.append("| policy | test acc | ECE | mixed Top-1 | mixed Top-2 |")
            parts.append("|---|---|---|---|---|")
            for r in mine.itertuples():
                parts.append(f"| {r.policy} | {_diff(r.test_acc, r.test_acc_se)} | {_diff(r.ece, r.ece_se)} | "
                             f"{_diff(r.mixed_top1, r.mixed_top1_se)} | {_diff(r.mixed_top2, r.mixed_top2_se)} |")
            parts.append("")
        kinds = [k for k in ("baseline", "static", "dynamic", "DM") if (table["kind"] == k).any()]
        if kinds:
            parts.append("Best test accuracy by kind: " + "; ".join(f"{k}: {_best(table, k)}" for k in kinds) + ".")
            parts.append("")
    return "\n".join(parts)


# ----------------------------------------------------------------------------
# the command


def _cmd_compare(args: argparse.Namespace) -> int:
    from mixviz.semi import experiments as semi_experiments

    if args.preset in semi_experiments.SEMI_PRESETS:  # semi-supervised presets: methods x label counts x seeds
        return semi_experiments.run_compare_command(args)
    p = preset(args.preset)
    overrides = {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.device is not None:
        overrides["device"] = args.device
    seeds = tuple(range(args.seeds)) if args.seeds is not None else None
    out = args.out or f"results/{p.name}"
    results = compare(p, out, resume=args.resume, runs_root=args.runs, seeds=seeds,
                      policies=tuple(args.policies) if args.policies else None,
                      datasets=tuple(args.datasets) if args.datasets else None, **overrides)
    if results.empty:
        print("the grid is empty (no seeds, policies or data sets selected): nothing was run or written")
        return 0
    print(summary_markdown(summarize(results)))
    print(f"results in {out}/results.csv, summary in {out}/summary.md")
    return 0


def register_command(sub: Any) -> None:
    p = sub.add_parser(
        "compare", help="train a grid of policies x losses x seeds and tabulate the results",
        description="Train every method of a preset (policies with the mixup cross-entropy and with the "
                    "Decoupled Mixup loss, the average policy with the midpoint loss) through the run store, "
                    "so finished runs are reused, and write results.csv (one row per run), summary.csv and "
                    "summary.md (mean ± std over seeds).")
    from mixviz.semi.experiments import SEMI_PRESETS

    presets = {**PRESETS, **SEMI_PRESETS}
    p.add_argument("--preset", default="quick", choices=list(presets),
                   help="; ".join(f"{k}: {v.description}" for k, v in presets.items()))
    p.add_argument("--out", default=None, help="output directory (default results/<preset>)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted grid in --out")
    p.add_argument("--runs", default=None, help="root of the run store (default runs/ or $MIXVIZ_RUNS)")
    p.add_argument("--seeds", type=int, default=None, help="use seeds 0..N-1 instead of the preset's")
    p.add_argument("--policies", nargs="+", default=None, help="only these policies")
    p.add_argument("--datasets", nargs="+", default=None, help="only these data sets of the preset")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--device", default=None, help="override the device (default auto)")
    p.add_argument("--workers", type=int, default=1,
                   help="semi presets: train in this many processes of one thread each (default 1)")
    p.set_defaults(func=_cmd_compare)
