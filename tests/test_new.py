"""`mlnotes new`: a note from the template, never overwriting, with plain errors."""

from __future__ import annotations

import shutil
from datetime import date, timedelta

import pytest

from conftest import ROOT, write
from mlnotes import cli
from mlnotes.qmd import parse_file


@pytest.fixture
def site(tmp_path):
    """A copy of this site's skeleton: config, template, roadmap and two notes."""
    for rel in ("_quarto.yml", "_templates/daily.qmd", "notes/_roadmap.yml", "posts/_metadata.yml",
                "posts/2025-11-15/index.qmd"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    write(tmp_path / "posts/2025-11-16/index.qmd", "---\ntitle: x\ncategories: [daily, probability]\n---\n")
    return tmp_path


def new(site, *args) -> int:
    return cli.main(["new", "--project", str(site), *args])


def test_creates_a_note_with_the_seed_shape(site, capsys):
    assert new(site, "--date", "2025-11-22", "--category", "probability") == 0
    out = capsys.readouterr().out
    note = site / "posts/2025-11-22/index.qmd"
    assert "created posts/2025-11-22/index.qmd" in out
    assert "quarto preview posts/2025-11-22/index.qmd" in out and "mlnotes freeze posts/2025-11-22/index.qmd" in out
    doc = parse_file(note)
    fm = doc.front_matter
    assert fm["title"] == "Daily Notes: 2025-11-22"
    assert fm["date"] == date(2025, 11, 22)
    assert fm["categories"] == ["daily", "probability"]
    assert fm["concepts"] == [] and "description" in fm
    for heading in ("## ML Notes", "## Personal Notes", "## Questions I still have", "## Tomorrow's plan"):
        assert heading in doc.text
    assert len(doc.cells) == 1
    assert (site / "notes/questions.yml").is_file() and (site / "notes/roadmap.qmd").is_file()  # refreshed


def test_default_date_is_today_and_title_option(site, capsys):
    assert new(site, "--title", 'Softmax "again"') == 0
    note = site / f"posts/{date.today().isoformat()}/index.qmd"
    assert parse_file(note).front_matter["title"] == 'Softmax "again"'


def test_existing_note_is_left_byte_identical(site, capsys):
    note = site / "posts/2025-11-15/index.qmd"
    before = note.read_bytes()
    assert new(site, "--date", "2025-11-15") == 2
    assert capsys.readouterr().err.strip() == "posts/2025-11-15/index.qmd already exists; it was left unchanged."
    assert note.read_bytes() == before


@pytest.mark.parametrize("value, message", [
    ("2025-13-01", "--date 2025-13-01 is not a real calendar date."),
    ("15/11/2025", "--date 15/11/2025 is not a date in the form YYYY-MM-DD."),
    ((date.today() + timedelta(days=2)).isoformat(), "is in the future; a daily note can be dated at most tomorrow."),
])
def test_bad_dates(site, capsys, value, message):
    assert new(site, "--date", value) == 2
    assert message in capsys.readouterr().err
    assert not list((site / "posts").glob(f"{value}*"))


def test_tomorrow_is_allowed(site):
    assert new(site, "--date", (date.today() + timedelta(days=1)).isoformat()) == 0


def test_category_typo_warning(site, capsys):
    assert new(site, "--date", "2025-11-23", "--category", "probabilty") == 0
    assert "warning: no note uses the category 'probabilty' yet; did you mean 'probability'?" in capsys.readouterr().err


def test_list_categories(site, capsys):
    assert new(site, "--list-categories") == 0
    assert capsys.readouterr().out.split() == ["daily", "probability"]


def test_unwritable_folder(site, capsys):
    (site / "posts/2025-11-24").write_text("a file where the folder should be")
    assert new(site, "--date", "2025-11-24") == 2
    assert capsys.readouterr().err.startswith("cannot write posts/2025-11-24/index.qmd")


def test_empty_date_is_a_plain_sentence(site, capsys):
    assert new(site, "--date", "") == 2
    assert capsys.readouterr().err.strip() == \
        "--date is empty; give a date in the form YYYY-MM-DD, or leave --date out for today."


def test_template_fields_in_the_title_stay_text(site):
    assert new(site, "--date", "2025-11-25", "--title", "On {{date}} and {{categories}}") == 0
    fm = parse_file(site / "posts/2025-11-25/index.qmd").front_matter
    assert fm["title"] == "On {{date}} and {{categories}}"
    assert fm["categories"] == ["daily"]
