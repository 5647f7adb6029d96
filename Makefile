# Two commands do all the set-up: `make train` and `make test`.
# Each creates (or refreshes, when pyproject.toml changed) the project's own virtual environment in .venv/.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ganspec-installed
# pytest-xdist: one worker per core. Override with `make test PYTEST_ARGS=...`.
PYTEST_ARGS ?= -n auto

.PHONY: train test lint venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch, pinned so pip never pulls a multi-GB CUDA build; users elsewhere may use any torch>=2.2.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[all]"
	touch $(STAMP)

train: $(STAMP)
	$(PY) -m backends.torch train $(ARGS)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
