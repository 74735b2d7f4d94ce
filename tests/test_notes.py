"""Every note of the project executes, through the same code as `mlnotes run` (one test per note), and what it
produces matches its committed frozen result within the tolerance of `mlnotes.compare` (`run --compare`)."""

import pytest

from conftest import ROOT
from mlnotes import cli, project

NOTES = [project.rel(ROOT, p) for p in project.notes(ROOT)]


def test_the_project_has_notes():
    assert "posts/2025-11-15/index.qmd" in NOTES


@pytest.mark.parametrize("note", NOTES)
def test_note_executes_and_reproduces_its_frozen_result(note, capsys):
    status = cli.main(["run", "--compare", str(ROOT / note)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.startswith(f"ok      {note}")
