# The README's two commands: `make run` (the pipeline) and `make test` (the test suite).
# Both set up everything they need: a virtualenv with pinned dependencies and the dataset.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
# Stage commands in dvc.yaml run `python`: make it the virtualenv's.
export PATH := $(BIN):$(PATH)
FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist

# Where `nvidia-smi -L` lists a GPU, TensorFlow with CUDA (the same version, `tensorflow[and-cuda]`) replaces
# the CPU build, which would leave the GPU idle. Both provide the `tensorflow` module: the CPU build is
# removed first so that no file of one is left in the other (pip check then names tensorflow-cpu missing).
GPU := $(shell nvidia-smi -L 2>/dev/null | grep -q '^GPU' && echo yes)
TF_VERSION := $(shell sed -n 's/^tensorflow_cpu==//p' requirements.lock)
# One stamp per flavour: a GPU that appears later gets its TensorFlow at the next make.
INSTALLED := $(VENV)/.installed$(if $(GPU),-gpu)

.PHONY: run test bench report setup dataset repo clean-venv
# The revision `make report` compares the workspace with (CI passes the pull request's base branch).
BASE ?= main

run: setup dataset repo
	$(BIN)/dvc repro
	@$(BIN)/python -c 'import json; m = json.load(open("metrics/evaluate.json")); h = json.load(open("metrics/test_details.json"))["health"]; print("test accuracy: {:.4f} (train-test gap {:+.4f}); health: {}".format(m["accuracy"], m["gap"], ",".join(h) or "ok"))'

# The suite runs on every core (pytest-xdist): most tests wait on subprocesses (dvc, stage scripts).
# PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= auto
test: setup dataset
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# refinelab against a bare-Keras peer and the tutorial/best presets, in one run: benchmarks/results/*.json
# and the table in BENCHMARKS.md (about an hour on 2 CPU cores). `make test` runs its --quick mode.
bench: setup dataset
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

# The pull-request report: params and metrics diff against $(BASE) and the figures, as Markdown in
# report.md (PNG beside it). The GitHub Actions workflow posts exactly this file. Run after `make run`.
report:
	$(BIN)/python -m refinelab report --base $(BASE) --output report.md --print

setup: $(INSTALLED)

$(INSTALLED): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[test]'
ifeq ($(GPU),yes)
	@echo "nvidia-smi lists a GPU: installing tensorflow[and-cuda]==$(TF_VERSION) in place of tensorflow-cpu"
	$(BIN)/python -m pip uninstall --quiet -y tensorflow-cpu tensorflow
	$(BIN)/python -m pip install --quiet 'tensorflow[and-cuda]==$(TF_VERSION)'
	$(BIN)/python -c 'import tensorflow as tf; print("TensorFlow sees", tf.config.list_physical_devices("GPU") or "no GPU")'
endif
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
