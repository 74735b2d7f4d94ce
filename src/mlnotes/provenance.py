"""Execution records: when, how fast and with which package versions each frozen result was made.

One small JSON file per note, `_provenance/<note path>.json` (e.g. `_provenance/posts/2025-11-15/index.qmd.json`),
written atomically. Two branches that freeze different notes touch different files, so they merge without
conflict, and concurrent freezes of different notes cannot lose each other's record. The folder starts with
"_", so Quarto neither renders nor publishes it; it is kept out of `_freeze/` because Quarto copies a note's
`_freeze/<note>/` folder into `<note>_files/` when it renders, and an extra file there would travel with it.

A record names the hash of the frozen result it describes. A result whose hash has no matching record was
made by something else, usually real Quarto (`quarto render`, `quarto preview`): its environment is unknown,
which is not an error; `mlnotes freeze --record PATH` records the current environment for it deliberately.
"""

from __future__ import annotations

import ast
import json
import os
import re
import platform
import sys
from datetime import date
from pathlib import Path

from . import fsutil

FOLDER = "_provenance"
LEGACY = "_execution.json"  # the single file of earlier versions, migrated once
BY_FREEZE = "mlnotes freeze"
BY_AUTHOR = "recorded by author"


class RecordError(Exception):
    """A record that cannot be read; the message is one sentence."""


def record_path(root: Path, rel: str) -> Path:
    return root / FOLDER / f"{rel}.json"


def read(root: Path, rel: str) -> dict | None:
    """The record of note `rel`, None when there is none; RecordError when it is corrupt."""
    path = record_path(root, rel)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        text = ""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if not _well_formed(data):
        raise RecordError(f"{path.relative_to(root).as_posix()} is not a valid execution record "
                          "(corrupt or merge-conflicted); the next mlnotes freeze of the note replaces it.")
    return data


def _well_formed(data) -> bool:
    """Every field a record has is of its type (fields may be missing: older records lack some)."""
    if not isinstance(data, dict):
        return False
    packages = data.get("packages", {})
    seconds = data.get("seconds")
    return (all(isinstance(data.get(k, ""), str) for k in ("hash", "executed", "python", "by"))
            and (seconds is None or (isinstance(seconds, (int, float)) and not isinstance(seconds, bool)))
            and isinstance(packages, dict) and all(isinstance(v, str) for v in packages.values()))


def write(root: Path, rel: str, record: dict) -> None:
    """Write a record atomically, only when its text changes (so an unchanged note leaves git clean)."""
    path = record_path(root, rel)
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
    fsutil.write_text(path, text)


def make(source_hash: str, seconds: float, packages: dict[str, str], by: str = BY_FREEZE) -> dict:
    return {"hash": source_hash, "executed": date.today().isoformat(), "seconds": round(seconds, 1),
            "python": platform.python_version(), "packages": packages, "by": by}


def all_records(root: Path) -> dict[str, Path]:
    """Note path -> record file, for every record on disk."""
    folder = root / FOLDER
    found = {}
    for path, _, files in os.walk(folder):
        for name in files:
            if name.endswith(".json"):
                record = Path(path) / name
                found[record.relative_to(folder).as_posix().removesuffix(".json")] = record
    return dict(sorted(found.items()))


def orphans(root: Path) -> list[Path]:
    """Record files whose note no longer exists."""
    return [path for rel, path in all_records(root).items() if not (root / rel).is_file()]


def migrate(root: Path, current_hash) -> str | None:
    """Split the legacy `_execution.json` into per-note records, then remove it; returns a sentence to print.

    `current_hash(rel)` gives the hash of the note's stored result (the legacy file was written with it).
    """
    legacy = root / LEGACY
    try:
        data = json.loads(legacy.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None  # nothing to migrate (or a concurrent freeze just did it)
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        legacy.unlink(missing_ok=True)
        return (f"{LEGACY} was not valid JSON and has been removed; notes without a record show an unknown "
                "environment until they are frozen again.")
    moved = 0
    for rel, info in sorted(data.items()):
        if not isinstance(info, dict) or record_path(root, rel).exists():
            continue
        record = {k: v for k, v in info.items() if k in ("executed", "seconds", "python", "packages")}
        stored = current_hash(rel)
        if stored:
            record["hash"] = stored
        record["by"] = BY_FREEZE
        write(root, rel, record)
        moved += 1
    legacy.unlink(missing_ok=True)
    return f"moved {moved} execution records from {LEGACY} to {FOLDER}/ (one file per note) and removed {LEGACY}."


# ---------------------------------------------------------------- what a note imports

def imported_modules(code_cells: list[list[str]]) -> list[str]:
    names: set[str] = set()
    for code in code_cells:
        try:
            tree = ast.parse("\n".join(ln for ln in code if not ln.lstrip().startswith(("%", "!"))))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return sorted(names)


def package_versions(modules: list[str]) -> dict[str, str]:
    """Installed distribution versions of the third-party modules a note imports (standard library left out)."""
    from importlib import metadata  # imported here: about 10 ms that check and a no-op freeze do not need

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


def installed_version(dist: str) -> str | None:
    from importlib import metadata  # imported here: about 10 ms that check and a no-op freeze do not need

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------- the pins

PIN = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)")


def pins(root: Path) -> dict[str, str]:
    """Exact pins from requirements.txt, by lower-case distribution name."""
    path = root / "requirements.txt"
    found: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if m := PIN.match(line):
                found[m.group(1).lower().replace("_", "-")] = m.group(2)
    return found


def unpinned_versions(record: dict, pinned: dict[str, str]) -> list[tuple[str, str, str]]:
    """(distribution, version recorded, version pinned) for each package executed under another version."""
    found = []
    for dist, version in sorted((record.get("packages") or {}).items()):
        want = pinned.get(dist.lower().replace("_", "-"))
        if want and want != version:
            found.append((dist, version, want))
    return found
