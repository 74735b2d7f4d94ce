# Two commands on a fresh machine: `make preview` (the site) and `make test` (the tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test preview render freeze check lint clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

freeze: $(STAMP)
	$(BIN)/mlnotes freeze

check: $(STAMP)
	$(BIN)/mlnotes check

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# Render and serve the site from the frozen outputs. Quarto comes from the PATH, or pip's quarto-cli.
preview: $(STAMP)
	@./scripts/ensure-quarto.sh "$(BIN)"
	PATH="$(abspath $(BIN)):$$PATH" quarto preview

render: $(STAMP)
	@./scripts/ensure-quarto.sh "$(BIN)"
	PATH="$(abspath $(BIN)):$$PATH" quarto render

clean:
	rm -rf _site .quarto $(VENV)
