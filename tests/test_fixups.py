"""Quarto's front-matter rewrites (fixups.py): js-yaml's dump, the `jupyter:` key, the title from a heading."""

from __future__ import annotations

import json

from conftest import FIXTURES
from mlnotes import fixups
from mlnotes.markdown import render
from mlnotes.qmd import parse


def markdown_of(source: str, title_fixup: bool = True) -> str:
    """The frozen markdown of a document whose cells were not evaluated (prose is all that matters here)."""
    doc = parse(source, "doc.qmd")
    return render(doc, {c.index: None for c in doc.cells}, title_fixup=title_fixup).markdown


def test_js_yaml_dump_matches_the_front_matter_real_quarto_rewrote():
    # Quarto 1.3 re-serialised this front matter without its `jupyter:` key (same reader and writer as today).
    folder = FIXTURES / "csp-probability-1.3"
    source = (folder / "index.qmd").read_text().split("\n")
    end = source.index("---", 1)
    stored = json.loads(next(folder.glob("_freeze/*/execute-results/html.json")).read_text())["result"]["markdown"]
    rewritten = fixups.strip_jupyter_key(source[:end + 1])
    assert rewritten is not None and source[:end + 1] != rewritten
    assert stored.startswith("\n".join(rewritten) + "\n")


def test_js_yaml_dump_quotes_like_js_yaml():
    text = fixups.js_yaml_dump({"a": "yes", "b": "2025-11-15", "c": "x: y", "d": "multi\nline", "e": ["p", "q"],
                                "m": 1.0, "n": None, "o": True, "p": "3.10", "q": "é"})
    assert text == ("a: yes\nb: '2025-11-15'\nc: 'x: y'\nd: |-\n  multi\n  line\ne:\n  - p\n  - q\n"
                    "m: 1\nn: null\no: true\np: '3.10'\nq: é\n")


def test_numbers_are_written_as_javascript_writes_them():
    assert [fixups.js_number(x) for x in (1.0, 0.1, 1e-7, 2.5e-6, 1.5e21, -0.5)] == \
        ["1", "0.1", "1.e-7", "0.0000025", "1.5e+21", "-0.5"]


def test_dates_stay_strings_when_quarto_reads_yaml():
    assert fixups.read_yaml("date: 2025-11-15\nok: yes\nn: 007") == {"date": "2025-11-15", "ok": "yes", "n": 7}


def test_jupyter_key_is_removed_when_the_front_matter_is_its_own_cell():
    source = '---\ntitle: "A"\ncategories: [x, y]\njupyter: python3\n---\n```{python}\n1\n```\n'
    assert markdown_of(source).startswith("---\ntitle: A\ncategories:\n  - x\n  - y\n---\n\n")
    # Followed by a blank line, the front matter shares a cell with the prose and is kept as written.
    source = '---\ntitle: "A"\njupyter: python3\n---\n\nText\n'
    assert markdown_of(source) == '---\ntitle: "A"\njupyter: python3\n---\n\nText\n\n'
    # Nothing left but `jupyter:`: the cell is dropped.
    assert markdown_of("---\njupyter: python3\n---\n# Hi\n\nText\n", title_fixup=False) == "# Hi\n\nText\n\n"


def test_a_first_heading_becomes_the_title_when_there_is_none():
    # No front matter at all: a title block is put first and the heading leaves the prose.
    assert markdown_of("# My page\n\nSome text\n") == "---\ntitle: My page\n---\n\n\n\nSome text\n\n\n"
    # Front matter without a title (it shares a cell with the prose, which Quarto then passes over):
    # the first markdown cell after it decides, here the one after the code cell.
    source = "---\nauthor: me\n---\n\nIntro\n\n```{python}\n1\n```\n\n## Results {#res}\n\nMore\n"
    md = markdown_of(source)
    assert md.startswith("---\nauthor: me\ntitle: Results\n---\n\n\n\nIntro\n\n")
    assert md.endswith("\nMore\n\n\n") and "## Results" not in md
    # A title already there, or a heading after other text, or a project where the fixup does not run: unchanged.
    assert markdown_of("---\ntitle: T\n---\n# H\n") == "---\ntitle: T\n---\n\n# H\n\n"
    assert markdown_of("Text\n\n# H\n") == "Text\n\n# H\n\n"
    assert markdown_of("# H\n\nText\n", title_fixup=False) == "# H\n\nText\n\n"


def test_which_projects_get_the_title_fixup(tmp_path):
    from mlnotes.project import title_fixup
    assert title_fixup(tmp_path)  # a single file
    for config, expected in [("project:\n  type: website\n", True), ("project:\n  type: book\n", False),
                             ("title: Mine\n", False), ("project:\n  type: default\ntitle: x\n", False),
                             ("project:\n  type: default\n", True)]:
        (tmp_path / "_quarto.yml").write_text(config)
        assert title_fixup(tmp_path) is expected, config
