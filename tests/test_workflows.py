"""The GitHub workflows are valid (actionlint) and publish with least privilege."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import ROOT

WORKFLOWS = sorted((ROOT / ".github/workflows").glob("*.yml"))


def actionlint() -> str:
    found = Path(sys.executable).parent / "actionlint"
    return str(found) if found.exists() else shutil.which("actionlint")


def test_workflows_pass_actionlint():
    assert [w.name for w in WORKFLOWS] == ["ci.yml", "publish.yml"]
    result = subprocess.run([actionlint(), *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n")
    result = subprocess.run([actionlint(), str(bad)], capture_output=True, text=True)
    assert result.returncode != 0


def test_publish_uses_quarto_actions_with_least_privilege():
    wf = yaml.safe_load((ROOT / ".github/workflows/publish.yml").read_text())
    assert wf["permissions"] == {"contents": "read"}
    uses = [s.get("uses", "") for s in wf["jobs"]["build"]["steps"]]
    assert any(u.startswith("quarto-dev/quarto-actions/setup") for u in uses)
    assert any(u.startswith("quarto-dev/quarto-actions/render") for u in uses)
    assert not any("setup-python" in u for u in uses), "publishing renders from frozen outputs, without Python"
    assert wf["jobs"]["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci/run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()


def test_publish_pins_a_quarto_1_8_release():
    """A new Quarto release cannot change the published site without a commit."""
    wf = yaml.safe_load((ROOT / ".github/workflows/publish.yml").read_text())
    setup = next(s for s in wf["jobs"]["build"]["steps"] if s.get("uses", "").startswith("quarto-dev/quarto-actions/setup"))
    version = str(setup.get("with", {}).get("version", ""))
    assert re.fullmatch(r"1\.8\.\d+", version), version
