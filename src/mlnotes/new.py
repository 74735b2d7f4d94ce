"""`mlnotes new`: today's daily note from the template in `_templates/daily.qmd`, never overwriting."""

from __future__ import annotations

import os
import re
import sys
from datetime import date, timedelta
from pathlib import Path

from . import pages, project
from .qmd import QmdError, parse_file

TEMPLATE = Path("_templates") / "daily.qmd"


def existing_categories(root: Path) -> list[str]:
    found: set[str] = set()
    for path in (root / "posts").glob("*/index.qmd"):
        try:
            cats = parse_file(path, root).front_matter.get("categories")
        except QmdError:
            continue
        if isinstance(cats, list):
            found.update(str(c) for c in cats)
    return sorted(found)


def add_parser(sub) -> None:
    p = sub.add_parser("new", help="create today's daily note from _templates/daily.qmd",
                       description="Create posts/<date>/index.qmd from the daily template. Existing categories "
                                   "are listed by --list-categories.")
    p.add_argument("--date", help="the note's date, YYYY-MM-DD (default: today; at most tomorrow)")
    p.add_argument("--title", help="the title (default: 'Daily Notes: <date>')")
    p.add_argument("--category", action="append", default=[], metavar="NAME",
                   help="a category after 'daily' (repeat for several)")
    p.add_argument("--list-categories", action="store_true", help="list the categories the notes use, then exit")
    p.add_argument("--project", help="the Quarto project folder (default: found from the current folder)")
    from .cli import cmd_new
    p.set_defaults(func=cmd_new, paths=[])


def fail(message: str) -> int:
    print(message, file=sys.stderr)
    return 2


def yaml_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def main(root: Path, args) -> int:
    categories = existing_categories(root)
    if args.list_categories:
        print("\n".join(categories))
        return 0
    today = date.today()
    if args.date is None:
        day = today
    elif not args.date.strip():
        return fail("--date is empty; give a date in the form YYYY-MM-DD, or leave --date out for today.")
    else:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", args.date):
            return fail(f"--date {args.date} is not a date in the form YYYY-MM-DD.")
        try:
            day = date.fromisoformat(args.date)
        except ValueError:
            return fail(f"--date {args.date} is not a real calendar date.")
        if day > today + timedelta(days=1):
            return fail(f"--date {args.date} is in the future; a daily note can be dated at most tomorrow.")
    for name in args.category:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
            return fail(f"category '{name}' should be lowercase words joined by hyphens, e.g. linear-algebra.")
    template_path = root / TEMPLATE
    if not template_path.is_file():
        return fail(f"the daily template {TEMPLATE} is missing from {root}.")
    note = root / "posts" / day.isoformat() / "index.qmd"
    rel = project.rel(root, note)
    if note.exists():
        return fail(f"{rel} already exists; it was left unchanged.")
    title = args.title or f"Daily Notes: {day.isoformat()}"
    cats = ["daily"] + [c for c in args.category if c != "daily"]
    fields = {"title": yaml_string(title), "date": day.isoformat(), "categories": "[" + ", ".join(cats) + "]"}
    # one pass, so a title that contains "{{date}}" stays text
    text = re.sub(r"\{\{(title|date|categories)\}\}", lambda m: fields[m.group(1)],
                  template_path.read_text(encoding="utf-8"))
    for name in args.category:
        if name not in categories:
            import difflib

            close = difflib.get_close_matches(name, categories, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else " (a new category)."
            print(f"warning: no note uses the category '{name}' yet{hint}", file=sys.stderr)
    try:
        note.parent.mkdir(parents=True, exist_ok=True)
        import tempfile  # here: `mlnotes check` imports this module for its parser only

        fd, tmp = tempfile.mkstemp(prefix=".index.qmd.", dir=note.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            os.link(tmp, note)  # atomic, and fails rather than overwrite a note created meanwhile
        except FileExistsError:
            return fail(f"{rel} already exists; it was left unchanged.")
        finally:
            os.unlink(tmp)
    except OSError as e:
        return fail(f"cannot write {rel}: {e.strerror or e}.")
    if pages.is_ml_notes(root):
        pages.refresh(root)
    print(f"created {rel}")
    print("next:")
    print(f"  quarto preview {rel}        # write, and watch it render")
    print(f"  mlnotes freeze {rel}        # execute it and store its outputs in _freeze/")
    return 0
