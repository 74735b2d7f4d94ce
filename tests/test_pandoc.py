"""Every frozen markdown in _freeze/ converts with pandoc (what Quarto uses) to HTML whose images resolve
to committed files and whose maths survives."""

from __future__ import annotations

import json
import re

import pypandoc
import pytest

from conftest import ROOT

RESULTS = sorted((ROOT / "_freeze").rglob("execute-results/html.json"))


def test_there_are_frozen_results():
    assert RESULTS


@pytest.mark.parametrize("result", RESULTS, ids=lambda p: p.relative_to(ROOT / "_freeze").parent.parent.as_posix())
def test_frozen_markdown_converts(result):
    data = json.loads(result.read_text(encoding="utf-8"))
    base = result.parent.parent  # _freeze/<note>
    stem = base.name
    markdown = data["result"]["markdown"]
    html = pypandoc.convert_text(markdown, "html", format="markdown", extra_args=["--mathjax"])

    images = re.findall(r'<img[^>]+src="([^"]+)"', html)
    expected = len(re.findall(r"!\[[^\]]*\]\(" + re.escape(stem) + r"_files/figure-html/", markdown))
    assert len([i for i in images if i.startswith(f"{stem}_files/figure-html/")]) == expected
    for src in images:
        if src.startswith(f"{stem}_files/figure-html/"):
            assert (base / "figure-html" / src.split("/")[-1]).is_file(), src

    if re.search(r"(?<![\\$])\$[^$\s][^$]*\$", markdown):
        assert 'class="math inline"' in html or 'class="math display"' in html
