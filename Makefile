# freezebench: `make quickstart` and `make test` do all set-up themselves (into .venv).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU wheel of torch; on a CUDA machine use e.g. `make install TORCH=torch==2.13.0+cu128` or a preinstalled one.
TORCH  ?= torch==2.13.0
DEEPSPEED ?= deepspeed==0.19.8
# IMDB: the shared local copy where there is one (offline machines, CI), else the hub id
DATA   ?= $(if $(wildcard ../shared/data/imdb/*.parquet),../shared/data/imdb,stanfordnlp/imdb)
STAMP  := $(VENV)/.freezebench-installed
PYTEST_ARGS ?=
# pytest-xdist workers, whole files per worker (a module's sweep fixtures run once). Most end-to-end tests wait
# on Ray, SLURM or a subprocess about half the time, so 2 workers on 2 cores take ~0.6x the serial wall time.
# PYTEST_WORKERS=0 runs in one process (pytest-xdist's -n 0).
PYTEST_WORKERS ?= 2
PYTEST_XDIST := -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: install quickstart test test-fast clean help

help:
	@echo "make quickstart [DATA=stanfordnlp/imdb]     install into $(VENV), run configs/quickstart.yaml (DATA: $(DATA))"
	@echo "make test [PYTEST_WORKERS=2]               install into $(VENV), run the whole test suite (2 pytest-xdist workers)"

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	# torch first: a bare `torch` requirement would otherwise pull a multi-GB CUDA build
	$(BIN)/python -m pip install -q "$(TORCH)"
	# DeepSpeed is an sdist: build it without its C++ ops (they are JIT-built on first use)
	DS_BUILD_OPS=0 $(BIN)/python -m pip install -q --no-build-isolation "$(DEEPSPEED)"
	$(BIN)/python -m pip install -q -e ".[test,deepspeed,wandb-report,bench,search]"
	touch $(STAMP)

install: $(STAMP)

quickstart: install
	$(BIN)/python -m harness.sweep configs/quickstart.yaml --set data.source=$(DATA) --overwrite

test: install
	$(BIN)/python -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest $(PYTEST_XDIST) -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) results .pytest_cache
