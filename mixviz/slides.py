"""``mixviz slides``: a 16:9 PDF deck of the pictures a lecturer shows.

One picture a page, at most :data:`MAX_PANELS` panels each: memorisation
of noisy labels, decision boundaries, the gradients of mixup CE and DM on one
prediction, calibration before and after temperature scaling, and the mixed
samples at a size a room can read.  Pages are :data:`PAGE_INCHES` (16:9: a
1920 x 1080 screen at 96 pixels per inch) and every text is at least
:data:`MIN_FONT_PT` pt on that page.

The trained runs come from the run store through :func:`mixviz.figures.collect`
(the runs ``mixviz figures`` draws: missing ones are trained once, as there);
everything is computed by the same :mod:`mixviz.analysis` functions.  The deck
is written offline with matplotlib's ``PdfPages``, atomically.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixviz.ioutil import shown_path

__all__ = ["PAGE_INCHES", "MIN_FONT_PT", "MAX_PANELS", "Slide", "slides", "write_deck", "make_slides",
           "register_command"]

#: Page size in inches: 16:9, 1920 x 1080 pixels at 96 pixels per inch.
PAGE_INCHES = (20.0, 11.25)
#: Smallest text on a page, in points of that page.
MIN_FONT_PT = 18.0
#: Most panels (plots or images; masks and colour bars not counted) on one page.
MAX_PANELS = 4
#: Methods of the calibration page, drawn before and after temperature scaling (those the preset has).
CALIBRATION_METHODS = ("none+ce", "mixup+mixup_ce")
#: The prediction of the DM gradient page: both classes mixed half and half, the model found only a.
DM_PREDICTION = dict(lam=0.5, eta=1.0, z_a=3.0, z_b=0.0, z_rest=0.0, num_classes=10)
#: Policies per gallery page and mixed samples (rows) per policy.
GALLERY_POLICIES, GALLERY_ROWS = 2, 2


@dataclass
class Slide:
    """One page: its ``title`` (the PDF's page label), the ``figure`` and
    how many ``panels`` it shows."""

    title: str
    figure: Any
    panels: int


def _gallery(runs: Any, test: Any) -> Iterator[Slide]:
    from mixviz import analysis, viz

    clutter = runs.clutter
    policies = list(dict.fromkeys(r.config.policy for r in clutter.values() if r.config.policy != "none"))
    models = analysis.dynamic_models(clutter, policies)
    batches = analysis.gallery_batches(test.images[:16], test.labels[:16], policies, models=models)
    for start in range(0, len(policies), GALLERY_POLICIES):
        chunk = {p: batches[p] for p in policies[start:start + GALLERY_POLICIES]}
        fig = viz.mixed_samples_gallery(chunk, class_names=test.classes, n=GALLERY_ROWS)
        fig.suptitle(f"Mixed samples: {', '.join(chunk)}  (λ = share of image a in the label)")
        yield Slide(f"mixed samples: {', '.join(chunk)}", fig, GALLERY_ROWS * len(chunk))


def _boundaries(runs: Any) -> Iterator[Slide]:
    from mixviz import analysis, data, viz
    from mixviz.figures import BOUNDARY_POINTS, TOY_BASE

    for dataset, toy_runs in runs.toy.items():
        chosen = dict(list(toy_runs.items())[:MAX_PANELS])
        points = data.load(dataset, "test", **TOY_BASE["dataset_options"])
        grids = analysis.boundary_grids(chosen, points.images)
        shown = slice(0, BOUNDARY_POINTS)
        fig = viz.decision_boundaries(grids, points=(points.images[shown], points.labels[shown]),
                                      notes=analysis.boundary_notes(chosen, points.images, points.labels),
                                      ncols=len(grids))
        fig.suptitle(f"{dataset}: {fig.get_suptitle()}")
        yield Slide(f"decision boundaries: {dataset}", fig, len(grids))


def _memorisation(runs: Any) -> Iterator[Slide]:
    from mixviz import viz
    from mixviz.analysis import method_name

    seeds: dict[str, list[Any]] = {}
    for run in runs.clutter_all:
        if "memorised" in run.history:
            seeds.setdefault(method_name(run.config), []).append(run.history)
    if seeds:  # noisy labels only
        yield Slide("memorisation of noisy labels", viz.memorisation_curves(seeds), 3)


def _dm_gradients() -> Iterator[Slide]:
    from mixviz import viz
    from mixviz.analysis import dm

    fig = viz.gradient_bars(dm.loss_table(**DM_PREDICTION))
    yield Slide("gradients of mixup CE and DM", fig, len(fig.axes))


def _calibration(runs: Any, test: Any) -> Iterator[Slide]:
    from mixviz import analysis, viz

    chosen = {m: runs.clutter[m] for m in CALIBRATION_METHODS if m in runs.clutter} or \
        dict(list(runs.clutter.items())[:2])
    before = analysis.calibration(chosen, test.images, test.labels)
    after = analysis.scaled_calibration(chosen, test.images, test.labels)
    bins, ece = {}, {}
    for m in chosen:
        for (b, e), when in ((before, "before"), (after, "after temperature scaling")):
            bins[f"{m}\n{when}"], ece[f"{m}\n{when}"] = b[m], e[m]
    fig = viz.reliability_diagrams(bins, ece, ncols=len(bins), counts=False)
    yield Slide("calibration before and after temperature scaling", fig, len(bins))


def slides(runs: Any) -> list[Slide]:
    """The pages of the deck, drawn from :func:`mixviz.figures.collect`'s runs
    (both parts) inside ``viz.theme("talk")``; nothing is trained."""
    import matplotlib.pyplot as plt

    from mixviz import viz
    from mixviz.figures import FigureRuns, clutter_eval_set

    if not isinstance(runs, FigureRuns):
        raise TypeError(f"runs must be the FigureRuns of mixviz.figures.collect(), got {type(runs).__name__}")
    if not runs.clutter or not runs.toy:
        raise ValueError("runs must hold the clutter and the toy runs: collect(preset, parts=('clutter', 'toy'))")
    test = clutter_eval_set(runs.preset)
    out: list[Slide] = []
    try:
        with viz.theme("talk", font_scale=1.0):
            for pages in (_memorisation(runs), _boundaries(runs), _dm_gradients(), _calibration(runs, test),
                          _gallery(runs, test)):
                for slide in pages:
                    _fit_page(slide.figure)
                    out.append(slide)
    except BaseException:
        for slide in out:
            plt.close(slide.figure)
        raise
    return out


def _fit_page(fig: Any) -> None:
    """Resize ``fig`` to the page, raise every text below :data:`MIN_FONT_PT`
    to it, and wrap each panel title to its panel's width (larger text on
    side-by-side panels would run into the next title)."""
    import textwrap

    from matplotlib.text import Text

    fig.set_size_inches(*PAGE_INCHES)
    for text in fig.findobj(Text):
        if text.get_fontsize() < MIN_FONT_PT:
            text.set_fontsize(MIN_FONT_PT)
    fig.canvas.draw()  # the layout: the panels' widths on the page
    for ax in fig.axes:
        title = ax.title
        chars = int(ax.get_position().width * PAGE_INCHES[0] * 72 / (0.55 * title.get_fontsize()))
        if title.get_text() and chars > 8:
            title.set_text("\n".join(textwrap.fill(line, chars) for line in title.get_text().split("\n")))


def write_deck(pages: list[Slide], path: str | os.PathLike) -> Path:
    """Write ``pages`` to one PDF (a page each, at the page size; no tight
    bounding box, so every page is 16:9), atomically; the figures are closed."""
    import io

    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    from mixviz.ioutil import atomic_write_bytes

    if not pages:
        raise ValueError("pages must not be empty")
    buffer = io.BytesIO()
    with PdfPages(buffer, metadata={"Title": "mixviz: what mixup does", "Creator": "mixviz slides"}) as pdf:
        for page in pages:
            pdf.savefig(page.figure)
            plt.close(page.figure)
    return atomic_write_bytes(Path(path), buffer.getvalue())


def make_slides(preset: str = "quick", out: str | os.PathLike = "figures/slides.pdf",
                runs_root: str | os.PathLike | None = None, *, jobs: int | None = None,
                log: Callable[[str], Any] | None = print) -> Path:
    """Collect the runs of ``preset`` (:func:`mixviz.figures.collect`: loaded,
    or trained once when missing) and write the deck to ``out``."""
    from mixviz.figures import collect

    runs = collect(preset, runs_root, jobs=jobs, log=log)
    pages = slides(runs)
    path = write_deck(pages, out)
    if log is not None:
        log(f"wrote {len(pages)} slides to {shown_path(path)}: " + "; ".join(p.title for p in pages))
    return path


def _cmd_slides(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    make_slides(args.preset, args.out, args.runs, jobs=args.jobs)
    return 0


def register_command(sub: Any) -> None:
    from mixviz.figures import add_run_arguments

    p = sub.add_parser(
        "slides", help="write a 16:9 PDF deck of the pictures a lecturer shows",
        description="Load (or train once, like `mixviz figures`, through the same run store) the runs of a preset "
                    "and write a 16:9 PDF deck: memorisation of noisy labels, decision boundaries, the gradients "
                    "of mixup CE and DM, calibration before and after temperature scaling, and the mixed samples; "
                    "one picture a page, at most 4 panels, text at least 18 pt on a 1920 x 1080 page.")
    add_run_arguments(p)
    p.add_argument("--out", default="figures/slides.pdf", help="the PDF to write. Default: %(default)s")
    p.set_defaults(func=_cmd_slides)
