"""Benchmarks for mlnotes; results are recorded in benchmarks/README.md.

    .venv/bin/python benchmarks/run.py            # all three
    .venv/bin/python benchmarks/run.py check      # one of: check, freeze, realign

1. `mlnotes check` over a synthetic project of 1,000 frozen notes (with and without the ruff pass).
2. Freezing every note of this project from scratch, serially and with --jobs 2.
3. After a prose edit of the heaviest note: realigning versus re-executing it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from mlnotes import check, freeze, project, provenance  # noqa: E402
from mlnotes.qmd import quarto_hash  # noqa: E402

NOTE = """---
title: "Daily Notes: {day}"
date: {day}
description: "Synthetic note {i}."
categories: [daily, synthetic]
concepts: [gradients]
---

## ML Notes

Prose for note {i}, with a link to [the about page](../../about.qmd) and @fig-line-{i}.

```{{python}}
import numpy as np

x = np.arange({i} % 7 + 3)
print(x.sum())
```

```{{python}}
#| label: fig-line-{i}
#| fig-cap: "A line"
#| fig-alt: "A rising line"
import matplotlib.pyplot as plt

plt.plot(x)
plt.show()
```

## Questions I still have

- Question {i}?
"""


def timed(fn, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def synthetic_project(n: int) -> Path:
    root = Path(tempfile.mkdtemp(prefix="mlnotes-bench-"))
    (root / "_quarto.yml").write_text("project:\n  type: website\n")
    (root / "about.qmd").write_text("---\ntitle: About\ndescription: x\n---\n")
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    png = next((ROOT / "_freeze").rglob("*.png")).read_bytes()
    start = date(2020, 1, 1)
    for i in range(n):
        day = (start + timedelta(days=i)).isoformat()
        note = root / "posts" / day / "index.qmd"
        note.parent.mkdir(parents=True)
        text = NOTE.format(day=day, i=i)
        note.write_text(text)
        md = (text + f"\n![A line](index_files/figure-html/fig-line-{i}-output-1.png){{#fig-line-{i} width=10 height=10}}\n")
        rel = f"posts/{day}/index.qmd"
        result = project.result_file(root, note)
        result.parent.mkdir(parents=True)
        result.write_text(freeze.result_json(quarto_hash(text), md, "index", False))
        figures = project.figure_dir(root, note)
        figures.mkdir(parents=True)
        (figures / f"fig-line-{i}-output-1.png").write_bytes(png)
        provenance.write(root, rel, {"hash": quarto_hash(text), "executed": "2026-01-01", "seconds": 1.0,
                                     "python": "3.11.7", "packages": {}, "by": provenance.BY_FREEZE})
    return root


def command_env() -> dict:
    """The environment a user runs mlnotes in: bytecode is written and reused (some shells here disable it)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def whole_command(args: list[str], repeat: int = 10) -> tuple[float, float]:
    """(best wall time, best user+sys CPU time) of `mlnotes ARGS` over `repeat` runs, after one warm-up run.

    The CPU time matters on a shared machine, where other people's work stretches wall times."""
    cmd = [str(ROOT / ".venv/bin/mlnotes"), *args]
    subprocess.run(cmd, capture_output=True, env=command_env())
    wall = cpu = float("inf")
    for _ in range(repeat):
        before = os.times()
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, env=command_env())
        wall = min(wall, time.perf_counter() - start)
        after = os.times()
        cpu = min(cpu, (after.children_user - before.children_user) + (after.children_system - before.children_system))
    return wall, cpu


def bench_check() -> list[str]:
    root = synthetic_project(1000)
    try:
        assert check.check(root) == [], check.check(root)[:5]
        shutil.rmtree(root / ".mlnotes-cache")
        start = time.perf_counter()
        check.check(root)
        cold = time.perf_counter() - start  # ruff runs on every note and fills the cache
        with_lint = timed(lambda: check.check(root))
        without = timed(lambda: check.check(root, lint_cells=False))
        cli, cli_cpu = whole_command(["check", "--project", str(root)])
    finally:
        shutil.rmtree(root)
    here = timed(lambda: check.check(ROOT))
    rows = [f"| `check` on this project (in-process) | {here:.3f} s |",
            f"| `check` on 1,000 synthetic notes, first run: ruff on every note (in-process) | {cold:.3f} s |",
            f"| `check` on 1,000 synthetic notes, with ruff findings cached (in-process) | {with_lint:.3f} s |",
            f"| `check` on 1,000 synthetic notes, without ruff (in-process) | {without:.3f} s |",
            f"| `mlnotes check` on 1,000 synthetic notes (whole command) | {cli:.3f} s (CPU {cli_cpu:.3f} s) |"]
    wall, cpu = whole_command(["check", "--project", str(ROOT)])
    rows.append(f"| `mlnotes check` on this project, nothing to report (whole command) | {wall:.3f} s (CPU {cpu:.3f} s) |")
    if not check.check(ROOT):  # every note fresh: freeze has nothing to do and writes nothing
        wall, cpu = whole_command(["freeze", "--project", str(ROOT)])
        rows.append(f"| `mlnotes freeze` on this project, nothing to do (whole command) | {wall:.3f} s (CPU {cpu:.3f} s) |")
    return rows


def copy_project(with_freeze: bool) -> Path:
    dest = Path(tempfile.mkdtemp(prefix="mlnotes-bench-")) / "site"
    ignore = shutil.ignore_patterns(".venv", ".git", "_site", "__pycache__", ".pytest_cache", ".ruff_cache",
                                    *([] if with_freeze else ["_freeze"]))
    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


def freeze_all(root: Path, jobs: int) -> float:
    start = time.perf_counter()
    subprocess.run([str(ROOT / ".venv/bin/mlnotes"), "freeze", "--jobs", str(jobs), "--project", str(root)],
                   check=True, capture_output=True)
    return time.perf_counter() - start


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / "_freeze").rglob("*")) if p.is_file()}


def bench_freeze() -> list[str]:
    serial_root, parallel_root = copy_project(False), copy_project(False)
    try:
        serial = freeze_all(serial_root, 1)
        parallel = freeze_all(parallel_root, 2)
        identical = snapshot(serial_root) == snapshot(parallel_root)
        n = len(project.notes(serial_root))
    finally:
        shutil.rmtree(serial_root.parent)
        shutil.rmtree(parallel_root.parent)
    return [f"| freeze all {n} notes from scratch, `--jobs 1` | {serial:.1f} s |",
            f"| freeze all {n} notes from scratch, `--jobs 2` | {parallel:.1f} s (speed-up {serial / parallel:.2f}x; "
            f"outputs byte-identical: {identical}) |"]


def bench_realign() -> list[str]:
    root = copy_project(True)
    try:
        record = {rel: json.loads(path.read_text()) for rel, path in provenance.all_records(root).items()}
        heaviest = max(record, key=lambda k: record[k]["seconds"] or 0)
        env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
               "GIT_COMMITTER_EMAIL": "b@b"}
        for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "base"]):
            subprocess.run(cmd, cwd=root, check=True, env=env, capture_output=True)
        note = root / heaviest
        text = note.read_text()
        note.write_text(text.replace("## Tomorrow's plan", "An extra sentence of prose.\n\n## Tomorrow's plan", 1))
        mlnotes = str(ROOT / ".venv/bin/mlnotes")
        start = time.perf_counter()
        out = subprocess.run([mlnotes, "freeze", "--project", str(root)], check=True, capture_output=True, text=True).stdout
        realign = time.perf_counter() - start
        assert f"realigned {heaviest}" in out, out
        start = time.perf_counter()
        subprocess.run([mlnotes, "freeze", "--project", str(root), str(note)], check=True, capture_output=True)
        execute = time.perf_counter() - start
    finally:
        shutil.rmtree(root.parent)
    return [f"| prose edit of the heaviest note ({heaviest}): realign (whole command) | {realign:.2f} s |",
            f"| same edit: re-execute (whole command) | {execute:.2f} s (realign is {execute / realign:.0f}x faster) |"]


def main() -> None:
    which = sys.argv[1:] or ["check", "freeze", "realign"]
    rows = ["| what | time |", "|---|---|"]
    for name in which:
        rows += {"check": bench_check, "freeze": bench_freeze, "realign": bench_realign}[name]()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, {date.today().isoformat()}")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
