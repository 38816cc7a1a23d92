# `make run` and `make test` do all the set-up on a fresh Debian/Ubuntu machine:
# a virtual environment in .venv, Stockfish from apt-get when no engine is found,
# GraphiQL's files and the review page from npm, and (when DATABASE_URL is unset) an
# embedded PostgreSQL under ./.data. `make test` also installs Node.js, the client test
# project and Chromium.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq

IDE_ASSETS := api/ide_assets
REVIEW_PAGE := api/review_page
CLIENTS := tests/clients

.PHONY: bench run test lint typecheck pytest setup engine node ide page clients chromium curl schema clean

run: setup ide page
	$(BIN)/python scripts/run.py

test: setup ide page clients chromium curl lint typecheck pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy
	@if [ -d $(REVIEW_PAGE)/node_modules ]; then \
	  echo "npm run check (tsc --noEmit, the review page)"; npm run --prefix $(REVIEW_PAGE) --silent check; fi

pytest: setup
	$(BIN)/python -m pytest

# Benchmarks (not part of `make test`): prints a table, writes bench/results/*.json.
bench: setup $(VENV)/.bench-installed
	$(BIN)/python -m bench $(BENCH_ARGS)

$(VENV)/.bench-installed: $(VENV)/.installed
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,bench]'
	touch $@

setup: $(VENV)/.installed engine

$(VENV)/.installed: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Python 3.11 or newer is needed (found $$($(PYTHON) --version))"; exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  echo "python3-venv is missing: installing it with apt-get"; \
	  $(SUDO) apt-get update -qq && $(APT_INSTALL) python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

engine:
	@if [ -n "$$STOCKFISH_PATH" ] || command -v stockfish >/dev/null || [ -x /usr/games/stockfish ]; then :; else \
	  echo "No Stockfish found: installing it with apt-get (package stockfish)"; \
	  $(SUDO) apt-get update -qq && $(APT_INSTALL) stockfish; fi

node:
	@command -v npm >/dev/null || { \
	  echo "Node.js and npm not found: installing them with apt-get"; \
	  $(SUDO) apt-get update -qq && $(APT_INSTALL) nodejs npm; }

# GraphiQL's browser files, so that /graphql works offline. Without npm, `make run`
# goes on and the IDE loads from its CDN instead.
ide:
	@if [ ! -f $(IDE_ASSETS)/node_modules/.package-lock.json ] || \
	    [ $(IDE_ASSETS)/package-lock.json -nt $(IDE_ASSETS)/node_modules/.package-lock.json ]; then \
	  $(MAKE) --no-print-directory node && \
	  npm ci --prefix $(IDE_ASSETS) --no-audit --no-fund --loglevel=error || \
	  echo "GraphiQL's files could not be installed: the IDE will load from its CDN"; fi

# The review page at / (api/review_page): its packages from npm, then esbuild bundles it
# into api/review_page/dist, again whenever a source is newer than the build. Without
# npm, `make run` goes on and / leads to GraphiQL instead.
REVIEW_SOURCES := $(REVIEW_PAGE)/src $(REVIEW_PAGE)/index.html $(REVIEW_PAGE)/favicon.svg \
	$(REVIEW_PAGE)/build.mjs $(REVIEW_PAGE)/package-lock.json
page:
	@if [ ! -f $(REVIEW_PAGE)/node_modules/.package-lock.json ] || \
	    [ $(REVIEW_PAGE)/package-lock.json -nt $(REVIEW_PAGE)/node_modules/.package-lock.json ]; then \
	  $(MAKE) --no-print-directory node && \
	  npm ci --prefix $(REVIEW_PAGE) --no-audit --no-fund --loglevel=error || \
	  echo "The review page's packages could not be installed: / will lead to GraphiQL"; fi
	@if [ -f $(REVIEW_PAGE)/node_modules/.package-lock.json ] && { [ ! -f $(REVIEW_PAGE)/dist/index.html ] || \
	    [ -n "$$(find $(REVIEW_SOURCES) -newer $(REVIEW_PAGE)/dist/index.html | head -1)" ]; }; then \
	  npm run --prefix $(REVIEW_PAGE) --silent build || \
	  echo "The review page could not be built: / will lead to GraphiQL"; fi

# The real clients the test suite drives (Apollo Client, graphql-ws, a headless browser).
clients: node
	@if [ ! -f $(CLIENTS)/node_modules/.package-lock.json ] || \
	    [ $(CLIENTS)/package-lock.json -nt $(CLIENTS)/node_modules/.package-lock.json ]; then \
	  npm ci --prefix $(CLIENTS) --no-audit --no-fund --loglevel=error; fi

chromium:
	@command -v chromium >/dev/null || { \
	  echo "Chromium not found: installing it with apt-get (for the GraphiQL test)"; \
	  $(SUDO) apt-get update -qq && $(APT_INSTALL) chromium; }

# The README's shell example is run by the suite.
curl:
	@command -v curl >/dev/null || { \
	  echo "curl not found: installing it with apt-get (for the README's examples)"; \
	  $(SUDO) apt-get update -qq && $(APT_INSTALL) curl; }

# Refresh the printed schema after changing the GraphQL types.
schema: setup
	$(BIN)/python -m api.schema > api/schema.graphql

# Stops the embedded server first; refused (and nothing removed) while `make run` or a
# client still uses it.
clean:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m tooling.embedded_postgres stop; fi
	rm -rf $(VENV) .data .mypy_cache .ruff_cache .pytest_cache
	rm -rf $(IDE_ASSETS)/node_modules $(CLIENTS)/node_modules $(CLIENTS)/screenshots
	rm -rf $(REVIEW_PAGE)/node_modules $(REVIEW_PAGE)/dist
