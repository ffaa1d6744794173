# The few verbs people type. Everything installs itself: only python3 (>= 3.11) is needed.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)

.PHONY: demo test soak lint format bench clean verify-deploy image-test browser-tools

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

.venv/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --quiet --all-groups --all-extras
	touch $@

demo: .venv/.synced  ## watch the built-in simulator: transitions within seconds
	$(UV) run --frozen bulkwatch demo

# Debian's chromium and axe-core (npm, from tests/browser/package-lock.json), installed once
# (again when the lock file changes): `make test` needs them for the status page's browser tests.
BROWSER_TOOLS := tests/browser/node_modules/.installed
$(BROWSER_TOOLS): tests/browser/package-lock.json
	scripts/install-deploy-tools.sh browser
	npm ci --prefix tests/browser --no-audit --no-fund --silent
	touch $@

browser-tools: $(BROWSER_TOOLS)  ## chromium + axe-core for the status page's browser tests

test: .venv/.synced $(BROWSER_TOOLS)  ## the whole test suite
	$(UV) run --frozen pytest

soak: .venv/.synced  ## minutes of random faults and restarts (BULKWATCH_SOAK_SECONDS, default 90)
	$(UV) run --frozen pytest -m soak -s

lint: .venv/.synced  ## ruff + mypy --strict + import-linter (layers, no cycles: docs/architecture.md)
	$(UV) run --frozen ruff check src tests deploy benchmarks scripts
	$(UV) run --frozen ruff format --check src tests deploy benchmarks scripts
	$(UV) run --frozen mypy
	$(UV) run --frozen lint-imports --no-logo

format: .venv/.synced
	$(UV) run --frozen ruff format src tests deploy benchmarks scripts
	$(UV) run --frozen ruff check --fix src tests deploy benchmarks scripts

# `make bench STORES=1000 DURATION=30` for a quicker run; LATENCY is the simulated API delay;
# CREATE_EVERY the mean seconds between new tasks per store (300: the stress lifecycle);
# POSTGRES the server for the PostgreSQL rows (POSTGRES= to leave them out; skipped, saying
# so, when it does not answer); REPLICAS the daemons sharing the stores through leases after
# the single PostgreSQL daemon (REPLICAS=0 to leave them out).
# PAGE=1 serves the status page and API in the daemon phase, with a client reading them.
STORES ?= 10000
DURATION ?= 90
LATENCY ?= 0.15
CREATE_EVERY ?= 3600
POSTGRES ?= postgresql://postgres@127.0.0.1:5432/test
REPLICAS ?= 3
bench: .venv/.synced  ## simulator + bare aiohttp + bulkwatch (SQLite, PostgreSQL, replicas) + requests
	$(UV) run --frozen python -m benchmarks --stores $(STORES) --duration $(DURATION) \
		--latency $(LATENCY) --create-every $(CREATE_EVERY) --postgres "$(POSTGRES)" \
		--replicas $(REPLICAS) $(if $(PAGE),--page-client)

verify-deploy: .venv/.synced  ## promtool, Prometheus, systemd-analyze, hadolint, k8s, shellcheck, yamllint
	scripts/install-deploy-tools.sh
	$(UV) run --frozen pytest -m deploy

image-test: .venv/.synced  ## build the image with buildah (debootstrap base) and run it
	scripts/image-test.sh $(UV) run --frozen pytest -m image

clean:
	rm -rf .venv $(TOOLS) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache \
		tests/browser/node_modules
