# One command sets up and runs each job; the environment is made on first use.
#   make test                 ruff (lint, format) and the test suite
#   make summary              the paper's network, layer by layer
# GPU users: choose the torch build, e.g.
#   make test TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"

PYTHON ?= python3
VENV ?= .venv
# On this project's CPU machines pip finds the CPU wheel of this release on local disk.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: test lint summary clean

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
	touch $@

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

summary: $(VENV)/.installed
	$(BIN)/alexnet summary alexnet2012

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
