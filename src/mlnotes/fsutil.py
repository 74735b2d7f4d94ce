"""Atomic file writes: a temporary file in the same folder, then a rename, so no reader ever sees half a file.

Temporary files and folders get the modes the user's umask gives (0644/0755 usually), not tempfile's 0600/0700.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:  # name the file the user knows, not the temporary one
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def replace_tree(target: Path, files: dict[str, bytes], owned: tuple[str, ...]) -> None:
    """Give folder `target` the `files` (relative paths) in place of everything under the `owned` paths.

    Everything else in `target` is kept. The new folder is built beside the old one and swapped in with
    renames, so either all of `files` lands or, when a write or rename fails, the previous folder is intact.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    trash = target.parent / f"{staging.name}.old"
    try:
        os.chmod(staging, 0o777 & ~_umask())
        if target.is_dir():
            for old in sorted(target.rglob("*")):
                rel = old.relative_to(target)
                if old.is_dir() or any(rel == Path(o) or Path(o) in rel.parents for o in owned):
                    continue
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(old, staging / rel)
        for name, data in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)
        if target.exists():
            os.replace(target, trash)
            try:
                os.replace(staging, target)
            except BaseException:
                os.replace(trash, target)
                raise
            remove_tree(trash)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def remove_tree(path: Path) -> None:
    """Remove a folder, also when it or its subfolders are read-only (the owner may always make them writable)."""
    def writable_then_retry(func, name, _exc):
        parent = os.path.dirname(name)
        try:
            os.chmod(parent, os.stat(parent).st_mode | stat.S_IWUSR | stat.S_IXUSR)
            func(name)
        except OSError:
            pass  # left behind, like `rm -rf` would
    shutil.rmtree(path, onerror=writable_then_retry)


def remove_empty_parents(path: Path, stop: Path) -> None:
    """Remove `path`'s now-empty parent folders up to (not including) `stop`."""
    folder = path.parent
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
