"""scripts/update_readme.py: generated README sections between markers."""

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "update_readme.py"


def _load():
    spec = importlib.util.spec_from_file_location("update_readme_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ur = _load()

README = """# Title

Intro text.

<!-- begin: results -->
Not generated yet: the full preset has not been run.
<!-- end: results -->

## Speed

<!-- begin: bench -->
old bench
table
<!-- end: bench -->

Trailing text.
"""


def section(text, name):
    m = re.search(rf"<!-- begin: {name} -->\n(.*?)\n<!-- end: {name} -->", text, re.S)
    return m.group(1) if m else None


def test_update_replaces_only_the_text_between_the_markers(capsys):
    new = ur.update(README, {"results": "| a | b |\n|---|---|\n| 1 | 2 |", "bench": "fast"})
    assert new == README.replace(
        "Not generated yet: the full preset has not been run.", "| a | b |\n|---|---|\n| 1 | 2 |").replace(
        "old bench\ntable", "fast")
    assert section(new, "results") == "| a | b |\n|---|---|\n| 1 | 2 |"
    assert section(new, "bench") == "fast"
    assert new.startswith("# Title\n\nIntro text.\n\n<!-- begin: results -->\n")
    assert new.endswith("<!-- end: bench -->\n\nTrailing text.\n")
    assert capsys.readouterr().err == ""


def test_update_is_idempotent():
    sections = {"results": "R1\nR2", "bench": "B"}
    once = ur.update(README, sections)
    assert ur.update(once, sections) == once
    # and a later source replaces the earlier generated text, not appends to it
    assert ur.update(once, {"results": "R3", "bench": "B"}) == ur.update(README, {"results": "R3", "bench": "B"})


def test_a_missing_source_leaves_the_section_as_it_is(capsys):
    assert ur.update(README, {"results": None, "bench": None}) == README
    new = ur.update(README, {"results": None, "bench": "B"})
    assert section(new, "results") == "Not generated yet: the full preset has not been run."
    assert section(new, "bench") == "B"
    assert capsys.readouterr().err == ""


def test_a_section_the_readme_lacks_is_skipped_with_a_message(capsys):
    new = ur.update(README, {"figures": "F", "bench": "B"})
    assert new == ur.update(README, {"bench": "B"})
    assert capsys.readouterr().err == "no section 'figures' in the page; skipped\n"
    # a begin marker without its end marker counts as missing, and nothing is touched
    broken = README.replace("<!-- end: bench -->", "")
    assert ur.update(broken, {"bench": "B"}) == broken
    assert capsys.readouterr().err == "no section 'bench' in the page; skipped\n"
    # a source that is None is not reported, present or not
    assert ur.update(README, {"figures": None}) == README
    assert capsys.readouterr().err == ""


def test_content_is_inserted_literally():
    content = r"a \1 \g<0> $x \n [link](path) .*?"
    new = ur.update(README, {"bench": content})
    assert section(new, "bench") == content
    assert ur.update(new, {"bench": content}) == new


def test_each_section_ends_at_its_own_end_marker():
    # the non-greedy match stops at the first end marker of the same name; other sections are untouched
    text = "<!-- begin: bench -->\nx\n<!-- end: bench -->\nmiddle\n<!-- begin: results -->\ny\n<!-- end: results -->\n"
    assert ur.update(text, {"bench": "B"}) == text.replace("\nx\n", "\nB\n")
    # a section that appears twice is filled in both places
    twice = README + "\n<!-- begin: bench -->\nagain\n<!-- end: bench -->\n"
    new = ur.update(twice, {"bench": "B"})
    assert new.count("<!-- begin: bench -->\nB\n<!-- end: bench -->") == 2


def test_an_empty_section_is_filled(capsys):
    text = "<!-- begin: bench -->\n<!-- end: bench -->\n"
    assert ur.update(text, {"bench": "B"}) == "<!-- begin: bench -->\nB\n<!-- end: bench -->\n"
    assert capsys.readouterr().err == ""


NONE = {"results": None, "sweep": None, "semi": None, "calibration": None, "regimes": None, "bench": None,
        "headline": None, "reading": None, "faithfulness": None, "teaching": None}


def test_every_page_has_its_sections_and_stays_put_without_sources():
    assert sorted(name for names in ur.PAGES.values() for name in names) == sorted(NONE)
    for page, names in ur.PAGES.items():
        text = (SCRIPT.parent.parent / page).read_text()
        for name in names:
            assert f"<!-- begin: {name} -->" in text and f"<!-- end: {name} -->" in text, (page, name)
        assert ur.update(text, {name: None for name in names}) == text
        once = ur.update(text, {name: "X" for name in names})
        assert ur.update(once, {name: "X" for name in names}) == once


def test_links_are_made_relative_to_the_page():
    text = "![plot](results/full/a.png) [report](benchmarks/results/doctor.md#speed) [web](https://x.org) [up](#top)"
    assert ur.relink(text, "README.md") == text
    assert ur.relink(text, "docs/results.md") == ("![plot](../results/full/a.png) "
                                                  "[report](../benchmarks/results/doctor.md#speed) "
                                                  "[web](https://x.org) [up](#top)")
    assert ur.relink(None, "docs/results.md") is None


def make_tree(root: Path, *, summary=None, plots=(), bench=None):
    (root / "results" / "full").mkdir(parents=True)
    (root / "benchmarks" / "results").mkdir(parents=True)
    if summary is not None:
        (root / "results" / "full" / "summary.md").write_text(summary)
    for name in plots:
        (root / "results" / "full" / name).write_bytes(b"\x89PNG")
    for name, text in (bench or {}).items():
        (root / "benchmarks" / "results" / name).write_text(text)


def test_sources_without_files_are_none(tmp_path, monkeypatch):
    monkeypatch.setattr(ur, "ROOT", tmp_path)
    make_tree(tmp_path)
    assert ur.sources() == NONE
    # an empty benchmark file counts as missing
    (tmp_path / "benchmarks" / "results" / "loop.md").write_text("\n\n")
    assert ur.sources() == NONE


def test_sources_read_summary_plots_and_benchmarks(tmp_path, monkeypatch):
    monkeypatch.setattr(ur, "ROOT", tmp_path)
    make_tree(tmp_path, summary="\n**clutter** table\n\n",
              plots=("accuracy_vs_time_digits.png", "accuracy_vs_time_clutter.png", "other.png"),
              bench={"methods.md": "D\n", "mixing.md": "  A", "losses.md": ""})
    assert ur.sources() == {
        "results": "**clutter** table\n\n"
                   "![test accuracy against seconds per epoch, clutter](results/full/accuracy_vs_time_clutter.png)\n\n"
                   "![test accuracy against seconds per epoch, digits](results/full/accuracy_vs_time_digits.png)",
        "sweep": None, "semi": None, "calibration": None, "regimes": None,
        "bench": "### Mixing policies\n\nA\n\n### Training step per method\n\nD", "headline": None,
        "reading": None, "faithfulness": None, "teaching": None,
    }
    # the calibration report: its title dropped, its regime headings under the README's sub-heading
    (tmp_path / "results" / "full" / "calibration.md").write_text("# Calibration\n\nintro\n\n## clean\n\n| t |\n")
    assert ur.sources()["calibration"] == "intro\n\n#### clean\n\n| t |"
    # plots without a summary: the section is not generated
    (tmp_path / "results" / "full" / "summary.md").unlink()
    assert ur.sources()["results"] is None


def test_sweep_semi_and_regime_sections(tmp_path, monkeypatch):
    monkeypatch.setattr(ur, "ROOT", tmp_path)
    make_tree(tmp_path)
    for folder, files in (("dm-sweep", {"sweep.md": "SW\n", "dm_sweep.png": "png"}),
                          ("semi", {"summary.md": "SE\n", "cost.md": "C\n"}),
                          ("regimes", {"README.md": "# The regime search\n\nRG\n"})):
        (tmp_path / "results" / folder).mkdir(parents=True)
        for name, text in files.items():
            (tmp_path / "results" / folder / name).write_text(text)
    got = ur.sources()
    assert got["sweep"] == "SW\n\n![DM minus mixup CE against eta](results/dm-sweep/dm_sweep.png)"
    assert got["semi"] == "SE\n\nC"           # no figure file: no image line
    assert got["regimes"] == "RG"               # its title line is dropped under the README's heading


def make_pages(root: Path) -> None:
    """README.md and the docs pages, each with its sections empty."""
    (root / "docs").mkdir(exist_ok=True)
    for page, names in ur.PAGES.items():
        body = "".join(f"\n<!-- begin: {n} -->\nNot generated yet.\n<!-- end: {n} -->\n" for n in names)
        (root / page).write_text(f"# {page}\n{body}")


def test_main_writes_each_page_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ur, "ROOT", tmp_path)
    make_tree(tmp_path, summary="S ![p](results/full/p.png)", bench={"loop.md": "L"})
    make_pages(tmp_path)
    assert ur.main() == 0
    out = capsys.readouterr().out
    assert "docs/results.md updated" in out and "docs/speed.md updated" in out
    assert "README.md already up to date" in out  # no headline, no results tables: nothing to write
    results = (tmp_path / "docs" / "results.md").read_text()
    assert section(results, "results") == "S ![p](../results/full/p.png)"
    assert section(results, "sweep") == "Not generated yet."
    assert section((tmp_path / "docs" / "speed.md").read_text(), "bench") == "### Training loop\n\nL"
    assert ur.main() == 0
    assert "updated" not in capsys.readouterr().out


def test_script_runs_from_its_own_tree(tmp_path):
    """As a script it works on the tree it lives in (a copy here, never the repository's pages)."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPT, tmp_path / "scripts" / "update_readme.py")
    make_tree(tmp_path, bench={"mixing.md": "M"})
    make_pages(tmp_path)
    proc = subprocess.run([sys.executable, str(tmp_path / "scripts" / "update_readme.py")], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "docs/speed.md updated" in proc.stdout
    assert section((tmp_path / "docs" / "speed.md").read_text(), "bench") == "### Mixing policies\n\nM"
    assert section((tmp_path / "docs" / "results.md").read_text(), "results") == "Not generated yet."


def test_benchmark_headings_are_demoted_under_their_readme_heading(tmp_path, monkeypatch):
    monkeypatch.setattr(ur, "ROOT", tmp_path)
    make_tree(tmp_path, summary=None, bench={"losses.md": "# Losses: cost\n\nintro\n\n## The loss alone\n\n| t |\n"})
    assert ur.sources()["bench"] == "### Losses\n\nintro\n\n#### The loss alone\n\n| t |"


def test_doctor_reports_go_in_with_their_speed_and_goals_only(tmp_path, monkeypatch):
    monkeypatch.setattr(ur, "ROOT", tmp_path)
    report = ("# mixviz doctor\n\n`mixviz doctor --quick` on **a CPU**: **all checks passed**.\n\n"
              "## Environment\n\n| e |\n\n## Correctness on the device\n\n| c |\n\n## Speed\n\n| s |\n\n"
              "## Goals\n\n| g |\n")
    make_tree(tmp_path, bench={"methods.md": "D", "doctor.md": report, "doctor-cuda.md": report.replace("CPU", "GPU")})
    text = ur.sources()["bench"]
    cpu = text[text.index("### Install and device check (`mixviz doctor`)"):text.index("### Install and device check on")]
    assert cpu == ("### Install and device check (`mixviz doctor`)\n\n`mixviz doctor --quick` on **a CPU**: **all "
                   "checks passed**.\n\n#### Speed\n\n| s |\n\n#### Goals\n\n| g |\n\nEvery check: "
                   "[benchmarks/results/doctor.md](benchmarks/results/doctor.md).\n\n")
    assert text.startswith("### Training step per method\n\nD\n\n")
    assert "**a GPU**" in text and text.endswith("[benchmarks/results/doctor-cuda.md](benchmarks/results/doctor-cuda.md).")
    assert "| e |" not in text and "| c |" not in text


def test_the_faithfulness_page_takes_its_measured_table(tmp_path, monkeypatch):
    monkeypatch.setattr(ur, "ROOT", tmp_path)
    make_tree(tmp_path)
    (tmp_path / "README.md").write_text(README)
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "faithfulness.md"
    page.write_text("# Where\n\n<!-- begin: faithfulness -->\n<!-- end: faithfulness -->\n")
    assert ur.main() == 0
    assert "| method" not in page.read_text()  # no measured table yet: the section stays empty
    (tmp_path / "docs" / "faithfulness-measured.md").write_text("| method | mixviz | measured |\n")
    assert ur.main() == 0
    assert section(page.read_text(), "faithfulness") == "| method | mixviz | measured |"
    real = (SCRIPT.parent.parent / "docs" / "faithfulness.md").read_text()
    assert "<!-- begin: faithfulness -->" in real and "<!-- end: faithfulness -->" in real


def test_the_headline_is_quoted_from_summary_json_with_the_machine_spread(tmp_path, monkeypatch):
    monkeypatch.setattr(ur, "ROOT", tmp_path)
    make_tree(tmp_path)
    (tmp_path / "figures").mkdir()
    headline = ("Best mixing method: mixup+mixup_ce, +10.7 ± 4.2 points against none + ce over 3 paired seeds: "
                "more accurate (the 95 % interval excludes 0).")
    (tmp_path / "figures" / "summary.json").write_text(json.dumps({"preset": "quick", "headline": headline}))
    text = ur.sources()["headline"]
    assert text.startswith(headline + "\n\n(Preset `quick`, from [figures/summary.json](figures/summary.json).)")
    assert ("the same code and seed gave cutmix + dm (seed 0) 68.0 % test accuracy on one 2-core CPU and 55.0 % on "
            "another, 13 points apart. So") in text  # no reproduction report in this tree
    (tmp_path / "results" / "full" / "reproduce.md").write_text(
        "# R\n\nMean absolute deviation 2.2 points over 25 runs; largest 9.4 points (x).\n")
    text = ur.sources()["headline"]
    assert ("another CPU kind: mean absolute deviation 2.2 points over 25 runs; largest 9.4 points (x) "
            "([results/full/reproduce.md](results/full/reproduce.md)). So") in text
    assert "mixviz reproduce" in text
    # no headline in the file (a preset without a no-mixing baseline): no section
    (tmp_path / "figures" / "summary.json").write_text(json.dumps({"preset": "quick", "headline": ""}))
    assert ur.sources()["headline"] is None
    # the real figures/summary.json has one
    monkeypatch.setattr(ur, "ROOT", SCRIPT.parent.parent)
    assert ur.sources()["headline"].startswith("Best mixing method: ")
