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

.PHONY: install quickstart test test-fast clean help

help:
	@echo "make quickstart [DATA=stanfordnlp/imdb]     install into $(VENV), run configs/quickstart.yaml (DATA: $(DATA))"
	@echo "make test                                  install into $(VENV), run the whole test suite"

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
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) results .pytest_cache
