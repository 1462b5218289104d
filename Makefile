# modelcache — set-up commands. Both work on a fresh machine with only Python 3.11+ and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test install install-test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'

demo: install
	$(BIN)/modelcache demo

test: install-test
	$(BIN)/python -m pytest -q

# Download benchmark (benchmarks/RESULTS.md); installs huggingface_hub, hf_transfer and aria2 if missing.
# BENCH_ARGS: e.g. --scale 0.05 for a smoke run, --scenarios 1,3, --repeat 1.
BENCH_ARGS ?= --repeat 3
bench: install
	$(BIN)/python -m pip install --quiet aiohttp
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/serve_bench.py
	$(BIN)/python benchmarks/http_stack.py
	$(BIN)/python benchmarks/check_bench.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
