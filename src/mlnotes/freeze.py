"""Frozen results in Quarto's format: `_freeze/<note>/execute-results/html.json` plus its figures.

A note is `fresh` when the stored hash matches its source and its result is complete, `realigned` when only
prose (or inert front matter such as the title) changed since the stored result was made (the prose is
spliced into the stored markdown, nothing runs), and `executed` otherwise. A note's result (figures and
html.json) is replaced as a whole or not at all, and a failing note keeps its previous result. Each
execution also writes the note's record in `_provenance/` (see provenance.py).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import fsutil, project, provenance
from .markdown import prose_texts, render
from .qmd import Document, QmdError, duplicate_labels, load_yaml, parse, parse_file, quarto_hash

if TYPE_CHECKING:  # execute imports nbclient; `mlnotes check` never needs it
    from .execute import Execution

CACHE = ".mlnotes-cache/sources"  # ignored by git: the sources results were made from, for realign
DEFAULT_TIMEOUT = 600  # seconds per cell, as Quarto's jupyter engine

# Front-matter keys that change neither execution nor the markdown of a cell: editing only these realigns.
INERT_KEYS = frozenset("""title subtitle description abstract date date-modified categories concepts mentions
    answers author authors draft image image-alt keywords aliases license copyright citation order""".split())


# A note named on the command line that Quarto never renders: a result for it would never be used.
NOT_RENDERED = ("Quarto does not render it (a name starting with '_' or '.', a README or an excluded folder); "
                "nothing to freeze")


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


# path -> ((inode, mtime, size), result): each result is parsed once per command (forget_reads() starts afresh)
_READ: dict[Path, tuple[tuple[int, int, int], dict]] = {}


_DIRS: dict[Path, list[Path]] = {}  # root -> result_dirs(root), once per command


def forget_reads() -> None:
    _READ.clear()
    _DIRS.clear()


def read_result(path: Path) -> dict | None:
    """The stored {hash, result}, None when absent; FrozenError when corrupt or merge-conflicted."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    key = (st.st_ino, st.st_mtime_ns, st.st_size)
    if (hit := _READ.get(path)) and hit[0] == key:
        return hit[1]
    data = _read_result(path)
    _READ[path] = (key, data)
    return data


def _read_result(path: Path) -> dict:
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


# ---------------------------------------------------------------- realign

def cache_path(root: Path, source_hash: str) -> Path:
    return root / CACHE / f"{source_hash}.qmd"


def remember_source(root: Path, text: str) -> None:
    """Keep the source a result was made from, so a later prose edit realigns even before a commit."""
    path = cache_path(root, quarto_hash(text))
    if path.is_file():
        return
    try:
        fsutil.write_text(path, text)
    except OSError:
        pass  # only a cache: realign falls back to git history


def source_at_hash(root: Path, note: Path, wanted: str) -> str | None:
    """The source of `note` whose Quarto hash is `wanted`: from the local cache, else from git history."""
    try:
        text = cache_path(root, wanted).read_text(encoding="utf-8")
        if quarto_hash(text) == wanted:
            return text
    except (OSError, UnicodeDecodeError):
        pass
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


def execution_metadata(doc: Document) -> dict:
    """Document metadata that may affect execution or the markdown: the front matter and any later YAML block
    (Quarto merges them all), minus the inert keys."""
    merged: dict = dict(doc.front_matter)
    for chunk in doc.chunks[1:]:
        if chunk.kind != "raw":
            continue
        try:
            data = load_yaml("\n".join(chunk.lines[1:-1]))
        except Exception:  # noqa: BLE001 - an unparsable block is compared as text
            data = {"(unparsable YAML)": "\n".join(chunk.lines)}
        if isinstance(data, dict):
            merged.update(data)
    return {k: v for k, v in merged.items() if k not in INERT_KEYS}


def realign(stored: dict, old_text: str, new: Document, base_dir: Path | None = None,
            root: Path | None = None, title_fixup: bool = True) -> tuple[str | None, str]:
    """(new markdown with `new`'s prose and the stored code outputs, "") when only prose changed, else (None, why)."""
    try:
        old = parse(old_text, new.path, base_dir=base_dir, root=root)
    except QmdError:
        return None, "the stored result's source does not parse"
    if [c.signature() for c in old.cells] != [c.signature() for c in new.cells]:
        return None, "code or cell options changed"
    old_meta, new_meta = execution_metadata(old), execution_metadata(new)
    if old_meta != new_meta:
        keys = sorted(k for k in set(old_meta) | set(new_meta) if old_meta.get(k) != new_meta.get(k))
        return None, "front matter changed: " + ", ".join(keys)
    if any(c.inline_expressions() for c in old.chunks + new.chunks):
        return None, "inline `{python}` values are computed by the kernel"
    pieces = split_stored(stored["result"]["markdown"], old, title_fixup)
    if pieces is None:
        return None, "the stored markdown does not line up with its source"
    # prose may have been added or removed anywhere: keep each code cell's stored text, in order
    code_pieces = iter([piece for piece, chunk in zip(pieces, old.chunks) if chunk.cell is not None])
    prefix, prose = prose_texts(new, title_fixup=title_fixup)
    md = prefix + "".join(next(code_pieces) if chunk.cell is not None else prose[number]
                          for number, chunk in enumerate(new.chunks))
    return md, ""


# ---------------------------------------------------------------- freeze

@dataclass
class Plan:
    note: Path
    rel: str
    doc: Document | None = None
    stored: dict | None = None
    record: dict | None = None
    action: str = "execute"  # fresh | realign | execute | skip | stale | error
    message: str = ""  # why it executes, or what is wrong
    new_markdown: str = ""
    options: dict = field(default_factory=dict)


def missing_figures(root: Path, note: Path, stored: dict) -> list[str]:
    folder = project.result_file(root, note).parent.parent / "figure-html"
    return [name for name in figure_refs(stored["result"]["markdown"], note.stem) if not (folder / name).is_file()]


def plan_note(root: Path, note: Path, explicit: bool, force: bool, pinned: dict[str, str]) -> Plan:
    """Decide what a note needs. Whatever makes `mlnotes check` fail for a note's result makes it execute."""
    plan = Plan(note, project.rel(root, note))
    try:
        plan.doc = parse_file(note, root, Path(plan.rel))
        plan.options = project.execute_options(root, plan.doc, note)
    except (QmdError, project.ProjectError) as e:
        plan.action, plan.message = "error", str(e)
        return plan
    if not plan.doc.has_python_fence:
        plan.action, plan.message = "skip", "no Python cells; nothing to freeze"
        return plan
    if dups := duplicate_labels(plan.doc):
        label, first, line = dups[0]
        plan.action = "error"
        plan.message = (f"{plan.rel}:{line}: the label {label} is already used by the cell at line {first}; "
                        "labels must be unique (a repeated figure label overwrites the first figure), so this "
                        "note is not executed.")
        return plan
    try:
        plan.stored = read_result(project.result_file(root, note))
    except FrozenError as e:
        if not force:
            plan.action, plan.message = "error", str(e)
            return plan
        plan.message = "its frozen result was corrupt"
        return plan
    record_broken = ""
    try:
        plan.record = provenance.read(root, plan.rel)
    except provenance.RecordError:
        record_broken = "its execution record is corrupt"
    current = quarto_hash(plan.doc.text)
    if explicit:
        plan.message = "named on the command line"
    elif plan.stored is None:
        plan.message = "no frozen result"
    elif missing := missing_figures(root, note, plan.stored):
        plan.message = f"frozen figure {missing[0]} is missing"
    elif record_broken:
        plan.message = record_broken
    elif plan.stored["hash"] == current:
        remember_source(root, plan.doc.text)
        plan.action = "fresh"
        record = plan.record if plan.record and plan.record.get("hash") == current else None
        if record and (behind := provenance.unpinned_versions(record, pinned)):
            installed = {d: provenance.installed_version(d) for d, _, _ in behind}
            if all(installed[d] == want for d, _, want in behind):
                plan.action, plan.message = "execute", "executed under package versions other than the pins"
            else:
                dist, version, want = behind[0]
                plan.action = "stale"
                plan.message = (f"{plan.rel}: frozen result is stale (environment): executed with {dist} {version}, "
                                f"pinned {want}, and {dist} {installed[dist] or '(not installed)'} is installed; "
                                f"install the pins first (make, or pip install -r requirements.txt), then run: "
                                f"mlnotes freeze {plan.rel}")
    else:
        old = source_at_hash(root, note, plan.stored["hash"])
        if old is None:
            plan.message = "the source of its frozen result is neither committed nor cached"
        else:
            md, why = realign(plan.stored, old, plan.doc, note.parent, root, project.title_fixup(root))
            if md is None:
                plan.message = why
            else:
                plan.action, plan.new_markdown = "realign", md
    return plan


def freeze(root: Path, notes: list[Path], explicit: bool = False, jobs: int | None = None, force: bool = False,
           progress=print, timeout: int = DEFAULT_TIMEOUT) -> list[Report]:
    """Bring the frozen results of `notes` up to date; `explicit` re-executes them even when fresh.

    `progress` gets one line per note that changed, failed or needs the author (fresh notes are quiet).
    """
    jobs = max(1, jobs or os.cpu_count() or 1)
    forget_reads()
    pinned = provenance.pins(root)
    rendered = {project.rel(root, p) for p in project.all_qmd(root)} if explicit else None
    plans = [plan_note(root, note, explicit, force, pinned) if rendered is None or project.rel(root, note) in rendered
             else Plan(note, project.rel(root, note), action="skip", message=NOT_RENDERED) for note in notes]
    reports: list[Report] = []
    for plan in plans:
        if plan.action in ("error", "stale"):
            reports.append(Report(plan.rel, "failed", 0.0, plan.message))
            progress(f"{'failed' if plan.action == 'error' else 'stale':9} {plan.rel}\n{plan.message}")
        elif plan.action == "skip":
            reports.append(Report(plan.rel, "skipped", 0.0, plan.message))
            progress(f"skipped   {plan.rel}: {plan.message}")
        elif plan.action == "fresh":
            reports.append(Report(plan.rel, "fresh"))
        elif plan.action == "realign":
            start = time.perf_counter()
            write_realigned(root, plan)
            seconds = time.perf_counter() - start
            reports.append(Report(plan.rel, "realigned", seconds))
            progress(f"realigned {plan.rel}  {seconds:.2f}s")

    def finish(plan: Plan, execution: Execution, versions: dict) -> None:
        if not execution.ok:
            reports.append(Report(plan.rel, "failed", execution.seconds, execution.failure.report()))
            progress(f"failed    {plan.rel}  {execution.seconds:.1f}s\n{execution.failure.report()}")
            return
        try:
            write_frozen(root, plan.note, plan.doc, execution, plan.options)
        except OSError as e:
            message = (f"could not write the frozen result of {plan.rel} ({e.strerror or e}); "
                       "its previous result is unchanged.")
            reports.append(Report(plan.rel, "failed", execution.seconds, message))
            progress(f"failed    {plan.rel}\n{message}")
            return
        record = provenance.make(quarto_hash(plan.doc.text), execution.seconds, versions)
        provenance.write(root, plan.rel, record)  # after each note, so an interrupted run keeps its record
        remember_source(root, plan.doc.text)
        reports.append(Report(plan.rel, "executed", execution.seconds))
        progress(f"executed  {plan.rel}  {execution.seconds:.1f}s")

    to_run = [p for p in plans if p.action == "execute"]
    if jobs == 1 or len(to_run) <= 1:
        from .worker import run_note
        for plan in to_run:
            progress(f"running   {plan.rel} ({plan.message})")
            execution, versions = run_note(root, plan.rel, plan.options, timeout)
            finish(plan, execution, versions)
    else:
        run_parallel(root, to_run, jobs, timeout, progress, finish)
    order = {p.rel: i for i, p in enumerate(plans)}
    reports.sort(key=lambda r: order.get(r.path, 0))
    return reports


def run_parallel(root: Path, plans: list[Plan], jobs: int, timeout: int, progress, finish) -> None:
    """Execute notes in up to `jobs` child processes; on an interrupt, stop them all (each cleans up its kernel)."""
    from .execute import CellFailure, Execution

    waiting = list(plans)
    running: dict[subprocess.Popen, tuple[Plan, Path, float]] = {}  # child -> (note, its output file, start)
    with tempfile.TemporaryDirectory(prefix="mlnotes-") as tmp:
        try:
            while waiting or running:
                while waiting and len(running) < jobs:
                    plan = waiting.pop(0)
                    out = Path(tmp) / f"{time.monotonic_ns()}.pickle"
                    options = json.dumps(plan.options, default=str)
                    with open(out.with_suffix(".err"), "wb") as err:  # a file, not a pipe: it never fills up
                        child = subprocess.Popen([sys.executable, "-m", "mlnotes.worker", str(root), plan.rel,
                                                  options, str(out), str(timeout)],
                                                 stdout=subprocess.DEVNULL, stderr=err)
                    running[child] = (plan, out, time.perf_counter())
                    progress(f"running   {plan.rel} ({plan.message})")
                done = [c for c in running if c.poll() is not None]
                if not done:
                    time.sleep(0.05)
                    continue
                for child in done:
                    plan, out, started = running.pop(child)
                    err = out.with_suffix(".err").read_text(encoding="utf-8", errors="replace")
                    if child.returncode == 130:
                        raise KeyboardInterrupt
                    if child.returncode == 0 and out.is_file():
                        execution, versions = pickle.loads(out.read_bytes())
                    else:
                        execution, versions = Execution(failure=CellFailure(
                            Path(plan.rel), 1, "WorkerError", f"the process executing the note exited with status "
                            f"{child.returncode}", err.strip()[-2000:])), {}
                        execution.seconds = time.perf_counter() - started
                    finish(plan, execution, versions)
        except BaseException:
            for child in running:
                if child.poll() is None:
                    child.terminate()  # the worker turns SIGTERM into a clean kernel shutdown
            for child in running:
                try:
                    child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
            raise


def write_realigned(root: Path, plan: Plan) -> None:
    """The stored result with the new prose and hash; the note's record (if it describes that result) follows."""
    new_hash = quarto_hash(plan.doc.text)
    text = json.dumps({"hash": new_hash, "result": {**plan.stored["result"], "markdown": plan.new_markdown}},
                      indent=2, ensure_ascii=False)
    fsutil.write_text(project.result_file(root, plan.note), text)
    if plan.record and plan.record.get("hash") == plan.stored["hash"]:
        provenance.write(root, plan.rel, {**plan.record, "hash": new_hash})
    remember_source(root, plan.doc.text)


def write_frozen(root: Path, note: Path, doc: Document, execution: Execution, options: dict) -> None:
    """Replace the note's figures and html.json together: all of the new result lands, or none of it."""
    stem = note.stem
    rendered = render(doc, execution.outputs, options, stem=stem, inline=execution.inline,
                      title_fixup=project.title_fixup(root))
    text = result_json(quarto_hash(doc.text), rendered.markdown, stem, rendered.has_html)
    files = {f"figure-html/{name}": data for name, data in rendered.figures.items()}
    files["execute-results/html.json"] = text.encode("utf-8")
    fsutil.replace_tree(project.freeze_dir(root, note), files, owned=("figure-html", "execute-results/html.json"))


def record(root: Path, notes: list[Path]) -> list[Report]:
    """Record the current environment for results made elsewhere (e.g. by real Quarto), executing nothing."""
    reports = []
    for note in notes:
        rel = project.rel(root, note)
        try:
            doc = parse_file(note, root, Path(rel))
            stored = read_result(project.result_file(root, note))
        except (QmdError, FrozenError) as e:
            reports.append(Report(rel, "failed", 0.0, str(e)))
            continue
        if stored is None or stored["hash"] != quarto_hash(doc.text):
            reports.append(Report(rel, "failed", 0.0, f"{rel} has no current frozen result to record; "
                                                       f"run: mlnotes freeze {rel}"))
            continue
        versions = provenance.package_versions(provenance.imported_modules([c.code for c in doc.cells]))
        rec = provenance.make(stored["hash"], 0.0, versions, by=provenance.BY_AUTHOR)
        rec["seconds"] = None
        provenance.write(root, rel, rec)
        reports.append(Report(rel, "recorded", 0.0, "environment recorded by author; nothing executed"))
    return reports


def result_dirs(root: Path) -> list[Path]:
    """Every `_freeze/<note>` folder holding an `execute-results/html.json`, found in one walk."""
    if root in _DIRS:
        return _DIRS[root]
    found = []
    for folder, subdirs, _ in os.walk(root / "_freeze"):
        if folder == str(root / "_freeze"):
            subdirs[:] = [d for d in subdirs if d != "site_libs"]
        if "execute-results" in subdirs and os.path.isfile(os.path.join(folder, "execute-results", "html.json")):
            found.append(Path(folder))
        subdirs[:] = [d for d in subdirs if d not in ("execute-results", "figure-html")]
    _DIRS[root] = sorted(found)
    return _DIRS[root]


def orphans(root: Path) -> list[Path]:
    """Frozen result folders whose source document no longer exists."""
    freeze_root = root / "_freeze"
    return [base for base in result_dirs(root)
            if not any((root / base.relative_to(freeze_root)).with_suffix(ext).exists()
                       for ext in (".qmd", ".ipynb", ".md", ".Rmd"))]


def stray_files(root: Path) -> list[Path]:
    """Files in a note's `_freeze/<note>/figure-html/` that its stored markdown does not refer to."""
    found = []
    for base in result_dirs(root):
        folder = base / "figure-html"
        if not folder.is_dir():
            continue
        try:
            stored = read_result(base / "execute-results" / "html.json")
        except FrozenError:
            continue  # reported as corrupt elsewhere
        if stored is None:
            continue
        used = set(figure_refs(stored["result"]["markdown"], base.name))
        found += [p for p in sorted(folder.iterdir()) if p.is_file() and p.name not in used]
    return found


def prune(root: Path, paths: list[Path]) -> None:
    """Remove orphaned results, stray files and records, then the folders they leave empty."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        for top in (root / "_freeze", root / provenance.FOLDER):
            if top in path.parents:
                fsutil.remove_empty_parents(path, top)
