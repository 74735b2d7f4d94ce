"""`make preview`'s Quarto step: use quarto from the PATH, else pip's quarto-cli, else one sentence and exit 1."""

import os
import subprocess

from conftest import ROOT

SCRIPT = ROOT / "scripts/ensure-quarto.sh"


def fake_bin(tmp_path, pip_works: bool):
    """A stand-in environment whose `python -m pip install quarto-cli` succeeds (and adds quarto) or fails."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    action = f'touch "{bin_dir}/quarto"; chmod +x "{bin_dir}/quarto"; exit 0' if pip_works else "exit 1"
    (bin_dir / "python").write_text(f"#!/bin/sh\n{action}\n")
    (bin_dir / "python").chmod(0o755)
    return bin_dir


def run(bin_dir):
    env = {**os.environ, "PATH": "/usr/bin:/bin"}  # no quarto on this PATH
    return subprocess.run(["bash", str(SCRIPT), str(bin_dir)], capture_output=True, text=True, env=env)


def test_failed_install_says_so_in_one_sentence(tmp_path):
    result = run(fake_bin(tmp_path, pip_works=False))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Quarto could not be installed here") and "quarto.org" in last


def test_pip_quarto_cli_is_used_when_it_installs(tmp_path):
    result = run(fake_bin(tmp_path, pip_works=True))
    assert result.returncode == 0, result.stderr
