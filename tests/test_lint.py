"""The tool's own code passes ruff with the project's configuration."""

import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_ruff_passes_on_the_tool():
    ruff = Path(sys.executable).parent / "ruff"
    result = subprocess.run([str(ruff), "check", "src", "tests", "benchmarks"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
