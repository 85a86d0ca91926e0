# One command sets up and runs each job; the environment is made on first use.
#   make test                 ruff (lint, format), the import contracts and the test suite
#   make summary              the paper's network, layer by layer
#   make demo                 Fashion-MNIST: prepare, train 5 minutes, evaluate (under 10 min)
#   make serve                the latest demo run's network at http://127.0.0.1:8000/
#   make docs                 the documentation site, into site/ (open site/index.html)
#   make report-docs          the docs' tables and figures written again from their records
#   make transfer-study       docs/results.md's transfer study on Tiny ImageNet (~30 h of CPU)
# GPU users: choose the torch build, e.g.
#   make test TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"

PYTHON ?= python3
VENV ?= .venv
# On this project's CPU machines pip finds the CPU wheel of this release on local disk.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: test lint chromium summary demo serve docs report-docs transfer-study clean

# The demo's time budget for training, in minutes; it also validates and evaluates.
DEMO_MINUTES ?= 5
FASHION_MNIST := /usr/share/datasets/fashion-mnist
DEMO_RUN := runs/demo-$(shell date +%Y%m%d-%H%M%S)

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
	touch $@

# ruff (lint, format) and the house's shape: each room imports only the rooms below it
# (import-linter's contracts in pyproject.toml; docs/paper.md lists the rooms).
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# The report test renders HTML in headless Chromium: Debian's package when it is missing.
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	    $$SUDO apt-get install -y -q chromium >/dev/null || \
	    { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium >/dev/null; }; }

# Tests run in parallel workers, one per core up to 4 (pytest-xdist); TEST_WORKERS=0 runs
# them in this process, one after another.
TEST_WORKERS ?= auto --maxprocesses 4

test: lint chromium
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

# The documentation site from docs/ and the docstrings (mkdocs.yml); --strict: a broken link
# or a page left out of the navigation fails. `make test` builds it too (tests/test_docs.py).
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# Every table between generator markers in README.md and the results, benchmarks and
# reproduction pages, and every figure they show, from the records under docs/runs and
# docs/bench (`make test` checks that the committed pages agree with them).
report-docs: $(VENV)/.installed
	$(BIN)/alexnet report-docs --figures

summary: $(VENV)/.installed
	$(BIN)/alexnet summary alexnet2012

demo: $(VENV)/.installed
	@# Fashion-MNIST: Debian's package if it is installed or can be, else the official files
	@test -f $(FASHION_MNIST)/train-images-idx3-ubyte.gz \
		|| apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
		|| sudo -n apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
		|| echo "Debian's dataset-fashion-mnist is not available: downloading the release"
	$(BIN)/alexnet data prepare --source fashion-mnist --out data/fashion-mnist --download
	ALEXNET_PROGRESS=$${ALEXNET_PROGRESS:-1} $(BIN)/alexnet train \
		--config configs/fashion-mnist.yaml --out $(DEMO_RUN) \
		--set run.epochs=1 --set run.budget_minutes=$(DEMO_MINUTES) --set data.val_images=1000
	$(BIN)/alexnet eval --checkpoint $(DEMO_RUN) --data data/fashion-mnist --precision auto

# The latest `make demo` run, served on this machine only (docs/serving.md); with the
# nearest training images when its fc7 index exists:
#   .venv/bin/alexnet neighbors --checkpoint RUN --data data/fashion-mnist --limit 10000
PORT ?= 8000
serve: $(VENV)/.installed
	@run=$$(ls -d runs/demo-* 2>/dev/null | tail -n 1); \
	test -n "$$run" || { echo "no demo run in runs/: run make demo first"; exit 1; }; \
	index=""; ls $$run/neighbors/fc7-train-*.pt >/dev/null 2>&1 && index="--index $$run/neighbors"; \
	$(BIN)/alexnet serve --checkpoint $$run --port $(PORT) $$index

# The transfer study of docs/results.md: pretrain alexnet2012 on half of Tiny ImageNet's
# classes (A), then learn the other half (B) four ways with 10, 50 and 450 images a class.
# About 30 hours of a 2-core CPU. Every step resumes: stopped at any point (Ctrl-C, a killed
# job), the same command goes on where it stopped.
TINY_IMAGENET ?= ../shared/data/tiny-imagenet-200.zip
transfer-study: $(VENV)/.installed
	$(BIN)/alexnet data prepare --source tiny-imagenet --src $(TINY_IMAGENET) --out data/tiny-imagenet
	$(BIN)/alexnet train --config configs/tiny-imagenet-a.yaml --out runs/tiny-a --auto-resume --test
	$(BIN)/alexnet transfer --recipe configs/tiny-imagenet-b.yaml --source runs/tiny-a \
		--out runs/transfer-b --per-class 10,50,450 --seeds 0,1

clean:
	rm -rf $(VENV) build site src/*.egg-info .pytest_cache .ruff_cache
