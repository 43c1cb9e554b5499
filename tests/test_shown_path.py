"""Paths printed for a reader (and kept in committed notebook outputs) are
relative to the repository, not the folders of the machine that ran them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mixviz.ioutil import repository_root, shown_path


def test_relative_inside_the_current_folder_and_the_repository(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    monkeypatch.chdir(repo)
    assert repository_root() == repo.resolve()
    assert shown_path(repo / "runs" / "abc") == os.path.join("runs", "abc")
    assert shown_path("figures/a.png") == os.path.join("figures", "a.png")
    # from notebooks/ the run store is ../runs: still inside the repository, and a path that works from there
    monkeypatch.chdir(repo / "notebooks")
    assert shown_path(repo / "runs") == os.path.join("..", "runs")
    assert shown_path(repo / "runs", start=repo) == "runs"


def test_outside_the_repository_home_or_absolute(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".git").mkdir()
    monkeypatch.chdir(repo)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert shown_path(tmp_path / "home" / "data" / "x") == str(Path("~") / "data" / "x")
    elsewhere = tmp_path / "elsewhere" / "y"
    assert shown_path(elsewhere) == str(elsewhere.resolve())
    with pytest.raises(TypeError, match="path"):
        shown_path(3)
