"""One note executed in a child process, for `mlnotes freeze --jobs N`.

`python -m mlnotes.worker ROOT NOTE OPTIONS_JSON OUT TIMEOUT` executes NOTE and pickles (Execution, package
versions) to OUT. Plain child processes rather than a multiprocessing pool: an interrupt (Ctrl-C reaches
every process of the terminal's group; SIGTERM is passed on by the parent) ends each child through the
kernel's own cleanup, quietly, and leaves no pool semaphores or kernel connection files behind.
"""

from __future__ import annotations

import json
import pickle
import signal
import sys
from pathlib import Path


def _interrupt(signum, frame):
    # Once: a second signal (the parent's SIGTERM after Ctrl-C) must not cut the kernel's cleanup short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def run_note(root: Path, rel: str, options: dict, timeout: int):
    """Execute one note; returns (Execution, installed versions of the packages it imports)."""
    from . import project, provenance
    from .execute import execute
    from .qmd import parse_file

    note = root / rel
    doc = parse_file(note, root, Path(rel))
    execution = execute(doc, options, cwd=project.working_dir(root, note), timeout=timeout)
    versions = provenance.package_versions(provenance.imported_modules([c.code for c in doc.cells]))
    return execution, versions


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    root, rel, options, out, timeout = argv
    try:
        result = run_note(Path(root), rel, json.loads(options), int(timeout))
    except KeyboardInterrupt:
        return 130
    Path(out).write_bytes(pickle.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
