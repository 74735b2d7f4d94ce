"""Execution records: one file per note, merge-friendly, migrated from `_execution.json`, and results that real
Quarto wrote (no record) accepted as valid with an unknown environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from conftest import FIXTURES, ROOT, write
from mlnotes import check, cli, pages
from mlnotes.qmd import quarto_hash

NOTE = '''---
title: "Note {name}"
date: 2025-11-2{day}
---

Prose of {name}.

```{{python}}
import numpy as np
print(np.arange({day}).sum())
```
'''


def note(project, name, day):
    return write(project / f"posts/{name}/index.qmd", NOTE.format(name=name, day=day))


def freeze(project, *args) -> int:
    return cli.main(["freeze", "--project", str(project), "--jobs", "1", *args])


def record(project, rel="posts/a/index.qmd"):
    return json.loads((project / "_provenance" / f"{rel}.json").read_text())


def frozen_problems(project):
    return [p for p in check.check(project, lint_cells=False) if "frozen" in p or "record" in p]


def git(project, *args) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=project,
                          capture_output=True, text=True)


def test_one_record_per_note_describing_its_result(tmp_project, capsys):
    source = note(tmp_project, "a", 1)
    assert freeze(tmp_project) == 0
    rec = record(tmp_project)
    assert rec["hash"] == quarto_hash(source.read_text())
    assert rec["by"] == "mlnotes freeze" and rec["packages"]["numpy"]
    assert not (tmp_project / "_execution.json").exists()
    page = pages.execution_qmd(tmp_project)
    assert f"| [posts/a/index.qmd](../posts/a/index.qmd) | 2025-11-21 | {rec['executed']} | {rec['seconds']} |" in page


def merge_two_branches_that_freeze_different_notes(project) -> None:
    """Note a on main; branches x and y each add and freeze one more note; both are merged into main."""
    note(project, "a", 1)
    assert git(project, "init", "-q", "-b", "main").returncode == 0
    assert freeze(project) == 0
    git(project, "add", "-A")
    git(project, "commit", "-qm", "a")
    for branch, name, day in (("x", "b", 2), ("y", "c", 3)):
        git(project, "checkout", "-q", "-b", branch, "main")
        note(project, name, day)
        assert freeze(project) == 0
        git(project, "add", "-A")
        git(project, "commit", "-qm", name)
    git(project, "checkout", "-q", "main")
    assert git(project, "merge", "-q", "x").returncode == 0
    merged = git(project, "merge", "-q", "--no-edit", "y")
    assert merged.returncode == 0, merged.stdout + merged.stderr


def test_branches_freezing_different_notes_merge_without_conflict(tmp_project, capsys):
    merge_two_branches_that_freeze_different_notes(tmp_project)
    assert sorted(p.name for p in (tmp_project / "_provenance/posts").iterdir()) == ["a", "b", "c"]
    assert frozen_problems(tmp_project) == []


def test_generated_pages_do_not_make_branches_that_freeze_different_notes_conflict(tmp_project, capsys):
    # In this project (notes/_roadmap.yml) every freeze also rewrites notes/execution.qmd (a row per note and a
    # total) and notes/questions.yml: two branches that each freeze a new note conflicted in them on every merge.
    (tmp_project / "notes").mkdir()
    shutil.copy(ROOT / "notes/_roadmap.yml", tmp_project / "notes/_roadmap.yml")
    shutil.copy(ROOT / ".gitattributes", tmp_project / ".gitattributes")
    merge_two_branches_that_freeze_different_notes(tmp_project)
    capsys.readouterr()
    assert freeze(tmp_project) == 0  # regenerates the pages from the merged records, executing nothing
    assert "0 executed" in capsys.readouterr().out
    assert [p for p in check.check(tmp_project, lint_cells=False) if "generated page" in p or "record" in p] == []


def test_concurrent_freezes_of_different_notes_lose_nothing(tmp_project):
    for name, day in (("a", 1), ("b", 2), ("c", 3)):
        note(tmp_project, name, day)
    runs = [subprocess.Popen([sys.executable, "-m", "mlnotes.cli", "freeze", "--jobs", "1", "--project",
                              str(tmp_project), f"posts/{name}/index.qmd"], cwd=tmp_project,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for name in "abc"]
    for run in runs:
        assert run.wait(timeout=300) == 0, run.stdout.read()
        run.stdout.close()
    for name in "abc":
        assert record(tmp_project, f"posts/{name}/index.qmd")["hash"]


def test_legacy_execution_json_is_migrated_once(tmp_project, capsys):
    note(tmp_project, "a", 1)
    assert freeze(tmp_project) == 0
    rec = record(tmp_project)
    shutil.rmtree(tmp_project / "_provenance")
    legacy = {"posts/a/index.qmd": {k: rec[k] for k in ("executed", "seconds", "python", "packages")}}
    (tmp_project / "_execution.json").write_text(json.dumps(legacy))
    assert any(p.startswith("_execution.json:1: execution records are now kept one file per note")
               for p in check.check(tmp_project, lint_cells=False))
    capsys.readouterr()
    assert freeze(tmp_project) == 0
    out = capsys.readouterr().out
    assert "moved 1 execution records from _execution.json to _provenance/" in out
    assert "running" not in out  # nothing re-executed
    assert not (tmp_project / "_execution.json").exists()
    assert record(tmp_project) == rec  # the hash is taken from the stored result it was written with
    assert frozen_problems(tmp_project) == []


def test_corrupt_legacy_file_is_removed_with_one_sentence(tmp_project, capsys):
    note(tmp_project, "a", 1)
    (tmp_project / "_execution.json").write_text("<<<<<<< HEAD\n{\n=======\n")
    assert freeze(tmp_project) == 0
    assert "_execution.json was not valid JSON and has been removed" in capsys.readouterr().out
    assert not (tmp_project / "_execution.json").exists()


def test_corrupt_record_is_reported_then_replaced_by_the_next_freeze(tmp_project, capsys):
    note(tmp_project, "a", 1)
    assert freeze(tmp_project) == 0
    path = tmp_project / "_provenance/posts/a/index.qmd.json"
    path.write_text('<<<<<<< HEAD\n{"executed": "2025-11-20"}\n=======\n')
    assert frozen_problems(tmp_project) == [
        "posts/a/index.qmd:1: _provenance/posts/a/index.qmd.json is not a valid execution record (corrupt or "
        "merge-conflicted); the next mlnotes freeze of the note replaces it. Run: mlnotes freeze posts/a/index.qmd"]
    capsys.readouterr()
    assert freeze(tmp_project) == 0  # a plain freeze repairs what check reports
    out = capsys.readouterr().out
    assert "running   posts/a/index.qmd (its execution record is corrupt)" in out and "Traceback" not in out
    assert record(tmp_project)["hash"]
    assert frozen_problems(tmp_project) == []


def test_record_with_wrong_field_types_is_corrupt_not_a_traceback(tmp_project, capsys):
    # Valid JSON whose fields have the wrong types (a hand edit, a bad merge resolution) crashed the execution
    # page (float("abc")) and so `mlnotes check` and `mlnotes freeze` on the project.
    note(tmp_project, "a", 1)
    assert freeze(tmp_project) == 0
    path = tmp_project / "_provenance/posts/a/index.qmd.json"
    good = record(tmp_project)
    for field, value in [("seconds", "abc"), ("packages", {"numpy": [1]}), ("python", []), ("executed", 5),
                         ("hash", 7), ("by", {})]:
        path.write_text(json.dumps({**good, field: value}))
        assert frozen_problems(tmp_project) == [
            "posts/a/index.qmd:1: _provenance/posts/a/index.qmd.json is not a valid execution record (corrupt or "
            "merge-conflicted); the next mlnotes freeze of the note replaces it. Run: mlnotes freeze "
            "posts/a/index.qmd"], field
        assert "environment unknown" in pages.execution_qmd(tmp_project)  # no traceback
    capsys.readouterr()
    assert freeze(tmp_project) == 0
    assert "running   posts/a/index.qmd (its execution record is corrupt)" in capsys.readouterr().out
    assert record(tmp_project)["seconds"] is not None and frozen_problems(tmp_project) == []


def test_deleted_notes_record_is_kept_and_reported_until_pruned(tmp_project, capsys):
    note(tmp_project, "a", 1)
    note(tmp_project, "b", 2)
    assert freeze(tmp_project) == 0
    shutil.rmtree(tmp_project / "posts/b")
    capsys.readouterr()
    assert freeze(tmp_project) == 0
    out = capsys.readouterr().out
    assert "orphan    _provenance/posts/b/index.qmd.json (execution record of a note that no longer exists; " \
           "--prune removes it)" in out
    assert (tmp_project / "_provenance/posts/b/index.qmd.json").is_file()
    assert "_provenance/posts/b/index.qmd.json:1: execution record of a note that no longer exists; " \
           "run: mlnotes freeze --prune" in check.check(tmp_project, lint_cells=False)
    assert freeze(tmp_project, "--prune") == 0
    assert not (tmp_project / "_provenance/posts/b").exists()  # no empty folders left behind
    assert not (tmp_project / "_freeze/posts/b").exists()
    assert (tmp_project / "_provenance/posts/a/index.qmd.json").is_file()


def quarto_written(tmp_project, fixture="claire-stdout-and-figure"):
    """A note whose frozen result real Quarto wrote, in a project of ours."""
    src = FIXTURES / fixture
    shutil.copy(src / "index.qmd", tmp_project / "index.qmd")
    shutil.copytree(src / "_freeze/index", tmp_project / "_freeze/index")
    return tmp_project / "_freeze/index/execute-results/html.json"


def test_results_written_by_quarto_pass_check_with_unknown_environment(tmp_project, capsys):
    result = quarto_written(tmp_project)
    before = result.read_bytes()
    assert frozen_problems(tmp_project) == []
    assert freeze(tmp_project) == 0  # left alone, not re-executed
    assert "0 executed, 0 realigned, 1 fresh" in capsys.readouterr().out
    assert result.read_bytes() == before
    page = pages.execution_qmd(tmp_project)
    assert "| [index.qmd](../index.qmd) | 2025-01-18 | unknown |" in page
    assert "environment unknown: made without `mlnotes freeze`" in page


def test_author_records_a_quarto_result_deliberately(tmp_project, capsys):
    result = quarto_written(tmp_project)
    before = result.read_bytes()
    figures = sorted(p.read_bytes() for p in (tmp_project / "_freeze/index/figure-html").iterdir())
    assert freeze(tmp_project, "--record", str(tmp_project / "index.qmd")) == 0
    assert "recorded  index.qmd: environment recorded by author; nothing executed" in capsys.readouterr().out
    assert result.read_bytes() == before
    assert sorted(p.read_bytes() for p in (tmp_project / "_freeze/index/figure-html").iterdir()) == figures
    rec = record(tmp_project, "index.qmd")
    assert rec["by"] == "recorded by author" and rec["hash"] == json.loads(before)["hash"]
    assert "scikit-learn" in rec["packages"]
    assert "(recorded by author)" in pages.execution_qmd(tmp_project)
    assert frozen_problems(tmp_project) == []


def test_record_refuses_a_stale_result(tmp_project, capsys):
    quarto_written(tmp_project)
    (tmp_project / "index.qmd").write_text((tmp_project / "index.qmd").read_text() + "\nMore.\n")
    assert freeze(tmp_project, "--record", str(tmp_project / "index.qmd")) == 1
    assert "index.qmd has no current frozen result to record; run: mlnotes freeze index.qmd" in capsys.readouterr().out
    assert not (tmp_project / "_provenance").exists()


def test_committed_project_has_no_legacy_record_and_a_record_per_note():
    assert not (ROOT / "_execution.json").exists()
    from mlnotes import project
    for path in project.notes(ROOT):
        assert (ROOT / "_provenance" / f"{project.rel(ROOT, path)}.json").is_file(), path
    assert os.path.isdir(ROOT / "_provenance")
