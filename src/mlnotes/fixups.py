"""Quarto's front-matter rewrites, reproduced for the frozen markdown.

Two places in Quarto change the front matter a frozen result shows (spec sections 4 and 5.1):

- `quartoMdToJupyter`: a front matter closed by a `---` that is *not* followed by a blank line becomes a raw
  cell of its own; if it has a `jupyter:` key, that key is deleted and the YAML is re-serialised (or the cell
  dropped when nothing is left).
- `fixupFrontMatter` (website and single-file documents): when the front matter has no `title`, and the first
  markdown cell begins with a heading, the heading is cut out of that cell and becomes the `title`.

Quarto reads YAML with js-yaml and its JSON schema (no dates: `2025-11-15` stays a string) and writes it back with
js-yaml's `dump` (block style, two-space indent, no line folding, strings quoted only when they would read back
as another type). `QuartoLoader` and `js_yaml_dump` reproduce those two with PyYAML.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

import yaml

BEGIN_YAML = re.compile(r"^---[ \t]*$")
END_YAML = re.compile(r"^(?:---|\.\.\.)([ \t]*)$")
FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})")
FENCE_CLOSE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*$")
PANDOC_TITLE = re.compile(r"^#{1,}\s(?:(.*)\s)?\{(.*)\}$")

# js-yaml's implicit types: the JSON/core schema Quarto parses with, and the default schema `dump` checks against.
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^[-+]?(?:0b[01_]+|0x[0-9a-fA-F_]+|0o[0-7_]+|[0-9][0-9_]*)$")
_FLOAT = re.compile(r"^(?:[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
                    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
_TIMESTAMP = re.compile(r"^(?:[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt]|[ \t]+)[0-9]{1,2}"
                        r":[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?)$")
_MERGE = re.compile(r"^<<$")
_TAG = "tag:yaml.org,2002:"


def _resolvers(*pairs) -> dict:
    table: dict = {}
    for tag, regexp in pairs:
        for first in (None, ""):
            table.setdefault(first, []).append((_TAG + tag, regexp))
    return table


class QuartoLoader(yaml.SafeLoader):
    """js-yaml with Quarto's JSON schema: null, bool, int and float; everything else is a string."""

    yaml_implicit_resolvers = _resolvers(("null", _NULL), ("bool", _BOOL), ("int", _INT), ("float", _FLOAT))


def _construct_int(loader, node):
    text = loader.construct_scalar(node).replace("_", "")
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    for prefix, base in (("0b", 2), ("0x", 16), ("0o", 8)):
        if digits.startswith(prefix):
            return sign * int(digits[2:], base)
    return sign * int(digits, 10)


QuartoLoader.add_constructor(_TAG + "int", _construct_int)


class _JsYamlDumper(yaml.SafeDumper):
    """Quotes a string exactly when js-yaml's default schema would read it back as something else."""

    yaml_implicit_resolvers = _resolvers(("null", _NULL), ("bool", _BOOL), ("int", _INT), ("float", _FLOAT),
                                         ("timestamp", _TIMESTAMP), ("merge", _MERGE))

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)  # js-yaml indents a list under its key


def js_number(x: float) -> str:
    """A number as JavaScript's Number#toString writes it, with js-yaml's `.e` fix for exponents."""
    if math.isnan(x):
        return ".nan"
    if math.isinf(x):
        return ".inf" if x > 0 else "-.inf"
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    digits_tuple, exponent = Decimal(repr(abs(x))).normalize().as_tuple()[1:]
    digits = "".join(map(str, digits_tuple))
    k, n = len(digits), len(digits) + exponent  # JS: digits d1..dk, value = 0.d1..dk × 10^n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        text = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
        if "." not in mantissa:
            text = text.replace("e", ".e")
    return sign + text


def _represent_str(dumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar(_TAG + "str", value, style=style)


def _represent_float(dumper, value: float):
    text = js_number(value)
    # JavaScript has one number type: 1.0 is written `1`, which reads back as an int.
    return dumper.represent_scalar(_TAG + ("int" if _INT.match(text) else "float"), text)


_JsYamlDumper.add_representer(str, _represent_str)
_JsYamlDumper.add_representer(float, _represent_float)


def js_yaml_dump(data) -> str:
    """`stringify(data, {indent: 2, lineWidth: -1, sortKeys: false})` as Quarto calls it."""
    return yaml.dump(data, Dumper=_JsYamlDumper, sort_keys=False, allow_unicode=True, default_flow_style=False,
                     indent=2, width=1_000_000_000)


def read_yaml(text: str):
    """Quarto's reading of a YAML block; None when it is not a mapping or not valid."""
    try:
        data = yaml.load(text, Loader=QuartoLoader)
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else ({} if data is None else None)


def partition_front_matter(text: str) -> tuple[list[str], str] | None:
    """partitionYamlFrontMatter: (the YAML lines with delimiters, the markdown after it) or None."""
    lines = re.split(r"\r\n?|\n", text.lstrip())
    if len(lines) < 3 or not BEGIN_YAML.match(lines[0]):
        return None
    if not lines[1].strip() or END_YAML.match(lines[1]):
        return None
    end = next((i for i in range(1, len(lines)) if END_YAML.match(lines[i])), -1)
    if end == -1:
        return None
    return lines[:end + 1], "\n" + "\n".join(lines[end + 1:])


def extract_heading(lines: list[str]) -> tuple[list[str], str | None, bool]:
    """markdownWithExtractedHeading: (lines without the first heading, its text, whether text came before it)."""
    out: list[str] = []
    heading: str | None = None
    before = False
    fence: tuple[str, int] | None = None
    for line in lines:
        if fence:
            out.append(line)
            m = FENCE_CLOSE.match(line)
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= fence[1]:
                fence = None
            continue
        m = FENCE_OPEN.match(line) if heading is None else None
        if m:
            fence = (m.group(1)[0], len(m.group(1)))
            out.append(line)
            continue
        if heading is None:
            if re.match(r"^#{1,}\s", line):
                heading = _pandoc_title(line)
                before = len(out) != 0
            elif re.match(r"^=+\s*$", line) or re.match(r"^-+\s*$", line):
                if out and out[-1]:
                    heading = out.pop()
                    before = len(out) != 0
                else:
                    out.append(line)
            else:
                out.append(line)
        else:
            out.append(line)
    return out, heading, before


def _pandoc_title(line: str) -> str:
    line = line.strip()
    m = PANDOC_TITLE.match(line)
    if m:
        return m.group(1) or ""
    return re.sub(r"^#{1,}\s*", "", line).strip()


def strip_jupyter_key(lines: list[str]) -> list[str] | None:
    """quartoMdToJupyter's front-matter raw cell: without its `jupyter:` key, re-serialised (None: dropped)."""
    data = read_yaml("\n".join(lines[1:-1]))
    if not data or not data.get("jupyter"):
        return lines
    del data["jupyter"]
    if not data:
        return None
    body = js_yaml_dump(data).split("\n")
    while body and not body[-1].strip():
        body.pop()
    return ["---", *body, "---"]


def front_matter_title(chunks: list[tuple[str, list[str] | None]]) -> tuple[list[str] | None, dict[int, list[str]]]:
    """fixupFrontMatter on (kind, lines) chunks: (a raw chunk to put first, or None; {chunk number: new lines}).

    Lines are a cell's text split on newlines; a chunk whose lines are None was dropped and is skipped.
    """
    fm_index, parts = -1, None
    for i, (kind, lines) in enumerate(chunks):
        if lines is not None and kind in ("raw", "markdown"):
            parts = partition_front_matter("\n".join(lines))
            if parts:
                fm_index = i
                break
    data = read_yaml("\n".join(parts[0][1:-1])) if parts else None
    if parts and data is None:
        return None, {}  # Quarto would stop on invalid YAML; leave it alone
    if data and data.get("title"):
        return None, {}
    title, changed = None, {}
    for i, (kind, lines) in enumerate(chunks):
        if lines is None or kind != "markdown" or i == fm_index:
            continue  # the front-matter cell has become raw; code and raw cells are passed over
        rest, heading, before = extract_heading(lines + [""])  # Quarto splits "line\n" per line
        if heading is not None and not before:
            title, changed[i] = heading, rest
        break
    if title is None:
        return None, {}
    if parts:
        data["title"] = title
        text = "---\n" + js_yaml_dump(data) + "---\n\n" + parts[1]
        changed[fm_index] = re.split(r"\r\n?|\n", text)
        return None, changed
    return re.split(r"\r\n?|\n", "---\n" + js_yaml_dump({"title": title}) + "---\n"), changed
