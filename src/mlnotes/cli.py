"""The `mlnotes` command: run, freeze, check and new."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from . import project
from .project import ProjectError


def _root(args) -> Path:
    if getattr(args, "project", None):
        root = Path(args.project)
        if not (root / "_quarto.yml").is_file():
            raise ProjectError(f"{args.project} is not a Quarto project folder (it has no _quarto.yml).")
        return root.resolve()
    first = Path(args.paths[0]) if getattr(args, "paths", None) else Path.cwd()
    if getattr(args, "paths", None) and not first.exists():
        raise ProjectError(f"{args.paths[0]} does not exist.")
    return project.find_root(first if first.is_dir() else first.parent)


def cmd_run(args) -> int:
    from .execute import execute
    from .qmd import QmdError, parse_file

    root = _root(args)
    notes = project.resolve_paths(root, args.paths)
    failed = 0
    for note in notes:
        rel = project.rel(root, note)
        start = time.perf_counter()
        try:
            doc = parse_file(note, root, Path(rel))
            options = project.execute_options(root, doc, note)
            result = execute(doc, options, cwd=project.working_dir(root, note))
        except (QmdError, ProjectError) as e:
            failed += 1
            print(f"failed  {rel}\n{e}", flush=True)
            continue
        seconds = time.perf_counter() - start
        drift = []
        if result.ok and args.compare:
            from .compare import drift as compare_drift
            drift = compare_drift(root, note, doc, result, options)
        if drift:
            failed += 1
            print(f"differs {rel}  {seconds:.1f}s\n" + "\n".join(drift), flush=True)
        elif result.ok:
            print(f"ok      {rel}  {seconds:.1f}s", flush=True)
        else:
            failed += 1
            print(f"failed  {rel}  {seconds:.1f}s\n{result.failure.report()}", flush=True)
    return 1 if failed else 0


def cmd_freeze(args) -> int:
    from . import freeze, pages, provenance

    root = _root(args)
    notes = project.resolve_paths(root, args.paths)
    start = time.perf_counter()
    freeze.forget_reads()
    say = lambda line: print(line, flush=True)  # noqa: E731

    def stored_hash(rel: str) -> str | None:
        try:
            stored = freeze.read_result(project.result_file(root, root / rel))
        except freeze.FrozenError:
            return None
        return stored["hash"] if stored else None

    if message := provenance.migrate(root, stored_hash):
        say(message)
    if args.record:
        if not args.paths:
            raise ProjectError("--record needs the notes whose current frozen results you want to record.")
        reports = freeze.record(root, notes)
        for r in reports:
            say(f"{'recorded' if r.status == 'recorded' else 'failed':9} {r.path}: {r.message}")
        return 1 if any(r.status == "failed" for r in reports) else 0
    reports = freeze.freeze(root, notes, explicit=bool(args.paths), jobs=args.jobs, force=args.force,
                            progress=say, timeout=args.timeout)
    leftovers = [(base, "orphan", "its source no longer exists") for base in freeze.orphans(root)]
    leftovers += [(path, "orphan", "execution record of a note that no longer exists")
                  for path in provenance.orphans(root)]
    leftovers += [(path, "stray", "no frozen result refers to it") for path in freeze.stray_files(root)]
    from . import notebook
    leftovers += [(path, "orphan", "readers' notebook file of a note that no longer exists")
                  for path in notebook.orphans(root)]
    for path, kind, why in leftovers:
        rel = path.relative_to(root).as_posix()
        say(f"pruned    {rel} ({why})" if args.prune else f"{kind:9} {rel} ({why}; --prune removes it)")
    if args.prune:
        freeze.prune(root, [path for path, _, _ in leftovers])
    if pages.is_ml_notes(root):
        for path in pages.refresh(root):
            say(f"updated   {path}")
    notebook_problems = _refresh_notebooks(root)
    counts = {s: sum(r.status == s for r in reports) for s in ("executed", "realigned", "fresh", "failed")}
    if n := sum(r.status == "skipped" for r in reports):
        counts["skipped"] = n
    say(", ".join(f"{n} {s}" for s, n in counts.items()) + f" in {time.perf_counter() - start:.1f}s")
    return 1 if counts["failed"] or notebook_problems else 0


def _refresh_notebooks(root: Path) -> list[str]:
    """Readers' notebooks and their page links (see notebook.py); prints what changed, returns problems."""
    from . import notebook

    written, problems = notebook.refresh(root)
    for path in written:
        print(f"updated   {path}", flush=True)
    for problem in problems:
        print(problem, flush=True)
    return problems


def cmd_notebooks(args) -> int:
    from . import notebook

    root = _root(args)
    if not notebook.enabled(root):
        print("_quarto.yml has no `notebooks:` block, so this project has no readers' notebooks.", file=sys.stderr)
        return 2
    return 1 if _refresh_notebooks(root) else 0


def cmd_check(args) -> int:
    from . import check

    root = _root(args)
    problems = check.check(root, lint_cells=not args.no_lint)
    for problem in problems:
        print(problem)
    if not problems:
        print("all notes ok")
    return 1 if problems else 0


def cmd_new(args) -> int:
    from . import new

    root = _root(args)
    return new.main(root, args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlnotes", description="Execute, freeze and check the notes of a Quarto site.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="execute notes in fresh Jupyter kernels and report failures")
    p.add_argument("paths", nargs="*", help="notes or folders (default: every note of the project)")
    p.add_argument("--compare", action="store_true",
                   help="also compare the outputs with the committed frozen result (numbers within one unit in the "
                        "last printed digit, figures pixel by pixel; see the README); a difference fails")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("freeze", help="write Quarto frozen results (_freeze/) for missing or stale notes")
    p.add_argument("paths", nargs="*", help="notes to re-execute even when fresh (default: every stale note)")
    p.add_argument("--jobs", "-j", type=int, default=None, help="notes executed in parallel (default: number of cores)")
    p.add_argument("--project", help="the Quarto project folder (default: found from the current folder)")
    p.add_argument("--force", action="store_true", help="replace corrupt or merge-conflicted frozen results")
    p.add_argument("--prune", action="store_true",
                   help="remove frozen results and records whose source was deleted or renamed, and stray files")
    p.add_argument("--timeout", type=int, default=600, metavar="SECONDS",
                   help="longest a single cell may run before the note fails (default: 600, as Quarto)")
    p.add_argument("--record", action="store_true",
                   help="record the current environment for the named notes' current results (e.g. made by "
                        "real Quarto) without executing anything")
    p.set_defaults(func=cmd_freeze)

    p = sub.add_parser("notebooks", help="rewrite the readers' notebooks and page links from the frozen results")
    p.add_argument("--project", help="the Quarto project folder (default: found from the current folder)")
    p.set_defaults(func=cmd_notebooks, paths=[])

    p = sub.add_parser("check", help="report problems without executing anything (exit 1 if any)")
    p.add_argument("--project", help="the Quarto project folder (default: found from the current folder)")
    p.add_argument("--no-lint", action="store_true", help="skip the ruff lint of cell code")
    p.set_defaults(func=cmd_check, paths=[])

    from . import new
    new.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "jobs", None) is not None and args.jobs < 1:
        print("--jobs must be a positive number.", file=sys.stderr)
        return 2
    if getattr(args, "timeout", None) is not None and args.timeout < 1:
        print("--timeout must be a positive number of seconds.", file=sys.stderr)
        return 2
    try:
        previous = signal.signal(signal.SIGTERM, _interrupt)  # so kernels are shut down and their files removed
    except ValueError:  # not the main thread (mlnotes used as a library)
        previous = None
    try:
        return args.func(args)
    except ProjectError as e:
        print(e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; frozen results already written are complete, the rest are unchanged.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (`mlnotes check | head`): end quietly
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail
        except (OSError, ValueError, AttributeError):
            pass
        return 141  # as a shell reports a command ended by SIGPIPE
    except OSError as e:  # an unwritable folder, a full disk: one sentence, not a traceback
        where = f" {project.rel(Path.cwd(), Path(e.filename))}" if e.filename else ""
        print(f"could not write{where}: {e.strerror or e}; files already written are complete, "
              "the rest are unchanged.", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
