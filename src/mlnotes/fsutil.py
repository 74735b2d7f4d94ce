"""Atomic file writes: a temporary file in the same folder, then a rename, so no reader ever sees half a file."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def replace_dir(target: Path, files: dict[str, bytes]) -> None:
    """Make `target` hold exactly `files`: build a sibling folder, then swap it in with renames."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        trash = None
        if target.exists():
            trash = target.parent / f"{staging.name}.old"
            os.replace(target, trash)
        if files:
            os.replace(staging, target)
        else:
            staging.rmdir()
        if trash is not None:
            shutil.rmtree(trash)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
