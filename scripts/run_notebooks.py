"""Execute the notebooks in place and keep their outputs (``make notebooks``).

Each notebook in ``notebooks/`` runs top to bottom in a fresh python3 kernel
(nbclient) with ``MIXVIZ_PRESET`` (default ``quick``) and ``MIXVIZ_RUNS`` (the
repository's ``runs/``: runs it lacks are trained once and stored there), and
is written back with its outputs.  Its metadata ``mixviz`` records:

    source_hash   SHA-256 of its code cells (tests/test_notebooks.py checks that
                  the committed outputs come from the committed code)
    preset        the preset it ran with
    seconds       its wall time
    runs_trained  how many runs it trained (0: all were in the run store)

Figures are stored as small palette PNGs (the notebooks call
``mixviz.viz.inline_png()``); a notebook over ``--max-mb`` or with an error
output fails the command.  Afterwards the notebook table of README.md (between
``<!-- begin: notebooks -->`` and ``<!-- end: notebooks -->``) is rewritten
from the notebooks: title, the question each answers (its metadata
``mixviz.question``, else its title) and the measured time.

    python scripts/run_notebooks.py                    # every notebook
    python scripts/run_notebooks.py 06_dm_loss.ipynb   # some of them
    python scripts/run_notebooks.py --check            # only check the committed ones
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
README = ROOT / "README.md"
CELL_TIMEOUT = 1800  # a cell may train the quick grid (minutes on a laptop CPU)
MAX_MB = 2.0
BEGIN, END = "<!-- begin: notebooks -->", "<!-- end: notebooks -->"


def source_hash(nb: Any) -> str:
    """SHA-256 of the notebook's code cells, in order (outputs, markdown and
    metadata do not count)."""
    code = [cell["source"] for cell in nb["cells"] if cell["cell_type"] == "code"]
    code = ["".join(s) if isinstance(s, list) else s for s in code]
    return hashlib.sha256(json.dumps(code, ensure_ascii=False).encode("utf-8")).hexdigest()


def error_outputs(nb: Any) -> list[str]:
    """``"ename: evalue"`` of every error output."""
    return [f"{o.get('ename')}: {o.get('evalue')}" for c in nb["cells"] if c["cell_type"] == "code"
            for o in c.get("outputs", []) if o.get("output_type") == "error"]


def problems(path: Path, max_mb: float = MAX_MB) -> list[str]:
    """What is wrong with a committed notebook: not executed by its committed
    code cells (hash), an error output, or larger than ``max_mb``."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    out = []
    stored = nb.metadata.get("mixviz", {}).get("source_hash")
    if stored is None:
        out.append("never executed by scripts/run_notebooks.py (no metadata mixviz.source_hash): run make notebooks")
    elif stored != source_hash(nb):
        out.append("its outputs come from other code cells than the committed ones: run make notebooks")
    out += [f"error output {e}" for e in error_outputs(nb)]
    size = path.stat().st_size / 2**20
    if size > max_mb:
        out.append(f"{size:.1f} MB, more than {max_mb} MB")
    return out


def _run_count(runs: Path) -> int:
    return sum(1 for p in runs.glob("*/metrics.json")) if runs.is_dir() else 0


def execute(path: Path, preset: str, runs: Path, timeout: int = CELL_TIMEOUT) -> dict[str, Any]:
    """Run one notebook in place; return what was stored in its metadata."""
    import nbformat
    from nbclient import NotebookClient

    from mixviz.ioutil import atomic_write_text

    nb = nbformat.read(path, as_version=4)
    before = _run_count(runs)
    t0 = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    with client.setup_kernel():  # what NotebookClient.execute() does, with one line of progress per cell
        info = client.wait_for_reply(client.kc.kernel_info())
        nb.metadata["language_info"] = info["content"]["language_info"]
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            start = time.perf_counter()
            client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
            print(f"  {path.name} cell {index}: {time.perf_counter() - start:.0f} s", flush=True)
        client.set_widgets_metadata()
    seconds = time.perf_counter() - t0
    info = {"source_hash": source_hash(nb), "preset": preset, "seconds": round(seconds, 1),
            "runs_trained": _run_count(runs) - before}
    nb.metadata.setdefault("mixviz", {}).update(info)
    atomic_write_text(path, nbformat.writes(nb) + "\n")
    return info


# --------------------------------------------------------------------------- the README table


def _title(nb: Any) -> str:
    first = nb.cells[0].source if nb.cells and nb.cells[0].cell_type == "markdown" else ""
    match = re.match(r"#\s+(.+)", first)
    return match.group(1).strip() if match else ""


def table(paths: list[Path]) -> str:
    """The README's notebook table from the notebooks' metadata."""
    import nbformat

    rows = ["| notebook | the question it answers | time (quick preset) |", "|---|---|---|"]
    trained = 0
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        meta = nb.metadata.get("mixviz", {})
        question = meta.get("question") or _title(nb)
        seconds = meta.get("seconds")
        took = "not run yet" if seconds is None else (f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min")
        if meta.get("runs_trained"):
            took += f" (trained {meta['runs_trained']} runs)"
            trained += meta["runs_trained"]
        rows.append(f"| [`{path.name}`](notebooks/{path.name}) | {question} | {took} |")
    note = ("Times as measured by `make notebooks` on the machine that last ran it, in this order; a notebook that "
            "trained runs paid for them, and later ones loaded them from `runs/`." if trained else
            "Times as measured by `make notebooks` on the machine that last ran it, with the runs already in `runs/`.")
    return "\n".join(rows) + "\n\n" + note


def update_readme(text: str, paths: list[Path]) -> str:
    """``text`` with the notebook section replaced (unchanged without markers)."""
    pattern = re.compile(re.escape(BEGIN) + r"\n.*?" + re.escape(END), re.S)
    if not pattern.search(text):
        print(f"README.md has no {BEGIN} section; table not written", file=sys.stderr)
        return text
    return pattern.sub(lambda _: f"{BEGIN}\n{table(paths)}\n{END}", text)


# --------------------------------------------------------------------------- the command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebook file names in notebooks/ (default: all)")
    parser.add_argument("--preset", default="quick", help="MIXVIZ_PRESET for the kernels. Default: %(default)s")
    parser.add_argument("--runs", default=str(ROOT / "runs"), help="the run store. Default: the repository's runs/")
    parser.add_argument("--timeout", type=int, default=CELL_TIMEOUT, help="seconds per cell. Default: %(default)s")
    parser.add_argument("--max-mb", type=float, default=MAX_MB, help="largest notebook file. Default: %(default)s")
    parser.add_argument("--check", action="store_true", help="execute nothing; check the committed notebooks")
    args = parser.parse_args(argv)

    every = sorted(NB_DIR.glob("*.ipynb"))
    chosen = [NB_DIR / Path(n).name for n in args.notebooks] or every
    missing = [p.name for p in chosen if not p.exists()]
    if missing:
        parser.error(f"no such notebook in notebooks/: {', '.join(missing)}")
    failed = 0
    if not args.check:
        from mixviz.ioutil import shown_path

        runs = Path(args.runs).resolve()
        # the kernels run in notebooks/: the run store as seen from there (../runs), so that the stored outputs do
        # not carry the folders of the machine that executed them
        os.environ.update(MIXVIZ_PRESET=args.preset, MIXVIZ_RUNS=shown_path(runs, start=NB_DIR))
        os.environ.pop("MPLBACKEND", None)  # the kernels draw inline
        t0 = time.perf_counter()
        for path in chosen:
            try:
                info = execute(path, args.preset, runs, args.timeout)
            except Exception as err:  # noqa: BLE001 -- report and go on with the next notebook
                what = f"{err.ename}: {err.evalue}" if hasattr(err, "ename") else str(err).splitlines()[0]
                print(f"{path.name}: FAILED: {type(err).__name__}: {what[:500]}")
                failed += 1
                continue
            print(f"{path.name}: {info['seconds']:.0f} s, {info['runs_trained']} runs trained, "
                  f"{path.stat().st_size / 2**20:.2f} MB")
        print(f"total {time.perf_counter() - t0:.0f} s")
        if README.exists():
            from mixviz.ioutil import atomic_write_text

            atomic_write_text(README, update_readme(README.read_text(), every))
    for path in chosen:
        for problem in problems(path, args.max_mb):
            print(f"{path.name}: {problem}")
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
