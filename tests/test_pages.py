"""Generated pages: open questions and roadmap coverage, and their freshness check."""

from __future__ import annotations

import shutil

import yaml

from conftest import ROOT, write
from mlnotes import pages


def make_site(tmp_path):
    shutil.copytree(ROOT / "notes", tmp_path / "notes", ignore=shutil.ignore_patterns("*.qmd", "*.yml"))
    (tmp_path / "notes").mkdir(exist_ok=True)
    shutil.copy(ROOT / "notes/_roadmap.yml", tmp_path / "notes/_roadmap.yml")
    write(tmp_path / "_quarto.yml", "project:\n  type: website\n")
    write(tmp_path / "posts/2025-11-15/index.qmd", """
        ---
        title: "Day one"
        date: 2025-11-15
        concepts: [gradients, Matrix Multiplication]
        ---

        ## Questions I still have

        - N/A as of now
        - Why is the sky blue?
        - How does
          wrapping work?

        ## Tomorrow's plan

        - not a question
        """)
    write(tmp_path / "posts/2025-11-16/index.qmd", """
        ---
        title: "Day two"
        date: 2025-11-16
        concepts: [kl divergence]
        answers: ["2025-11-15#q1"]
        ---

        ## Questions I still have

        - Is this open?
        """)
    return tmp_path


def test_questions_numbered_and_answered(tmp_path):
    site = make_site(tmp_path)
    items = yaml.safe_load(pages.expected(site)["notes/questions.yml"])
    assert [(q["id"], q["title"], q["categories"]) for q in items] == [
        ("2025-11-16#q1", "Is this open?", ["open"]),
        ("2025-11-15#q1", "Why is the sky blue?", ["answered"]),
        ("2025-11-15#q2", "How does wrapping work?", ["open"]),
    ]
    assert "Answered on 2025-11-16: Day two." in items[1]["description"]
    assert items[1]["path"] == "../posts/2025-11-15/index.qmd#questions-i-still-have"


def test_roadmap_coverage_counts(tmp_path):
    site = make_site(tmp_path)
    text = pages.expected(site)["notes/roadmap.qmd"]
    assert "## 1. Start with a tiny ML/DL problem (2/5 covered)" in text
    assert "## 2. Reading transformer papers (1/5 covered)" in text  # matrix multiplication, case-insensitive
    assert "## 3. Studying self-supervised methods (1/5 covered)" in text
    assert "**4 of 19 concepts covered so far.**" in text
    assert "| ⬜ | Jacobians | *not yet covered* |" in text


def test_stale_until_refreshed(tmp_path):
    site = make_site(tmp_path)
    assert len(pages.stale(site)) == 4
    assert sorted(pages.refresh(site)) == sorted(pages.expected(site))
    assert pages.stale(site) == []
    note = site / "posts/2025-11-16/index.qmd"
    note.write_text(note.read_text().replace("- Is this open?", "- Is this open?\n- A new question?"))
    assert pages.stale(site) == ["notes/questions.yml:1: generated page is out of date; run: mlnotes freeze",
                                 "notes/questions.qmd:1: generated page is out of date; run: mlnotes freeze"]


def test_drafts_stay_out_of_the_generated_pages(tmp_path):
    root = make_site(tmp_path)
    write(root / "posts/2025-11-17/index.qmd", """
        ---
        title: "A draft"
        date: 2025-11-17
        draft: true
        concepts: [svd]
        answers: ["2025-11-15#q2"]
        ---

        ## Questions I still have

        - A draft question?
        """)
    for day in ("2025-11-16", "2025-11-17"):  # both have a Python cell, a frozen result and an execution record
        note = root / f"posts/{day}/index.qmd"
        note.write_text(note.read_text() + "\n```{python}\n1 + 1\n```\n")
        write(root / f"_freeze/posts/{day}/index/execute-results/html.json", '{"hash": "abc", "result": {}}')
        write(root / f"_provenance/posts/{day}/index.qmd.json", '{"hash": "abc", "executed": "%s", "packages": {}}' % day)
    pages.refresh(root)
    text = "".join((root / "notes" / name).read_text() for name in ("questions.yml", "roadmap.qmd", "execution.qmd"))
    assert "A draft" not in text and "2025-11-17" not in text
    assert "posts/2025-11-16/index.qmd" in (root / "notes/execution.qmd").read_text()
    questions = yaml.safe_load((root / "notes/questions.yml").read_text())
    assert {q["id"]: q["categories"] for q in questions}["2025-11-15#q2"] == ["open"]  # a draft answers nothing yet


def test_parked_questions_show_their_reason(tmp_path):
    site = make_site(tmp_path)
    note = site / "posts/2025-11-16/index.qmd"
    note.write_text(note.read_text().replace(
        "- Is this open?", "- Is this open?\n- Worth chasing? *(Parked: off the roadmap for now.)*\n"
                           "- Already answered? *(Parked: never mind.)*"))
    site_answer = site / "posts/2025-11-17/index.qmd"
    write(site_answer, """
        ---
        title: "Day three"
        date: 2025-11-17
        answers: ["2025-11-16#q3"]
        ---
        """)
    items = {q["id"]: q for q in yaml.safe_load(pages.expected(site)["notes/questions.yml"])}
    parked = items["2025-11-16#q2"]
    assert (parked["title"], parked["categories"]) == ("Worth chasing?", ["parked"])
    assert "Parked: off the roadmap for now." in parked["description"]
    assert items["2025-11-16#q3"]["categories"] == ["answered"]  # a later answer wins over the parking
    assert items["2025-11-16#q1"]["categories"] == ["open"]
    assert "5 questions so far, 2 still open, 1 parked." in pages.expected(site)["notes/questions.qmd"]


def test_roadmap_counts_only_checked_concepts(tmp_path):
    site = make_site(tmp_path)
    note = site / "posts/2025-11-16/index.qmd"
    note.write_text(note.read_text().replace("concepts: [kl divergence]",
                                             "concepts: [kl divergence]\nmentions: [Jacobians, gradients]"))
    text = pages.expected(site)["notes/roadmap.qmd"]
    assert "**4 of 19 concepts covered so far.** 1 more only mentioned." in text  # a mention is not coverage
    assert "| ◐ | Jacobians | *mentioned only:* [2025-11-16](../posts/2025-11-16/index.qmd) |" in text
    assert ("| ✅ | gradients → calc | [2025-11-15](../posts/2025-11-15/index.qmd); "
            "*mentioned only:* [2025-11-16](../posts/2025-11-16/index.qmd) |") in text
    assert "## 4. Fine-tuning LLMs (0/4 covered)" in text
