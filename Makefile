# `make test` and `make run` set up .venv/ themselves on a machine with only Python 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: venv test lint run clean

venv: $(STAMP)

# torch first, pinned alone: a looser requirement would pull the CUDA build.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) -c constraints.txt torch==2.13.0
	$(PIP) -c constraints.txt -e '.[dev]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: venv lint
	$(BIN)/python -m pytest -q

run: venv
	$(BIN)/mobattn list attentions
	$(BIN)/mobattn list models

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache exports
