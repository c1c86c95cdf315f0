# The two Quickstart commands: `make run` (the main job) and `make test` (the whole test suite).
# Each sets up what it needs first: a virtual environment in $(VENV) with torch, the
# project's dependencies and embodied._C built in place (CPU kernels, plus CUDA ones
# where a CUDA toolkit is installed).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.embodied-installed
SOURCES := pyproject.toml setup.py $(shell find csrc -type f)

.PHONY: install run test bench clean

install: $(STAMP)

$(STAMP): $(SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "torch==2.14.1" "setuptools>=70" wheel ninja pybind11 numpy
	# No build isolation: the extension builds against the torch installed just above.
	$(BIN)/python -m pip install --quiet --no-build-isolation -e ".[dev]"
	$(BIN)/python -m embodied.ops.buildcheck
	touch $(STAMP)

# The default training launch: PPO on Meta-World reach, offline, on the CPU (about 7 minutes
# on 2 cores); the run directory is printed at the end (runs/metaworld/reach/<time>/).
run: $(STAMP)
	$(BIN)/embodied-train

test: $(STAMP)
	$(BIN)/python -m pytest
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.ops

clean:
	rm -rf build embodied/_C*.so $(VENV)
