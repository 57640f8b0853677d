# facerec: two commands do everything. `make run` sets up .venv and opens the app;
# `make test` sets up .venv and runs the whole test suite (what CI runs).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test venv package screenshots clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/facerec $(ARGS)

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest $(PYTEST_ARGS)

# One-folder executable in dist/facerec/ (PyInstaller; see packaging/README.md), then its
# self-test. `make package ARGS=--no-trim` builds the untrimmed comparison build instead.
package: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,package]'
	$(BIN)/python packaging/build.py $(ARGS)

screenshots: $(STAMP)
	xvfb-run -a -s "-screen 0 1600x1000x24" $(BIN)/python packaging/screenshots.py

clean:
	rm -rf $(VENV) build dist .pytest_cache
