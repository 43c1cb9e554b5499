"""Every notebook ends in a generated "What we found" section; 01-06 carry exercises whose checks exist.

Reads the .ipynb JSON only (nothing is executed)."""

import json
import re
from pathlib import Path

import pytest

from mixviz import exercises

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
ALL = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
WITH_EXERCISES = [n for n in ALL if n[:2] in {"01", "02", "03", "04", "05", "06"}]


def _cells(name):
    cells = json.loads((NOTEBOOKS / name).read_text())["cells"]
    return [(c["cell_type"], "".join(c["source"])) for c in cells]


@pytest.mark.parametrize("name", ALL)
def test_what_we_found_is_a_heading_followed_by_generated_text(name):
    cells = _cells(name)
    heads = [i for i, (kind, src) in enumerate(cells) if kind == "markdown" and src.startswith("## What we found")]
    assert len(heads) == 1, f"{name}: one '## What we found' heading expected, found {len(heads)}"
    i = heads[0]
    kind, src = cells[i + 1]
    assert kind == "code" and "findings." in src, f"{name}: the cell after 'What we found' must print generated text"
    assert "Generated" in cells[i][1], f"{name}: the 'What we found' heading must say that its text is generated"


@pytest.mark.parametrize("name", WITH_EXERCISES)
def test_exercises_have_a_stub_and_a_check_of_a_known_exercise(name):
    cells = _cells(name)
    heads = [i for i, (kind, src) in enumerate(cells) if kind == "markdown" and src.startswith("### Exercise")]
    assert 1 <= len(heads) <= 3, f"{name}: 1 to 3 exercises expected"
    for i in heads:
        (k1, stub), (k2, check) = cells[i + 1], cells[i + 2]
        assert k1 == "code" and "raise NotImplementedError" in stub
        found = re.search(r"exercises\.check\('(\w+)'", check)
        assert k2 == "code" and found and found.group(1) in exercises.CHECKS
        assert exercises.EXERCISES[found.group(1)][0] == name.removesuffix(".ipynb")
    assert heads[-1] + 2 == len(cells) - 1 or cells[heads[-1] + 3][0] == "markdown"
