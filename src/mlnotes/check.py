"""`mlnotes check`: everything an author should fix before committing, found without executing anything.

One line per problem, `path:line: message`. Frozen results (missing, stale source or environment, missing
figures, orphans, untracked files), front matter, figure alt text, links and cross-references, ruff on the
cells, and the generated pages.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import sys
from datetime import date
from pathlib import Path

from . import freeze, notebook, pages, project, provenance
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
        out.append((i, re.sub(r"`[^`]*`", "", line) if "`" in line else line))  # inline code is not a link
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
    for key in ("concepts", "mentions", "answers"):
        if key in fm and not isinstance(fm[key], list):
            problems.append(f"{rel}:{key_line(doc, key)}: {key} must be a list, e.g. {key}: [a, b].")
    return problems


REF_LINK = re.compile(r"(?<![\w\]!\\])\[([^\]]+)\]\[([^\]]*)\]")  # [text][ref] and [text][]
REF_DEFINITION = re.compile(r"^ {0,3}\[([^\]^][^\]]*)\]:\s*(\S+)")  # [ref]: url (not [^footnote]:)
ANSWER_ID = re.compile(r"^(\d{4}-\d{2}-\d{2}[^#/]*)#q(\d+)$")
MATH = re.compile(r"\$\$.*?\$\$|\$[^$\s](?:[^$]*[^$\s])?\$")

# Quarto's cell options, from its schema (src/resources/schema/cell-*.yml), plus the Jupyter cell metadata
# keys Quarto accepts; `#|` keys outside this list are reported with the closest one.
QUARTO_CELL_OPTIONS = frozenset("""
    label classes renderings tags id export
    cache cache-path cache-vars cache-globals cache-lazy cache-rebuild cache-comments dependson autodep
    title padding expandable width height context content color
    eval echo code-fold code-summary code-overflow code-line-numbers lst-label lst-cap tidy tidy-opts collapse
    prompt highlight class-source attr-source
    fig-width fig-height fig-cap fig-subcap fig-link fig-align fig-alt fig-env fig-pos fig-scap fig-format fig-dpi
    fig-asp out-width out-height fig-keep fig-show out-extra external sanitize interval aniopts animation-hook
    child file code purl
    layout layout-ncol layout-nrow layout-align layout-valign
    column fig-column tbl-column cap-location fig-cap-location tbl-cap-location
    tbl-cap tbl-subcap tbl-colwidths html-table-processing
    output warning error include panel output-location message results comment class-output attr-output
    class-warning attr-warning class-message attr-message class-error attr-error
    md-indent collapsed autoscroll deletable format name
""".split())


def resolves(root: Path, note: Path, target: str) -> bool:
    """Whether a link target (a URL, an anchor or a file relative to the note or the project) resolves."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith(("#", "{{")):
        return True
    path = target.split("#")[0].split("?")[0]
    if not path:
        return True
    resolved = (root / path.lstrip("/")) if path.startswith("/") else (note.parent / path)
    candidates = [resolved]
    if resolved.suffix == ".html":
        candidates += [resolved.with_suffix(".qmd"), resolved.with_suffix(".md"), resolved.with_suffix(".ipynb")]
    if target.endswith("/"):
        candidates += [resolved / "index.qmd", resolved / "index.md"]
    if resolved.suffix == ".xml" and resolved.name == "index.xml":
        return True  # the RSS feed is written by Quarto
    return any(c.exists() for c in candidates)


def reference_key(label: str) -> str:
    """Pandoc matches reference labels case-insensitively, with runs of whitespace as one space."""
    return " ".join(label.split()).lower()


def figure_targets(doc: Document) -> set[str]:
    """Ids `@fig-` may point at: figure cells that are evaluated and shown, markdown figures and figure divs."""
    targets = set()
    for cell in doc.cells:
        label, opts = cell.label or "", cell.options
        if label.startswith("fig-") and opts.get("eval") is not False and opts.get("output") is not False \
                and opts.get("include") is not False:
            targets.add(label)
    targets.update(re.findall(r"!\[[^\]]*\]\([^)]*\)\{[^}]*#(fig-[\w-]+)", doc.text))  # ![cap](img){#fig-x}
    targets.update(re.findall(r"^:::+\s*\{[^}]*#(fig-[\w-]+)", doc.text, re.M))  # ::: {#fig-x}
    return targets


def check_links(root: Path, rel: str, note: Path, doc: Document) -> list[str]:
    problems = []
    labels = {c.label for c in doc.cells if c.label}
    text_ids = set(re.findall(r"\{#((?:fig|tbl)-[\w-]+)", doc.text))
    figures = figure_targets(doc)
    prose = prose_lines(doc)
    definitions: set[str] = set()  # reference labels defined anywhere in the note
    for lineno, line in prose:
        if m := REF_DEFINITION.match(line):
            definitions.add(reference_key(m.group(1)))
            if not resolves(root, note, m.group(2).strip("<>")):
                problems.append(f"{rel}:{lineno}: link to {m.group(2)} does not resolve to a file.")
    for lineno, line in prose:
        if "[" not in line and "@" not in line:
            continue  # no link, reference or cross-reference can start on this line
        for target in LINK.findall(line) + IMAGE_LINK.findall(line):
            if not resolves(root, note, target):
                problems.append(f"{rel}:{lineno}: link to {target} does not resolve to a file.")
        for text, ref in REF_LINK.findall(MATH.sub("", line)):
            if reference_key(ref or text) not in definitions:
                problems.append(f"{rel}:{lineno}: reference link [{text}][{ref}] has no definition "
                                f"(add a line '[{ref or text}]: url').")
        for ref in XREF.findall(line):
            if ref not in labels and ref not in text_ids:
                problems.append(f"{rel}:{lineno}: cross-reference @{ref} has no matching label in this note.")
            elif ref.startswith("fig-") and ref not in figures:
                cell = next((c for c in doc.cells if c.label == ref), None)
                why = (f"the cell at line {cell.line} shows no output (eval, output or include is false)" if cell
                       else "its label is not on a figure cell, a markdown figure or a figure div")
                problems.append(f"{rel}:{lineno}: cross-reference @{ref} points at no figure: {why}.")
    return problems


def option_line(doc: Document, cell, key: str) -> int:
    """The .qmd line of a cell's `#| key:` option (the cell's line when it cannot be found)."""
    lines = doc.text.splitlines()
    for i in range(cell.line, min(cell.code_line, len(lines))):
        if re.match(rf"^\s*#\s*\|\s*{re.escape(key)}\s*:", lines[i]):
            return i + 1
    return cell.line


def check_cell_options(rel: str, doc: Document) -> list[str]:
    """Misspelt options (named with the closest real one) and figures with a caption but no alt text."""
    problems = []
    for cell in doc.cells:
        for key in cell.options:
            if str(key) in QUARTO_CELL_OPTIONS:
                continue
            import difflib  # only for a misspelt option

            close = difflib.get_close_matches(str(key), sorted(QUARTO_CELL_OPTIONS), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else "."
            problems.append(f"{rel}:{option_line(doc, cell, str(key))}: '{key}' is not a Quarto cell option{hint}")
        if cell.options.get("fig-cap") and not cell.options.get("fig-alt"):
            problems.append(f"{rel}:{option_line(doc, cell, 'fig-cap')}: this figure has fig-cap but no fig-alt; "
                            "every figure needs alt text (add '#| fig-alt: ...').")
    return problems


def check_answers(root: Path, rel: str, doc: Document, questions: dict[str, list[str]]) -> list[str]:
    """`answers:` ids name an existing daily note and one of its questions, asked before this note."""
    answers = doc.front_matter.get("answers")
    if not isinstance(answers, list):
        return []
    problems = []
    line = key_line(doc, "answers")
    daily = DAILY.match(rel)
    for qid in map(str, answers):
        m = ANSWER_ID.match(qid)
        if not m:
            problems.append(f"{rel}:{line}: answers id '{qid}' is not of the form YYYY-MM-DD#qN (a note's folder, "
                            "#q, the question's number).")
            continue
        folder, number = m.group(1), int(m.group(2))
        if folder not in questions:
            if not (root / "posts" / folder / "index.qmd").is_file():
                problems.append(f"{rel}:{line}: answers '{qid}', but there is no note posts/{folder}/index.qmd.")
                continue
            questions[folder] = pages.questions_in((root / "posts" / folder / "index.qmd").read_text(encoding="utf-8"))
        asked = questions[folder]
        if not 1 <= number <= len(asked):
            problems.append(f"{rel}:{line}: answers '{qid}', but posts/{folder}/index.qmd has "
                            f"{len(asked)} question{'s' if len(asked) != 1 else ''} under 'Questions I still have'.")
        elif daily and folder[:10] >= daily.group(1):
            problems.append(f"{rel}:{line}: answers '{qid}', a question asked on or after this note's date.")
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


CONFLICT_MARKER = re.compile(r"^(<{7}|>{7})(?: |$)", re.M)  # not "=======", which also underlines a heading


def check_conflict_markers(rel: str, doc: Document) -> list[str]:
    """Markers of a git merge conflict resolved without removing them (Quarto would publish them)."""
    if "<<<<<<<" not in doc.text and ">>>>>>>" not in doc.text:
        return []
    return [f"{rel}:{doc.text.count(chr(10), 0, m.start()) + 1}: a git merge conflict marker; resolve the conflict "
            "and remove the markers." for m in CONFLICT_MARKER.finditer(doc.text)]


def leftover_files(root: Path) -> list[str]:
    """Stray figures, orphaned records and the legacy record file: none of them belongs to a current result."""
    problems = [f"{project.rel(root, p)}:1: stray frozen file (no frozen result refers to it); "
                f"remove it: rm {shlex.quote(project.rel(root, p))} (or mlnotes freeze --prune)" for p in freeze.stray_files(root)]
    problems += [f"{project.rel(root, p)}:1: execution record of a note that no longer exists; "
                 "run: mlnotes freeze --prune" for p in provenance.orphans(root)]
    if (root / provenance.LEGACY).is_file():
        problems.append(f"{provenance.LEGACY}:1: execution records are now kept one file per note in "
                        f"{provenance.FOLDER}/; run: mlnotes freeze (it moves them and removes this file)")
    return problems


def untracked_frozen(root: Path) -> list[str]:
    """Result files and records that git does not track: a publish from a clean clone would miss them.

    Stray files (which no result refers to) and orphans (whose note is gone) are reported by leftover_files
    and check() instead, with the command that removes them, so this advice never invites committing them."""
    if not (root / "_freeze").is_dir() and not (root / provenance.FOLDER).is_dir():
        return []
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--others", "--exclude-standard", "--", "_freeze",
                              provenance.FOLDER], cwd=root, capture_output=True, text=True, check=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return []
    # what is reported as stray or orphaned gets the command that removes it instead
    stray = {project.rel(root, p) for p in freeze.stray_files(root) + provenance.orphans(root)}
    orphaned = tuple(project.rel(root, base) + "/" for base in freeze.orphans(root))
    return [f"{p}:1: {'execution record' if p.startswith(provenance.FOLDER) else 'frozen file'} is not tracked "
            f"by git; run: git add {shlex.quote(p)}" for p in out.split("\0")  # -z: paths as they are, unquoted
            if p and p not in stray and not p.startswith(orphaned)]


LINT_CACHE = Path(".mlnotes-cache") / "lint.json"  # ignored by git; findings by note code, see lint()


def lint_source(doc: Document) -> tuple[str, list[int]]:
    """A note's cells concatenated in order (a notebook's view) as Python, and the .qmd line of each line."""
    lines, numbers = [], []
    for cell in doc.cells:
        for j, code in enumerate(cell.code):
            lines.append("pass  # magic" if code.lstrip().startswith(("%", "!")) else code)
            numbers.append(cell.code_line + j)
        lines.append("")
        numbers.append(cell.code_line + len(cell.code))
    return "\n".join(lines) + "\n", numbers


def _ruff_config(root: Path) -> Path | None:
    for name in ("ruff.toml", "pyproject.toml"):
        if (root / name).is_file():
            return root / name
    return None


def _run_ruff(ruff: Path, config: Path | None, sources: dict[str, str]) -> dict[str, list] | str:
    """Findings [row, code, message] for each source (by key), or the error when ruff could not run."""
    import tempfile  # only when some note's code changed

    with tempfile.TemporaryDirectory() as tmp:
        names = {}
        for i, (key, text) in enumerate(sources.items()):
            names[f"note_{i}.py"] = key
            (Path(tmp) / f"note_{i}.py").write_text(text, encoding="utf-8")
        cmd = [str(ruff), "check", "--output-format", "json", "--no-cache", "--exit-zero"]
        if config:
            cmd += ["--config", str(config)]
        out = subprocess.run(cmd + [tmp], capture_output=True, text=True)
    try:
        findings = json.loads(out.stdout or "[]")
    except json.JSONDecodeError:
        return out.stderr.strip()[:200]
    found: dict[str, list] = {key: [] for key in sources}
    for f in findings:
        found[names[Path(f["filename"]).name]].append([f["location"]["row"], f["code"], f["message"]])
    return found


def lint(root: Path, docs: dict[str, Document]) -> list[str]:
    """Ruff over each note's cells, mapped back to .qmd lines.

    Findings are cached in `.mlnotes-cache/lint.json` by the SHA-256 of the Python ruff sees, under a key made
    of ruff's binary (path, size, modification time) and the configuration's text: ruff runs only on notes
    whose code changed since the last check, and not at all when none did.
    """
    if not docs:
        return []
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        return []
    config = _ruff_config(root)
    stat = ruff.stat()
    setting = hashlib.sha256(f"{ruff}|{stat.st_size}|{stat.st_mtime_ns}|".encode()
                             + (config.read_bytes() if config else b"")).hexdigest()
    cache_path = root / LINT_CACHE
    try:
        cache = json.loads(cache_path.read_text(encoding="utf-8"))
        known = cache["notes"] if cache.get("setting") == setting else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        known = {}
    sources = {rel: lint_source(doc) for rel, doc in docs.items()}
    keys = {rel: hashlib.sha256(text.encode("utf-8")).hexdigest() for rel, (text, _) in sources.items()}
    missing = {keys[rel]: text for rel, (text, _) in sources.items() if keys[rel] not in known}
    if missing:
        found = _run_ruff(ruff, config, missing)
        if isinstance(found, str):
            return [f"ruff:1: could not run ruff ({found})"]
        known = {**known, **found}
    used = {key: known[key] for key in keys.values()}
    if missing or len(used) != len(known):
        from . import fsutil

        try:
            fsutil.write_text(cache_path, json.dumps({"setting": setting, "notes": used}))
        except OSError:
            pass  # a read-only checkout: lint without the cache
    problems = []
    for rel, (_, numbers) in sources.items():
        for row, code, message in used[keys[rel]]:
            line = numbers[row - 1] if 0 < row <= len(numbers) else 1
            problems.append(f"{rel}:{line}: ruff {code}: {message}")
    return problems


def check(root: Path, lint_cells: bool = True) -> list[str]:
    problems: list[str] = []
    freeze.forget_reads()
    pinned = provenance.pins(root)
    docs: dict[str, Document] = {}  # executable notes, for the lint
    questions: dict[str, list[str]] = {}  # a daily note's folder -> its questions, for `answers:`
    parsed: dict[Path, Document] = {}  # every document, for the generated pages
    for path in project.all_qmd(root):
        rel = project.rel(root, path)
        try:
            doc = parse_file(path, root, Path(rel))
        except QmdError as e:
            problems.append(str(e))
            continue
        parsed[path] = doc
        problems += check_conflict_markers(rel, doc)
        problems += check_cell_options(rel, doc)
        if DAILY.match(rel):
            questions[path.parent.name] = pages.questions_in(doc.text)
        problems += check_front_matter(rel, doc)
        problems += check_links(root, rel, path, doc)
        if doc.has_python_fence:  # a document Quarto executes and freezes
            problems += check_cells(rel, doc)
            frozen_problems, stored = check_frozen(root, rel, path, doc, pinned)
            problems += frozen_problems
            problems += check_figures(rel, doc, stored)
            docs[rel] = doc
    for path, doc in parsed.items():
        problems += check_answers(root, project.rel(root, path), doc, questions)
    for base in freeze.orphans(root):
        rel = project.rel(root, base / "execute-results" / "html.json")
        problems.append(f"{rel}:1: orphaned frozen result (its source is gone); run: mlnotes freeze --prune")
    problems += leftover_files(root)
    problems += untracked_frozen(root)
    if pages.is_ml_notes(root):
        problems += pages.stale(root, parsed)
    problems += notebook.stale(root, parsed)  # readers' notebooks and page links, when _quarto.yml enables them
    problems += [f"{project.rel(root, p)}:1: readers' notebook file of a note that no longer exists (or has no Python "
                 "cells); run: mlnotes freeze --prune" for p in notebook.orphans(root)]
    if lint_cells:
        problems += lint(root, docs)
    return problems
