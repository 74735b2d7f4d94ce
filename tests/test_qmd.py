"""The .qmd parser follows Quarto's rules for cells, options, fences and front matter."""

from pathlib import Path

import pytest

from mlnotes.qmd import QmdError, parse, quarto_hash

DOC = '''---
title: "Lists"
date: 2025-11-15
---

Some prose.

```{python}
#| label: fig-x
#| fig-cap: "A line"

import numpy as np
x = 1
```

````{python}
y = 2
````

```{{python}}
not a cell
```

```{r}
not python either
```

```python
a plain code block, not executed
```

```{python echo=false}
z = 3
```
'''


def test_cells_options_and_line_numbers():
    doc = parse(DOC, "note.qmd")
    cells = doc.cells
    assert [c.line for c in cells] == [8, 16, 32]
    assert [c.index for c in cells] == [1, 2, 3]
    assert cells[0].options == {"label": "fig-x", "fig-cap": "A line"}
    assert cells[0].label == "fig-x"
    assert cells[0].shown_code == ["import numpy as np", "x = 1"]
    assert cells[0].code_line == 11
    assert cells[1].code == ["y = 2"]
    assert cells[2].code == ["z = 3"]


def test_front_matter_is_parsed():
    doc = parse(DOC, "note.qmd")
    assert doc.front_matter["title"] == "Lists"
    assert doc.front_matter_end == 4


def test_examples_and_other_languages_are_prose():
    doc = parse(DOC, "note.qmd")
    prose = "\n".join(line for chunk in doc.chunks if chunk.cell is None for line in chunk.lines)
    assert "```{{python}}" in prose and "```{r}" in prose and "```python" in prose


def test_longer_fence_ends_only_at_same_length():
    text = "````{python}\nprint('```')\n```\nx = 1\n````\n"
    doc = parse(text, "n.qmd")
    assert doc.cells[0].code == ["print('```')", "```", "x = 1"]


def test_later_option_lines_are_code():
    doc = parse("```{python}\n#| echo: false\nx = 1\n#| not an option\n```\n", "n.qmd")
    assert doc.cells[0].options == {"echo": False}
    assert doc.cells[0].code == ["x = 1", "#| not an option"]


def test_empty_cell_takes_no_number():
    doc = parse("```{python}\n\n```\n\n```{python}\nx = 1\n```\n", "n.qmd")
    assert [c.index for c in doc.cells] == [1]


def test_malformed_front_matter_names_path_and_line():
    with pytest.raises(QmdError) as e:
        parse("---\ntitle: [unclosed\n---\n\ntext\n", "posts/x/index.qmd")
    assert str(e.value).startswith("posts/x/index.qmd:")
    assert "front matter" in str(e.value)


def test_unclosed_cell_is_prose_as_in_quarto():
    """quartoMdToJupyter drops the opening fence line and keeps the rest as a markdown cell (not executed)."""
    doc = parse("text\n```{python}\nx = 1\n```\n\nmore\n```{python}\ny = 2\n\n````\n", "n.qmd")
    assert [c.code for c in doc.cells] == [["x = 1"]] and doc.unclosed_cell == 7 and doc.has_python_fence
    assert [(c.kind, c.lines) for c in doc.chunks] == [
        ("markdown", ["text"]), ("code", ["x = 1"]), ("markdown", ["more"]), ("markdown", ["y = 2", "", "````"])]


def test_bad_cell_options_are_an_error():
    with pytest.raises(QmdError, match="cell options"):
        parse("```{python}\n#| label: [oops\nx = 1\n```\n", "n.qmd")


def test_hash_normalises_line_endings():
    assert quarto_hash("a\r\nb\n") == quarto_hash("a\nb\n")
    assert quarto_hash("a\rb") != quarto_hash("a\nb")  # a lone CR is kept, as in Quarto


def test_includes_are_expanded(tmp_path: Path):
    (tmp_path / "_part.qmd").write_text("```{python}\nx = 41\n```\n")
    doc = parse("Intro\n\n{{< include _part.qmd >}}\n", "n.qmd", base_dir=tmp_path)
    assert doc.cells[0].code == ["x = 41"]
    assert doc.cells[0].line == 3  # reported at the include


@pytest.mark.parametrize("text, expected", [
    # an unclosed bracket or quote is reported where it opens, not where the parser gave up
    ("---\ntitle: x\ncategories: [daily\ndescription: y\n---\n", "n.qmd:3: the front matter is not valid YAML"),
    ("---\ntitle: \"x\ndescription: y\n---\n",
     "n.qmd:2: the front matter is not valid YAML (a quoted value opened on this line is never closed)."),
    ("---\ntitle: x\ndate: 2025-11-20\n  bad: 1\n---\n", "n.qmd:4: the front matter is not valid YAML"),
    # cell options: the line of the bad option, counting blank lines before the options
    ("text\n\n```{python}\n#| label: a\n#| fig-cap: [oops\n#| echo: false\nx = 1\n```\n",
     "n.qmd:5: the cell options ('#|' lines) are not valid YAML"),
    ("```{python}\n\n\n#| label: a\n#| fig-cap: \"a: b\n#| echo: false\nx = 1\n```\n",
     "n.qmd:5: the cell options ('#|' lines) are not valid YAML (a quoted value opened on this line is never closed)."),
    ("```{python}\n#| label: a\n#| fig-cap: A: B\nx = 1\n```\n", "n.qmd:3: the cell options ('#|' lines) are not valid YAML"),
    # a tab after #| is named
    ("text\n\n```{python}\n#| label: a\n#|\techo: false\nx = 1\n```\n",
     "n.qmd:5: a tab follows '#|'; cell options need a space there"),
])
def test_yaml_errors_point_at_the_right_line(text, expected):
    with pytest.raises(QmdError) as e:
        parse(text, "n.qmd")
    assert str(e.value).startswith(expected), str(e.value)


def test_simple_yaml_reads_exactly_what_pyyaml_reads():
    """The fast path for flat YAML gives PyYAML's result (same values, types and key order) or steps aside."""
    import random

    import yaml

    from mlnotes.qmd import _simple_yaml, load_yaml

    cases = ['title: "Daily Notes: 2025-11-20"\ndate: 2025-11-20\ncategories: [daily, linear algebra]',
             "label: fig-x\necho: false\ncode-fold: True\nfig-width: 7\nx: ~\ny: null\nz: 0",
             "answers: [\"2025-11-16#q1\", '2025-11-17#q2']\nconcepts: []", "a: 1\na: 2\nb: x"]
    for text in cases:
        assert _simple_yaml(text) is not None
    for text in ["date: 2025-13-01", "on: push", "a: [yes]", "a: it's", "a: x # c", "a: 1.5", "a:\n  b: 1", "a: 00"]:
        assert _simple_yaml(text) is None, text  # left to PyYAML
    rng = random.Random(0)
    alphabet = list("ab yY:#\"'[],-._/()~01239\t{}!&*|>%@?=") + ["true", "no", "On", "null", "2025-11-20", "''", "\n"]
    cases += [f"{rng.choice(['label', 'on', 'fig-cap'])}: " + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 10)))
              for _ in range(20000)]
    for text in cases:
        got = _simple_yaml(text)
        if got is None:
            continue
        want = yaml.load(text, Loader=yaml.SafeLoader)
        assert got == want and list(got) == list(want), text
        assert [type(v) for v in got.values()] == [type(v) for v in want.values()], text
        assert load_yaml(text) == want
