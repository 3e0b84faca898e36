# Two commands for a fresh clone:
#   make demo   create .venv, install llmsim, run the bundled default job
#   make test   create .venv, install llmsim with dev extras, run the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# torch is pinned in pyproject.toml (2.13.0, the CPU build on disk); nothing here downloads a CUDA build.
PIP_FLAGS := --disable-pip-version-check -q

.PHONY: demo test test-slow bench validate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install $(PIP_FLAGS) torch==2.13.0
	$(BIN)/pip install $(PIP_FLAGS) -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install $(PIP_FLAGS) -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/llmsim demo

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

test-slow: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -m slow

validate: $(VENV)/.installed
	$(BIN)/llmsim validate

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_trace.py
	$(BIN)/python benchmarks/bench_memory.py
	$(BIN)/python benchmarks/bench_npu.py
	$(BIN)/python benchmarks/bench_systems.py
	$(BIN)/python benchmarks/bench_sweep.py --subset-only

clean:
	rm -rf $(VENV) out
