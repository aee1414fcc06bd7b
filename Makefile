# The two commands: `make run` and `make test`. Both build .venv when it is missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
PIN    := -c constraints.txt

.PHONY: run test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade "pip==26.3"

# Stamps: re-install when pyproject.toml or constraints.txt change.
$(VENV)/.installed-run: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install --quiet $(PIN) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install --quiet $(PIN) -e ".[dev]"
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/adp demo

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check adp tests notebooks
	$(BIN)/ruff format --check adp tests notebooks
	$(BIN)/mypy adp

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .adp out data/demo-lake .pytest_cache .mypy_cache .ruff_cache
