# Two commands for a newcomer on a fresh machine:
#   make lab    set up .venv and open JupyterLab on the index notebook
#   make test   set up .venv, then lint, type-check, unit tests, and nbval (strict)
# Set-up runs again only when pyproject.toml changes (or .venv is missing).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))

# jupyter lab refuses to run as root unless told it may.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

NBVAL_FLAGS := --nbval --nbval-current-env --nbval-cell-timeout=60 \
               --nbval-sanitize-with notebooks/sanitize.cfg -p no:cacheprovider

.PHONY: setup lab test lint typecheck unit nbval conformance execute clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "minisocket needs Python 3.11 or newer (found: $$($(PYTHON) --version))"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || \
	  { echo "could not create $(VENV): on Debian/Ubuntu, apt-get install python3-venv"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[notebooks,test,dev]'
	@# matplotlib builds its font cache on first import and says so on stderr, which
	@# would fail strict nbval: build it here, once.
	$(BIN)/python -c 'import matplotlib.pyplot'
	touch $(STAMP)

lab: setup
	cd notebooks && ../$(BIN)/jupyter lab $(ALLOW_ROOT) \
	  $(if $(wildcard notebooks/00-index.ipynb),00-index.ipynb,)

test: setup lint typecheck unit nbval

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

# Re-run every notebook in place after changing code it shows (then commit the outputs).
# Cells meant to fail are tagged raises-exception; tests/test_notebooks.py rejects any
# other error that --allow-errors would let through.
execute: setup
	cd notebooks && for nb in $(notdir $(NOTEBOOKS)); do \
	  ../$(BIN)/jupyter nbconvert --to notebook --execute --inplace --allow-errors "$$nb" || exit 1; \
	done

conformance: setup
	$(BIN)/python -m pytest -p no:nbval -v tests/test_stdlib_conformance.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache
