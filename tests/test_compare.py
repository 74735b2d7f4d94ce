"""The reproducibility rule (`mlnotes.compare`): real changes fail, last-digit and anti-aliasing noise pass."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest

from conftest import write
from mlnotes import cli
from mlnotes.compare import figure_difference, lines_equal, numbers_equal, text_differences


@pytest.mark.parametrize("a, b", [
    ("0.513", "0.514"),  # one unit in the last printed digit
    ("3.7e-08", "3.8e-08"),
    ("9.99", "10.0"),  # rounding across a power of ten: the coarser last digit counts
    ("7.5e-16", "3.1e-16"),  # rounding-error level
    ("5.5e-12", "-4.9e-12"),
    ("3.7e-08", "7.6e-08"),  # a gradient check's relative error on two machines
    ("-0.000", "0.000"),
    ("0.30000000000000004", "0.3000000000000001"),  # full-precision reprs
])
def test_noise_is_equal(a, b):
    assert numbers_equal(a, b) and numbers_equal(b, a)


@pytest.mark.parametrize("a, b", [
    ("0.513", "0.515"),  # two units in the last digit
    ("0.51", "0.53"),
    ("3.7", "4.1"),
    ("2.0e-06", "8.0e-06"),  # above the 1e-6 noise floor
    ("1.1e-06", "9.0e-07"),
    ("42", "43"),  # integers are exact
    ("1.5", "-1.5"),
])
def test_real_changes_differ(a, b):
    assert not numbers_equal(a, b) and not numbers_equal(b, a)


def test_lines_compare_words_exactly_and_numbers_within_tolerance():
    assert lines_equal("max |J - J_num| = 5.5e-12 (tolerance 1e-8)", "max |J - J_num| = 2.1e-12 (tolerance 1e-8)")
    assert lines_equal("accuracy 0.913 on 200 points", "accuracy 0.912 on 200 points")
    assert not lines_equal("accuracy 0.913 on 200 points", "accuracy 0.913 on 201 points")
    assert not lines_equal("the test passes", "the test fails")
    assert not lines_equal("loss 0.25", "loss  0.25 ok")
    # numpy pads columns by sign: the spaces beside a number are not compared
    assert lines_equal("[ 1.0e-16 -2.0e-17]", "[-1.0e-16  2.0e-17]")
    assert not lines_equal("[1 2]", "[12]")
    # Quarto's random id of an unlabelled cell is compared by shape
    assert lines_equal("::: {#1a2b3c4d .cell execution_count=2}", "::: {#9f8e7d6c .cell execution_count=2}")
    assert not lines_equal("::: {#fig-a .cell execution_count=2}", "::: {#fig-b .cell execution_count=2}")


def test_text_differences_group_lines_and_report_insertions():
    old = ["a", "x = 0.51", "y = 2.0e-16", "b", "c"]
    new = ["a", "x = 0.55", "y = 9.0e-17", "b", "inserted", "c"]
    assert text_differences(old, new) == [(1, ["x = 0.51"], ["x = 0.55"]), (4, [], ["inserted"])]
    assert text_differences(old, ["a", "x = 0.52", "y = 3e-16", "b", "c"]) == []


def curve(shift: float = 0.0, noise: float = 0.0) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.linspace(0, 1, 200)
    fig, ax = plt.subplots(figsize=(7, 5), dpi=96)
    ax.plot(x, np.sin(6 * x) + shift + noise * np.random.default_rng(0).standard_normal(x.size))
    ax.set_title("a curve")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=192)
    plt.close(fig)
    return buf.getvalue()


def test_figures_moved_curve_differs_and_noise_passes():
    base = curve()
    assert figure_difference("f.png", base, base) is None
    # a curve moved by 2% of its range is a real change
    why = figure_difference("f.png", base, curve(shift=0.04))
    assert why is not None and "of its pixels differ" in why
    # values changed at rounding-error level draw the same picture
    assert figure_difference("f.png", base, curve(noise=1e-12)) is None
    # anti-aliasing noise: a few dozen pixels a few levels off
    from PIL import Image
    im = np.asarray(Image.open(io.BytesIO(base)).convert("RGBA")).copy()
    rng = np.random.default_rng(1)
    rows, cols = rng.integers(0, im.shape[0], 50), rng.integers(0, im.shape[1], 50)
    im[rows, cols, :3] = np.clip(im[rows, cols, :3].astype(int) + 6, 0, 255)
    buf = io.BytesIO()
    Image.fromarray(im).save(buf, format="PNG")
    assert buf.getvalue() != base and figure_difference("f.png", base, buf.getvalue()) is None
    # a different size is always a difference
    assert "size changed" in figure_difference("f.png", base, _resized(base))


def _moved(png: bytes) -> bytes:
    """The same picture with everything moved down by 4 pixels (as a shifted curve would be)."""
    from PIL import Image
    with Image.open(io.BytesIO(png)) as im:
        buf = io.BytesIO()
        Image.fromarray(np.roll(np.asarray(im), 4, axis=0)).save(buf, format="PNG")
        return buf.getvalue()


def _resized(png: bytes) -> bytes:
    from PIL import Image
    with Image.open(io.BytesIO(png)) as im:
        buf = io.BytesIO()
        im.resize((im.width + 2, im.height)).save(buf, format="PNG")
        return buf.getvalue()


NOTE = '''---
title: "Reproducible"
---

Some prose.

```{python}
import numpy as np
rng = np.random.default_rng(0)
x = rng.normal(size=1000)
print(f"mean {x.mean():.4f}, tiny {1e-16 * x[0]:.1e}, words stay words")
```

```{python}
#| label: fig-curve
#| fig-cap: "A curve"
#| fig-alt: "A sine curve"
import matplotlib.pyplot as plt
t = np.linspace(0, 1, 200)
plt.plot(t, np.sin(6 * t))
plt.show()
```
'''


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    root = tmp_path_factory.mktemp("repro")
    write(root / "_quarto.yml", "project:\n  type: website\n")
    write(root / "n.qmd", NOTE)
    assert cli.main(["freeze", "--project", str(root), "--jobs", "1"]) == 0
    return root


def tamper(root, old: str, new: str) -> None:
    path = root / "_freeze/n/execute-results/html.json"
    data = json.loads(path.read_text())
    assert old in data["result"]["markdown"]
    data["result"]["markdown"] = data["result"]["markdown"].replace(old, new)
    path.write_text(json.dumps(data, indent=2))


def test_run_compare_passes_on_noise_and_names_cell_and_lines_on_a_real_change(frozen, tmp_path, capsys, monkeypatch):
    import re
    stored = json.loads((frozen / "_freeze/n/execute-results/html.json").read_text())["result"]["markdown"]
    mean = re.search(r"mean (-?\d\.\d{4})", stored).group(1)
    last = int(mean[-1])
    noisy = mean[:-1] + str(last + 1 if last < 9 else last - 1)  # one unit in the last digit
    root = tmp_path / "site"
    shutil.copytree(frozen, root)
    monkeypatch.chdir(root)
    tamper(root, f"mean {mean}, tiny", f"mean {noisy}, tiny")
    assert cli.main(["run", "--compare", "n.qmd"]) == 0, capsys.readouterr().out

    # a digit beyond tolerance, a changed word, and a moved curve
    tamper(root, f"mean {noisy}, tiny", "mean 0.9999, tiny")
    tamper(root, "words stay words", "words stay wordy")
    figure = root / "_freeze/n/figure-html/fig-curve-output-1.png"
    figure.write_bytes(_moved(figure.read_bytes()))
    capsys.readouterr()
    assert cli.main(["run", "--compare", "n.qmd"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("differs n.qmd")
    assert "n.qmd:7: the output of the cell starting here differs from the committed frozen result" in out
    assert "  - mean 0.9999, tiny" in out and f"  + mean {mean}, tiny" in out and "words stay words" in out
    assert "n.qmd:14: figure fig-curve-output-1.png differs from the committed one: " in out
    assert "of its pixels differ by more than 32/255" in out


def test_a_stale_result_is_reported_not_compared(frozen, tmp_path):
    """Checked before any output is looked at, so no kernel is needed here."""
    from mlnotes.compare import drift
    from mlnotes.qmd import parse_file

    root = tmp_path / "site"
    shutil.copytree(frozen, root)
    (root / "n.qmd").write_text(NOTE.replace("Some prose.", "Other prose."))
    doc = parse_file(root / "n.qmd", root, root / "n.qmd")
    assert drift(root, root / "n.qmd", doc, None, {}) == [
        "n.qmd:1: the frozen result was made from another version of the source; run: mlnotes freeze n.qmd"]
