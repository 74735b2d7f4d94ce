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
    ("[the other note](../2025-11-21/index.qmd)", "[gone](../2025-11-99/index.qmd)", "posts/2025-11-20/index.qmd:9: link to ../2025-11-99/index.qmd does not resolve to a file."),
    ("See @fig-line", "See @fig-nope", "posts/2025-11-20/index.qmd:9: cross-reference @fig-nope has no matching label in this note."),
    ("title: \"Daily", "title: [\"Daily", "posts/2025-11-20/index.qmd:3: the front matter is not valid YAML"),
])
def test_front_matter_and_link_rules(project, old, new, expected):
    edit(project, old, new)
    problems = problems_for(project)
    assert any(p.startswith(expected) for p in problems), problems


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
