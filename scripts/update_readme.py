"""Regenerate the generated sections of README.md and docs/ from files that commands wrote.

Each section sits between `<!-- begin: NAME -->` and `<!-- end: NAME -->` in the
page that PAGES names, and is replaced by the content of its source (relative
links are rewritten for the page's folder):

    results   results/full/summary.md and its accuracy_vs_time_*.png plots
              (mixviz compare --preset full)
    sweep     results/dm-sweep/sweep.md and dm_sweep.png (mixviz compare --preset dm-sweep)
    semi      results/semi/summary.md, semi_curves.png and cost.md (mixviz compare --preset semi)
    calibration results/full/calibration.md (python scripts/calibration_table.py)
    regimes   results/regimes/README.md (python scripts/regime_search.py table)
    bench     benchmarks/results/*.md           (python benchmarks/bench_*.py, mixviz bench,
                                                 mixviz doctor --out benchmarks/results/doctor*.md)
    headline  figures/summary.json's headline    (make demo: mixviz figures --preset quick), with how far
                                                 single runs move between machines (MACHINE_SPREAD)

    reading   the bullets of mixviz.experiments.reading, computed from results/full, results/dm-sweep
              and results/semi
    teaching  docs/teaching.md's three findings (mixviz.experiments.teaching, from results/full)
    faithfulness  docs/faithfulness-measured.md  (python scripts/faithfulness.py)

Nothing in those sections is typed by hand.  Run:  python scripts/update_readme.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Which page holds which generated sections.
PAGES = {
    "README.md": ("headline", "reading"),
    "docs/results.md": ("results", "calibration", "sweep", "semi"),
    "docs/presets.md": ("regimes",),
    "docs/speed.md": ("bench",),
    "docs/faithfulness.md": ("faithfulness",),
    "docs/teaching.md": ("teaching",),
}

#: The largest move of a single run between two 2-core machines of the same kind, same code and seed, seen by a
#: user before the machine record existed: (method, seed, test accuracy % there, on the machine of the earlier
#: figures).  The headline quotes it when no reproduction report (results/full/reproduce.md) measured more.
MACHINE_SPREAD = ("cutmix + dm", 0, 55.0, 68.0)
_DEVIATION = re.compile(r"^Mean absolute deviation .*$", re.M)


def _read(path: Path) -> str | None:
    return path.read_text().strip() if path.exists() else None


def _results(folder: Path) -> str | None:
    """The summary tables, then one accuracy-vs-time plot per data set."""
    summary = _read(folder / "summary.md")
    if summary is None:
        return None
    plots = sorted(folder.glob("accuracy_vs_time_*.png"))
    images = [f"![test accuracy against seconds per epoch, {p.stem.removeprefix('accuracy_vs_time_')}]"
              f"({p.relative_to(ROOT).as_posix()})" for p in plots]
    return "\n\n".join([summary, *images])


def _with_figure(folder: Path, table: str, figure: str, alt: str, *more: str) -> str | None:
    """A results table, its figure, then further files of the same folder."""
    text = _read(folder / table)
    if text is None:
        return None
    parts = [text]
    if (folder / figure).exists():
        parts.append(f"![{alt}]({(folder / figure).relative_to(ROOT).as_posix()})")
    parts += [t for t in (_read(folder / name) for name in more) if t]
    return "\n\n".join(parts)


def _without_title(text: str | None) -> str | None:
    """A file's text without its ``# `` title line."""
    if text is None:
        return None
    lines = text.splitlines()
    return "\n".join(lines[1:]).strip() if lines and lines[0].startswith("# ") else text


def _demote(text: str | None) -> str | None:
    """A benchmark file under its README sub-heading: its own title line
    (``# ...``) is dropped and its ``## `` sections become ``#### ``, so the
    README's heading levels stay in order.  None stays None (no file)."""
    if text is None:
        return None
    lines = text.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
        while lines and not lines[0].strip():
            lines = lines[1:]
    return "\n".join("####" + line[2:] if line.startswith("## ") else line for line in lines)


# `mixviz doctor` reports: only these of their sections go into the README (the
# per-check tables stay in the file, which the README links).
DOCTOR_SECTIONS = ("Speed", "Goals")


def _doctor(path: Path) -> str | None:
    """A doctor report for the README: its summary lines, its Speed and Goals
    sections, and a link to the whole report (every check)."""
    text = _read(path)
    if not text:
        return None
    parts = re.split(r"^(?=## )", text, flags=re.M)
    head, sections = parts[0], parts[1:]
    kept = [p.strip() for p in sections if p[3:].splitlines()[0].strip() in DOCTOR_SECTIONS]
    link = path.relative_to(ROOT).as_posix()
    return "\n\n".join([head.strip(), *kept, f"Every check: [{link}]({link})."])


def _headline(path: Path) -> str | None:
    """The headline sentence of ``mixviz figures`` (its ``summary.json``),
    quoted as it is, and how far single runs move between machines."""
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    text = str(summary.get("headline") or "").strip()
    if not text:
        return None
    method, seed, there, here = MACHINE_SPREAD
    source = path.relative_to(ROOT).as_posix()
    spread = (f"the same code and seed gave {method} (seed {seed}) {here:.1f} % test accuracy on one 2-core CPU and "
              f"{there:.1f} % on another, {abs(here - there):.0f} points apart")
    report = ROOT / "results" / "full" / "reproduce.md"
    measured = _DEVIATION.search(report.read_text()) if report.exists() else None
    if measured:
        link = report.relative_to(ROOT).as_posix()
        spread += (f"; `mixviz reproduce` re-trained cells of results/full on another CPU kind: "
                   f"{measured.group(0)[0].lower()}{measured.group(0)[1:].rstrip('.')} ([{link}]({link}))")
    return (f"{text}\n\n(Preset `{summary.get('preset', '?')}`, from [{source}]({source}).) Single runs vary "
            f"across machines: {spread}. So methods are compared by paired differences over several seeds, a "
            f"method on one seed is only an illustration, and `mixviz reproduce results/<preset>` trains cells "
            f"again on your machine and says whether the claims hold there.")


def sources() -> dict[str, str | None]:
    bench = []
    results = ROOT / "benchmarks" / "results"
    for name, title in (("mixing.md", "Mixing policies"), ("learned.md", "Learned and hidden-layer mixing"),
                        ("losses.md", "Losses"), ("loop.md", "Training loop"),
                        ("methods.md", "Training step per method"), ("cli.md", "The command line")):
        text = _read(results / name)
        if text:
            bench.append(f"### {title}\n\n{_demote(text)}")
    for name, title in (("doctor.md", "Install and device check (`mixviz doctor`)"),
                        ("doctor-cuda.md", "Install and device check on a GPU (`mixviz doctor --device cuda`)")):
        text = _doctor(results / name)
        if text:
            bench.append(f"### {title}\n\n{_demote(text)}")
    return {
        "results": _results(ROOT / "results" / "full"),
        "sweep": _with_figure(ROOT / "results" / "dm-sweep", "sweep.md", "dm_sweep.png",
                              "DM minus mixup CE against eta"),
        "semi": _with_figure(ROOT / "results" / "semi", "summary.md", "semi_curves.png",
                             "pseudo-labels kept, their accuracy and test accuracy per epoch", "cost.md"),
        "calibration": _demote(_read(ROOT / "results" / "full" / "calibration.md")),
        "regimes": _without_title(_read(ROOT / "results" / "regimes" / "README.md")),
        "bench": "\n\n".join(bench) or None,
        "headline": _headline(ROOT / "figures" / "summary.json"),
        "reading": _reading(),
        "teaching": _teaching(),
        "faithfulness": _read(ROOT / "docs" / "faithfulness-measured.md"),
    }


def _package() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def _reading() -> str | None:
    """The generated reading of the results (mixviz.experiments.reading)."""
    _package()
    from mixviz.experiments.reading import reading

    return reading(ROOT)


def _teaching() -> str | None:
    """The three findings of docs/teaching.md (mixviz.experiments.teaching)."""
    _package()
    from mixviz.experiments.teaching import teaching_section

    return teaching_section(ROOT)


_LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s#:]+)((?:#[^)]*)?\))")


def relink(text: str | None, page: str) -> str | None:
    """``text`` (links relative to the repository root) with every relative
    link made relative to the folder of ``page`` (a path from the root)."""
    if text is None:
        return None
    folder = Path(page).parent
    if folder == Path("."):
        return text
    up = "/".join(".." for _ in folder.parts)
    return _LINK.sub(lambda m: f"{m.group(1)}{up}/{m.group(2)}{m.group(3)}", text)


def update(text: str, sections: dict[str, str | None]) -> str:
    for name, content in sections.items():
        if content is None:
            continue
        # the lines between the markers, if any (an empty section has none)
        pattern = re.compile(rf"(<!-- begin: {name} -->\n)(?:.*?\n)??(<!-- end: {name} -->)", re.S)
        if not pattern.search(text):
            print(f"no section {name!r} in the page; skipped", file=sys.stderr)
            continue
        text = pattern.sub(lambda m: m.group(1) + content + "\n" + m.group(2), text)
    return text


def main() -> int:
    every = sources()
    for name, names in PAGES.items():
        page = ROOT / name
        if not page.exists():
            print(f"{name} not found; skipped", file=sys.stderr)
            continue
        old = page.read_text()
        new = update(old, {section: relink(every[section], name) for section in names})
        if new != old:
            page.write_text(new)
            print(f"{name} updated")
        else:
            print(f"{name} already up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
