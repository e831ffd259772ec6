# Everything a fresh machine needs: `make test` and `make demo` create .venv, install the CPU
# torch wheel first (an unpinned torch would pull a multi-GB CUDA build), then the package.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0
STAMP   := $(VENV)/.nidiff-installed

.PHONY: install test lint demo clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Every skip not declared in tests/conftest.py fails the run (NIDIFF_ALLOW_SKIPS=1 to relax).
test: $(STAMP)
	$(BIN)/python -m ruff check src tests scripts
	$(BIN)/python -m ruff format --check src tests scripts
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/python -m ruff check src tests scripts
	$(BIN)/python -m ruff format --check src tests scripts

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache

demo: $(STAMP)
	$(BIN)/python -m nidiff.demo --out outputs/demo --overwrite
	@echo "open outputs/demo/demo.png"
