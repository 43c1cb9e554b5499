"""The doctor's result: named checks, measured tables and goals, written as
Markdown (for people and the README's Speed section) and JSON (for scripts)."""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mixviz._validation import check_choice

__all__ = ["STATUSES", "SECTIONS", "Check", "Report", "run_check", "markdown_table", "fmt"]

STATUSES = ("pass", "fail", "skip", "info")
SECTIONS = ("environment", "correctness", "training", "speed")
_TITLES = {"environment": "Environment", "correctness": "Correctness on the device", "training": "Training",
           "speed": "Speed"}


@dataclass
class Check:
    """One named check.

    ``status``: ``"pass"``, ``"fail"`` (the exit code is then non-zero),
    ``"skip"`` (does not apply here; ``detail`` says why) or ``"info"`` (a
    measurement with nothing to pass or fail, e.g. a timing).  ``data`` holds
    the numbers (JSON-ready); ``table``, when given, is drawn under the
    section as a Markdown table (a list of rows with the same keys).
    """

    section: str
    name: str
    status: str
    detail: str = ""
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)
    table: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        check_choice("section", self.section, SECTIONS)
        check_choice("status", self.status, STATUSES)


def run_check(section: str, name: str, fn: Callable[[], tuple[str, str, dict[str, Any]] | Check],
              **data: Any) -> Check:
    """Run ``fn`` and wrap what it says in a :class:`Check`.

    ``fn`` returns ``(status, detail, data)`` or a :class:`Check` (which gets
    this check's section and name).  An
    exception is a failure whose detail is the exception (type, message and
    the innermost line of mixviz code that raised), so a check never stops the
    doctor and its failure is named.  ``data`` is merged into the check's
    data, with ``cpu_seconds`` (the process's CPU time the check took).
    """
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        out = fn()
    except Exception as err:  # noqa: BLE001 -- every failure becomes a named, reported check
        out = Check(section, name, "fail", _describe(err))
    if not isinstance(out, Check):
        status, detail, more = out
        out = Check(section, name, status, detail, data=more)
    out.section, out.name = section, name
    out.seconds = out.seconds or time.perf_counter() - t0
    out.data = {**data, **out.data, "cpu_seconds": round(time.process_time() - c0, 2)}
    return out


def _describe(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    frames = [f for f in traceback.extract_tb(err.__traceback__) if "mixviz" in f.filename]
    if frames:
        where = frames[-1]
        text += f" (at {Path(where.filename).name}:{where.lineno} in {where.name})"
    return " ".join(text.split())[:600]


def fmt(value: float) -> str:
    """A measured number with three significant digits and no exponent
    (``33777``, ``437``, ``1.84``, ``0.000123``)."""
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 0.001 or value == 0:
        return f"{value:.3g}"
    return f"{value:.2e}"


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "–" if math.isnan(value) else fmt(value)
    if value is None:
        return "–"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Rows with the same keys as a Markdown table (numbers right aligned)."""
    if not rows:
        return ""
    keys = list(rows[0])
    numeric = [all(isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)
                   for r in rows if r.get(k) is not None) for k in keys]
    lines = ["| " + " | ".join(keys) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(_cell(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


_MARK = {"pass": "pass", "fail": "**FAIL**", "skip": "skip", "info": "info"}


@dataclass
class Report:
    """Everything the doctor found, in the order it ran."""

    meta: dict[str, Any]
    checks: list[Check] = field(default_factory=list)
    goals: list[dict[str, Any]] = field(default_factory=list)

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        return check

    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    def exit_code(self) -> int:
        """0 when no check failed, 1 otherwise (goals never change it)."""
        return 1 if self.failed() else 0

    def summary(self) -> str:
        counts = {s: sum(c.status == s for c in self.checks) for s in STATUSES}
        head = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        failed = self.failed()
        if not failed:
            return f"all checks passed ({head})"
        return f"{len(failed)} check(s) FAILED ({head}): " + "; ".join(f"{c.section}: {c.name}" for c in failed)

    # ------------------------------------------------------------------ output

    def to_json(self) -> dict[str, Any]:
        return {"meta": self.meta, "result": "pass" if not self.failed() else "fail",
                "failed": [f"{c.section}: {c.name}" for c in self.failed()],
                "checks": [asdict(c) for c in self.checks], "goals": self.goals}

    def to_markdown(self) -> str:
        m = self.meta
        lines = ["# mixviz doctor", "",
                 f"`mixviz doctor{' --quick' if m.get('quick') else ''} --device {m.get('device_arg')}` on "
                 f"**{m.get('device_name')}** ({m.get('device')}), {m.get('date')}: **{self.summary()}**.", ""]
        if m.get("seconds") is not None:
            load = m.get("load_average")
            lines += [f"It took {m['seconds']:.0f} s ({m.get('cpu_seconds', 0):.0f} s of CPU time)"
                      + (f"; the host's load average was {load:g} on {m.get('cpu_cores')} cores when it started"
                         if load is not None else "") + ".", ""]
        if m.get("note"):
            lines += [m["note"], ""]
        for section in SECTIONS:
            checks = [c for c in self.checks if c.section == section]
            if not checks:
                continue
            lines += [f"## {_TITLES[section]}", ""]
            grid = _matrix(checks)
            rest = [c for c in checks if not _in_matrix(c)]
            if grid:
                lines += [grid, ""]
            if rest:
                lines += ["| check | result | detail | s |", "|---|---|---|---:|"]
                lines += [f"| {_cell(c.name)} | {_MARK[c.status]} | {_cell(c.detail)} | {c.seconds:.1f} |"
                          for c in rest]
                lines.append("")
            for c in checks:
                if c.table:
                    lines += [f"**{c.name}**", "", markdown_table(c.table), ""]
        if self.goals:
            lines += ["## Goals", "", markdown_table(self.goals), "",
                      "Goals are targets for the speed of the package; they do not change the exit code.", ""]
        return "\n".join(lines)

    def write(self, path: str | Path) -> tuple[Path, Path]:
        """Write the Markdown to ``path`` and the JSON beside it (``.json``), atomically."""
        from mixviz.ioutil import atomic_write_json, atomic_write_text

        path = Path(path)
        json_path = path.with_suffix(".json")
        atomic_write_text(path, self.to_markdown())
        atomic_write_json(json_path, self.to_json())
        return path, json_path


def _in_matrix(check: Check) -> bool:
    return {"policy", "loss", "column"} <= set(check.data)


def _matrix(checks: list[Check]) -> str:
    """Checks that carry ``policy``, ``loss`` and ``column`` in their data as
    one table: a row per (policy, loss), a column per ``column``."""
    cells = [c for c in checks if _in_matrix(c)]
    if not cells:
        return ""
    columns = list(dict.fromkeys(c.data["column"] for c in cells))
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for c in cells:
        text = _MARK[c.status] + (f": {c.detail}" if c.detail and c.status != "pass" else "")
        if c.status == "pass" and c.data.get("short"):
            text += f" ({c.data['short']})"
        rows.setdefault((c.data["policy"], c.data["loss"]), {})[c.data["column"]] = text
    lines = ["| policy | loss | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for (policy, loss), row in rows.items():
        lines.append(f"| {policy} | {loss} | " + " | ".join(_cell(row.get(col, "–")) for col in columns) + " |")
    return "\n".join(lines)
