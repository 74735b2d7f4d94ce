"""`mlnotes check`: everything an author should fix before committing, found without executing anything.

One line per problem, `path:line: message`. Frozen results (missing, stale source or environment, missing
figures, orphans, untracked files), front matter, figure alt text, links and cross-references, ruff on the
cells, and the generated pages.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

from . import freeze, pages, project, provenance
from .provenance import pins  # noqa: F401 - kept importable as check.pins
from .qmd import Document, QmdError, duplicate_labels, parse_file, quarto_hash

DAILY = re.compile(r"^posts/(\d{4}-\d{2}-\d{2})[^/]*/index\.qmd$")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)\s]+)")
XREF = re.compile(r"(?<![\w@/])@((?:fig|tbl)-[A-Za-z0-9_-]*[A-Za-z0-9_])")


def key_line(doc: Document, key: str) -> int:
    lines = doc.text.splitlines()
    for i in range(1, max(doc.front_matter_end, 1)):
        if re.match(rf"^{re.escape(key)}\s*:", lines[i]):
            return i + 1
    return 1


def prose_lines(doc: Document) -> list[tuple[int, str]]:
    """Prose lines with their line numbers, leaving out front matter, code cells and fenced blocks."""
    lines = doc.text.splitlines()
    cell_lines: set[int] = set()
    for cell in doc.cells:
        cell_lines.update(range(cell.line, cell.code_line + len(cell.code) + 1))
    out, fence = [], None
    for i, line in enumerate(lines, start=1):
        if i <= doc.front_matter_end or i in cell_lines:
            continue
        if fence:
            if re.match("^" + fence + r"\s*$", line.strip()):
                fence = None
            continue
        if m := re.match(r"^\s*(`{3,}|~{3,})", line):
            fence = m.group(1)
            continue
        out.append((i, re.sub(r"`[^`]*`", "", line)))  # inline code is not a link
    return out


def check_front_matter(rel: str, doc: Document) -> list[str]:
    fm, problems = doc.front_matter, []
    daily = DAILY.match(rel)
    is_post = rel.startswith("posts/")
    required = ["title", "date", "categories", "description"] if is_post else ["title", "description"]
    for key in required:
        if key not in fm or fm[key] in (None, "", []):
            problems.append(f"{rel}:{key_line(doc, key)}: front matter has no {key}.")
    if "date" in fm and fm["date"] not in (None, ""):
        value = fm["date"]
        text = value.isoformat() if isinstance(value, date) else str(value)
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            problems.append(f"{rel}:{key_line(doc, 'date')}: date '{text}' is not an ISO date (YYYY-MM-DD).")
        elif daily and text != daily.group(1):
            problems.append(f"{rel}:{key_line(doc, 'date')}: date {text} differs from the folder's date {daily.group(1)}.")
    if "categories" in fm and fm["categories"] not in (None, "", []):
        cats = fm["categories"]
        if not isinstance(cats, list):
            problems.append(f"{rel}:{key_line(doc, 'categories')}: categories must be a list, e.g. [daily, probability].")
        elif daily and cats[0] != "daily":
            problems.append(f"{rel}:{key_line(doc, 'categories')}: a daily note's categories start with 'daily'.")
    for key in ("concepts", "answers"):
        if key in fm and not isinstance(fm[key], list):
            problems.append(f"{rel}:{key_line(doc, key)}: {key} must be a list, e.g. {key}: [a, b].")
    return problems


def check_links(root: Path, rel: str, note: Path, doc: Document) -> list[str]:
    problems = []
    labels = {c.label for c in doc.cells if c.label}
    text_ids = set(re.findall(r"\{#((?:fig|tbl)-[\w-]+)", doc.text))
    for lineno, line in prose_lines(doc):
        for target in LINK.findall(line) + IMAGE_LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith(("#", "{{")):
                continue
            path = target.split("#")[0].split("?")[0]
            if not path:
                continue
            resolved = (root / path.lstrip("/")) if path.startswith("/") else (note.parent / path)
            candidates = [resolved]
            if resolved.suffix == ".html":
                candidates += [resolved.with_suffix(".qmd"), resolved.with_suffix(".md"), resolved.with_suffix(".ipynb")]
            if target.endswith("/"):
                candidates += [resolved / "index.qmd", resolved / "index.md"]
            if resolved.suffix == ".xml" and resolved.name == "index.xml":
                continue  # the RSS feed is written by Quarto
            if not any(c.exists() for c in candidates):
                problems.append(f"{rel}:{lineno}: link to {target} does not resolve to a file.")
        for ref in XREF.findall(line):
            if ref not in labels and ref not in text_ids:
                problems.append(f"{rel}:{lineno}: cross-reference @{ref} has no matching label in this note.")
    return problems


def check_figures(rel: str, doc: Document, stored: dict | None) -> list[str]:
    """Every figure a cell produced (per the frozen markdown) has fig-alt, or at least fig-cap."""
    if not stored:
        return []
    problems = []
    md = stored["result"]["markdown"]
    stem = doc.path.stem
    by_label = {c.label: c for c in doc.cells if c.label}
    by_index = {c.index: c for c in doc.cells}
    seen: set[int] = set()
    for m in re.finditer(r"!\[([^\]]*)\]\(" + re.escape(stem) + r"_files/figure-html/([^)]+)\)\{([^}]*)\}", md):
        alt, name, attrs = m.groups()
        if alt.strip() or "fig-alt=" in attrs:
            continue
        base = name.rsplit("-output-", 1)[0]
        cell = None
        if base.startswith("cell-") and base[5:].isdigit():
            cell = by_index.get(int(base[5:]) - 1)
        else:
            cell = by_label.get(base) or next((c for lbl, c in by_label.items() if base.startswith(lbl)), None)
        line = cell.line if cell else 1
        if line in seen:
            continue
        seen.add(line)
        problems.append(f"{rel}:{line}: this cell makes a figure without fig-alt or fig-cap (add '#| fig-alt: ...').")
    return problems


def check_frozen(root: Path, rel: str, note: Path, doc: Document, pinned: dict) -> tuple[list[str], dict | None]:
    """The note's frozen result and its record. Every problem here is one `mlnotes freeze` repairs by executing
    (freeze.plan_note), except an environment that differs from the pins, which needs the pins installed."""
    result_path = project.result_file(root, note)
    try:
        stored = freeze.read_result(result_path)
    except freeze.FrozenError as e:
        return [f"{rel}:1: {e}"], None
    if stored is None:
        return [f"{rel}:1: frozen result is missing; run: mlnotes freeze {rel}"], None
    problems = []
    if stored["hash"] != quarto_hash(doc.text):
        problems.append(f"{rel}:1: frozen result is stale (source changed); run: mlnotes freeze")
    try:
        record = provenance.read(root, rel)
    except provenance.RecordError as e:
        problems.append(f"{rel}:1: {e} Run: mlnotes freeze {rel}")
        record = None
    # A result without a matching record was made elsewhere (real Quarto): valid, its environment unknown.
    if record and record.get("hash") == stored["hash"]:
        for dist, version, want in provenance.unpinned_versions(record, pinned):
            problems.append(f"{rel}:1: frozen result is stale (environment): executed with {dist} {version}, "
                            f"pinned {want}; install the pins first (make, or pip install -r requirements.txt), "
                            f"then run: mlnotes freeze {rel}")
    figures = project.figure_dir(root, note)
    for name in freeze.figure_refs(stored["result"]["markdown"], note.stem):
        if not (figures / name).is_file():
            problems.append(f"{rel}:1: frozen figure {project.rel(root, figures / name)} is missing; run: mlnotes freeze {rel}")
    return problems, stored


def check_cells(rel: str, doc: Document) -> list[str]:
    """Cells Quarto would mishandle: repeated labels, and a ```{python} fence that is never closed."""
    problems = [f"{rel}:{line}: the label {label} is already used by the cell at line {first}; labels must be unique."
                for label, first, line in duplicate_labels(doc)]
    if doc.unclosed_cell:
        problems.append(f"{rel}:{doc.unclosed_cell}: this ```{{python}} cell is never closed, so Quarto does not run "
                        "it and shows its code as text; close it with a ``` line.")
    return problems


def leftover_files(root: Path) -> list[str]:
    """Stray figures, orphaned records and the legacy record file: none of them belongs to a current result."""
    problems = [f"{project.rel(root, p)}:1: stray frozen file (no frozen result refers to it); "
                f"remove it: rm {project.rel(root, p)} (or mlnotes freeze --prune)" for p in freeze.stray_files(root)]
    problems += [f"{project.rel(root, p)}:1: execution record of a note that no longer exists; "
                 "run: mlnotes freeze --prune" for p in provenance.orphans(root)]
    if (root / provenance.LEGACY).is_file():
        problems.append(f"{provenance.LEGACY}:1: execution records are now kept one file per note in "
                        f"{provenance.FOLDER}/; run: mlnotes freeze (it moves them and removes this file)")
    return problems


def untracked_frozen(root: Path) -> list[str]:
    """Result files and records that git does not track: a publish from a clean clone would miss them.

    Stray files (which no result refers to) are reported by leftover_files instead, with the command that
    removes them, so this advice never invites committing them."""
    if not (root / "_freeze").is_dir() and not (root / provenance.FOLDER).is_dir():
        return []
    try:
        out = subprocess.run(["git", "ls-files", "--others", "--exclude-standard", "--", "_freeze", provenance.FOLDER],
                             cwd=root, capture_output=True, text=True, check=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return []
    stray = {project.rel(root, p) for p in freeze.stray_files(root)}
    return [f"{p}:1: {'execution record' if p.startswith(provenance.FOLDER) else 'frozen file'} is not tracked "
            f"by git; run: git add {p}" for p in out.splitlines() if p and p not in stray]


def lint(root: Path, docs: dict[str, Document]) -> list[str]:
    """Ruff over each note's cells, concatenated in order (a notebook's view), mapped back to .qmd lines."""
    if not docs:
        return []
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        return []
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        line_maps: dict[str, tuple[str, list[int]]] = {}
        for i, (rel, doc) in enumerate(docs.items()):
            lines, numbers = [], []
            for cell in doc.cells:
                for j, code in enumerate(cell.code):
                    lines.append("pass  # magic" if code.lstrip().startswith(("%", "!")) else code)
                    numbers.append(cell.code_line + j)
                lines.append("")
                numbers.append(cell.code_line + len(cell.code))
            name = f"note_{i}.py"
            (Path(tmp) / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
            line_maps[name] = (rel, numbers)
        cmd = [str(ruff), "check", "--output-format", "json", "--no-cache", "--exit-zero"]
        if (root / "pyproject.toml").is_file() or (root / "ruff.toml").is_file():
            cmd += ["--config", str(root / ("ruff.toml" if (root / "ruff.toml").is_file() else "pyproject.toml"))]
        out = subprocess.run(cmd + [tmp], capture_output=True, text=True)
        try:
            findings = json.loads(out.stdout or "[]")
        except json.JSONDecodeError:
            return [f"ruff:1: could not run ruff ({out.stderr.strip()[:200]})"]
        for f in findings:
            rel, numbers = line_maps[Path(f["filename"]).name]
            row = f["location"]["row"]
            line = numbers[row - 1] if 0 < row <= len(numbers) else 1
            problems.append(f"{rel}:{line}: ruff {f['code']}: {f['message']}")
    return problems


def check(root: Path, lint_cells: bool = True) -> list[str]:
    problems: list[str] = []
    freeze.forget_reads()
    pinned = provenance.pins(root)
    docs: dict[str, Document] = {}  # executable notes, for the lint
    parsed: dict[Path, Document] = {}  # every document, for the generated pages
    for path in project.all_qmd(root):
        rel = project.rel(root, path)
        try:
            doc = parse_file(path, root, Path(rel))
        except QmdError as e:
            problems.append(str(e))
            continue
        parsed[path] = doc
        problems += check_front_matter(rel, doc)
        problems += check_links(root, rel, path, doc)
        if doc.has_python_fence:  # a document Quarto executes and freezes
            problems += check_cells(rel, doc)
            frozen_problems, stored = check_frozen(root, rel, path, doc, pinned)
            problems += frozen_problems
            problems += check_figures(rel, doc, stored)
            docs[rel] = doc
    for base in freeze.orphans(root):
        rel = project.rel(root, base / "execute-results" / "html.json")
        problems.append(f"{rel}:1: orphaned frozen result (its source is gone); run: mlnotes freeze --prune")
    problems += leftover_files(root)
    problems += untracked_frozen(root)
    if pages.is_ml_notes(root):
        problems += pages.stale(root, parsed)
    if lint_cells:
        problems += lint(root, docs)
    return problems
