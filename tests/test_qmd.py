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
