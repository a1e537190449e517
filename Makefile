# The front door. Every target bootstraps its own environment: uv (installed into
# .tools/ with pip when it is not on PATH), then `uv sync --locked` into .venv/.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3.11
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
RUN := $(UV) run --locked --no-sync
PYTEST_ARGS ?=
PYTEST_WORKERS ?= 2

##@ General
.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet 'uv>=0.9,<0.14'

.venv/.synced: uv.lock pyproject.toml $(wildcard */*/pyproject.toml) cli/pyproject.toml devcluster/pyproject.toml | $(UV)
	$(UV) sync --locked --all-packages
	@touch $@

.PHONY: sync
sync: .venv/.synced ## Create or update the virtual environment from uv.lock

##@ Run
.PHONY: run
run: sync ## Start NATS, Valkey and every service, apply the local quickstart (Ctrl-C stops all)
	$(RUN) arks up

.PHONY: bench
bench: sync ## Run the benchmarks; figures go to bench/results/
	$(RUN) python -m bench

##@ Develop
.PHONY: test
test: sync ## Run the whole test suite against real NATS and Valkey (needs nothing beside the clone)
	$(RUN) pytest -m "not conformance" -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

SHARED_DIR := $(or $(ARKS_SHARED_DIR),../shared)

.PHONY: conformance
conformance: sync ## Compare against the reference material in ../shared (upstream CRDs, spec, OpenAI API)
	@test -d "$(SHARED_DIR)" || { echo "make conformance: $(SHARED_DIR) is missing: put the shared reference material beside the clone or set ARKS_SHARED_DIR" >&2; exit 2; }
	ARKS_SHARED_DIR="$(abspath $(SHARED_DIR))" $(RUN) pytest -m conformance $(PYTEST_ARGS)

.PHONY: lint
lint: sync ## ruff (format check + lint), mypy --strict, import-linter, CRD drift
	$(RUN) ruff format --check .
	$(RUN) ruff check .
	$(RUN) mypy libs/arks_common/src services/*/src cli/src devcluster/src
	$(RUN) lint-imports
	$(RUN) python -m arks_common.crds --check deploy/crds

.PHONY: fmt
fmt: sync ## Format and auto-fix
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

.PHONY: crds
crds: sync ## Regenerate deploy/crds/ from arks_common.resources
	$(RUN) python -m arks_common.crds deploy/crds

.PHONY: clean
clean: ## Remove the environment, runtime data and caches
	rm -rf .venv .tools .arks .mypy_cache .ruff_cache .pytest_cache bench/results/*.json bench/results/*.md
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
