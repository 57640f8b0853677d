# facerec: two commands do everything.
#   make run    sets up .venv (if missing) and opens the app
#   make test   sets up .venv, runs the checks (make check), builds the packaged executable,
#               runs the whole test suite (what CI runs: .ci/run)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
BUNDLE := dist/facerec/facerec
# The bundle is rebuilt only when something that goes into it changed.
BUNDLE_INPUTS := pyproject.toml $(shell find app models resources packaging -type f \
                   -not -name '*.pyc' -not -path 'resources/screenshots/*' 2>/dev/null)

.PHONY: run test check venv package screenshots clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,package]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/facerec $(ARGS)

test: check $(STAMP) $(BUNDLE)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest $(PYTEST_ARGS)

# Lint (ruff), types (mypy, strict on app/pipeline) and the import layers (import-linter:
# cli above ui above pipeline above config/log; the pipeline never imports Qt). All three
# are configured in pyproject.toml; any finding fails `make test`, and so CI.
check: $(STAMP)
	$(BIN)/python -m ruff check app tests packaging
	$(BIN)/python -m mypy
	$(BIN)/lint-imports

# One-folder executable in dist/facerec/ (PyInstaller; see packaging/README.md), then its
# self-test. `make package ARGS=--no-trim` builds the untrimmed comparison build instead.
$(BUNDLE): $(STAMP) $(BUNDLE_INPUTS)
	$(BIN)/python packaging/build.py

package: $(STAMP)
	$(BIN)/python packaging/build.py $(ARGS)

screenshots: $(STAMP)
	xvfb-run -a -s "-screen 0 1600x1000x24" $(BIN)/python packaging/screenshots.py

clean:
	rm -rf $(VENV) build dist .pytest_cache
