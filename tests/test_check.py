"""`mlnotes check`: the project is clean, and each rule catches its bad input."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from conftest import ROOT, write
from mlnotes import check, cli

GOOD = '''---
title: "Daily Notes: 2025-11-20"
date: 2025-11-20
description: "A note that passes every check."
categories: [daily, testing]
concepts: [gradients]
---

See @fig-line and [the other note](../2025-11-21/index.qmd).

```{python}
#| label: fig-line
#| fig-cap: "A line"
#| fig-alt: "A straight rising line"
import matplotlib.pyplot as plt
plt.plot([0, 1])
plt.show()
```
'''


def test_the_project_passes_every_check():
    """CI fails here when a note changed without `mlnotes freeze`, or any other rule is broken."""
    problems = check.check(ROOT)
    assert problems == [], "\n".join(problems)


@pytest.fixture(scope="module")
def frozen_template(tmp_path_factory):
    """Two good notes, frozen once; each test gets its own copy."""
    root = tmp_path_factory.mktemp("template")
    write(root / "_quarto.yml", "project:\n  type: website\n")
    write(root / "posts/2025-11-20/index.qmd", GOOD)
    write(root / "posts/2025-11-21/index.qmd", GOOD.replace("2025-11-20", "2025-11-21")
          .replace("[the other note](../2025-11-21/index.qmd)", "nothing else"))
    write(root / "pyproject.toml", '[tool.ruff.lint]\nselect = ["E", "F"]\nignore = ["E402"]\n')
    assert cli.main(["freeze", "--project", str(root), "--jobs", "1"]) == 0
    return root


@pytest.fixture
def project(frozen_template, tmp_path):
    copy = tmp_path / "project"
    shutil.copytree(frozen_template, copy)
    return copy


def problems_for(project, **kw):
    return check.check(project, **kw)


def test_clean_project_has_no_problems(project):
    assert problems_for(project) == []


def edit(project, old, new, note="posts/2025-11-20/index.qmd"):
    path = project / note
    path.write_text(path.read_text().replace(old, new))
    return path


def test_stale_source(project):
    edit(project, "A note that passes", "A note, edited, that passes")
    assert problems_for(project) == [
        "posts/2025-11-20/index.qmd:1: frozen result is stale (source changed); run: mlnotes freeze"]


def test_missing_frozen_result(project):
    shutil.rmtree(project / "_freeze/posts/2025-11-21")
    assert "posts/2025-11-21/index.qmd:1: frozen result is missing; run: mlnotes freeze posts/2025-11-21/index.qmd" \
        in problems_for(project)


def test_missing_figure_file(project):
    for png in (project / "_freeze/posts/2025-11-20/index/figure-html").glob("*.png"):
        png.unlink()
    assert any("frozen figure _freeze/posts/2025-11-20/index/figure-html/fig-line-output-1.png is missing" in p
               for p in problems_for(project))


def test_environment_stale(project):
    path = project / "_provenance/posts/2025-11-20/index.qmd.json"
    record = json.loads(path.read_text())
    record["packages"]["matplotlib"] = "0.1"
    path.write_text(json.dumps(record))
    write(project / "requirements.txt", "matplotlib==3.11.2\n")
    assert any(p.startswith("posts/2025-11-20/index.qmd:1: frozen result is stale (environment): executed with "
                            "matplotlib 0.1, pinned 3.11.2; install the pins first (make, or pip install -r "
                            "requirements.txt), then run: mlnotes freeze posts/2025-11-20/index.qmd")
               for p in problems_for(project))


def test_orphan(project):
    shutil.move(project / "posts/2025-11-21", project / "posts/2025-11-22")
    problems = problems_for(project)
    assert "_freeze/posts/2025-11-21/index/execute-results/html.json:1: orphaned frozen result (its source is gone); " \
           "run: mlnotes freeze --prune" in problems


@pytest.mark.parametrize("old, new, expected", [
    ('description: "A note that passes every check."\n', "", "posts/2025-11-20/index.qmd:1: front matter has no description."),
    ("date: 2025-11-20", "date: 2025-11-19", "posts/2025-11-20/index.qmd:3: date 2025-11-19 differs from the folder's date 2025-11-20."),
    ("date: 2025-11-20", "date: 20 Nov 2025", "posts/2025-11-20/index.qmd:3: date '20 Nov 2025' is not an ISO date (YYYY-MM-DD)."),
    ("categories: [daily, testing]", "categories: daily", "posts/2025-11-20/index.qmd:5: categories must be a list, e.g. [daily, probability]."),
    ("categories: [daily, testing]", "categories: [testing, daily]", "posts/2025-11-20/index.qmd:5: a daily note's categories start with 'daily'."),
    ("concepts: [gradients]", "concepts: gradients", "posts/2025-11-20/index.qmd:6: concepts must be a list, e.g. concepts: [a, b]."),
    ("concepts: [gradients]", "concepts: [gradients]\nmentions: jacobians", "posts/2025-11-20/index.qmd:7: mentions must be a list, e.g. mentions: [a, b]."),
    ("[the other note](../2025-11-21/index.qmd)", "[gone](../2025-11-99/index.qmd)", "posts/2025-11-20/index.qmd:9: link to ../2025-11-99/index.qmd does not resolve to a file."),
    ("See @fig-line", "See @fig-nope", "posts/2025-11-20/index.qmd:9: cross-reference @fig-nope has no matching label in this note."),
    ("title: \"Daily", "title: [\"Daily", "posts/2025-11-20/index.qmd:2: the front matter is not valid YAML"),  # where [ opens
])
def test_front_matter_and_link_rules(project, old, new, expected):
    edit(project, old, new)
    problems = problems_for(project)
    assert any(p.startswith(expected) for p in problems), problems


FIG_CELL = "```{python}\n#| label: fig-line\n"


@pytest.mark.parametrize("edits, expected", [
    # every figure needs alt text, a caption is not enough
    ([('#| fig-alt: "A straight rising line"\n', "")],
     "posts/2025-11-20/index.qmd:13: this figure has fig-cap but no fig-alt; every figure needs alt text"),
    # a misspelt cell option, with the closest real one
    ([(FIG_CELL, FIG_CELL + "#| echoo: false\n")],
     "posts/2025-11-20/index.qmd:13: 'echoo' is not a Quarto cell option; did you mean 'echo'?"),
    ([(FIG_CELL, FIG_CELL + "#| fig-alt-text: x\n")],
     "posts/2025-11-20/index.qmd:13: 'fig-alt-text' is not a Quarto cell option; did you mean 'fig-alt'?"),
    # answers: no such note, no such question, a question asked later
    ([("concepts: [gradients]", 'concepts: [gradients]\nanswers: ["2025-11-19#q1"]')],
     "posts/2025-11-20/index.qmd:7: answers '2025-11-19#q1', but there is no note posts/2025-11-19/index.qmd."),
    ([("concepts: [gradients]", 'concepts: [gradients]\nanswers: ["2025-11-21#q2"]')],
     "posts/2025-11-20/index.qmd:7: answers '2025-11-21#q2', but posts/2025-11-21/index.qmd has 1 question under"),
    ([("concepts: [gradients]", 'concepts: [gradients]\nanswers: ["2025-11-21#q1"]')],
     "posts/2025-11-20/index.qmd:7: answers '2025-11-21#q1', a question asked on or after this note's date."),
    ([("concepts: [gradients]", 'concepts: [gradients]\nanswers: ["Nov 19, q1"]')],
     "posts/2025-11-20/index.qmd:7: answers id 'Nov 19, q1' is not of the form YYYY-MM-DD#qN"),
    # @fig- pointing at something that is not a figure
    ([("See @fig-line", "See @fig-head"), (FIG_CELL, "## Head {#fig-head}\n\n" + FIG_CELL)],
     "posts/2025-11-20/index.qmd:9: cross-reference @fig-head points at no figure: its label is not on a figure cell"),
    ([(FIG_CELL, FIG_CELL + "#| eval: false\n")],
     "posts/2025-11-20/index.qmd:9: cross-reference @fig-line points at no figure: the cell at line 11 shows no output"),
    # reference-style links resolve like inline links
    ([("[the other note](../2025-11-21/index.qmd)", "[the other note][other]")],
     "posts/2025-11-20/index.qmd:9: reference link [the other note][other] has no definition"),
    ([("[the other note](../2025-11-21/index.qmd)", "[the other note][]")],
     "posts/2025-11-20/index.qmd:9: reference link [the other note][] has no definition"),
    ([("[the other note](../2025-11-21/index.qmd).", "[the other note][Other].\n\n[other]: ../2025-11-99/index.qmd")],
     "posts/2025-11-20/index.qmd:11: link to ../2025-11-99/index.qmd does not resolve to a file."),
])
def test_check_gaps(project, edits, expected):
    write(project / "posts/2025-11-21/index.qmd", (project / "posts/2025-11-21/index.qmd").read_text()
          + "\n## Questions I still have\n\n- Why?\n")
    for old, new in edits:
        edit(project, old, new)
    problems = problems_for(project, lint_cells=False)
    assert any(p.startswith(expected) for p in problems), problems


def test_reference_links_and_figure_references_that_resolve_are_not_reported(project):
    edit(project, "[the other note](../2025-11-21/index.qmd).",
         "[the other note][Other], $x[i][j]$, [a figure](#fig-line).\n\n[other]: ../2025-11-21/index.qmd")
    edit(project, "See @fig-line", "See @fig-line, @fig-md and @fig-div")
    edit(project, FIG_CELL, "![A picture](pic.png){#fig-md fig-alt='x'}\n\n::: {#fig-div}\nx\n:::\n\n" + FIG_CELL)
    (project / "posts/2025-11-20/pic.png").write_bytes(b"")
    assert problems_for(project, lint_cells=False) == [
        "posts/2025-11-20/index.qmd:1: frozen result is stale (source changed); run: mlnotes freeze"]


def test_figure_without_alt_text(project):
    path = edit(project, '#| fig-cap: "A line"\n#| fig-alt: "A straight rising line"\n', "")
    path.write_text(path.read_text().replace("See @fig-line and", "See"))
    assert cli.main(["freeze", "--project", str(project), "--jobs", "1"]) == 0
    assert problems_for(project) == [
        "posts/2025-11-20/index.qmd:11: this cell makes a figure without fig-alt or fig-cap (add '#| fig-alt: ...')."]


def test_ruff_findings_point_at_the_qmd_line(project):
    path = edit(project, "import matplotlib.pyplot as plt\n", "import matplotlib.pyplot as plt\nimport os\n")
    assert cli.main(["freeze", "--project", str(project), "--jobs", "1", str(path)]) == 0
    assert problems_for(project) == ["posts/2025-11-20/index.qmd:16: ruff F401: `os` imported but unused"]


def test_untracked_frozen_files(project):
    import subprocess
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    problems = problems_for(project)
    assert any(p.startswith("_freeze/posts/2025-11-20/index/execute-results/html.json:1: frozen file is not tracked")
               for p in problems)


def test_cli_exit_status_and_format(project, capsys):
    assert cli.main(["check", "--project", str(project)]) == 0
    edit(project, "date: 2025-11-20", "date: 2025-11-19")
    capsys.readouterr()
    assert cli.main(["check", "--project", str(project)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines and all(line.count(":") >= 2 and line.split(":")[1].isdigit() for line in lines)


def test_check_is_fast_on_this_project():
    """Not a benchmark (see benchmarks/): a guard that check stays a sub-second habit, with slack for CI."""
    start = time.perf_counter()
    check.check(ROOT)
    assert time.perf_counter() - start < 5


def test_messages_use_project_relative_paths(project):
    (project / "_freeze/posts/2025-11-20/index/execute-results/html.json").write_text("{ not json")
    problems = problems_for(project, lint_cells=False)
    assert "posts/2025-11-20/index.qmd:1: _freeze/posts/2025-11-20/index/execute-results/html.json is not valid JSON " \
           "(corrupt frozen result); rerun with --force to replace it." in problems
    assert not any(str(project) in p for p in problems), problems


def test_lint_findings_are_cached_by_code_and_configuration(project, monkeypatch):
    path = edit(project, "import matplotlib.pyplot as plt\n", "import matplotlib.pyplot as plt\nimport os\n")
    finding = "posts/2025-11-20/index.qmd:16: ruff F401: `os` imported but unused"
    assert finding in check.lint(project, {"posts/2025-11-20/index.qmd": check.parse_file(path)})
    assert (project / ".mlnotes-cache/lint.json").is_file()
    # nothing changed: the findings come from the cache, ruff does not run
    monkeypatch.setattr(check, "_run_ruff", lambda *a: pytest.fail("ruff ran although nothing changed"))
    docs = {"posts/2025-11-20/index.qmd": check.parse_file(path)}
    assert finding in check.lint(project, docs)
    # prose moved the code down: same code, same cache entry, new .qmd line
    path.write_text(path.read_text().replace("See @fig-line", "A new line.\n\nSee @fig-line"))
    docs = {"posts/2025-11-20/index.qmd": check.parse_file(path)}
    assert finding.replace(":16:", ":18:") in check.lint(project, docs)
    monkeypatch.undo()
    # a changed configuration is a new key: ruff runs again and the finding goes
    write(project / "pyproject.toml", '[tool.ruff.lint]\nselect = ["E", "F"]\nignore = ["E402", "F401"]\n')
    assert check.lint(project, docs) == []
    # so does changed code
    write(project / "pyproject.toml", '[tool.ruff.lint]\nselect = ["E", "F"]\nignore = ["E402"]\n')
    path.write_text(path.read_text().replace("import os\n", "import sys\n"))
    docs = {"posts/2025-11-20/index.qmd": check.parse_file(path)}
    assert check.lint(project, docs) == ["posts/2025-11-20/index.qmd:18: ruff F401: `sys` imported but unused"]


def test_untracked_files_with_non_ascii_or_spaces_in_their_path(tmp_project):
    # git quotes such paths ("caf\303\251") unless asked not to: the advice named files that do not exist,
    # called an execution record a "frozen file", and `git add` did not work when pasted into a shell.
    import subprocess

    write(tmp_project / "posts/my café/index.qmd", "---\ntitle: A\n---\n\n```{python}\nprint(1)\n```\n")
    assert cli.main(["freeze", "--project", str(tmp_project), "--jobs", "1"]) == 0
    subprocess.run(["git", "init", "-q"], cwd=tmp_project, check=True)
    problems = [p for p in check.check(tmp_project, lint_cells=False) if "tracked" in p]
    assert problems == [
        "_freeze/posts/my café/index/execute-results/html.json:1: frozen file is not tracked by git; "
        "run: git add '_freeze/posts/my café/index/execute-results/html.json'",
        "_provenance/posts/my café/index.qmd.json:1: execution record is not tracked by git; "
        "run: git add '_provenance/posts/my café/index.qmd.json'"]


def test_merge_conflict_markers_left_in_a_note_are_reported(tmp_project):
    # A conflict resolved by `git add` without removing the markers renders them on the published page.
    write(tmp_project / "notes/a.qmd", "---\ntitle: A\ndescription: d\n---\n\n<<<<<<< HEAD\nOurs.\n=======\n"
                                       "Theirs.\n>>>>>>> other-branch\n\nSetext heading\n=======\n")
    problems = check.check(tmp_project, lint_cells=False)
    assert problems == [
        "notes/a.qmd:6: a git merge conflict marker; resolve the conflict and remove the markers.",
        "notes/a.qmd:10: a git merge conflict marker; resolve the conflict and remove the markers."]
