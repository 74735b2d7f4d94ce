"""`mlnotes freeze`: Quarto's format for each output type, determinism, realign, safety."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from conftest import FIGURE_NOTE, write
from mlnotes import cli
from mlnotes.qmd import quarto_hash

# The worked example of the format spec (section 5.5), whose exact Quarto 1.8 markdown the spec gives.
WORKED = '''---
title: "Lists and loops"
date: 2025-11-15
---

Python lists keep their order.

```{python}
print("Hello, Quarto")
```

```{python}
1 + 1
```

```{python}
#| label: fig-x
#| fig-cap: "A rising line"
#| fig-alt: "A line chart rising from 1 to 3"
import matplotlib.pyplot as plt
plt.plot([1, 2, 3])
plt.show()
```

```{python}
#| echo: false
print("only output")
```

```{python}
#| output: false
x = 42
x
```
'''

EXPECTED = '''---
title: "Lists and loops"
date: 2025-11-15
---

Python lists keep their order.

::: {#ID .cell execution_count=1}
``` {.python .cell-code}
print("Hello, Quarto")
```

::: {.cell-output .cell-output-stdout}
```
Hello, Quarto
```
:::
:::


::: {#ID .cell execution_count=2}
``` {.python .cell-code}
1 + 1
```

::: {.cell-output .cell-output-display execution_count=2}
```
2
```
:::
:::


::: {#cell-fig-x .cell execution_count=3}
``` {.python .cell-code}
import matplotlib.pyplot as plt
plt.plot([1, 2, 3])
plt.show()
```

::: {.cell-output .cell-output-display}
![A rising line](index_files/figure-html/fig-x-output-1.png){#fig-x width=W height=H fig-alt='A line chart rising from 1 to 3'}
:::
:::


::: {#ID .cell execution_count=4}

::: {.cell-output .cell-output-stdout}
```
only output
```
:::
:::


::: {#ID .cell execution_count=5}
``` {.python .cell-code}
x = 42
x
```
:::


'''


def freeze(project, *args) -> int:
    return cli.main(["freeze", "--project", str(project), "--jobs", "1", *args])


def stored(project, rel="posts/a/index"):
    return json.loads((project / "_freeze" / rel / "execute-results/html.json").read_text(encoding="utf-8"))


def test_worked_example_of_the_spec(tmp_project, capsys):
    write(tmp_project / "posts/a/index.qmd", WORKED)
    assert freeze(tmp_project) == 0
    data = stored(tmp_project)
    assert list(data) == ["hash", "result"]
    assert data["hash"] == quarto_hash(WORKED)
    assert data["result"]["supporting"] == ["index_files"]
    md = data["result"]["markdown"]
    ids = re.findall(r"\{#([0-9a-f]{8}) \.cell", md)
    assert len(ids) == 4 and len(set(ids)) == 4
    normalised = re.sub(r"\{#[0-9a-f]{8} \.cell", "{#ID .cell", md)
    normalised = re.sub(r"width=\d+ height=\d+", "width=W height=H", normalised)
    assert normalised == EXPECTED
    png = tmp_project / "_freeze/posts/a/index/figure-html/fig-x-output-1.png"
    w, h = map(int, re.search(r"width=(\d+) height=(\d+)", md).groups())
    import struct
    px_w, px_h = struct.unpack(">II", png.read_bytes()[16:24])
    assert (w, h) == ((px_w + 1) // 2, (px_h + 1) // 2)  # retina PNG: half the pixels, rounded half up
    assert 500 < w < 700  # 7 in at 96 dpi, cropped tight


OUTPUT_TYPES = '''---
title: "Outputs"
---

```{python}
#| code-fold: true
#| code-summary: "Show it"
import sys
from IPython.display import HTML, Markdown, SVG, display
print("out")
print("err", file=sys.stderr)
display(Markdown("**bold**"))
display(HTML("<b>html</b>"))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'))
```

```{python}
#| warning: false
import warnings
warnings.warn("hidden")
print("\\x1b[31mred\\x1b[0m")
```

```{python}
#| error: true
raise ValueError("shown")
```

```{python}
#| include: false
secret = 1
```

```{python}
#| eval: false
not executed
```

```{python}
#| label: tbl-demo
#| tbl-cap: "A table"
#| fig-width: 6
import pandas as pd
pd.DataFrame({"a": [1, 2]})
```
'''


def test_each_output_type(tmp_project, capsys):
    write(tmp_project / "posts/a/index.qmd", OUTPUT_TYPES)
    assert freeze(tmp_project) == 0, capsys.readouterr().out
    md = stored(tmp_project)["result"]["markdown"]
    result = stored(tmp_project)["result"]
    assert '``` {.python .cell-code code-fold="true" code-summary="Show it"}' in md
    assert "::: {.cell-output .cell-output-stdout}\n```\nout\n```\n:::" in md
    assert "::: {.cell-output .cell-output-stderr}\n```\nerr\n```\n:::" in md
    assert "::: {.cell-output .cell-output-display .cell-output-markdown}\n**bold**\n:::" in md
    assert "::: {.cell-output .cell-output-display}\n```{=html}\n<b>html</b>\n```\n:::" in md
    assert re.search(r"!\[\]\(index_files/figure-html/cell-2-output-5\.svg\)\{[^}]*\}", md)
    assert "UserWarning" not in md  # warning: false drops stderr
    assert "\nred\n" in md and "\x1b" not in md  # ANSI codes stripped
    assert "::: {.cell-output .cell-output-error}\n```\nValueError: shown\n" in md
    assert "secret" not in md  # include: false
    # an include: false cell leaves a single "\n" chunk (mdFromCodeCell returns nothing)
    assert re.search(r"ValueError: shown\n(.|\n)*?:::\n:::\n\n\n\n::: \{#[0-9a-f]{8} \.cell execution_count=5\}", md)
    assert "``` {.python .cell-code}\nnot executed\n```\n:::" in md  # eval: false: code shown, nothing run
    assert "::: {#tbl-demo .cell fig-width='6' tbl-cap='A table' execution_count=6}" in md
    assert "::: {.cell-output .cell-output-display execution_count=5}\n```{=html}" in md
    assert result["includes"]["include-in-header"][0].startswith('<script src="https://cdn.jsdelivr.net/npm/requirejs')
    assert (tmp_project / "_freeze/posts/a/index/figure-html/cell-2-output-5.svg").read_text().startswith("<svg")




def snapshot(project):
    return {p.relative_to(project).as_posix(): p.read_bytes() for p in sorted((project / "_freeze").rglob("*")) if p.is_file()}


def test_freezing_twice_is_byte_identical(tmp_project, capsys):
    write(tmp_project / "posts/a/index.qmd", FIGURE_NOTE)
    assert freeze(tmp_project) == 0
    first = snapshot(tmp_project)
    assert freeze(tmp_project, str(tmp_project / "posts/a/index.qmd")) == 0  # named: re-executed
    assert "executed  posts/a/index.qmd" in capsys.readouterr().out
    assert snapshot(tmp_project) == first


def test_parallel_equals_serial(tmp_project, capsys):
    for name in ("a", "b", "c"):
        write(tmp_project / f"posts/{name}/index.qmd", FIGURE_NOTE.replace("noise", f"noise {name}"))
    assert freeze(tmp_project) == 0
    serial = snapshot(tmp_project)
    assert cli.main(["freeze", "--project", str(tmp_project), "--jobs", "2", str(tmp_project / "posts")]) == 0
    assert snapshot(tmp_project) == serial


def git(project, *args):
    subprocess.run(["git", *args], cwd=project, check=True, capture_output=True)


def frozen_and_committed(project, text):
    """A note frozen and committed in a new git repository, as realign expects to find it."""
    git(project, "init", "-q")
    note = write(project / "posts/a/index.qmd", text)
    assert freeze(project) == 0
    git(project, "add", "-A")
    git(project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "note")
    return note


def test_prose_edit_realigns_without_executing(tmp_project, capsys):
    note = frozen_and_committed(tmp_project, FIGURE_NOTE)
    capsys.readouterr()

    note.write_text(FIGURE_NOTE.replace("Closing prose.", "Closing prose, now longer.\n\nAnd a new paragraph."))
    assert freeze(tmp_project) == 0
    out = capsys.readouterr().out
    assert "realigned posts/a/index.qmd" in out and "executed" not in out.split("\n")[0]
    realigned = stored(tmp_project)
    assert realigned["hash"] == quarto_hash(note.read_text())
    assert "And a new paragraph." in realigned["result"]["markdown"]

    # the realigned result equals what a full execution writes
    assert freeze(tmp_project, str(note)) == 0
    assert stored(tmp_project) == realigned


def test_code_edit_executes(tmp_project, capsys):
    note = frozen_and_committed(tmp_project, FIGURE_NOTE)
    note.write_text(FIGURE_NOTE.replace('plt.title("noise")', 'plt.title("changed")'))
    capsys.readouterr()
    assert freeze(tmp_project) == 0
    assert "executed  posts/a/index.qmd" in capsys.readouterr().out


def test_failing_note_keeps_previous_result(tmp_project, capsys):
    note = write(tmp_project / "posts/a/index.qmd", FIGURE_NOTE)
    assert freeze(tmp_project) == 0
    before = snapshot(tmp_project)
    note.write_text(FIGURE_NOTE.replace("plt.show()", "plt.show()\n1 / 0"))
    capsys.readouterr()
    assert freeze(tmp_project) == 1
    out = capsys.readouterr().out
    assert "failed    posts/a/index.qmd" in out
    assert "posts/a/index.qmd:7: the cell starting here raised ZeroDivisionError" in out
    assert snapshot(tmp_project) == before


@pytest.mark.parametrize("content, words", [
    ('{"hash": "abc", "result": {', "not valid JSON"),
    ('<<<<<<< HEAD\n{"hash": "a"}\n=======\n{"hash": "b"}\n>>>>>>> other\n', "merge conflict"),
])
def test_corrupt_result_is_reported_not_overwritten(tmp_project, capsys, content, words):
    write(tmp_project / "posts/a/index.qmd", "```{python}\nx = 1\n```\n")
    path = tmp_project / "_freeze/posts/a/index/execute-results/html.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    assert freeze(tmp_project) == 1
    out = capsys.readouterr().out
    assert words in out and "--force" in out
    assert path.read_text() == content
    assert freeze(tmp_project, "--force") == 0
    assert json.loads(path.read_text())["hash"] == quarto_hash("```{python}\nx = 1\n```\n")


def test_orphans_reported_and_pruned_on_request(tmp_project, capsys):
    note = write(tmp_project / "posts/a/index.qmd", "```{python}\nx = 1\n```\n")
    write(tmp_project / "posts/b/index.qmd", "```{python}\ny = 1\n```\n")
    assert freeze(tmp_project) == 0
    note.unlink()
    capsys.readouterr()
    assert freeze(tmp_project) == 0
    assert "orphan    _freeze/posts/a/index" in capsys.readouterr().out
    assert (tmp_project / "_freeze/posts/a/index").exists()
    assert freeze(tmp_project, "--prune") == 0
    assert not (tmp_project / "_freeze/posts/a/index").exists()
    assert (tmp_project / "_freeze/posts/b/index").exists()


def test_fresh_note_is_not_executed(tmp_project, capsys):
    write(tmp_project / "posts/a/index.qmd", "```{python}\nx = 1\n```\n")
    assert freeze(tmp_project) == 0
    capsys.readouterr()
    assert freeze(tmp_project) == 0
    out = capsys.readouterr().out
    assert out.startswith("0 executed, 0 realigned, 1 fresh, 0 failed in ")  # only the summary: nothing changed
    assert out.count("\n") == 1


def test_project_must_be_a_quarto_project(tmp_path, capsys):
    assert cli.main(["freeze", "--project", str(tmp_path)]) == 2
    assert "has no _quarto.yml" in capsys.readouterr().err


def test_inline_expressions_and_warnings(tmp_project, capsys):
    write(tmp_project / "posts/a/index.qmd", '''
        ---
        title: inline
        ---

        ```{python}
        import warnings
        x = 41
        name = "a_b (c)"
        warnings.warn("careful")
        ```

        The answer is `{python} x + 1` and the name is `{python} name`.
        ''')
    assert freeze(tmp_project) == 0
    md = stored(tmp_project)["result"]["markdown"]
    assert "The answer is 42 and the name is a\\_b \\(c\\)." in md  # Quarto unquotes and escapes strings
    stderr = re.search(r"cell-output-stderr\}\n```\n(.*?)```", md, re.S).group(1)
    assert re.match(r"\d+\.py:4: UserWarning: careful\n", stderr), stderr  # no per-run /tmp/ipykernel_<pid>/


def test_failing_inline_expression_is_reported(tmp_project, capsys):
    write(tmp_project / "posts/a/index.qmd", "```{python}\nx = 1\n```\n\nValue: `{python} y`\n")
    assert freeze(tmp_project) == 1
    assert "posts/a/index.qmd:5: the cell starting here raised NameError" in capsys.readouterr().out


def test_document_figure_options_shape_the_figure(tmp_project, capsys):
    write(tmp_project / "posts/a/index.qmd", '''
        ---
        title: dpi
        fig-dpi: 120
        format:
          html:
            fig-width: 4
            fig-height: 3
        ---

        ```{python}
        import matplotlib.pyplot as plt
        plt.plot([1, 2])
        plt.show()
        ```
        ''')
    assert freeze(tmp_project) == 0
    import struct
    png = (tmp_project / "_freeze/posts/a/index/figure-html/cell-2-output-1.png").read_bytes()
    px_w, px_h = struct.unpack(">II", png[16:24])
    assert 4 * 120 * 2 * 0.85 < px_w <= 4 * 120 * 2  # 4 in at 120 dpi, retina, cropped tight
    md = stored(tmp_project)["result"]["markdown"]
    assert f"{{width={(px_w + 1) // 2} height={(px_h + 1) // 2}}}" in md


def test_realign_handles_every_output_type(tmp_project, capsys):
    note = frozen_and_committed(tmp_project, OUTPUT_TYPES)
    edited = OUTPUT_TYPES.replace('title: "Outputs"\n---\n', 'title: "Outputs"\n---\n\nNew opening prose.\n') \
        + "\nA closing paragraph.\n"
    note.write_text(edited)
    capsys.readouterr()
    assert freeze(tmp_project) == 0
    assert "realigned posts/a/index.qmd" in capsys.readouterr().out
    realigned = stored(tmp_project)
    assert freeze(tmp_project, str(note)) == 0
    executed = stored(tmp_project)
    assert realigned == executed


SMALL = '''---
title: "Small"
date: 2025-11-20
categories: [daily]
---

Some prose.

```{python}
#| label: fig-s
#| fig-cap: "Small"
#| fig-alt: "A short line"
import warnings
import matplotlib.pyplot as plt
warnings.warn("visible unless warning: false")
print("printed")
plt.plot([1, 2])
plt.show()
```
'''


def test_inert_front_matter_edit_realigns_byte_identically_to_execution(tmp_project, capsys):
    note = frozen_and_committed(tmp_project, SMALL)
    note.write_text(SMALL.replace('title: "Small"', 'title: "Small, retitled"\nsubtitle: "A subtitle"\n'
                                  'description: "Now described."\ndate-modified: 2025-11-21\nauthor: Someone\n'
                                  'concepts: [gradients]\nmentions: [softmax]\nanswers: ["2025-11-16#q1"]\n'
                                  'draft: true\nimage: thumb.png')
                    .replace("categories: [daily]", "categories: [daily, plots]"))
    capsys.readouterr()
    assert freeze(tmp_project) == 0
    assert "realigned posts/a/index.qmd" in capsys.readouterr().out
    realigned = stored(tmp_project)
    assert freeze(tmp_project, str(note)) == 0
    assert stored(tmp_project) == realigned


@pytest.mark.parametrize("edit, key", [
    ("execute:\n  echo: false", "execute"),
    ("echo: false", "echo"),
    ("output: false", "output"),
    ("warning: false", "warning"),
    ("fig-dpi: 50", "fig-dpi"),
    ("format:\n  html:\n    code-fold: true", "format"),
    ("jupyter: python3", "jupyter"),
    ("an-option-mlnotes-does-not-know: 1", "an-option-mlnotes-does-not-know"),
])
def test_front_matter_option_edit_executes(tmp_project, capsys, edit, key):
    note = frozen_and_committed(tmp_project, SMALL)
    note.write_text(SMALL.replace("categories: [daily]\n", f"categories: [daily]\n{edit}\n"))
    capsys.readouterr()
    assert freeze(tmp_project) == 0
    out = capsys.readouterr().out
    assert f"running   posts/a/index.qmd (front matter changed: {key})" in out
    assert "executed  posts/a/index.qmd" in out and "realigned " not in out
    assert stored(tmp_project)["hash"] == quarto_hash(note.read_text())
