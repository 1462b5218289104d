# modelcache — set-up commands. Both work on a fresh machine with only Python 3.11+ and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test install install-test bench clean image

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The editable install leaves src/ uncompiled, and with PYTHONDONTWRITEBYTECODE set (common in CI and
# containers) every `modelcache` run would compile its ~60 modules again (~0.1 s): compile them here,
# as pip does for a wheel.
install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m compileall -q src >/dev/null

install-test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m compileall -q src >/dev/null

demo: install
	$(BIN)/modelcache demo

test: install-test
	$(BIN)/python -m pytest -q

# Benchmarks (benchmarks/RESULTS.md, results.json): modelcache side by side with huggingface_hub, hf_transfer,
# aria2c, curl, nginx, wrk and ab in one run, every target of issue #16 printed met/missed with its ratio.
# Installs the peers if missing (pip, apt-get). BENCH_ARGS: --quick (every scenario at small scale in under
# 2 minutes, a smoke run of the harness; writes benchmarks/_work/RESULTS-quick.md), --scenarios 1,5, --scale 0.1.
BENCH_ARGS ?= --repeat 3
bench: install
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)
ifeq ($(findstring --quick,$(BENCH_ARGS)),)
	$(BIN)/python -m pip install --quiet aiohttp
	$(BIN)/python benchmarks/http_stack.py
endif
	$(BIN)/python benchmarks/check_bench.py

# The image (Dockerfile): built where a builder runs (docker or podman with a daemon/socket), else skipped.
IMAGE ?= modelcache:0.1.0
image:
	@builder=$$(for b in docker podman; do command -v $$b >/dev/null 2>&1 && $$b info >/dev/null 2>&1 && echo $$b && break; done); \
	if [ -z "$$builder" ]; then echo "make image: skipped: no container builder here (docker or podman with a running daemon)"; exit 0; fi; \
	$$builder build --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
	  --build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) -t $(IMAGE) .

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
