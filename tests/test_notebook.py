"""Readers' notebooks: valid, current, runnable, faithful to the frozen page, and linked the way Quarto reads links."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

from conftest import ROOT, write
from mlnotes import check, cli, notebook, project
from mlnotes.execute import KERNEL_ENV
from mlnotes.markdown import discardable, merge_streams, render_cell
from mlnotes.qmd import parse_file

NOTES = project.notes(ROOT)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def run(nb: nbformat.NotebookNode, folder: Path) -> nbformat.NotebookNode:
    """Execute a copy of `nb` from a clean kernel in `folder`, with the executor's thread/hash settings."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    saved = {k: os.environ.get(k) for k in KERNEL_ENV}
    os.environ.update(KERNEL_ENV)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    return nb


def texts(outputs) -> list[tuple]:
    """The text a page shows for a cell: streams (merged) and plain-text results, Quarto's discards removed."""
    outputs = [dict(o) for o in outputs]
    image = any(k.startswith("image/") for o in outputs for k in o.get("data", {}))
    kept = [o for o in merge_streams(outputs) if not discardable(o, image)]
    shown = [(o["output_type"], o.get("name"), o.get("text") or o["data"]["text/plain"]) for o in kept
             if o["output_type"] == "stream" or list(o.get("data", {})) == ["text/plain"]]
    # the page names a warning's cell file without the kernel's per-run folder, as the writer does
    return [(kind, name, re.sub(r"(?:/[^\s:]*)?/ipykernel_\d+/(\d+\.py)", r"\1", text) if name == "stderr" else text)
            for kind, name, text in shown]


# ---------------------------------------------------------------- the committed notebooks

def test_every_note_with_python_cells_has_a_valid_notebook():
    assert len(NOTES) >= 10
    for note in NOTES:
        path = notebook.notebook_file(note)
        assert path.is_file(), path
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        doc_cells = sum(1 for line in note.read_text(encoding="utf-8").splitlines() if line.startswith("```{python"))
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert len(code) == doc_cells + 1, path  # every Python cell, plus the Colab setup cell
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


def test_committed_notebooks_and_links_are_current():
    assert notebook.stale(ROOT) == []


def test_smallest_notebook_runs_from_a_clean_kernel_and_prints_what_the_page_shows():
    path = min((notebook.notebook_file(n) for n in NOTES), key=lambda p: p.stat().st_size)
    nb = nbformat.read(path, as_version=4)
    executed = run(nb, path.parent)
    frozen = json.loads(project.result_file(ROOT, ROOT / nb.metadata["mlnotes"]["source"]).read_text())
    compared = 0
    for stored, fresh in zip(nb.cells, executed.cells):
        if stored.cell_type != "code" or stored.id == "mlnotes-colab-setup":
            continue
        assert texts(fresh.outputs) == texts(stored.outputs), stored.source
        for _, _, text in texts(stored.outputs):
            assert text.rstrip("\n") in frozen["result"]["markdown"]  # the notebook shows the frozen text
            compared += 1
    assert compared >= 1
    assert texts(executed.cells[1].outputs) == []  # the Colab setup cell does nothing here


@pytest.mark.parametrize("note", NOTES, ids=lambda p: project.rel(ROOT, p))
def test_outputs_read_back_from_the_frozen_page_write_it_again(note):
    """Round trip: the writer, given the notebook's outputs, writes exactly the stored cell markdown (and figures),
    so the notebook holds every output the page shows, nothing more."""
    rel = project.rel(ROOT, note)
    doc = parse_file(note, ROOT, Path(rel))
    options = project.execute_options(ROOT, doc, note)
    stored = json.loads(project.result_file(ROOT, note).read_text())["result"]["markdown"]
    pieces = notebook.split_frozen(stored, doc, options)
    nb = nbformat.read(notebook.notebook_file(note), as_version=4)
    by_source = {c.source: c for c in nb.cells if c.cell_type == "code"}
    figures: dict[str, bytes] = {}
    for chunk, piece in zip(doc.chunks, pieces):
        if chunk.cell is not None:
            cell = by_source["\n".join(chunk.cell.option_lines + chunk.cell.code)]
            outputs = [json.loads(json.dumps(o)) for o in cell.outputs]
            written = render_cell(doc, chunk.cell, outputs, options, note.stem, figures)
            assert written.strip("\n") == piece.strip("\n"), f"{rel}:{chunk.cell.line}"
    for name, data in figures.items():
        assert data == (project.figure_dir(ROOT, note) / name).read_bytes()


FIXTURES = sorted(p for p in (ROOT.parent / "shared/quarto-freeze-fixtures").glob("*/") if p.is_dir())


@pytest.mark.skipif(not FIXTURES, reason="the shared Quarto fixtures are not on this machine")
def test_notebooks_can_be_made_from_results_real_quarto_wrote(tmp_path):
    """Real Quarto results (1.3 to 1.8 era) read back: ANSI-escaped tracebacks, re-serialised front matter, blank
    lines. A fixture whose source includes a file that was not kept cannot line up, and is skipped."""
    made, errors = 0, []
    for fixture in FIXTURES:
        root = tmp_path / fixture.name
        shutil.copytree(fixture, root)
        write(root / "_quarto.yml", "project:\n  type: website\nnotebooks:\n  github: someone/site\n")
        source = next(root.glob("*.qmd"))
        doc = parse_file(source, root, Path(source.name))
        stored = json.loads(project.result_file(root, source).read_text())
        try:
            nb = notebook.build(root, source, doc, stored, {}, notebook.repo(root))
        except notebook.NotebookError:
            includes = re.findall(r"^\{\{<\s*include\s+(\S+)\s*>\}\}", source.read_text(), re.M)
            assert any(not (root / name).exists() for name in includes), fixture.name
            continue
        nbformat.validate(nb)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        streams = [o.text for o in outputs if o.output_type == "stream"]
        assert all(text.strip() in stored["result"]["markdown"] for text in streams), fixture.name
        errors += [o for o in outputs if o.output_type == "error"]
        made += 1
    assert made >= len(FIXTURES) - 1
    assert errors and all(o.traceback and not any("<span" in line for line in o.traceback) for o in errors)


def test_the_colab_cell_installs_what_is_missing_and_fetches_the_files_the_note_reads(tmp_path, monkeypatch):
    """Run the environment page's first cell as Colab would (faked): it installs only the missing package at the
    version the outputs were made with, downloads the files the note reads and moves into the note's folder."""
    import importlib.util
    import subprocess
    import sys
    import types
    import urllib.request

    nb = nbformat.read(ROOT / "notes/_environment.ipynb", as_version=4)
    source = nb.cells[1].source.replace("'/content/", repr(str(tmp_path) + "/")[:-1])
    installs, fetched = [], []
    real_find_spec = importlib.util.find_spec
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "scipy" else real_find_spec(name))
    monkeypatch.setattr(subprocess, "run", lambda cmd, check: installs.append(cmd[3:]))
    monkeypatch.setattr(urllib.request, "urlretrieve", lambda url, dest: (
        fetched.append(url), shutil.copy(ROOT / url.split("/main/", 1)[1], dest)))
    monkeypatch.chdir(tmp_path)
    exec(compile(source, "colab-setup", "exec"), {})
    pinned = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines()
                  if "==" in line and not line.startswith("#"))
    assert installs == [["install", "--quiet", f"scipy=={pinned['scipy']}"]]
    assert sorted(u.rsplit("/", 1)[1] for u in fetched) == ["environment.yml", "requirements.txt"]
    assert Path.cwd() == tmp_path / "ml-daily-notes/notes"
    assert Path("../requirements.txt").read_text() == (ROOT / "requirements.txt").read_text()  # as the note reads it


# ---------------------------------------------------------------- links, as Quarto reads them

def expected_repo() -> tuple[str, str, str]:
    config = load(ROOT / "_quarto.yml")
    settings = config["notebooks"]
    if settings.get("github"):
        owner, name = settings["github"].split("/")
    else:
        m = re.match(r"https://([^.]+)\.github\.io/([^/]+)/", config["website"]["site-url"])
        owner, name = m.groups()
    return owner, name, settings.get("branch", "main")


def metadata_quarto_merges(note: Path) -> dict:
    """The generated links file Quarto merges into this page: its folder's _metadata.yml (read for every page in
    the folder), or a file the page names in `metadata-files` (read relative to the page)."""
    folder_meta = note.parent / "_metadata.yml"
    front = load_front_matter(note)
    named = front.get("metadata-files") or []
    if named:
        assert len(named) == 1
        return load(note.parent / named[0])
    pages_here = [p for p in project.all_qmd(ROOT) if p.parent == note.parent]
    assert pages_here == [note], "a folder _metadata.yml would give its links to every page in the folder"
    return load(folder_meta)


def load_front_matter(note: Path) -> dict:
    text = note.read_text(encoding="utf-8")
    return yaml.safe_load(text.split("\n---", 1)[0].removeprefix("---\n")) or {}


def test_every_page_with_python_cells_has_colab_binder_and_download_links():
    owner, name, branch = expected_repo()
    for note in NOTES:
        meta = metadata_quarto_merges(note)
        links = meta["code-links"]
        # Quarto's OtherLink: {text, href, icon?, rel?, target?} (src/config/types.ts); a list under code-links
        assert all(set(link) <= {"text", "href", "icon", "rel", "target"} for link in links)
        by_text = {link["text"]: link["href"] for link in links}
        assert list(by_text) == ["Open in Colab", "Launch Binder", "Download notebook"]
        nb_path = note.parent / by_text["Download notebook"]
        assert nb_path.is_file() and not project.is_rendered(nb_path.relative_to(ROOT))  # "_": never a page
        repo_path = nb_path.relative_to(ROOT).as_posix()
        assert by_text["Open in Colab"] == f"https://colab.research.google.com/github/{owner}/{name}/blob/{branch}/{repo_path}"
        assert by_text["Launch Binder"] == (f"https://mybinder.org/v2/gh/{owner}/{name}/{branch}?labpath="
                                            + repo_path.replace("/", "%2F"))
        assert meta["resources"] == [nb_path.name]  # copied into _site beside the page


def test_the_kernel_is_set_where_quarto_reads_it():
    assert load(ROOT / "_quarto.yml")["jupyter"] == "python3"
    for meta in ROOT.rglob("_metadata.yml"):
        if ".venv" not in meta.parts:
            assert "jupyter" not in load(meta), f"{meta}: Quarto ignores jupyter: in _metadata.yml"


def test_binder_builds_from_the_same_pins_without_quarto():
    def pins(path: Path) -> set[str]:
        found = set()
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("-r "):
                found |= pins(path.parent / line[3:].strip())  # pip reads -r relative to the including file
            elif line:
                found.add(line)
        return found

    binder = ROOT / "binder"
    assert pins(binder / "requirements.txt") == pins(ROOT / "requirements.txt")
    assert not any("quarto" in p for p in pins(binder / "requirements.txt"))
    assert (binder / "runtime.txt").read_text().strip() == "python-3.11"
    assert "python=3.11" in (ROOT / "environment.yml").read_text()
    # with binder/ present, repo2docker ignores the root environment.yml (which installs quarto-cli)
    assert not (binder / "environment.yml").exists()


# ---------------------------------------------------------------- a note with every kind of cell

NOTE = '''---
title: "Every kind of cell"
date: 2025-11-20
description: "Outputs of each type."
categories: [daily]
---

Every kind of cell.

```{python}
import warnings
import numpy as np
import pandas as pd
answer = 6 * 7
data = open("../shared.txt").read().strip()
print("stdout line", data)
warnings.warn("careful")
```

The answer is `{python} answer` and [the other day](../2025-11-21/index.qmd) has more; @fig-line shows a line.

```{python}
#| label: fig-line
#| fig-cap: "A line"
#| fig-alt: "A rising line"
import matplotlib.pyplot as plt
plt.plot([0, 1])
plt.show()
```

```{python}
#| eval: false
raise SystemExit("never run")
```

```{python}
#| include: false
hidden = answer + 1
```

```{python}
#| echo: false
print("hidden is", hidden)
```

```{python}
pd.DataFrame({"a": [1, 2]})
```

```{python}
np.arange(3)
```

```{python}
#| error: true
1 / 0
```
'''


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    root = tmp_path_factory.mktemp("nbproject")
    write(root / "_quarto.yml", """
        project:
          type: website
        website:
          site-url: "https://someone.github.io/notes-fork/"
        notebooks:
          branch: trunk
        """)
    write(root / "posts/shared.txt", "from a file\n")
    write(root / "posts/2025-11-20/index.qmd", NOTE)
    write(root / "posts/2025-11-21/index.qmd", NOTE.replace("2025-11-20", "2025-11-21"))
    assert cli.main(["freeze", "--project", str(root), "--jobs", "1", str(root / "posts/2025-11-20/index.qmd")]) == 0
    return root


@pytest.fixture
def site(frozen, tmp_path):
    copy = tmp_path / "site"
    shutil.copytree(frozen, copy)
    return copy


def test_freeze_writes_a_faithful_notebook_for_every_kind_of_cell(frozen):
    path = frozen / "posts/2025-11-20/_2025-11-20.ipynb"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    cells = {c.id: c for c in nb.cells}
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert nb.cells[0].source.startswith("# Every kind of cell")
    assert "The answer is 42 and [the other day](https://someone.github.io/notes-fork/posts/2025-11-21/index.html)" in md
    assert "@fig-line" not in md and "Figure 1 shows a line" in md  # cross-references as the page numbers them
    assert "title:" not in md  # the front matter is not a cell
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = code[1]
    assert [(o.output_type, o.get("name")) for o in first.outputs] == [("stream", "stdout"), ("stream", "stderr")]
    assert first.outputs[0].text == "stdout line from a file\n" and "careful" in first.outputs[1].text
    figure = cells["fig-line"]
    png = base64.b64decode(figure.outputs[0].data["image/png"])
    assert png == (frozen / "_freeze/posts/2025-11-20/index/figure-html/fig-line-output-1.png").read_bytes()
    assert figure.outputs[0].metadata["image/png"]["width"] > 0
    assert figure.source.startswith("#| label: fig-line")
    after = nb.cells[nb.cells.index(figure) + 1]
    assert after.cell_type == "markdown" and after.source == "*Figure 1: A line*"  # the caption the page shows
    never = next(c for c in code if "never run" in c.source)
    assert never.outputs == [] and never.execution_count is None  # eval: false stays code, without outputs
    hidden = next(c for c in code if "hidden = answer + 1" in c.source)
    assert hidden.outputs == [] and hidden.execution_count is not None  # include: false stays in, so the rest runs
    shown = next(c for c in code if 'print("hidden is"' in c.source)  # echo: false: the reader sees the code
    assert shown.outputs[0].text == "hidden is 43\n"
    table = next(c for c in code if "pd.DataFrame" in c.source)
    assert table.outputs[0].output_type == "execute_result" and "<table" in table.outputs[0].data["text/html"]
    arange = next(c for c in code if "np.arange" in c.source)
    assert arange.outputs[0].data == {"text/plain": "array([0, 1, 2])"}
    error = next(c for c in code if "1 / 0" in c.source)
    assert error.outputs[0].output_type == "error" and error.outputs[0].ename == "ZeroDivisionError"
    setup = nb.cells[1].source
    assert '"google.colab" in sys.modules' in setup and "'numpy': ('numpy', " in setup
    assert "['posts/shared.txt']" in setup and "raw.githubusercontent.com/someone/notes-fork/trunk/" in setup
    meta = load(frozen / "posts/2025-11-20/_metadata.yml")
    assert meta["code-links"][0]["href"] == ("https://colab.research.google.com/github/someone/notes-fork/blob/trunk/"
                                             "posts/2025-11-20/_2025-11-20.ipynb")


def test_the_notebook_runs_and_prints_what_the_page_shows(frozen):
    path = frozen / "posts/2025-11-20/_2025-11-20.ipynb"
    nb = nbformat.read(path, as_version=4)
    executed = run(nb, path.parent)
    for stored, fresh in zip(nb.cells, executed.cells):
        if stored.cell_type == "code" and stored.execution_count is not None and stored.outputs:
            assert texts(fresh.outputs) == texts(stored.outputs), stored.source


def test_notebooks_are_byte_identical_when_regenerated(frozen):
    (frozen / notebook.BUILT).unlink(missing_ok=True)  # build every notebook, twice
    first, _ = notebook.expected(frozen)
    (frozen / notebook.BUILT).unlink()
    second, _ = notebook.expected(frozen)
    assert first == second and None not in first.values()
    assert first["posts/2025-11-20/_2025-11-20.ipynb"] == (frozen / "posts/2025-11-20/_2025-11-20.ipynb").read_text()


def test_unchanged_notebooks_are_not_built_again_but_edits_are_seen(frozen, monkeypatch):
    notebook.expected(frozen)  # fills the cache
    monkeypatch.setattr(notebook, "build", lambda *a: pytest.fail("an unchanged note was built again"))
    files, _ = notebook.expected(frozen)
    assert files["posts/2025-11-20/_2025-11-20.ipynb"] is None  # current on disk
    monkeypatch.undo()
    path = frozen / "posts/2025-11-20/_2025-11-20.ipynb"
    text = path.read_text()
    path.write_text(text.replace('"cells": [', '"cells":  [', 1))  # a hand edit: same inputs, new content
    assert path.read_text() != text
    assert any("_2025-11-20.ipynb:1: notebook is out of date" in p for p in notebook.stale(frozen))
    path.write_text(text)  # the fixture is shared with later tests


def test_check_reports_missing_and_stale_notebooks(site):
    assert [p for p in check.check(site, lint_cells=False) if "_2025-11-20" in p or "_metadata" in p] == []
    nb_path = site / "posts/2025-11-20/_2025-11-20.ipynb"
    nb_path.write_text(nb_path.read_text().replace("stdout line", "edited line"))
    assert "posts/2025-11-20/_2025-11-20.ipynb:1: notebook is out of date; run: mlnotes freeze" in \
        check.check(site, lint_cells=False)
    nb_path.unlink()
    (site / "posts/2025-11-20/_metadata.yml").unlink()
    problems = check.check(site, lint_cells=False)
    assert "posts/2025-11-20/_2025-11-20.ipynb:1: notebook is missing; run: mlnotes freeze" in problems
    assert "posts/2025-11-20/_metadata.yml:1: notebook links file is missing; run: mlnotes freeze" in problems
    assert cli.main(["notebooks", "--project", str(site)]) == 0
    assert [p for p in check.check(site, lint_cells=False) if "_2025-11-20" in p or "_metadata" in p] == []


def test_a_page_sharing_its_folder_must_name_its_links_file(site, capsys):
    shutil.copy(site / "posts/2025-11-20/index.qmd", site / "posts/2025-11-20/extra.qmd")
    assert cli.main(["freeze", "--project", str(site), "--jobs", "1", str(site / "posts/2025-11-20/extra.qmd")]) == 1
    out = capsys.readouterr().out
    assert "posts/2025-11-20/extra.qmd:6: Quarto does not read this page's notebook links; add " \
           "`metadata-files: [_extra.yml]` to its front matter." in out
    assert (site / "posts/2025-11-20/_extra.yml").is_file()


def test_without_a_notebooks_block_nothing_is_written(tmp_project):
    write(tmp_project / "posts/a/index.qmd", "---\ntitle: A\n---\n\n```{python}\nprint(1)\n```\n")
    assert cli.main(["freeze", "--project", str(tmp_project), "--jobs", "1"]) == 0
    assert not list(tmp_project.rglob("*.ipynb")) and not (tmp_project / "posts/a/_metadata.yml").exists()


def test_check_reuses_built_notebooks_yet_sees_every_change_to_their_inputs(site, monkeypatch):
    # Building every notebook on every `mlnotes check` made check on this project 0.8 s (0.1 s before notebooks);
    # notebooks are now rebuilt only when something they are made from changed (.mlnotes-cache/notebooks.json).
    def ours(problems):
        return [p for p in problems if "_2025-11-20.ipynb" in p]
    assert ours(check.check(site, lint_cells=False)) == []
    real_build = notebook.build

    def no_build(*args):
        raise AssertionError("a notebook was built although nothing it is made from changed")
    monkeypatch.setattr(notebook, "build", no_build)
    assert ours(check.check(site, lint_cells=False)) == []
    monkeypatch.setattr(notebook, "build", real_build)
    stale = ["posts/2025-11-20/_2025-11-20.ipynb:1: notebook is out of date; run: mlnotes freeze"]
    figure = site / "_freeze/posts/2025-11-20/index/figure-html/fig-line-output-1.png"
    original = figure.read_bytes()
    other = next(p for p in ROOT.glob("_freeze/posts/*/index/figure-html/*.png"))
    figure.write_bytes(other.read_bytes())  # the frozen figure changed: the notebook embeds it
    assert ours(check.check(site, lint_cells=False)) == stale
    figure.write_bytes(original)
    assert ours(check.check(site, lint_cells=False)) == []
    record = site / "_provenance/posts/2025-11-20/index.qmd.json"
    data = json.loads(record.read_text())
    data["packages"]["numpy"] = "0.0.1"  # the versions the Colab cell names
    record.write_text(json.dumps(data))
    assert ours(check.check(site, lint_cells=False)) == stale
    nb_path = site / "posts/2025-11-20/_2025-11-20.ipynb"
    assert cli.main(["notebooks", "--project", str(site)]) == 0
    nb_path.write_text(nb_path.read_text().replace("stdout line", "edited line"))  # edited by hand
    assert ours(check.check(site, lint_cells=False)) == stale


def test_notebook_of_a_renamed_or_deleted_note_is_reported_and_pruned(site, capsys):
    # Renaming a note's folder carried its old notebook along: nothing reported it and --prune kept it.
    old, new = site / "posts/2025-11-20", site / "posts/2025-11-22"
    old.rename(new)
    text = (new / "index.qmd").read_text().replace("2025-11-20", "2025-11-22")
    (new / "index.qmd").write_text(text)
    (site / "posts/topic").mkdir()
    shutil.copy(new / "index.qmd", site / "posts/topic/index.qmd")
    assert cli.main(["freeze", "--project", str(site), "--jobs", "1"]) == 0
    (site / "posts/topic/index.qmd").unlink()  # deleted: its notebook and links file stay behind
    problems = check.check(site, lint_cells=False)
    for rel in ("posts/2025-11-22/_2025-11-20.ipynb", "posts/topic/_topic.ipynb", "posts/topic/_metadata.yml"):
        assert f"{rel}:1: readers' notebook file of a note that no longer exists (or has no Python cells); " \
               "run: mlnotes freeze --prune" in problems, problems
    capsys.readouterr()
    assert cli.main(["freeze", "--project", str(site), "--jobs", "1", "--prune"]) == 0
    assert "pruned    posts/2025-11-22/_2025-11-20.ipynb" in capsys.readouterr().out
    assert not (new / "_2025-11-20.ipynb").exists() and (new / "_2025-11-22.ipynb").is_file()
    assert not (site / "posts/topic/_topic.ipynb").exists() and not (site / "posts/topic/_metadata.yml").exists()
    assert [p for p in check.check(site, lint_cells=False) if "notebook" in p] == []
