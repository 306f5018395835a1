# Two commands for a newcomer on a fresh machine:
#   make lab    set up .venv and open JupyterLab on the index notebook
#   make test   the matrix (noxfile.py): lint; the tests on Python 3.11, 3.12 and 3.13,
#               each in a venv of its own; nbval (strict) and the browser test in .venv
#   make test SESSIONS=tests-3.12   one session of it (as each CI job runs one)
# Set-up runs again only when pyproject.toml changes (or .venv is missing); nox's venvs
# (.nox/) are reused the same way, and nox itself lives in .venv-nox.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))

# The matrix: what `make test` runs, and what .github/workflows/ci.yml runs one job each
# (tests/test_ci.py checks that the two agree).  NOX_SPEC is the test extra's nox.
SESSIONS ?= lint tests-3.11 tests-3.12 tests-3.13 notebooks
NOX_VENV := .venv-nox
NOX_SPEC := nox>=2025.10.14
NOX_REPORT := .nox/report.json

# jupyter lab refuses to run as root unless told it may.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

NBVAL_FLAGS := --nbval --nbval-current-env --nbval-cell-timeout=60 \
               --nbval-sanitize-with notebooks/sanitize.cfg -p no:cacheprovider

.PHONY: setup lab test lint typecheck unit nbval browser conformance execute clean

CHECK_PYTHON = @$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "minisocket needs Python 3.11 or newer (found: $$($(PYTHON) --version))"; exit 1; }
NO_VENV = { echo "could not create $(1): on Debian/Ubuntu, apt-get install python3-venv"; exit 1; }

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(CHECK_PYTHON)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || $(call NO_VENV,$(VENV))
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[notebooks,test,dev]'
	@# matplotlib builds its font cache on first import and says so on stderr, which
	@# would fail strict nbval: build it here, once.
	$(BIN)/python -c 'import matplotlib.pyplot'
	touch $(STAMP)

lab: setup
	cd notebooks && ../$(BIN)/jupyter lab $(ALLOW_ROOT) \
	  $(if $(wildcard notebooks/00-index.ipynb),00-index.ipynb,)

$(NOX_VENV)/.installed: Makefile
	$(CHECK_PYTHON)
	@test -x $(NOX_VENV)/bin/python || $(PYTHON) -m venv $(NOX_VENV) || $(call NO_VENV,$(NOX_VENV))
	$(NOX_VENV)/bin/python -m pip install --quiet '$(NOX_SPEC)'
	touch $@

# Each session says how long it took; a Python the machine lacks is skipped in one line
# (under CI it fails).  The report is what .ci/run checks.
test: $(NOX_VENV)/.installed
	@mkdir -p $(dir $(NOX_REPORT))
	$(NOX_VENV)/bin/nox --report $(NOX_REPORT) -s $(SESSIONS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy --strict minisocket

unit: setup
	$(BIN)/python -m pytest -p no:nbval tests

nbval: setup
ifneq ($(NOTEBOOKS),)
	$(BIN)/python -m pytest $(NBVAL_FLAGS) $(NOTEBOOKS)
else
	@echo "nbval: no notebooks yet"
endif

# The panels in JupyterLab with headless Chromium (skipped, saying so, without chromium).
# Starting JupyterLab alone can take a minute: it gets longer than pytest's default timeout.
browser: setup
	$(BIN)/python -m pytest -p no:nbval --timeout=600 tests/test_browser.py

# Re-run every notebook in place after changing code it shows (then commit the outputs).
# Cells meant to fail are tagged raises-exception; tests/test_notebooks.py rejects any
# other error that --allow-errors would let through.
execute: setup
	cd notebooks && for nb in $(notdir $(NOTEBOOKS)); do \
	  ../$(BIN)/jupyter nbconvert --to notebook --execute --inplace --allow-errors "$$nb" || exit 1; \
	done

conformance: setup
	$(BIN)/python -m pytest -p no:nbval -v tests/test_stdlib_conformance.py tests/test_stdlib_suites.py

clean:
	rm -rf $(VENV) $(NOX_VENV) .nox build *.egg-info .mypy_cache .ruff_cache
