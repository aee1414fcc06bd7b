# The two commands: `make run` and `make test`. Both build .venv when it is missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
PIN    := -c constraints.txt

.PHONY: run test test-fast lint clean ci-deps

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

# CI (CI=true) must run every test. The metrics tests need promtool and a Prometheus server
# (Debian's `prometheus`); the web-page tests need a real browser (Debian's `chromium` and
# `chromium-driver`, driven by Selenium). Developers without them get skips.
CI_DEBS := prometheus chromium chromium-driver
ci-deps:
	@if [ "$$CI" = "true" ] && ! { command -v promtool && command -v chromedriver; } >/dev/null 2>&1; then \
		echo "installing Debian's $(CI_DEBS) for the metrics and web-page tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends $(CI_DEBS) >/dev/null; \
	fi

# The suite runs in TEST_WORKERS processes (pytest-xdist), a test module's tests in one of
# them, in order (module-scoped clusters and the outputs later tests build on are made
# once). --dist loadgroup would ignore xdist_group marks: pytest 9.2 no longer lets
# pytest-xdist 3.8 rename the items it groups. TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

# Debian's packages (network and disk) install while pip does, then lint, then the suite.
test:
	$(MAKE) --no-print-directory -j2 $(VENV)/.installed-dev ci-deps
	$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest $(XDIST)

# The developer's loop: every test not marked slow (CI runs them all through `make test`).
test-fast: lint
	$(BIN)/python -m pytest $(XDIST) -m "not slow"

clean:
	rm -rf $(VENV) .adp out data/demo-lake .pytest_cache .mypy_cache .ruff_cache
