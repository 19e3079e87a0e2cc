# The two commands of README: `make train` and `make test`. Each sets up .venv first if needed
# (scripts/setup_env.sh: TORCH=auto|cpu|cuda|skip picks the torch build).
#   make train DATA=../shared/data/cifar10 ARGS="--epochs 3 --train-examples 1024 --test-examples 512"
#   make test            (make test-extended: the wider zoo sweep, ~10 more minutes)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?=
ARGS ?=
# The real-data tests read CIFAR-10 from $CIFAR10_DIR (default: ../shared/data/cifar10, the layout of
# this project's machines); where the files exist, the tests must use them instead of skipping.
CIFAR10_DIR ?= $(firstword $(wildcard ../shared/data/cifar10 /work/shared/data/cifar10) ../shared/data/cifar10)
export NO_ALBUMENTATIONS_UPDATE = 1

.PHONY: setup train test test-extended
setup:
	@VENV=$(VENV) scripts/setup_env.sh

train: setup
	$(PY) -m flax_cnn.train $(if $(DATA),--data-dir $(DATA)) $(ARGS)

REAL_DATA = if [[ -f "$(CIFAR10_DIR)/test_batch.bin" ]]; then \
  export CIFAR10_DIR="$$(cd "$(CIFAR10_DIR)" && pwd)" FLAX_CNN_REQUIRE_REAL_DATA=1; fi;

test: setup
	@$(REAL_DATA) $(PY) -m pytest -q -n 2

test-extended: setup
	@$(REAL_DATA) $(PY) -m pytest -q -n 2 -m extended
