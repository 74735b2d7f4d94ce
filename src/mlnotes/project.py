"""Where things are in a Quarto project: its notes, their options and their frozen results."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from .qmd import Document, load_yaml, yaml_error_line, yaml_problem

EXECUTE_KEYS = ("eval", "echo", "output", "warning", "error", "include")
FIGURE_KEYS = ("fig-width", "fig-height", "fig-format", "fig-dpi")  # format options that shape matplotlib output
SKIP_DIRS = {"_site", "_freeze", "site_libs", "node_modules", ".venv", "venv", ".git", ".quarto"}


class ProjectError(Exception):
    """A bad argument: one plain sentence, exit status 2."""


def find_root(start: Path) -> Path:
    """The nearest folder at or above `start` holding `_quarto.yml`."""
    start = start.resolve()
    for folder in [start, *start.parents]:
        if (folder / "_quarto.yml").is_file():
            return folder
    raise ProjectError(f"{start} is not inside a Quarto project (no _quarto.yml found above it).")


def is_rendered(rel: Path) -> bool:
    """Quarto ignores files and folders whose names start with '_' or '.'."""
    return not any(part.startswith(("_", ".")) or part in SKIP_DIRS for part in rel.parts)


def excluded_dirs(root: Path) -> set[str]:
    """Folders excluded with `project: render: ["!dir/"]` in _quarto.yml (Quarto matches them at any depth)."""
    render = (_load_yaml(root / "_quarto.yml", root).get("project") or {}).get("render") or []
    return {str(g)[1:].strip("/") for g in render if str(g).startswith("!") and str(g).endswith("/")}


def all_qmd(root: Path) -> list[Path]:
    """The .qmd files Quarto renders: not hidden, not `_`-prefixed, not README, not in an excluded folder."""
    excluded = excluded_dirs(root)
    found = []
    for folder, dirs, files in os.walk(root):
        # prune ignored folders (.venv, _freeze, ...) instead of walking them
        dirs[:] = [d for d in dirs if is_rendered(Path(d)) and d not in excluded]
        found += [Path(folder, name) for name in files
                  if name.endswith(".qmd") and name != "README.qmd" and is_rendered(Path(name))]
    return sorted(found)


def has_python_cells(path: Path) -> bool:
    from .qmd import CELL_START
    try:
        # errors="replace": a note that is not valid UTF-8 is still a note, which the parser then reports
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            return any(CELL_START.match(line.rstrip("\r\n")) for line in f)
    except OSError:
        return False


def notes(root: Path) -> list[Path]:
    """Every rendered .qmd with at least one Python cell: the documents Quarto would execute and freeze."""
    return [p for p in all_qmd(root) if has_python_cells(p)]


def resolve_paths(root: Path, args: list[str]) -> list[Path]:
    """Notes named on the command line (files or folders); a bad path is a ProjectError."""
    if not args:
        return notes(root)
    chosen: list[Path] = []
    for arg in args:
        path = Path(arg)
        if not path.is_absolute():
            path = (Path.cwd() / path)
        path = path.resolve()
        if not path.exists():
            raise ProjectError(f"{arg} does not exist.")
        if path.is_dir():
            inside = [p for p in notes(root) if path == p.parent or path in p.parents]
            if not inside:
                raise ProjectError(f"{arg} holds no note (.qmd with Python cells).")
            chosen.extend(inside)
            continue
        if path.suffix != ".qmd":
            raise ProjectError(f"{arg} is not a note: notes are .qmd files.")
        try:
            path.relative_to(root)
        except ValueError:
            raise ProjectError(f"{arg} is outside the project at {root}.") from None
        chosen.append(path)
    return list(dict.fromkeys(chosen))


_YAML: dict[tuple[str, str], dict] = {}  # (path, text) -> mapping: _quarto.yml and _metadata.yml are read per note


def _load_yaml(path: Path, root: Path | None = None) -> dict:
    """A project YAML file as a mapping ({} when absent); the result is shared, so callers only read it."""
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8")
    if (str(path), text) in _YAML:
        return _YAML[str(path), text]
    try:
        data = load_yaml(text) or {}
    except yaml.YAMLError as e:
        line = yaml_error_line(e) + 1
        raise ProjectError(f"{rel(root, path) if root else path}:{line}: not valid YAML ({yaml_problem(e)}).") from None
    data = data if isinstance(data, dict) else {}
    _YAML[str(path), text] = data
    return data


def execute_options(root: Path, doc: Document, note: Path | None = None) -> dict:
    """Document-level execute options: _quarto.yml, then each _metadata.yml down to the note, then front matter."""
    merged: dict = {}
    layers = [_load_yaml(root / "_quarto.yml", root)]
    note = note or (doc.path if doc.path.is_absolute() else root / doc.path)
    rel_dir = note.resolve().parent.relative_to(root)
    folder = root
    for part in rel_dir.parts:
        folder = folder / part
        layers.append(_load_yaml(folder / "_metadata.yml", root))
    layers.append(doc.front_matter)
    for layer in layers:
        execute = layer.get("execute")
        if isinstance(execute, dict):
            merged.update({k: v for k, v in execute.items() if k in EXECUTE_KEYS})
        for key in EXECUTE_KEYS:  # Quarto also takes these at the top level of a document
            if layer is doc.front_matter and key in layer:
                merged[key] = layer[key]
        html = layer.get("format", {}).get("html") if isinstance(layer.get("format"), dict) else None
        for source in (layer, html if isinstance(html, dict) else {}):
            merged.update({k: source[k] for k in FIGURE_KEYS if source.get(k) is not None})
    return merged


def title_fixup(root: Path) -> bool:
    """Whether Quarto's fixupFrontMatter runs (jupyterToMarkdown): not for books, nor for a `default` project
    with a top-level `title`; for websites, other projects and single files it does."""
    if not (root / "_quarto.yml").is_file():
        return True
    config = _load_yaml(root / "_quarto.yml")
    kind = (config.get("project") or {}).get("type") if isinstance(config.get("project"), dict) else None
    if kind == "book":
        return False
    return not ("title" in config and kind in (None, "default"))


def working_dir(root: Path, note: Path) -> Path:
    """Where a note's cells run: its own folder, or the project root with `project: execute-dir: project`."""
    config = _load_yaml(root / "_quarto.yml", root).get("project") or {}
    return root if config.get("execute-dir") == "project" else note.resolve().parent


def freeze_dir(root: Path, note: Path) -> Path:
    """`_freeze/<path without extension>`, as Quarto's freezer lays it out."""
    relative = Path(rel(root, note))
    if relative.is_absolute():
        raise ValueError(f"{note} is not inside the project at {root}.")
    return root / "_freeze" / relative.with_suffix("")


def result_file(root: Path, note: Path) -> Path:
    return freeze_dir(root, note) / "execute-results" / "html.json"


def figure_dir(root: Path, note: Path) -> Path:
    return freeze_dir(root, note) / "figure-html"


def rel(root: Path, path: Path) -> str:
    """`path` relative to the project root, in posix form (as messages and records show it)."""
    if path.is_absolute() and ".." not in path.parts:  # the usual case, without resolve()'s system calls
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)
