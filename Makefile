# Two entry points for a fresh machine; both create .venv and install torch's CPU wheel first,
# so that pip never resolves a multi-GB CUDA build. `make docs` builds the documentation site into site/.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1

.PHONY: install demo test lint docs

$(BIN)/python:
	$(PY) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,nas,docs,serve]'

demo: install
	$(BIN)/python -m lightning_ssd demo

test: install
	$(BIN)/python -m pytest -q -m "not slow"

# --strict: a broken link, a missing page or an unparsable docstring fails the build (and CI).
docs: install
	PYTHONPATH=$(CURDIR) $(BIN)/mkdocs build --strict --site-dir site

lint: install
	$(BIN)/ruff check lightning_ssd tests nas
