"""`mlnotes freeze` never publishes a wrong or half-written result: atomic writes, duplicate labels refused,
freeze repairs whatever check reports, unclosed fences as Quarto treats them, interrupts end cleanly."""

from __future__ import annotations

import errno
import json
import os
import pathlib
import signal
import stat
import subprocess
import sys
import time

import pytest

from conftest import FIGURE_NOTE, write
from mlnotes import check, cli

REL = "posts/a/index.qmd"


def freeze(project, *args) -> int:
    return cli.main(["freeze", "--project", str(project), "--jobs", "1", *args])


def snapshot(project):
    return {p.relative_to(project).as_posix(): p.read_bytes()
            for folder in ("_freeze", "_provenance") for p in sorted((project / folder).rglob("*")) if p.is_file()}


def stored_markdown(project):
    path = project / "_freeze/posts/a/index/execute-results/html.json"
    return json.loads(path.read_text())["result"]["markdown"]


def frozen_problems(project):
    return [p for p in check.check(project, lint_cells=False) if "front matter has no" not in p]


@pytest.fixture
def frozen(tmp_project, capsys):
    note = write(tmp_project / REL, FIGURE_NOTE)
    assert freeze(tmp_project) == 0
    capsys.readouterr()
    return note


# ---------------------------------------------------------------- 2. all of a result lands, or none of it

def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("failure", ["every rename", "swapping the new folder in", "writing html.json"])
def test_failed_write_leaves_the_previous_result_whole(frozen, tmp_project, capsys, monkeypatch, failure):
    before = snapshot(tmp_project)
    frozen.write_text(FIGURE_NOTE.replace('plt.title("noise")', 'plt.title("changed")'))
    real_replace, real_write_bytes = os.replace, pathlib.Path.write_bytes
    if failure == "every rename":
        monkeypatch.setattr(os, "replace", _enospc)
    elif failure == "swapping the new folder in":
        monkeypatch.setattr(os, "replace", lambda src, dst: _enospc() if ".new-" in str(src) and ".old" not in str(src)
                            else real_replace(src, dst))
    else:
        monkeypatch.setattr(pathlib.Path, "write_bytes", lambda self, data: _enospc() if self.name == "html.json"
                            else real_write_bytes(self, data))
    assert freeze(tmp_project) == 1
    out, err = capsys.readouterr()
    assert "could not write the frozen result of posts/a/index.qmd (No space left on device); " \
           "its previous result is unchanged." in out
    assert "Traceback" not in out + err
    monkeypatch.undo()
    assert snapshot(tmp_project) == before  # the old figure and the old json, together
    assert sorted(p.name for p in (tmp_project / "_freeze/posts/a").iterdir()) == ["index"]  # no staging left


def test_unwritable_freeze_folder_is_one_sentence(frozen, tmp_project, capsys, monkeypatch):
    frozen.write_text(FIGURE_NOTE.replace("Closing prose.", "Closing prose, edited."))  # realigns: one json write
    (tmp_project / ".mlnotes-cache").mkdir(exist_ok=True)

    def denied(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", str(dst))
    monkeypatch.setattr(os, "replace", denied)
    assert freeze(tmp_project) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert err.startswith("could not write ") and "Permission denied" in err and err.count("\n") == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_keeps_the_previous_result(frozen, tmp_project, capsys):
    before = snapshot(tmp_project)
    frozen.write_text(FIGURE_NOTE.replace('plt.title("noise")', 'plt.title("changed")'))
    folder = tmp_project / "_freeze/posts/a"
    folder.chmod(0o555)
    try:
        assert freeze(tmp_project) == 1
    finally:
        folder.chmod(0o755)
    out, err = capsys.readouterr()
    assert "its previous result is unchanged" in out and "Traceback" not in out + err
    assert snapshot(tmp_project) == before


def test_files_honour_the_umask(frozen, tmp_project):
    old = os.umask(0o022)
    try:
        assert freeze(tmp_project, str(frozen)) == 0
    finally:
        os.umask(old)
    base = tmp_project / "_freeze/posts/a/index"
    for path in [base, base / "figure-html", base / "execute-results"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o755, path
    for path in [base / "execute-results/html.json", base / "figure-html/fig-noise-output-1.png",
                 tmp_project / "_provenance/posts/a/index.qmd.json"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


# ---------------------------------------------------------------- 3. duplicate labels

def test_duplicate_labels_are_reported_and_not_executed(tmp_project, capsys):
    text = FIGURE_NOTE + '''
```{python}
#| label: fig-noise
plt.plot([1, 2])
plt.show()
```
'''
    write(tmp_project / REL, text)
    assert freeze(tmp_project) == 1
    out = capsys.readouterr().out
    assert "posts/a/index.qmd:21: the label fig-noise is already used by the cell at line 7; labels must be " \
           "unique (a repeated figure label overwrites the first figure), so this note is not executed." in out
    assert not (tmp_project / "_freeze").exists()
    assert "posts/a/index.qmd:21: the label fig-noise is already used by the cell at line 7; labels must be unique." \
        in check.check(tmp_project, lint_cells=False)


# ---------------------------------------------------------------- 6. pages without Python cells

def test_page_without_python_cells_is_not_frozen(tmp_project, capsys):
    page = write(tmp_project / "notes/index.qmd", "---\ntitle: Topics\n---\n\nJust prose.\n")
    assert freeze(tmp_project, str(page)) == 0
    out = capsys.readouterr().out
    assert "skipped   notes/index.qmd: no Python cells; nothing to freeze" in out
    assert not (tmp_project / "_freeze").exists() and not (tmp_project / "_provenance").exists()


# ---------------------------------------------------------------- 7. freeze repairs what check reports

def _remove_figure(project):
    next((project / "_freeze/posts/a/index/figure-html").glob("*.png")).unlink()


def _remove_result(project):
    (project / "_freeze/posts/a/index/execute-results/html.json").unlink()


def _corrupt_record(project):
    (project / "_provenance/posts/a/index.qmd.json").write_text("{")


@pytest.mark.parametrize("breakage, reason", [
    (_remove_figure, "frozen figure fig-noise-output-1.png is missing"),
    (_remove_result, "no frozen result"),
    (_corrupt_record, "its execution record is corrupt"),
])
def test_whatever_check_reports_freeze_repairs(frozen, tmp_project, capsys, breakage, reason):
    assert frozen_problems(tmp_project) == []
    breakage(tmp_project)
    assert frozen_problems(tmp_project) != []
    assert freeze(tmp_project) == 0
    assert f"running   posts/a/index.qmd ({reason})" in capsys.readouterr().out
    assert frozen_problems(tmp_project) == []


def test_stray_files_are_reported_with_the_command_that_removes_them(frozen, tmp_project, capsys):
    subprocess.run(["git", "init", "-q"], cwd=tmp_project, check=True)
    subprocess.run(["git", "add", "-A"], cwd=tmp_project, check=True)
    stray = tmp_project / "_freeze/posts/a/index/figure-html/cell-9-output-1.png"
    stray.write_bytes(b"old figure")
    problems = frozen_problems(tmp_project)
    rel = "_freeze/posts/a/index/figure-html/cell-9-output-1.png"
    assert problems == [f"{rel}:1: stray frozen file (no frozen result refers to it); remove it: rm {rel} "
                        "(or mlnotes freeze --prune)"]  # not "git add"
    assert freeze(tmp_project) == 0
    assert f"stray     {rel} (no frozen result refers to it; --prune removes it)" in capsys.readouterr().out
    assert freeze(tmp_project, "--prune") == 0
    assert not stray.exists() and frozen_problems(tmp_project) == []


def test_environment_other_than_the_pins(frozen, tmp_project, capsys):
    from importlib import metadata
    path = tmp_project / "_provenance/posts/a/index.qmd.json"
    rec = json.loads(path.read_text())
    rec["packages"]["numpy"] = "0.1"
    path.write_text(json.dumps(rec))
    write(tmp_project / "requirements.txt", "numpy==0.0.1\n")  # installed differs from the pin: say what to do
    assert freeze(tmp_project) == 1
    out = capsys.readouterr().out
    assert "install the pins first (make, or pip install -r requirements.txt), then run: mlnotes freeze " \
           "posts/a/index.qmd" in out and "running" not in out
    write(tmp_project / "requirements.txt", f"numpy=={metadata.version('numpy')}\n")  # installed = pin: repair
    assert freeze(tmp_project) == 0
    assert "running   posts/a/index.qmd (executed under package versions other than the pins)" in capsys.readouterr().out
    assert frozen_problems(tmp_project) == []


# ---------------------------------------------------------------- 8. an unclosed fence

def test_unclosed_fence_is_prose_as_in_quarto_and_reported(tmp_project, capsys):
    write(tmp_project / REL, '```{python}\nprint("ran")\n```\n\nIntro.\n```{python}\n1 / 0\n')
    assert freeze(tmp_project) == 0
    md = stored_markdown(tmp_project)
    assert "ran" in md and "ZeroDivisionError" not in md
    assert md.endswith(":::\n:::\n\n\nIntro.\n\n1 / 0\n\n")  # the fence line comes out blank
    assert "posts/a/index.qmd:6: this ```{python} cell is never closed, so Quarto does not run it and shows its " \
           "code as text; close it with a ``` line." in check.check(tmp_project, lint_cells=False)


# ---------------------------------------------------------------- 9. realign before the first commit

def test_prose_edit_realigns_without_git(frozen, tmp_project, capsys):
    frozen.write_text(FIGURE_NOTE.replace("Closing prose.", "Closing prose, edited."))
    assert freeze(tmp_project) == 0
    assert "realigned posts/a/index.qmd" in capsys.readouterr().out
    realigned = snapshot(tmp_project)
    assert freeze(tmp_project, str(frozen)) == 0
    assert {k: v for k, v in snapshot(tmp_project).items() if "_provenance" not in k} == \
        {k: v for k, v in realigned.items() if "_provenance" not in k}


def test_freeze_says_why_it_executes(frozen, tmp_project, capsys):
    frozen.write_text(FIGURE_NOTE.replace('plt.title("noise")', 'plt.title("changed")'))
    assert freeze(tmp_project) == 0
    assert "running   posts/a/index.qmd (code or cell options changed)" in capsys.readouterr().out
    import shutil
    shutil.rmtree(tmp_project / ".mlnotes-cache")
    frozen.write_text(FIGURE_NOTE.replace("Closing prose.", "Other prose."))
    assert freeze(tmp_project) == 0
    assert "running   posts/a/index.qmd (the source of its frozen result is neither committed nor cached)" \
        in capsys.readouterr().out


def test_cache_is_ignored_by_git():
    from conftest import ROOT
    assert ".mlnotes-cache/" in (ROOT / ".gitignore").read_text().splitlines()


# ---------------------------------------------------------------- smaller things

def test_timeout_option(tmp_project, capsys):
    write(tmp_project / REL, "```{python}\nimport time\ntime.sleep(30)\n```\n")
    assert freeze(tmp_project, "--timeout", "2") == 1
    out = capsys.readouterr().out
    assert "running   posts/a/index.qmd (no frozen result)" in out
    assert "posts/a/index.qmd:1: the cell starting here raised CellTimeoutError" in out
    assert not (tmp_project / "_freeze").exists()
    assert "--timeout SECONDS" in cli.build_parser()._subparsers._group_actions[0].choices["freeze"].format_help()


def test_timeout_of_an_inline_expression_is_a_failure_not_a_traceback(tmp_project, capsys):
    # nbclient's timeout handler assumes a cell: an inline `{python}` value slower than --timeout crashed freeze
    # with an AssertionError traceback and left the kernel's connection file behind.
    write(tmp_project / REL, "```{python}\nimport time\n```\n\nSlow: `{python} time.sleep(30)`.\n")
    assert freeze(tmp_project, "--timeout", "2") == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert "posts/a/index.qmd:5: the cell starting here raised CellTimeoutError" in out
    assert "in the inline expression `{python} time.sleep(30)`" in out
    assert not (tmp_project / "_freeze").exists()


def test_prune_removes_emptied_folders(frozen, tmp_project, capsys):
    frozen.unlink()
    frozen.parent.rmdir()
    assert freeze(tmp_project, "--prune") == 0
    assert list((tmp_project / "_freeze").iterdir()) == [] and list((tmp_project / "_provenance").iterdir()) == []


SLOW = "```{python}\nimport time\ntime.sleep(60)\n```\n"


def _start(project, runtime, *args):
    # nbclient writes kernel connection files with tempfile: a private TMPDIR shows whether any is left behind
    env = {**os.environ, "TMPDIR": str(runtime), "PYTHONWARNINGS": "default"}
    return subprocess.Popen([sys.executable, "-m", "mlnotes.cli", "freeze", "--project", str(project), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def _wait_for_kernels(runtime, n, proc):
    for _ in range(600):
        if len(list(runtime.rglob("*.json"))) >= n:
            time.sleep(1.5)  # let the cells start
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("kernels did not start")


@pytest.mark.parametrize("how, jobs", [("ctrl-c", "2"), ("sigterm", "2"), ("sigterm", "1")])
def test_interrupts_end_cleanly(tmp_project, tmp_path, how, jobs):
    for name in ("a", "b", "c"):  # one more than the workers: one note is still waiting
        write(tmp_project / f"posts/{name}/index.qmd", SLOW)
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    proc = _start(tmp_project, runtime, "--jobs", jobs)
    _wait_for_kernels(runtime, int(jobs), proc)
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does: every process of the group
    else:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert err == "interrupted; frozen results already written are complete, the rest are unchanged.\n", err
    assert list(runtime.rglob("*.json")) == []
    assert not (tmp_project / "_freeze").exists()


# ---------------------------------------------------------------- found by the tester (branch f-tester)

def _as_a_user(real):
    """os.unlink/os.rmdir as for a non-root user: refused in a folder without write permission."""
    def call(path, *args, dir_fd=None, **kwargs):
        parent = os.fstat(dir_fd) if dir_fd is not None else os.stat(os.path.dirname(os.fspath(path)) or ".")
        if not parent.st_mode & stat.S_IWUSR:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real(path, *args, dir_fd=dir_fd, **kwargs)
    return call


def test_read_only_result_folder_is_replaced_without_leaving_the_old_one_behind(frozen, tmp_project, capsys,
                                                                               monkeypatch):
    # A note's own `_freeze/<note>/` folder is read-only but its parent is writable (as after `chmod -R a-w` on
    # a copied result): the new result is swapped in, and the old folder, renamed aside, must still be removed,
    # not left as a hidden `.index.new-*.old` folder that check then calls an orphan to `git add`.
    monkeypatch.setattr(os, "unlink", _as_a_user(os.unlink))
    monkeypatch.setattr(os, "rmdir", _as_a_user(os.rmdir))
    base = tmp_project / "_freeze/posts/a/index"
    for folder in (base / "figure-html", base / "execute-results", base):
        folder.chmod(0o555)
    try:
        frozen.write_text(FIGURE_NOTE.replace('plt.title("noise")', 'plt.title("changed")'))
        assert freeze(tmp_project) == 0
    finally:
        for folder in (base, base / "figure-html", base / "execute-results"):
            if folder.exists():
                folder.chmod(0o755)
    assert sorted(p.name for p in (tmp_project / "_freeze/posts/a").iterdir()) == ["index"]
    assert "orphan" not in capsys.readouterr().out


def test_orphaned_result_is_not_advised_into_git(frozen, tmp_project):
    subprocess.run(["git", "init", "-q"], cwd=tmp_project, check=True)
    frozen.unlink()
    problems = frozen_problems(tmp_project)
    assert "_freeze/posts/a/index/execute-results/html.json:1: orphaned frozen result (its source is gone); " \
           "run: mlnotes freeze --prune" in problems
    assert not [p for p in problems if "git add" in p], problems


def test_file_quarto_does_not_render_is_not_frozen(tmp_project, capsys):
    # Quarto ignores files and folders starting with "_" or "."; a result for one would never be used.
    write(tmp_project / "posts/_scratch.qmd", "```{python}\n1 + 1\n```\n")
    assert freeze(tmp_project, str(tmp_project / "posts/_scratch.qmd")) == 0
    out = capsys.readouterr().out
    assert "skipped   posts/_scratch.qmd: Quarto does not render it (a name starting with '_' or '.', a README " \
           "or an excluded folder); nothing to freeze" in out
    assert not (tmp_project / "_freeze").exists() and not (tmp_project / "_provenance").exists()


def test_note_that_is_not_utf8_fails_freeze(frozen, tmp_project, capsys):
    frozen.write_bytes(frozen.read_bytes() + "caf\u00e9\n".encode("latin-1"))
    assert freeze(tmp_project) == 1
    out = capsys.readouterr().out
    assert "posts/a/index.qmd:1: the file is not valid UTF-8 text." in out
    assert "0 fresh, 1 failed" in out


def test_write_error_names_the_file_not_its_temporary(frozen, tmp_project, capsys, monkeypatch):
    import tempfile
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, dir=None, prefix="", suffix="", **kwargs):
        if dir is not None and "_freeze" in str(dir):  # the result's folder is read-only (as a non-root user)
            raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, f"{prefix}x1y2{suffix}"))
        return real_mkstemp(*args, dir=dir, prefix=prefix, suffix=suffix, **kwargs)
    frozen.write_text(FIGURE_NOTE.replace("Closing prose.", "Closing prose, edited."))  # realigns: one json write
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    assert freeze(tmp_project) == 1
    err = capsys.readouterr().err
    assert ".tmp" not in err and "_freeze/posts/a/index/execute-results/html.json: Permission denied" in err, err


def test_output_piped_into_a_closed_reader_ends_quietly(tmp_project):
    # `mlnotes check | head -1`: the reader goes away; the command ends like any Unix tool, without
    # "could not write: Broken pipe; files already written are complete..." (nothing was being written).
    write(tmp_project / REL, FIGURE_NOTE)  # not frozen: check has lines to print
    proc = subprocess.Popen([sys.executable, "-m", "mlnotes.cli", "check", "--no-lint", "--project", str(tmp_project)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # before the command writes anything
    err = proc.stderr.read()
    assert proc.wait(timeout=60) != 0
    assert err == "", err
