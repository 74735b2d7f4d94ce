"""The freeze writer against real Quarto results (shared/quarto-freeze-fixtures).

Each re-executable fixture's source is frozen with `mlnotes freeze --project` in a temporary project and
compared with the html.json real Quarto wrote: same hash and result keys, and the same markdown structure
(cell divs, code blocks with their attributes, output divs with their classes, figures with their paths and
attributes). Random cell ids and figure sizes (which move by a pixel or two between matplotlib versions) are
compared by shape and with a tolerance.
"""

from __future__ import annotations

import difflib
import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import FIXTURES
from mlnotes import cli

ALL = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()) if FIXTURES.is_dir() else []
RANDOM_ID = re.compile(r"\{#[0-9a-f]{8} ")


def origin(name: str) -> str:
    return (FIXTURES / name / "ORIGIN.txt").read_text()


def runnable(name: str) -> tuple[bool, str]:
    line = next((ln for ln in origin(name).splitlines() if ln.startswith("re-executable")), "")
    return line.rstrip().endswith("yes"), line


def structure(md: str, ids: bool = True) -> list[tuple]:
    """The skeleton of the code cells of a frozen markdown: cell divs, code blocks, output divs and fences,
    images. Prose (and the divs it holds) is left out."""
    items: list[tuple] = []
    lines = md.split("\n")
    depth = 0  # div nesting inside the current .cell div
    i = 0
    while i < len(lines):
        line = lines[i]
        if depth == 0:
            if re.match(r"^::: \{.*\.cell[ }]", line):
                depth = 1
                items.append(("div", RANDOM_ID.sub("{#ID " if ids else "{", line)))
            i += 1
            continue
        if m := re.match(r"^(`{3,})\s*(\{.*\})?\s*$", line):
            fence, attrs = m.group(1), m.group(2) or ""
            items.append(("fence", len(fence), attrs))
            i += 1
            while i < len(lines) and not re.match("^" + fence + r"\s*$", lines[i]):
                i += 1
        elif re.match(r"^:::+\s*$", line):
            depth -= 1
            items.append(("end",))
        elif line.startswith(":::"):
            depth += 1
            items.append(("div", line))
        elif m := re.match(r"^(\[)?!\[(.*?)\]\((.*?)\)\{(.*)\}", line):
            items.append(("image", m.group(2), m.group(3), m.group(4)))
        i += 1
    return items


def close_sizes(a: str, b: str) -> bool:
    """Image attributes equal, except width/height within 2% (matplotlib versions differ by a pixel or two)."""
    def split(attrs):
        sizes = dict(re.findall(r"(width|height)=(\d+)", attrs))
        return re.sub(r"(width|height)=\d+", r"\1=N", attrs), sizes
    (ra, sa), (rb, sb) = split(a), split(b)
    return ra == rb and sa.keys() == sb.keys() and all(abs(int(sa[k]) - int(sb[k])) <= 0.02 * int(sa[k]) + 1 for k in sa)


def same(a: tuple, b: tuple) -> bool:
    if a[0] == b[0] == "image":
        return a[1:3] == b[1:3] and close_sizes(a[3], b[3])
    return a == b


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    cache: dict[str, tuple[int, Path, str]] = {}

    def get(name: str):
        if name not in cache:
            project = tmp_path_factory.mktemp(name)
            (project / "_quarto.yml").write_text("project:\n  type: website\n")
            for src in (FIXTURES / name).glob("*.qmd"):
                shutil.copy(src, project / src.name)
            status = cli.main(["freeze", "--project", str(project), "--jobs", "1"])
            cache[name] = (status, project, "")
        return cache[name]
    return get


def expected_json(name: str) -> tuple[Path, dict]:
    path = next((FIXTURES / name / "_freeze").glob("*/execute-results/html.json"))
    return path, json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ALL)
def test_matches_real_quarto(name, frozen, capsys):
    ok, why = runnable(name)
    if not ok:
        pytest.skip(f"cannot re-execute here: {why}")
    status, project, _ = frozen(name)
    capsys.readouterr()
    assert status == 0, f"mlnotes freeze failed on fixture {name}"
    real_path, real = expected_json(name)
    stem = real_path.parent.parent.name
    ours_path = project / "_freeze" / stem / "execute-results" / "html.json"
    ours = json.loads(ours_path.read_text(encoding="utf-8"))

    assert ours["hash"] == real["hash"]
    expected_keys = ["engine", "markdown", "supporting", "filters", "includes"]
    assert list(ours["result"]) == expected_keys
    assert ours["result"]["supporting"] == [f"{stem}_files"]
    assert ours["result"]["filters"] == real["result"]["filters"] == []
    assert ours["result"]["includes"] == real["result"]["includes"]

    real_md, our_md = real["result"]["markdown"], ours["result"]["markdown"]
    new_format = "engine" in real["result"]  # 1.3-era results have no cell ids
    a, b = structure(real_md), structure(our_md, ids=new_format)
    if not (len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))):
        diff = "\n".join(difflib.unified_diff([repr(x) for x in a], [repr(y) for y in b], "real Quarto", "mlnotes",
                                              lineterm=""))
        pytest.fail(f"markdown structure differs for {name}:\n{diff}")

    # 1.4+ results give every cell div an id; ours are 8 hex digits (or cell-<label>) in the same places.
    if new_format:
        real_ids = re.findall(r"^::: \{#(\S+) \.cell ", real_md, re.M)
        our_ids = re.findall(r"^::: \{#(\S+) \.cell ", our_md, re.M)
        assert len(real_ids) == len(our_ids)
        for r, o in zip(real_ids, our_ids):
            assert (re.fullmatch("[0-9a-f]{8}", r) is not None) == (re.fullmatch("[0-9a-f]{8}", o) is not None)
            if not re.fullmatch("[0-9a-f]{8}", r):
                assert r == o

    # every figure the markdown names was written where Quarto's freezer keeps it
    for ref in re.findall(re.escape(stem) + r"_files/figure-html/([^)\s]+)", our_md):
        assert (project / "_freeze" / stem / "figure-html" / ref).is_file(), ref


def test_json_layout_is_javascripts(frozen):
    """JSON.stringify(x, null, 2): 2-space indent, raw UTF-8, no trailing newline."""
    status, project, _ = frozen("claire-stdout-and-figure")
    text = (project / "_freeze/index/execute-results/html.json").read_text(encoding="utf-8")
    assert not text.endswith("\n")
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    assert text.startswith('{\n  "hash": "')
