# `make run` and `make test` do all the set-up on a fresh Debian/Ubuntu machine:
# a virtual environment in .venv, Stockfish from apt-get when no engine is found,
# and (when DATABASE_URL is unset) an embedded PostgreSQL under ./.data.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq

.PHONY: run test lint typecheck pytest setup engine schema clean

run: setup
	$(BIN)/python scripts/run.py

test: setup lint typecheck pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/python -m pytest

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

# Refresh the printed schema after changing the GraphQL types.
schema: setup
	$(BIN)/python -m api.schema > api/schema.graphql

clean:
	-$(BIN)/python -m db.embedded stop
	rm -rf $(VENV) .data .mypy_cache .ruff_cache .pytest_cache
