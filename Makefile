# The README's two commands: `make run` (the pipeline) and `make test` (the test suite).
# Both set up everything they need: a virtualenv with pinned dependencies and the dataset.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
# Stage commands in dvc.yaml run `python`: make it the virtualenv's.
export PATH := $(BIN):$(PATH)
FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist

.PHONY: run test report setup dataset repo clean-venv
# The revision `make report` compares the workspace with (CI passes the pull request's base branch).
BASE ?= main

run: setup dataset repo
	$(BIN)/dvc repro
	@$(BIN)/python -c 'import json; m = json.load(open("metrics/evaluate.json")); h = json.load(open("metrics/test_details.json"))["health"]; print("test accuracy: {:.4f} (train-test gap {:+.4f}); health: {}".format(m["accuracy"], m["gap"], ",".join(h) or "ok"))'

test: setup dataset
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The pull-request report: params and metrics diff against $(BASE) and the figures, as Markdown in
# report.md (PNG beside it). The GitHub Actions workflow posts exactly this file. Run after `make run`.
report:
	$(BIN)/python -m refinelab report --base $(BASE) --output report.md --print

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[test]'
	touch $@

# Fashion-MNIST from Debian's package when apt is usable; otherwise prepare downloads it (verified).
dataset:
	@if [ -d $(FASHION_MNIST_DIR) ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then echo "apt-get not found: prepare will download Fashion-MNIST"; exit 0; fi; \
	SUDO=; if [ "$$(id -u)" != 0 ]; then SUDO="sudo -n"; fi; \
	( $$SUDO apt-get install -y -qq dataset-fashion-mnist || \
	  ( $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist ) ) >/dev/null 2>&1 \
	  || echo "could not install dataset-fashion-mnist with apt: prepare will download Fashion-MNIST"

# `dvc repro` needs git and DVC initialised; a clone has both, an exported copy may not.
repo:
	@git rev-parse --is-inside-work-tree >/dev/null 2>&1 || git init -q
	@[ -d .dvc ] || $(BIN)/dvc init -q

clean-venv:
	rm -rf $(VENV)
