"""``mixviz figures``: every picture of the package, regenerated from trained runs.

Two steps, so that plotting never trains:

1. :func:`collect` calls :func:`mixviz.runs.load_or_train` for every run the
   pictures need: the clutter grid of a preset (the same configs as
   ``mixviz compare``, :func:`mixviz.experiments.grid`, so both commands share
   the run store) and small MLPs on the 2-D toy sets (:func:`toy_configs`).
   Finished runs are loaded, missing ones trained.
2. :func:`make_figures` computes what to draw with :mod:`mixviz.analysis`
   (calibration, mixed Top-1/Top-2, label mismatch, saliency, decision
   boundaries), draws it with :mod:`mixviz.viz`, and writes one PNG per
   picture kind plus ``summary.md`` / ``summary.json`` with the numbers.

Every evaluation on mixed samples uses one fixed mixed set: the clutter test
set mixed with ``generator = torch.Generator().manual_seed(EVAL_SEED)``, the
same for every method, so differences between methods come from the models
and not from the draw (:func:`mixviz.analysis.fixed_mixed_batch`).

>>> from mixviz import figures
>>> sorted(figures.FIGURE_KINDS)[:3]
['decision_boundary', 'label_mismatch', 'method_comparison']
>>> [name for name, _ in figures.TOY_METHODS]
['none+ce', 'mixup+mixup_ce', 'mixup+dm', 'average+midpoint']
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mixviz import analysis
from mixviz._validation import check_choice, check_positive
from mixviz.analysis import MISMATCH_SHARE, MISMATCH_VISIBLE, method_name
from mixviz.ioutil import shown_path
from mixviz.report import SUMMARY_COLUMNS, results_table, summary, summary_markdown
from mixviz.train import Run, TrainConfig

__all__ = ["FIGURE_KINDS", "TOY_DATASETS", "TOY_METHODS", "TOY_BASE", "SALIENCY_ROWS", "FigureRuns", "figure_presets",
           "clutter_configs", "clutter_config", "toy_point_policies", "toy_methods", "toy_configs", "collect",
           "clutter_eval_set", "mixed_sample_figures", "GALLERY_NOTES", "results_table", "summary",
           "summary_markdown", "make_figures", "register_command"]

FIGURE_KINDS: dict[str, tuple[str, ...]] = {
    "mixed_samples": ("mixed_samples", "mixed_samples_dynamic"),
    "decision_boundary": ("decision_boundary_moons", "decision_boundary_spirals"),
    "reliability": ("reliability",),
    "top1_top2": ("top1_top2",),
    "label_mismatch": ("label_mismatch",),
    "saliency": ("saliency",),
    "training_curves": ("training_curves",),
    "method_comparison": ("method_comparison",),
    "memorisation": ("memorisation",),
}

TOY_DATASETS = ("moons", "spirals")
#: The toy methods as (name, (policy, loss)); a cut-and-paste policy is added
#: by :func:`toy_methods` when the mixing registry has one for 2-D points.
TOY_METHODS: tuple[tuple[str, tuple[str, str]], ...] = (
    ("none+ce", ("none", "ce")),
    ("mixup+mixup_ce", ("mixup", "mixup_ce")),
    ("mixup+dm", ("mixup", "dm")),
    ("average+midpoint", ("average", "midpoint")),
)
#: Settings of the toy runs: an MLP on 1000 points, 600 Adam steps; a few
#: seconds per run on a laptop CPU.
TOY_BASE: dict[str, Any] = dict(model="mlp", epochs=30, batch_size=50, lr=0.01, optimizer="adam",
                                weight_decay=0.0, alpha=1.0, dataset_options=dict(n=1000),
                                model_options=dict(hidden=64, depth=3))

#: Rows of the saliency grid (the methods present in the preset are drawn).
SALIENCY_ROWS = ("none+ce", "mixup+mixup_ce", "cutmix+mixup_ce", "puzzlemix+mixup_ce", "cutmix+dm")
#: Test points drawn over each decision-boundary panel (all 1000 would hide the shading).
BOUNDARY_POINTS = 300


# --------------------------------------------------------------------------- configs and runs


def figure_presets() -> list[str]:
    """The presets with a figure regime on the clutter set (the pictures need its object masks)."""
    from mixviz.experiments import PRESETS

    return [name for name, p in PRESETS.items()
            if p.figure_regime is not None and p.dataset_of(p.figure_regime) == "clutter"]


def _preset(name: str) -> Any:
    from mixviz.experiments import preset

    p = preset(name)
    if name not in figure_presets():
        raise ValueError(f"preset must be one of {', '.join(figure_presets())} (a preset with a clutter regime for "
                         f"the pictures, whose object masks they need); got {name!r}")
    return p


def clutter_configs(preset: str) -> list[TrainConfig]:
    """The runs of the figure regime of ``preset``: :func:`mixviz.experiments.grid`
    restricted to that regime, so ``mixviz compare`` and ``mixviz figures`` share runs."""
    from mixviz.experiments import grid

    p = _preset(preset)
    return grid(p, regimes=(p.figure_regime,))


def clutter_config(preset: str, method: str, seed: int | None = None) -> TrainConfig:
    """The clutter config of ``method`` (``"<policy>+<loss>"``) in ``preset``,
    for ``seed`` (default: the preset's first seed)."""
    configs = clutter_configs(preset)
    seed = min(c.seed for c in configs) if seed is None else seed
    found = {method_name(c): c for c in configs if c.seed == seed}
    if method not in found:
        raise ValueError(f"method must be one of {', '.join(found)} for preset {preset!r} and seed {seed}; "
                         f"got {method!r}")
    return found[method]


def toy_point_policies() -> list[str]:
    """Mask (cut-and-paste) policies of the registry that accept 2-D points
    (``has_mask`` and not ``needs_images``).  Empty today: CutMix and its
    relatives cut image regions, which 2-D points do not have."""
    from mixviz.mixing import POLICIES

    return [name for name, info in POLICIES.items() if info.has_mask and not info.needs_images]


def toy_methods() -> list[tuple[str, tuple[str, str]]]:
    """:data:`TOY_METHODS` plus ``<policy>+mixup_ce`` for the first policy of
    :func:`toy_point_policies`, if any."""
    out = list(TOY_METHODS)
    extra = toy_point_policies()
    if extra:
        out.append((f"{extra[0]}+mixup_ce", (extra[0], "mixup_ce")))
    return out


def toy_configs(preset: str) -> dict[str, dict[str, TrainConfig]]:
    """``{dataset: {method: TrainConfig}}`` for the decision-boundary pictures:
    :data:`TOY_BASE` on moons and spirals for every method of :func:`toy_methods`
    (DM with the preset's DM settings)."""
    from mixviz.experiments import method_config

    p = _preset(preset)
    return {dataset: {name: method_config(TOY_BASE, dataset, policy, loss, 0, dm_kind=p.dm_kind)
                      for name, (policy, loss) in toy_methods()}
            for dataset in TOY_DATASETS}


@dataclass
class FigureRuns:
    """What :func:`collect` returns: trained runs, nothing computed yet.

    Attributes:
        preset: the preset's name.
        clutter: ``{method: Run}`` of the preset's first seed (the pictures).
        clutter_all: every clutter run, all seeds (the tables: mean ± 95 % interval).
        toy: ``{dataset: {method: Run}}`` for the decision boundaries.
    """

    preset: str
    clutter: dict[str, Run] = field(default_factory=dict)
    clutter_all: list[Run] = field(default_factory=list)
    toy: dict[str, dict[str, Run]] = field(default_factory=dict)


PARTS = ("clutter", "toy")


def collect(preset: str = "quick", runs_root: str | os.PathLike | None = None, *,
            parts: Sequence[str] = PARTS, log: Callable[[str], Any] | None = print, jobs: int | None = None) -> FigureRuns:
    """Load (or train, once) every run the pictures of ``preset`` need.

    Args:
        preset: a preset of :func:`figure_presets` (``"quick"`` or ``"full"``).
        runs_root: the run store (default ``$MIXVIZ_RUNS`` or ``./runs``).
        parts: ``"clutter"`` (the grid of the preset on the clutter set) and/or
            ``"toy"`` (MLPs on moons and spirals).
        log: called with one line per run (None: silent).
        jobs: worker processes that train the missing runs first
            (None: :func:`mixviz.experiments.default_jobs`, 2 on a CPU-only
            machine with two or more cores, else 1)
            (:func:`mixviz.experiments.train_cells`; 2 on a 2-core laptop);
            then every run is loaded from the store.

    Returns:
        A :class:`FigureRuns`; models are on the CPU when loaded from the store.
    """
    from mixviz.runs import is_finished, load_or_train, run_dir

    _preset(preset)
    from mixviz.experiments import default_jobs

    jobs = default_jobs() if jobs is None else jobs
    check_positive("jobs", jobs, integer=True)
    if isinstance(parts, str) or not parts:
        raise ValueError(f"parts must be a non-empty sequence of {', '.join(PARTS)}; got {parts!r}")
    for part in parts:
        check_choice("parts", part, PARTS)
    wanted: list[tuple[str, str, TrainConfig]] = []
    if "clutter" in parts:
        wanted += [("clutter", method_name(c), c) for c in clutter_configs(preset)]
    if "toy" in parts:
        wanted += [(dataset, name, c) for dataset, cs in toy_configs(preset).items() for name, c in cs.items()]
    seconds: dict[int, float] = {}  # trained in worker processes: index in wanted -> seconds
    if jobs > 1:
        from mixviz.experiments import Cell, train_cells

        missing = {i: Cell(group, name, c) for i, (group, name, c) in enumerate(wanted)
                   if not is_finished(run_dir(c, runs_root))}
        where = {id(cell): i for i, cell in missing.items()}
        if len(missing) > 1:
            def trained(cell: Any, run: Any, took: float) -> None:
                seconds[where[id(cell)]] = took
                if log is not None:
                    log(f"trained {cell.regime} {cell.method} seed {cell.config.seed} in {took:.1f} s "
                        f"({len(seconds)}/{len(missing)}, {jobs} at a time)")

            train_cells(list(missing.values()), runs_root, jobs, trained)
    out = FigureRuns(preset=preset)
    first_seed = min((c.seed for _, _, c in wanted if c.dataset == "clutter"), default=0)
    for i, (group, name, config) in enumerate(wanted):
        stored = is_finished(run_dir(config, runs_root))
        t0 = time.perf_counter()
        run = load_or_train(config, runs_root)
        if log is not None:
            took = seconds.get(i, time.perf_counter() - t0)
            done = "loaded" if stored and i not in seconds else "trained"
            log(f"[{i + 1}/{len(wanted)}] {group} {name} seed {config.seed}: {done} in {took:.1f} s, "
                f"test acc {run.metrics['test_acc']:.3f}")
        if group == "clutter":
            out.clutter_all.append(run)
            if config.seed == first_seed:
                out.clutter[name] = run
        else:
            out.toy.setdefault(group, {})[name] = run
    return out


# --------------------------------------------------------------------------- evaluation data and the runs table


def clutter_eval_set(preset: str, size: int | None = None) -> Any:
    """The clutter test split of ``preset`` (images, labels, object masks), as
    its runs were evaluated on; with ``size``, the same scenes generated at
    ``size`` pixels (the generator draws positions and sizes as shares of the
    side: same objects, classes, colours and backgrounds, more pixels)."""
    from mixviz import data

    p = _preset(preset)
    options = dict(p.bases[p.figure_regime].get("dataset_options", {}))
    if size is not None:
        check_positive("size", size, integer=True)
        options["size"] = size
    return data.load("clutter", "test", **options)


#: What the large gallery's figures say about how each dynamic policy was drawn at 64 px.
GALLERY_NOTES = {
    "saliencymix": "SaliencyMix: model-free saliency (OpenCV fine-grained) on the {side} px image",
    "puzzlemix": "PuzzleMix draws its block grid from {{2, 4, 8, 16}} per batch: one column each; saliency: the "
                 "input gradient of the {model} px model\non the image area-downsampled to {model} px (spread back "
                 "over {k} x {k} pixels)",
    "puzzlemix_lite": "PuzzleMix lite: the same saliency as PuzzleMix",
}


def mixed_sample_figures(images: Any, labels: Any, policies: Sequence[str], *, models: dict[str, Any] | None = None,
                         model_size: int | None = None, class_names: Sequence[str] | None = None,
                         rows: int = analysis.GALLERY_ROWS) -> dict[str, Any]:
    """The mixed-sample gallery at the images' size, one figure per group of
    :func:`mixviz.analysis.gallery_groups` (static, dynamic): ``{file stem:
    Figure}`` with stems ``mixed_samples`` (static), ``mixed_samples_dynamic``, ...

    ``images``, ``labels``: the source batch (e.g. the first 16 images of
    :func:`clutter_eval_set` at :data:`mixviz.analysis.GALLERY_SIZE`);
    ``models``: ``{policy: module}`` for the dynamic policies, trained at
    ``model_size`` pixels (:func:`mixviz.analysis.large_gallery_batches`).
    Policies with a learned state are left out when the sizes differ, and
    the dynamic figure's title says so.  PuzzleMix gets one column per block
    grid of :data:`mixviz.analysis.PUZZLEMIX_BLOCKS` (the set it draws from).
    """
    from mixviz import viz

    side = int(images.shape[-1])
    small = model_size is not None and model_size != side
    shown, left_out = analysis.gallery_policies(policies) if small else (list(policies), [])
    if not shown:
        raise ValueError(f"policies must hold a policy that can be drawn at {side} px; got {list(policies)}")
    batches = analysis.large_gallery_batches(images, labels, shown, models=models,
                                             model_size=model_size if small else None)
    groups = analysis.gallery_groups(batches)
    scale = model_size if small else side
    notes = [GALLERY_NOTES[p].format(model=scale, k=side // scale, side=side) for p in shown
             if p in GALLERY_NOTES and (small or p == "saliencymix")]
    notes += [f"{p}: left out (its learned mixer reads the features of its {model_size} px model)" for p in left_out]
    noted = next((g for g in groups if g.startswith("dynamic")), list(groups)[-1])  # the figure with the notes
    out: dict[str, Any] = {}
    for group, columns in groups.items():
        lines = [f"Mixed samples, {group} policies, {side} px images  (λ = share of image a in the picture and in "
                 f"the label)", *(notes if group == noted else [])]
        fig = viz.mixed_samples_gallery(columns, class_names=class_names, n=rows, title="\n".join(lines))
        out["mixed_samples" if group == "static" else f"mixed_samples_{group.replace(' ', '_')}"] = fig
    return out


# --------------------------------------------------------------------------- all figures


def _save(fig: Any, path: Path, written: dict[str, Path]) -> None:
    import matplotlib.pyplot as plt

    from mixviz import viz

    written[path.stem] = viz.save(fig, path, dpi=viz.DPI, colors=viz.PNG_COLORS)
    plt.close(fig)


def make_figures(runs: FigureRuns, out: str | os.PathLike, *, log: Callable[[str], Any] | None = print,
                 saliency_limit: int | None = 256) -> dict[str, Path]:
    """Compute and write every picture of :data:`FIGURE_KINDS` and the summary.

    Nothing is trained: ``runs`` comes from :func:`collect` (with both parts).
    Writes ``<out>/<name>.png`` (atomically), ``summary.md`` and
    ``summary.json``; returns ``{file stem: path}``.
    """
    from mixviz import data, viz
    from mixviz.ioutil import atomic_write_json, atomic_write_text

    if not isinstance(runs, FigureRuns):
        raise TypeError(f"runs must be the FigureRuns of collect(), got {type(runs).__name__}")
    if not runs.clutter or not runs.toy:
        raise ValueError("runs must hold the clutter and the toy runs: collect(preset, parts=('clutter', 'toy'))")
    out = Path(out)
    say = log or (lambda _: None)
    written: dict[str, Path] = {}
    clutter, all_runs = runs.clutter, runs.clutter_all
    test = clutter_eval_set(runs.preset)
    images, labels, masks, names = test.images, test.labels, test.masks, test.classes
    policies = list(dict.fromkeys(r.config.policy for r in clutter.values() if r.config.policy != "none"))
    models = analysis.dynamic_models(clutter, policies)

    t0 = time.perf_counter()
    large = clutter_eval_set(runs.preset, size=analysis.GALLERY_SIZE)
    for stem, fig in mixed_sample_figures(large.images[:16], large.labels[:16], policies, models=models,
                                          model_size=int(images.shape[-1]), class_names=names).items():
        _save(fig, out / f"{stem}.png", written)

    for dataset, toy_runs in runs.toy.items():
        points = data.load(dataset, "test", **TOY_BASE["dataset_options"])
        grids = analysis.boundary_grids(toy_runs, points.images)
        shown = slice(0, BOUNDARY_POINTS)
        fig = viz.decision_boundaries(grids, points=(points.images[shown], points.labels[shown]),
                                      notes=analysis.boundary_notes(toy_runs, points.images, points.labels),
                                      ncols=len(grids))
        fig.suptitle(f"{dataset}: {fig.get_suptitle()}")
        _save(fig, out / f"decision_boundary_{dataset}.png", written)
    say(f"gallery and decision boundaries: {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    bins, ece = analysis.calibration(clutter, images, labels)
    _save(viz.reliability_diagrams(bins, ece, ncols=5), out / "reliability.png", written)
    results = results_table(all_runs, _preset(runs.preset).figure_regime)
    mixed = analysis.mixed_accuracy(all_runs, images, labels)
    histories = {name: run.history for name, run in clutter.items()}
    _save(viz.mixed_accuracy_plot(histories, final=mixed), out / "top1_top2.png", written)
    _save(viz.training_curves(histories, metrics=("train_loss", "test_acc", "test_ece", "mixed_top2")),
          out / "training_curves.png", written)
    _save(viz.method_comparison(results), out / "method_comparison.png", written)
    seeds: dict[str, list[Any]] = {}
    for run in all_runs:
        if "memorised" in run.history:
            seeds.setdefault(method_name(run.config), []).append(run.history)
    if seeds:  # noisy labels: the memorisation curves
        _save(viz.memorisation_curves(seeds), out / "memorisation.png", written)
    say(f"calibration, Top-1/Top-2, curves, comparison: {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    all_policies = analysis.mixable_policies(clutter)
    reports = analysis.mismatch_reports(images, labels, masks, all_policies,
                                        models=analysis.dynamic_models(clutter, all_policies))
    _save(viz.mismatch_scatter_from_reports(reports, share_threshold=MISMATCH_SHARE,
                                            visible_threshold=MISMATCH_VISIBLE, ncols=5),
          out / "label_mismatch.png", written)
    say(f"label mismatch: {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    rows = {m: clutter[m] for m in SALIENCY_ROWS if m in clutter} or dict(list(clutter.items())[:4])
    example = analysis.saliency_example(rows, images, labels, masks, class_names=names)
    _save(viz.saliency_grid(**example), out / "saliency.png", written)
    sal = analysis.saliency_table(clutter, images, labels, masks, limit=saliency_limit)
    say(f"saliency: {time.perf_counter() - t0:.1f} s")

    s = summary(results, mixed, reports, sal, runs.toy, preset=runs.preset, n_test=len(labels))
    s["files"] = {k: str(v) for k, v in written.items()}
    written["summary.json"] = atomic_write_json(out / "summary.json", s)
    written["summary.md"] = atomic_write_text(out / "summary.md", summary_markdown(s))
    return written


def _cmd_figures(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    t0 = time.perf_counter()
    runs = collect(args.preset, args.runs, jobs=args.jobs)
    print(f"runs ready in {time.perf_counter() - t0:.1f} s")
    written = make_figures(runs, args.out)
    print(f"wrote {len(written)} files to {shown_path(args.out)}:")
    for path in written.values():
        size = path.stat().st_size / 1024
        print(f"  {shown_path(path)}  ({size:.0f} KB)")
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """--preset, --runs and --jobs: which runs a drawing command collects (:func:`collect`) and how it trains
    the missing ones (``mixviz figures`` and ``mixviz slides``)."""
    p.add_argument("--preset", default="quick", choices=figure_presets(),
                   help="quick: a few minutes on a CPU (40 %% noisy labels; 4 seeds of none+ce and mixup); full: "
                        "5 seeds of every method. Default: %(default)s")
    p.add_argument("--runs", default=None, help="root of the run store (default runs/ or $MIXVIZ_RUNS)")
    p.add_argument("--jobs", type=int, default=None,
                   help="worker processes that train the missing runs (each with threads/jobs threads). Default: 2 "
                        "on a CPU-only machine with two or more cores, else 1")


def register_command(sub: Any) -> None:
    p = sub.add_parser(
        "figures", help="train what is missing and write every picture and its numbers",
        description="Load (or train once, through the run store shared with `mixviz compare`) the clutter runs of "
                    "a preset and small MLPs on moons and spirals, then write one PNG per picture kind (mixed "
                    "samples, decision boundaries, reliability diagrams, Top-1/Top-2 mixed accuracy, label "
                    "mismatch, saliency, training curves, method comparison and, with noisy labels, memorisation) "
                    "and summary.md / summary.json with the numbers behind them (means with 95 % intervals over "
                    "seeds, paired differences).")
    add_run_arguments(p)
    p.add_argument("--out", default="figures", help="output directory. Default: %(default)s")
    p.set_defaults(func=_cmd_figures)
