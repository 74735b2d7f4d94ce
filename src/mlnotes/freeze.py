"""Frozen results in Quarto's format: `_freeze/<note>/execute-results/html.json` plus its figures.

A note is `fresh` when the stored hash matches its source, `realigned` when only prose changed since the
stored result was made (the prose is spliced into the stored markdown, nothing runs), and `executed`
otherwise. Every write is atomic and a failing note keeps its previous result.
"""

from __future__ import annotations

import ast
import json
import multiprocessing
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from . import fsutil, project
from .markdown import prose_texts, render
from .qmd import Document, QmdError, parse, parse_file, quarto_hash

if TYPE_CHECKING:  # execute imports nbclient; `mlnotes check` never needs it
    from .execute import Execution

PROVENANCE = "_execution.json"  # committed; Quarto ignores files starting with "_"


class FrozenError(Exception):
    """A frozen result that cannot be read; the message is one sentence."""


@dataclass
class Report:
    path: str
    status: str  # fresh | realigned | executed | failed
    seconds: float = 0.0
    message: str = ""


# ---------------------------------------------------------------- reading and writing html.json

def _shown(path: Path) -> str:
    """A frozen file's path as messages show it: from the project's `_freeze/` on."""
    parts = path.parts
    if "_freeze" not in parts:
        return str(path)
    return Path(*parts[len(parts) - 1 - parts[::-1].index("_freeze"):]).as_posix()


def read_result(path: Path) -> dict | None:
    """The stored {hash, result}, None when absent; FrozenError when corrupt or merge-conflicted."""
    if not path.exists():
        return None
    text = path.read_text(encoding="utf-8", errors="replace")
    shown = _shown(path)
    if "<<<<<<<" in text and "=======" in text and ">>>>>>>" in text:
        raise FrozenError(f"{shown} contains git merge conflict markers; resolve them or rerun with --force.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise FrozenError(f"{shown} is not valid JSON (corrupt frozen result); rerun with --force to replace it.") from None
    if not isinstance(data, dict) or not isinstance(data.get("hash"), str) or not isinstance(data.get("result"), dict) \
            or not isinstance(data["result"].get("markdown"), str):
        raise FrozenError(f"{shown} is not a Quarto frozen result (no hash or markdown); rerun with --force to replace it.")
    return data


def result_json(source_hash: str, markdown: str, stem: str, has_html: bool) -> str:
    """The file Quarto writes: JSON.stringify(..., 2), no trailing newline, keys in Quarto's order."""
    from .markdown import HTML_INCLUDE
    result = {
        "hash": source_hash,
        "result": {
            "engine": "jupyter",
            "markdown": markdown,
            "supporting": [f"{stem}_files"],
            "filters": [],
            "includes": {"include-in-header": [HTML_INCLUDE]} if has_html else {},
        },
    }
    return json.dumps(result, indent=2, ensure_ascii=False)


def figure_refs(markdown: str, stem: str) -> list[str]:
    """File names in figure-html/ that a stored markdown refers to."""
    return sorted(set(re.findall(re.escape(stem) + r"_files/figure-html/([^)\s}]+)", markdown)))


# ---------------------------------------------------------------- provenance

def imported_modules(doc: Document) -> list[str]:
    names: set[str] = set()
    for cell in doc.cells:
        try:
            tree = ast.parse("\n".join(ln for ln in cell.code if not ln.lstrip().startswith(("%", "!"))))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return sorted(names)


def package_versions(modules: list[str]) -> dict[str, str]:
    """Distribution versions of the third-party modules a note imports (the standard library is left out)."""
    dists = metadata.packages_distributions()
    versions = {}
    for mod in modules:
        if mod in sys.stdlib_module_names:
            continue
        for dist in dists.get(mod, [mod]):
            try:
                versions[dist.lower()] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                pass
    return dict(sorted(versions.items()))


def read_provenance(root: Path) -> dict:
    path = root / PROVENANCE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise FrozenError(f"{path} is not valid JSON; delete it and rerun mlnotes freeze on every note.") from None
    return data if isinstance(data, dict) else {}


def write_provenance(root: Path, data: dict) -> None:
    """Rewrite the record (atomically, only if it changed), dropping notes that no longer exist."""
    kept = {k: v for k, v in sorted(data.items()) if (root / k).is_file()}
    text = json.dumps(kept, indent=2, sort_keys=True) + "\n"
    path = root / PROVENANCE
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        fsutil.write_text(path, text)


# ---------------------------------------------------------------- realign

def source_at_hash(root: Path, note: Path, wanted: str) -> str | None:
    """The version of `note` in git history whose Quarto hash is `wanted`, if any."""
    rel = project.rel(root, note)
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.strip()
        git_rel = (root / rel).resolve().relative_to(Path(top).resolve()).as_posix()
        revs = subprocess.run(["git", "log", "--format=%H", "-n", "50", "--", git_rel], cwd=root,
                              capture_output=True, text=True, check=True).stdout.split()
    except (subprocess.CalledProcessError, FileNotFoundError, ValueError):
        return None
    for spec in [f":{git_rel}"] + [f"{r}:{git_rel}" for r in revs]:  # the index first, then commits
        shown = subprocess.run(["git", "show", spec], cwd=root, capture_output=True)
        if shown.returncode != 0:
            continue
        text = shown.stdout.decode("utf-8", errors="replace").removeprefix("\ufeff")
        if quarto_hash(text) == wanted:
            return text
    return None


def split_stored(markdown: str, old: Document, title_fixup: bool = True) -> list[str] | None:
    """Cut a stored markdown into the texts of `old`'s chunks; None when it does not line up."""
    pieces: list[str] = []
    prefix, prose = prose_texts(old, title_fixup=title_fixup)
    if not markdown.startswith(prefix):
        return None
    pos = len(prefix)
    for number, chunk in enumerate(old.chunks):
        if chunk.cell is None:
            text = prose[number]
            if not markdown.startswith(text, pos):
                return None
            pieces.append(text)
            pos += len(text)
            continue
        if chunk.cell.options.get("include") is False:  # such a cell leaves a single "\n"
            end = pos + 1 if markdown.startswith("\n", pos) else None
        else:
            end = _code_chunk_end(markdown, pos)
        if end is None:
            return None
        pieces.append(markdown[pos:end])
        pos = end
    return pieces if pos == len(markdown) else None


def _code_chunk_end(md: str, pos: int) -> int | None:
    """A code cell's chunk is "\\n\\n" or a `::: {` div (fences inside it skipped) followed by "\\n\\n"."""
    if md.startswith("\n\n", pos):
        return pos + 2
    if not md.startswith("::: {", pos):
        return None
    depth, fence, i = 0, None, pos
    while i < len(md):
        j = md.find("\n", i)
        if j == -1:
            return None
        line = md[i:j]
        if fence:
            if re.match(r"^" + fence + r"\s*$", line):
                fence = None
        elif m := re.match(r"^(`{3,})", line):
            fence = m.group(1)
        elif line.startswith("::: {") or re.match(r"^:::+ *\{", line):
            depth += 1
        elif re.match(r"^:::+\s*$", line):
            depth -= 1
            if depth == 0:
                end = j + 1
                return end + 2 if md.startswith("\n\n", end) else None
        i = j + 1
    return None


def realign(stored: dict, old_text: str, new: Document, base_dir: Path | None = None,
            root: Path | None = None, title_fixup: bool = True) -> str | None:
    """New markdown with `new`'s prose and the stored code outputs, when only prose changed."""
    try:
        old = parse(old_text, new.path, base_dir=base_dir, root=root)
    except QmdError:
        return None
    if [c.signature() for c in old.cells] != [c.signature() for c in new.cells]:
        return None
    if any(c.inline_expressions() for c in old.chunks + new.chunks):
        return None  # inline values are computed by the kernel: execute
    pieces = split_stored(stored["result"]["markdown"], old, title_fixup)
    if pieces is None:
        return None
    # prose may have been added or removed anywhere: keep each code cell's stored text, in order
    code_pieces = iter([piece for piece, chunk in zip(pieces, old.chunks) if chunk.cell is not None])
    prefix, prose = prose_texts(new, title_fixup=title_fixup)
    return prefix + "".join(next(code_pieces) if chunk.cell is not None else prose[number]
                            for number, chunk in enumerate(new.chunks))


# ---------------------------------------------------------------- freeze

@dataclass
class Plan:
    note: Path
    doc: Document | None = None
    stored: dict | None = None
    action: str = "execute"  # fresh | realign | execute | error
    message: str = ""
    new_markdown: str = ""
    options: dict = field(default_factory=dict)


def _execute_job(root: str, rel: str, options: dict) -> tuple[Execution, dict]:
    """Run one note (in a worker process when --jobs > 1); paths in reports stay project-relative."""
    from .execute import execute

    note = Path(root) / rel
    doc = parse_file(note, Path(root), Path(rel))
    execution = execute(doc, options, cwd=project.working_dir(Path(root), note))
    return execution, package_versions(imported_modules(doc))


def freeze(root: Path, notes: list[Path], explicit: bool = False, jobs: int | None = None, force: bool = False,
           progress=print) -> list[Report]:
    """Bring the frozen results of `notes` up to date; `explicit` re-executes them even when fresh."""
    jobs = max(1, jobs or os.cpu_count() or 1)
    plans: list[Plan] = []
    for note in notes:
        plan = Plan(note)
        plans.append(plan)
        try:
            plan.doc = parse_file(note, root, Path(project.rel(root, note)))
            plan.options = project.execute_options(root, plan.doc, note)
            plan.stored = read_result(project.result_file(root, note))
        except (QmdError, project.ProjectError) as e:
            plan.action, plan.message = "error", str(e)
            continue
        except FrozenError as e:
            if not force:
                plan.action, plan.message = "error", str(e)
                continue
            plan.stored = None
        current = quarto_hash(plan.doc.text)
        if explicit or plan.stored is None:
            plan.action = "execute"
        elif plan.stored["hash"] == current:
            plan.action = "fresh"
        else:
            old = source_at_hash(root, note, plan.stored["hash"])
            md = (realign(plan.stored, old, plan.doc, note.parent, root, project.title_fixup(root))
                  if old is not None else None)
            if md is not None:
                plan.action, plan.new_markdown = "realign", md
            else:
                plan.action = "execute"

    reports: list[Report] = []
    provenance = read_provenance(root)
    for plan in plans:
        rel = project.rel(root, plan.note)
        if plan.action == "error":
            reports.append(Report(rel, "failed", 0.0, plan.message))
            progress(f"failed    {rel}\n{plan.message}")
        elif plan.action == "fresh":
            reports.append(Report(rel, "fresh"))
            progress(f"fresh     {rel}")
        elif plan.action == "realign":
            start = time.perf_counter()
            stored = plan.stored["result"]
            text = json.dumps({"hash": quarto_hash(plan.doc.text),
                               "result": {**stored, "markdown": plan.new_markdown}}, indent=2, ensure_ascii=False)
            fsutil.write_text(project.result_file(root, plan.note), text)
            seconds = time.perf_counter() - start
            reports.append(Report(rel, "realigned", seconds))
            progress(f"realigned {rel}  {seconds:.2f}s")

    to_run = [p for p in plans if p.action == "execute"]

    def finish(plan: Plan, execution: Execution, versions: dict) -> None:
        rel = project.rel(root, plan.note)
        if not execution.ok:
            reports.append(Report(rel, "failed", execution.seconds, execution.failure.report()))
            progress(f"failed    {rel}  {execution.seconds:.1f}s\n{execution.failure.report()}")
            return
        write_frozen(root, plan.note, plan.doc, execution, plan.options)
        provenance[rel] = {
            "executed": date.today().isoformat(),
            "seconds": round(execution.seconds, 1),
            "python": platform.python_version(),
            "packages": versions,
        }
        write_provenance(root, provenance)  # after each note, so an interrupted run keeps its record
        reports.append(Report(rel, "executed", execution.seconds))
        progress(f"executed  {rel}  {execution.seconds:.1f}s")

    if jobs == 1 or len(to_run) <= 1:
        for plan in to_run:
            execution, versions = _execute_job(str(root), project.rel(root, plan.note), plan.options)
            finish(plan, execution, versions)
    else:
        from concurrent.futures import ProcessPoolExecutor, as_completed
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(jobs, len(to_run)), mp_context=ctx) as pool:
            futures = {pool.submit(_execute_job, str(root), project.rel(root, p.note), p.options): p for p in to_run}
            for fut in as_completed(futures):
                execution, versions = fut.result()
                finish(futures[fut], execution, versions)
    if provenance:
        write_provenance(root, provenance)
    order = {project.rel(root, p.note): i for i, p in enumerate(plans)}
    reports.sort(key=lambda r: order.get(r.path, 0))
    return reports


def write_frozen(root: Path, note: Path, doc: Document, execution: Execution, options: dict) -> None:
    """Write figures then html.json, each atomically; the markdown refers to `<stem>_files/figure-html/`."""
    stem = note.stem
    rendered = render(doc, execution.outputs, options, stem=stem, inline=execution.inline,
                      title_fixup=project.title_fixup(root))
    fsutil.replace_dir(project.figure_dir(root, note), rendered.figures)
    text = result_json(quarto_hash(doc.text), rendered.markdown, stem, rendered.has_html)
    fsutil.write_text(project.result_file(root, note), text)


def orphans(root: Path) -> list[Path]:
    """Frozen result folders whose source document no longer exists."""
    found = []
    freeze_root = root / "_freeze"
    if not freeze_root.is_dir():
        return found
    for result in sorted(freeze_root.rglob("execute-results/html.json")):
        base = result.parent.parent
        rel = base.relative_to(freeze_root)
        if rel.parts and rel.parts[0] == "site_libs":
            continue
        if not any((root / rel).with_suffix(ext).exists() for ext in (".qmd", ".ipynb", ".md", ".Rmd")):
            found.append(base)
    return found
