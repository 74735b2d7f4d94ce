"""`mlnotes run`: failures are reported with path, line and traceback; bad arguments exit 2."""

from conftest import write
from mlnotes import cli


def test_failing_cell_reports_path_line_and_exception(tmp_project, capsys, monkeypatch):
    write(tmp_project / "posts/broken/index.qmd", """
        ---
        title: Broken
        ---

        Fine so far.

        ```{python}
        x = 1
        ```

        ```{python}
        #| label: boom
        y = 2
        z = y / 0
        ```

        ```{python}
        print("never reached")
        ```
        """)
    monkeypatch.chdir(tmp_project)
    status = cli.main(["run", "posts/broken/index.qmd"])
    out = capsys.readouterr().out
    assert status == 1
    assert "failed  posts/broken/index.qmd" in out
    assert "posts/broken/index.qmd:11: the cell starting here raised ZeroDivisionError: division by zero (line 14)" in out
    assert "Traceback" in out or "----> 3" in out
    assert "never reached" not in out


def test_error_true_cell_does_not_fail(tmp_project, capsys, monkeypatch):
    write(tmp_project / "n.qmd", """
        ```{python}
        #| error: true
        raise ValueError("shown, not fatal")
        ```

        ```{python}
        #| eval: false
        raise SystemExit("not evaluated")
        ```
        """)
    monkeypatch.chdir(tmp_project)
    assert cli.main(["run", "n.qmd"]) == 0
    assert capsys.readouterr().out.startswith("ok      n.qmd")


def test_working_directory_is_the_notes_folder(tmp_project, capsys, monkeypatch):
    write(tmp_project / "posts/d/data.txt", "42\n")
    write(tmp_project / "posts/d/index.qmd", """
        ```{python}
        assert open("data.txt").read().strip() == "42"
        ```
        """)
    monkeypatch.chdir(tmp_project)
    assert cli.main(["run", "posts/d/index.qmd"]) == 0, capsys.readouterr().out


def test_missing_path_exits_2_with_one_sentence(tmp_project, capsys, monkeypatch):
    monkeypatch.chdir(tmp_project)
    assert cli.main(["run", "posts/nope.qmd"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "posts/nope.qmd does not exist."


def test_non_note_exits_2(tmp_project, capsys, monkeypatch):
    write(tmp_project / "README.md", "hello\n")
    monkeypatch.chdir(tmp_project)
    assert cli.main(["run", "README.md"]) == 2
    assert "is not a note" in capsys.readouterr().err


def test_malformed_front_matter_fails_with_one_sentence(tmp_project, capsys, monkeypatch):
    write(tmp_project / "bad.qmd", "---\ntitle: [oops\n---\n\n```{python}\nx = 1\n```\n")
    monkeypatch.chdir(tmp_project)
    assert cli.main(["run", "bad.qmd"]) == 1
    assert "bad.qmd:" in capsys.readouterr().out


def test_execute_dir_project_runs_cells_from_the_root(tmp_project, capsys, monkeypatch):
    (tmp_project / "_quarto.yml").write_text("project:\n  type: website\n  execute-dir: project\n")
    write(tmp_project / "data.txt", "7\n")
    write(tmp_project / "posts/d/index.qmd", """
        ```{python}
        assert open("data.txt").read().strip() == "7"
        ```
        """)
    monkeypatch.chdir(tmp_project)
    assert cli.main(["run", "posts/d/index.qmd"]) == 0, capsys.readouterr().out


def test_a_crashed_kernel_is_reported_at_its_cell(tmp_project, capsys, monkeypatch):
    write(tmp_project / "n.qmd", """
        ```{python}
        x = 1
        ```

        ```{python}
        import os
        os._exit(1)
        ```
        """)
    monkeypatch.chdir(tmp_project)
    assert cli.main(["run", "n.qmd"]) == 1
    assert "n.qmd:5: the cell starting here raised DeadKernelError" in capsys.readouterr().out


def test_sys_exit_reads_as_such(tmp_project, capsys, monkeypatch):
    write(tmp_project / "a.qmd", "Text.\n\n```{python}\nimport sys\nsys.exit()\n```\n")
    write(tmp_project / "b.qmd", "```{python}\nraise SystemExit(3)\n```\n")
    monkeypatch.chdir(tmp_project)
    assert cli.main(["run", "a.qmd", "b.qmd"]) == 1
    out = capsys.readouterr().out
    assert "a.qmd:3: the cell starting here called sys.exit(), which stops the note." in out
    assert "b.qmd:1: the cell starting here called sys.exit(3), which stops the note." in out
    assert "%tb" not in out


def test_project_files_in_messages_are_project_relative(tmp_project, capsys, monkeypatch):
    write(tmp_project / "posts/_metadata.yml", "execute:\n  echo: [false\n")
    write(tmp_project / "posts/d/index.qmd", "```{python}\nx = 1\n```\n")
    monkeypatch.chdir(tmp_project / "posts")
    assert cli.main(["run", "d/index.qmd"]) == 1
    out = capsys.readouterr().out
    assert "posts/_metadata.yml:2: not valid YAML" in out and str(tmp_project) not in out
