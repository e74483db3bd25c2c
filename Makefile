# Two commands: `make reproduce` (the whole pipeline + the book) and `make test`.
# Both create or refresh the virtual environment in .venv when needed.
#   make reproduce PROFILE=tiny|cpu|paper
#   make venv TORCH='torch==2.13.0+cu128 --index-url <your CUDA index>'   (GPU users)
SHELL := /bin/bash
PROFILE ?= cpu
TORCH ?= torch==2.13.0
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.harmlib-installed

.PHONY: venv reproduce book test test-fast lint bench clean

# Re-install when pyproject.toml changed or another torch spec is asked for.
venv:
	@if [ ! -x $(PY) ] || [ ! -f $(STAMP) ] || [ pyproject.toml -nt $(STAMP) ] || [ "$$(cat $(STAMP))" != "$(TORCH)" ]; then \
	  echo "harmlib: setting up $(VENV) ($(TORCH))"; \
	  $(PYTHON) -m venv $(VENV) && \
	  $(PY) -m pip install --quiet --upgrade pip && \
	  $(PY) -m pip install --quiet $(TORCH) && \
	  $(PY) -m pip install --quiet -e ".[all]" && \
	  echo "$(TORCH)" > $(STAMP); \
	fi

reproduce: venv
	$(VENV)/bin/harmlib reproduce --profile $(PROFILE)

book: venv
	$(VENV)/bin/harmlib book

test: venv lint
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check && $(VENV)/bin/ruff format --check

test-fast: venv
	$(PY) -m pytest -q -m "not slow"

bench: venv
	$(PY) benchmarks/bench_ssim.py

clean:
	rm -rf book/_build book/notebooks
