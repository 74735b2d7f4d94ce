"""The one `.qmd` parser every command shares.

It splits a document into chunks exactly as Quarto's `quartoMdToJupyter` does for the jupyter engine
(spec section 4): prose between cells, YAML front matter, and fenced ```{python} cells with their
leading `#|` options. Each cell keeps the 1-based line number of its opening fence, so errors and
lint findings point into the `.qmd`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import yaml

# A cell starts with ```{python}, ````{python}, ```{python echo=false}...; `{{python}}` and `{.python}` do not.
CELL_START = re.compile(r"^(\s*)(```+)\s*\{python( *[ ,].*)?\}\s*$")
ANY_FENCE = re.compile(r"^(\s*)```")
YAML_DELIMITER = re.compile(r"^---\s*$")
OPTION_LINE = re.compile(r"^#\s*\| ?")
INLINE = re.compile(r"(^|[^`])`\{python\}[ \t]([^`]+)`")

# Options Quarto keeps on the cell (kJupyterCellOptionKeys); any other `#|` key becomes cell metadata.
CELL_OPTION_KEYS = frozenset(
    """eval echo warning error output include label classes panel column fig-cap fig-subcap fig-scap
    fig-cap-location tbl-cap-location cap-location fig-column tbl-column fig-link fig-align fig-alt fig-env
    fig-pos lst-label lst-cap out-width out-height md-indent code-fold code-line-numbers code-summary
    code-overflow html-table-processing layout-align layout-valign layout-ncol layout-nrow layout tbl-cap
    tbl-colwidths""".split()
)


# LibYAML's loader when PyYAML was built with it (about 10x faster on a thousand notes).
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# LibYAML's emitter, when PyYAML was built with it: the same text as the pure-Python one, several times faster.
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump_yaml(data) -> str:
    """Block-style YAML in the keys' own order, non-ASCII kept, long lines unfolded (the generated files)."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)


def load_yaml(text: str):
    simple = _simple_yaml(text)
    return simple if simple is not None else yaml.load(text, Loader=_Loader)


# The YAML of nearly every front matter and `#|` block is a flat mapping of simple scalars. `_simple_yaml` reads
# exactly that subset (the result PyYAML would give) and returns None for anything else, which PyYAML then reads:
# a thousand notes are checked without a thousand trips through PyYAML's Python constructor.
_YAML_WORDS = {**dict.fromkeys("true True TRUE yes Yes YES on On ON".split(), True),
               **dict.fromkeys("false False FALSE no No NO off Off OFF".split(), False),
               **dict.fromkeys("null Null NULL ~".split(), None)}
_SIMPLE_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*): +(\S.*?) *")
_PLAIN = r"[A-Za-z](?:[A-Za-z0-9_ ./()-]*[A-Za-z0-9_./)-])?"
_QUOTED = r'"[^"\\]*"|\'[^\']*\''
_ITEM = re.compile(rf"({_QUOTED}|{_PLAIN})")
_FLOW = re.compile(rf"\[ *(?:(?:{_QUOTED}|{_PLAIN}) *, *)*(?:{_QUOTED}|{_PLAIN})? *\]")
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_NO_VALUE = object()


def _simple_scalar(text: str, plain: bool = True):
    if text[0] in "\"'":
        return text[1:-1]
    if text in _YAML_WORDS:
        return _YAML_WORDS[text]
    if not plain:
        return text
    if re.fullmatch(r"[1-9][0-9]*|0", text):
        return int(text)
    if m := _DATE.fullmatch(text):
        try:
            return date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            return _NO_VALUE
    return text if re.fullmatch(_PLAIN, text) else _NO_VALUE


def _simple_yaml(text: str) -> dict | None:
    data = {}
    for line in text.split("\n"):
        if not line:
            continue
        m = _SIMPLE_LINE.fullmatch(line)
        if not m or m[1] in _YAML_WORDS or not line.isprintable():
            return None
        value = m[2]
        if value[0] == "[":
            if not _FLOW.fullmatch(value):
                return None
            items = [_simple_scalar(item) for item in _ITEM.findall(value[1:-1])]
            if any(item is _NO_VALUE or isinstance(item, (int, date)) or item is None for item in items):
                return None
            data[m[1]] = items
            continue
        if value[0] in "\"'" and not re.fullmatch(_QUOTED, value):
            return None
        scalar = _simple_scalar(value)
        if scalar is _NO_VALUE:
            return None
        data[m[1]] = scalar
    return data or None


class QmdError(Exception):
    """A document that cannot be parsed; the message is one plain sentence with path and line."""


def yaml_error_line(error: yaml.YAMLError) -> int:
    """The 0-based line of a YAML error in the text parsed: where an unclosed bracket or quote was opened
    (PyYAML's context mark), else where the parser noticed the problem."""
    context = getattr(error, "context", None) or ""
    mark = getattr(error, "context_mark", None) if ("flow" in context or "quoted" in context) else None
    mark = mark or getattr(error, "problem_mark", None)
    return mark.line if mark else 0


def yaml_problem(error: yaml.YAMLError) -> str:
    if "quoted" in (getattr(error, "context", None) or ""):
        return "a quoted value opened on this line is never closed"
    return getattr(error, "problem", None) or "invalid YAML"


@dataclass
class Cell:
    """One executable Python cell."""

    index: int  # 1-based position among the document's code cells (Quarto's codeCellIndex)
    line: int  # 1-based line of the opening fence in the .qmd
    indent: str
    option_lines: list[str]  # the leading `#|` lines, verbatim
    options: dict  # every `#|` key, in the order written (label, fig-cap, fig-width, ...)
    code: list[str]  # source without the option lines, as executed
    code_line: int  # .qmd line of code[0]

    @property
    def label(self) -> str | None:
        label = self.options.get("label")
        return str(label) if label not in (None, "") else None

    @property
    def shown_code(self) -> list[str]:
        """The code Quarto displays: option lines removed, then blank lines right after them."""
        lines = list(self.code)
        if self.option_lines:
            while lines and not lines[0].strip():
                lines.pop(0)
        return lines

    def signature(self) -> tuple:
        """What execution depends on: used to decide whether only prose changed."""
        return (tuple(self.option_lines), tuple(self.code))


@dataclass
class Chunk:
    """A notebook cell as Quarto builds it: 'markdown', 'raw' (front matter) or 'code'."""

    kind: str
    lines: list[str]
    cell: Cell | None = None
    line: int = 1  # .qmd line of the chunk's first line

    def inline_expressions(self) -> list[str]:
        """`{python} expr` inline expressions in prose, evaluated by Quarto after the cells before them."""
        if self.kind != "markdown":
            return []
        return [m.group(2).strip() for line in self.lines for m in INLINE.finditer(line)]


@dataclass
class Document:
    path: Path
    text: str
    front_matter: dict
    front_matter_end: int  # line of the closing `---` (0 if none)
    chunks: list[Chunk] = field(default_factory=list)
    unclosed_cell: int = 0  # line of a ```{python} fence never closed (Quarto keeps what follows as prose)
    has_python_fence: bool = False  # Quarto picks the jupyter engine for any ```{python} fence, closed or not

    @property
    def cells(self) -> list[Cell]:
        return [c.cell for c in self.chunks if c.cell is not None]


def quarto_hash(text: str) -> str:
    """MD5 of the source with CRLF/LF normalised to LF, as Quarto's freezeInputHash computes it."""
    return hashlib.md5(re.sub(r"\r?\n", "\n", text).encode("utf-8")).hexdigest()


def read_text(path: Path) -> str:
    # utf-8-sig: Quarto (Deno's decoder) drops a leading BOM; newline="" keeps CR for the hash.
    with open(path, encoding="utf-8-sig", newline="") as f:
        return f.read()


def parse_front_matter(text: str, path: Path | str = "<string>") -> tuple[dict, int]:
    """Return (front matter, line of its closing delimiter); ({}, 0) when the document has none."""
    lines = text.splitlines()
    if not lines or not YAML_DELIMITER.match(lines[0]):
        return {}, 0
    for i in range(1, len(lines)):
        if YAML_DELIMITER.match(lines[i]) or lines[i].rstrip() == "...":
            try:
                data = load_yaml("\n".join(lines[1:i]))
            except yaml.YAMLError as e:
                line = min(yaml_error_line(e) + 2, i)
                problem = yaml_problem(e)
                raise QmdError(f"{path}:{line}: the front matter is not valid YAML ({problem}).") from None
            if data is None:
                data = {}
            if not isinstance(data, dict):
                raise QmdError(f"{path}:2: the front matter must be a YAML mapping of keys to values.")
            return data, i + 1
    raise QmdError(f"{path}:1: the front matter opened with '---' is never closed.")


def _parse_options(option_lines: list[str], path, line: int) -> dict:
    """The `#|` options of a cell whose first option line is `line` of the .qmd."""
    if not option_lines:
        return {}
    for k, option in enumerate(option_lines):
        if re.match(r"^#\s*\|\t", option):
            raise QmdError(f"{path}:{line + k}: a tab follows '#|'; cell options need a space there "
                           f"('#| key: value'), as YAML does not allow a tab.")
    body = "\n".join(OPTION_LINE.sub("", ln, count=1) for ln in option_lines)
    try:
        data = load_yaml(body)
    except yaml.YAMLError as e:
        at = line + min(yaml_error_line(e), len(option_lines) - 1)
        problem = yaml_problem(e)
        raise QmdError(f"{path}:{at}: the cell options ('#|' lines) are not valid YAML ({problem}).") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise QmdError(f"{path}:{line}: the cell options ('#|' lines) must be 'key: value' pairs.")
    return data


def _trim_blank(lines: list[str], numbers: list[int]) -> tuple[list[str], list[int]]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end], numbers[start:end]


INCLUDE = re.compile(r"^\s*\{\{<\s*include\s+(\S+)\s*>\}\}\s*$")


def _expand_includes(text: str, base_dir: Path | None, root: Path | None, depth: int = 0) -> list[tuple[str, int]]:
    """Lines with their .qmd line numbers, `{{< include file >}}` expanded as Quarto does before executing.

    Included lines carry the line number of the include shortcode. A missing file is left as it is.
    """
    lines = re.split(r"\r?\n", text)
    if lines and lines[-1] == "":
        lines.pop()  # a final newline does not start an empty line
    if base_dir is None or "{{<" not in text:  # nothing to expand (the common case, without a regex per line)
        return list(zip(lines, range(1, len(lines) + 1)))
    out: list[tuple[str, int]] = []
    for i, line in enumerate(lines, start=1):
        m = INCLUDE.match(line) if base_dir is not None and depth < 10 else None
        target = None
        if m:
            name = m.group(1).strip("'\"")
            target = (root / name.lstrip("/")) if name.startswith("/") and root else base_dir / name
        if target is not None and target.is_file():
            inner = _expand_includes(read_text(target), target.parent, root, depth + 1)
            out.extend((ln, i) for ln, _ in inner)
        else:
            out.append((line, i))
    return out


def parse(text: str, path: Path | str = "<string>", base_dir: Path | None = None, root: Path | None = None) -> Document:
    """Parse a .qmd document. Raises QmdError with `path:line:` for malformed input.

    With `base_dir` (the note's folder on disk), `{{< include >}}` shortcodes are expanded first.
    """
    path = Path(path)
    front_matter, fm_end = parse_front_matter(text, path)
    numbered = _expand_includes(text, base_dir, root)
    lines = [ln for ln, _ in numbered]

    doc = Document(path=path, text=text, front_matter=front_matter, front_matter_end=fm_end)
    buffer: list[str] = []
    numbers: list[int] = []
    code_index = 0

    def flush(kind: str, cell_start: int = 0, indent: str = "") -> None:
        nonlocal code_index
        if not buffer:
            return
        body, nums = _trim_blank(buffer, numbers)
        buffer.clear()
        numbers.clear()
        if not body:
            return  # Quarto drops cells that end up empty (and they take no cell number)
        if kind != "code":
            doc.chunks.append(Chunk(kind, body, line=nums[0]))
            return
        body = [ln.replace(indent, "", 1) if indent else ln for ln in body]
        n_opts = 0
        while n_opts < len(body) and OPTION_LINE.match(body[n_opts]):
            n_opts += 1
        option_lines = body[:n_opts]
        options = _parse_options(option_lines, path, nums[0])
        code_index += 1
        code = body[n_opts:]
        cell = Cell(
            index=code_index,
            line=cell_start,
            indent=indent,
            option_lines=option_lines,
            options=options,
            code=code,
            code_line=nums[n_opts] if code else cell_start + 1,
        )
        doc.chunks.append(Chunk("code", body, cell, line=cell_start))

    in_cell = in_yaml = in_code = False
    end_fence: re.Pattern | None = None
    cell_start, indent = 0, ""
    for i, line in enumerate(lines):
        lineno = numbered[i][1]
        if line.startswith("---") and YAML_DELIMITER.match(line) and not in_cell and not in_code \
                and not (i + 1 < len(lines) and lines[i + 1].strip() == ""):
            # Quarto 1.5+: a `---` followed by a blank line is not a delimiter (quarto-cli #8998).
            if in_yaml:
                buffer.append(line)
                numbers.append(lineno)
                flush("raw")
                in_yaml = False
            else:
                flush("markdown")
                buffer.append(line)
                numbers.append(lineno)
                in_yaml = True
        elif not in_cell and "```" in line and (m := CELL_START.match(line)):
            flush("markdown")
            in_cell = True
            indent, ticks = m.group(1), m.group(2)
            end_fence = re.compile("^" + re.escape(indent) + ticks + r"\s*$")
            cell_start = lineno
            doc.has_python_fence = True
        elif in_cell and end_fence is not None and end_fence.match(line):
            in_cell = False
            flush("code", cell_start, indent)
        else:
            if not in_cell and "```" in line and ANY_FENCE.match(line):
                in_code = True  # as in Quarto, any other fence turns YAML delimiters off for the rest
            buffer.append(line)
            numbers.append(lineno)
    if in_cell:
        doc.unclosed_cell = cell_start  # quartoMdToJupyter drops the fence line and keeps the rest as markdown
    flush("markdown")  # as Quarto does, whatever the YAML state
    return doc


# One command reads each note several times (freeze, then the generated pages, then the notebooks): a text seen
# before is not parsed again. Keyed by the text itself, so an edited note is always parsed afresh; documents that
# include other files are always parsed, since the included text is not part of the key.
_PARSED: dict[tuple[str, str, str, str], Document] = {}


def parse_file(path: Path, root: Path | None = None, name: Path | None = None) -> Document:
    """Parse a note on disk; `name` is the path reports use (e.g. relative to the project)."""
    try:
        text = read_text(path)
    except UnicodeDecodeError:
        raise QmdError(f"{name or path}:1: the file is not valid UTF-8 text.") from None
    key = (str(path), str(root), str(name), text)
    if key in _PARSED:
        return _PARSED[key]
    doc = parse(text, name or path, base_dir=path.resolve().parent, root=root)
    if "{{<" not in text:
        _PARSED[key] = doc
    return doc


def duplicate_labels(doc: Document) -> list[tuple[str, int, int]]:
    """(label, line of its first cell, line of a later cell with the same label) for each repeated label."""
    first: dict[str, int] = {}
    found = []
    for cell in doc.cells:
        if cell.label is None:
            continue
        if cell.label in first:
            found.append((cell.label, first[cell.label], cell.line))
        else:
            first[cell.label] = cell.line
    return found
