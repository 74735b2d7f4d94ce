#!/usr/bin/env bash
# Make sure a `quarto` command exists: the one on the PATH, or pip's quarto-cli in the project's environment.
set -u
BIN="${1:-.venv/bin}"
if command -v quarto >/dev/null 2>&1 || [ -x "$BIN/quarto" ]; then
  exit 0
fi
echo "No quarto on the PATH; installing pip's quarto-cli into $BIN ..." >&2
if "$BIN/python" -m pip install --quiet quarto-cli >/dev/null 2>&1 && [ -x "$BIN/quarto" ]; then
  exit 0
fi
echo "Quarto could not be installed here (pip's quarto-cli downloads a Quarto release, which this machine cannot reach); install Quarto from https://quarto.org/docs/get-started/ or with 'conda install -c conda-forge quarto', then run 'make preview' again." >&2
exit 1
