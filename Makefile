# `make repro`: install into .venv and rebuild the whole pipeline (dvc repro).
# `make test`:  install into .venv (with test tools) and run the test suite.
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: install repro test lint bench

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	# torch/torchvision first, pinned, so nothing later can pull a different (CUDA) torch
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

repro: install
	dvc repro
	@echo "report: $(CURDIR)/metrics/report.md"
	@echo "MLflow UI: ganlab ui   (http://127.0.0.1:5000; from the venv: $(BIN)/ganlab ui)"

test: install
	python -m pytest -q

lint: install
	ruff check src tests bench

bench: install
	python bench/run.py
