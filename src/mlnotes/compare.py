"""Compare a fresh execution of a note with its committed frozen result, allowing for floating-point noise.

Another machine (a different CPU, BLAS or operating system) changes the last digits of printed floats and
the anti-aliasing of a few figure pixels; a real change (a different number, word or curve) must still be
caught. The rule, also in the README:

- Text is compared line by line, exactly, except for the numbers in it. Spaces next to a number are not
  compared (numpy pads columns according to the signs and widths of the numbers), and the random 8-hex id
  that Quarto gives an unlabelled cell (`::: {#1a2b3c4d .cell`) is compared by shape only.
- An integer (no decimal point, no exponent) must be printed identically.
- Two other numbers are equal when they differ by at most one unit in the last printed digit of either
  (`0.513` vs `0.514`, `2.37` vs `2.38`) plus 1e-9 of their size (full-precision reprs), or when both are at
  most 1e-6 in size. Printed values that small are, in these notes, rounding or finite-difference errors
  (float64's 2.2e-16, amplified by cancellation and by a finite difference's step), whose digits depend on
  the CPU, the BLAS and even memory alignment: `7.5e-16` vs `3.1e-16`, or a gradient check's relative error
  of `3.7e-08` here and `7.6e-08` on another machine. The note's own assertions bound them.
- A figure is decoded and compared pixel by pixel: it differs when its size differs, when more than
  0.02 % of its pixels (about 260 of a 1344x960 figure) differ by more than 32/255 in some channel, or when
  the mean absolute difference over all pixels and channels exceeds 0.1/255. A moved curve changes
  thousands of pixels; anti-aliasing noise changes a few pixels by a few levels.
"""

from __future__ import annotations

import difflib
import io
import re
from pathlib import Path

NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?!\d)")
CELL_ID = re.compile(r"(\{#)[0-9a-f]{8}( \.cell)")
NOISE_FLOOR = 1e-6  # values printed this small are rounding or finite-difference errors
RELATIVE = 1e-9  # and full-precision reprs agree to about nine significant digits
PIXEL_LEVEL = 32  # a pixel differs when some channel moves by more than this (of 255)
PIXEL_FRACTION = 0.0002  # the fraction of differing pixels tolerated
MEAN_LEVEL = 0.1  # the mean absolute difference tolerated (of 255)
SHOWN_LINES = 12  # differing lines shown per cell


# ---------------------------------------------------------------- numbers and lines

def _unit(token: str) -> float:
    """One unit in the last printed digit of a decimal number token: 0.513 -> 0.001, 3.7e-08 -> 1e-09."""
    mantissa, _, exponent = token.lower().lstrip("+-").partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** ((int(exponent) if exponent else 0) - decimals)


def is_integer(token: str) -> bool:
    return not any(c in token for c in ".eE")


def numbers_equal(a: str, b: str) -> bool:
    """The rule for two printed numbers (see the module docstring)."""
    if a == b:
        return True
    if is_integer(a) or is_integer(b):
        return False
    x, y = float(a), float(b)
    if max(abs(x), abs(y)) <= NOISE_FLOOR:
        return True
    return abs(x - y) <= max(_unit(a), _unit(b)) + RELATIVE * max(abs(x), abs(y))


def skeleton(line: str) -> str:
    """A line with its numbers replaced by a placeholder and the spaces next to them dropped."""
    return re.sub(r" *\x00 *", "\x00", NUMBER.sub("\x00", CELL_ID.sub(r"\1ID\2", line)))


def lines_equal(a: str, b: str) -> bool:
    if a == b:
        return True
    if skeleton(a) != skeleton(b):
        return False
    a, b = CELL_ID.sub("", a), CELL_ID.sub("", b)
    return all(numbers_equal(x, y) for x, y in zip(NUMBER.findall(a), NUMBER.findall(b)))


def text_differences(old: list[str], new: list[str]) -> list[tuple[int, list[str], list[str]]]:
    """Differing regions as (index of the region in `new`, old lines, new lines), numbers within tolerance."""
    matcher = difflib.SequenceMatcher(None, [skeleton(x) for x in old], [skeleton(x) for x in new], autojunk=False)
    regions: list[tuple[int, list[str], list[str]]] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            regions.append((j1, old[i1:i2], new[j1:j2]))
            continue
        run: list[int] = []  # consecutive differing lines become one region
        for k in range(i2 - i1):
            if not lines_equal(old[i1 + k], new[j1 + k]):
                run.append(k)
            elif run:
                regions.append((j1 + run[0], old[i1 + run[0]:i1 + run[-1] + 1], new[j1 + run[0]:j1 + run[-1] + 1]))
                run = []
        if run:
            regions.append((j1 + run[0], old[i1 + run[0]:i1 + run[-1] + 1], new[j1 + run[0]:j1 + run[-1] + 1]))
    return regions


# ---------------------------------------------------------------- figures

def image_difference(old: bytes, new: bytes) -> str | None:
    """None when two raster images are equal within the tolerance, else why not (one phrase)."""
    import numpy as np
    from PIL import Image

    def pixels(data: bytes):
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGBA"), dtype=np.int16)

    a, b = pixels(old), pixels(new)
    if a.shape != b.shape:
        return f"its size changed from {a.shape[1]}x{a.shape[0]} to {b.shape[1]}x{b.shape[0]} pixels"
    delta = np.abs(a - b)
    fraction = float((delta.max(axis=2) > PIXEL_LEVEL).mean())
    mean = float(delta.mean())
    if fraction > PIXEL_FRACTION or mean > MEAN_LEVEL:
        return (f"{fraction:.2%} of its pixels differ by more than {PIXEL_LEVEL}/255 (tolerance {PIXEL_FRACTION:.2%}), "
                f"mean absolute difference {mean:.2f}/255 (tolerance {MEAN_LEVEL})")
    return None


def figure_difference(name: str, old: bytes, new: bytes) -> str | None:
    if name.endswith(".svg"):
        diffs = text_differences(old.decode("utf-8", "replace").split("\n"), new.decode("utf-8", "replace").split("\n"))
        return f"{len(diffs)} regions of its SVG text differ" if diffs else None
    try:
        return image_difference(old, new)
    except (OSError, ValueError) as e:  # PIL cannot decode one of them
        return f"it cannot be decoded ({e})" if old != new else None


# ---------------------------------------------------------------- a whole note

def _format(old: list[str], new: list[str]) -> list[str]:
    shown = [f"  - {x}" for x in old[:SHOWN_LINES]] + [f"  + {x}" for x in new[:SHOWN_LINES]]
    if len(old) > SHOWN_LINES or len(new) > SHOWN_LINES:
        shown.append(f"  ... ({max(len(old), len(new)) - SHOWN_LINES} more lines)")
    return shown


def compare_result(rel: str, chunks: list[tuple[int, str, str]], stored_markdown: str,
                   new_figures: dict[str, bytes], figure_dir: Path) -> list[str]:
    """Problems (one block each, `path:line: message` then the differing lines) between a fresh rendering and
    the committed result.

    `chunks` holds, for each chunk of the note in order, (its .qmd line, 'cell' or 'prose', its fresh markdown);
    `figure_dir` is the committed figure-html/ folder.
    """
    new_markdown = "".join(text for _, _, text in chunks)
    owner: list[tuple[int, str]] = []  # for each fresh line: the .qmd line and kind of the chunk it came from
    for line, kind, text in chunks:
        owner += [(line, kind)] * text.count("\n")
    owner.append(owner[-1] if owner else (1, "prose"))  # what follows the final newline
    same = new_markdown == stored_markdown
    old_lines = [] if same else stored_markdown.split("\n")
    new_lines = [] if same else new_markdown.split("\n")
    problems: list[str] = []
    by_chunk: dict[tuple[int, str], tuple[list[str], list[str]]] = {}
    for j, old, new in text_differences(old_lines, new_lines):
        key = owner[min(j, len(owner) - 1)]
        o, n = by_chunk.setdefault(key, ([], []))
        o.extend(old)
        n.extend(new)
    for (line, kind), (old, new) in sorted(by_chunk.items()):
        what = "the output of the cell starting here" if kind == "cell" else "the prose here"
        problems.append("\n".join([f"{rel}:{line}: {what} differs from the committed frozen result "
                                   "(- committed, + now):", *_format(old, new)]))

    def cell_of(name: str) -> int:
        return next((line for line, kind, text in chunks if f"figure-html/{name}" in text), 1)

    committed = {p.name: p for p in figure_dir.iterdir() if p.is_file()} if figure_dir.is_dir() else {}
    for name in sorted(set(new_figures) | set(committed)):
        if name not in committed:
            problems.append(f"{rel}:{cell_of(name)}: figure {name} is new: the committed result has no such figure.")
        elif name not in new_figures:
            continue  # the markdown difference above already shows a figure the note no longer makes
        elif (why := figure_difference(name, committed[name].read_bytes(), new_figures[name])):
            problems.append(f"{rel}:{cell_of(name)}: figure {name} differs from the committed one: {why}.")
    return problems


def drift(root: Path, note: Path, doc, execution, options: dict) -> list[str]:
    """How a successful execution of `note` differs from its committed frozen result (empty: it reproduces)."""
    from . import freeze, project
    from .markdown import render
    from .qmd import quarto_hash

    rel = project.rel(root, note)
    try:
        stored = freeze.read_result(project.result_file(root, note))
    except freeze.FrozenError as e:
        return [f"{rel}:1: {e}"]
    if stored is None:
        return [f"{rel}:1: there is no frozen result to compare with; run: mlnotes freeze {rel}"]
    if stored["hash"] != quarto_hash(doc.text):
        return [f"{rel}:1: the frozen result was made from another version of the source; run: mlnotes freeze {rel}"]
    rendered = render(doc, execution.outputs, options, stem=note.stem, inline=execution.inline)
    chunks = [(chunk.cell.line if chunk.cell else chunk.line, "cell" if chunk.cell else "prose", piece)
              for chunk, piece in zip(doc.chunks, rendered.pieces)]
    problems = compare_result(rel, chunks, stored["result"]["markdown"], rendered.figures,
                              project.figure_dir(root, note))
    if bool(stored["result"].get("includes")) != rendered.has_html:
        problems.append(f"{rel}:1: the committed result's HTML dependencies (includes) differ from what the outputs need.")
    return problems
