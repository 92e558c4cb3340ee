# `make check` and `make test` do all set-up on a fresh machine (Debian packages
# if root, a venv with the project and its test tools, helm and kubectl).
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BASE ?= $(shell scripts/base-ref)
# Chart packages beside the repository render the chart offline (README: "Manifest
# diffs and the chart lock"); a HUBBOT_CHART_PACKAGES already set wins.
REPO := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
ifneq ($(wildcard $(REPO)/../shared/charts/.),)
export HUBBOT_CHART_PACKAGES ?= $(abspath $(REPO)/../shared/charts)
endif

.PHONY: setup check test lint bench schemas

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/install-helm scripts/install-system-deps
	scripts/install-system-deps
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python scripts/install-helm $(BIN)
	touch $@

# What a contributor runs before opening a PR: every hub valid, every secrets
# file encrypted for the right keys, and the rendered diff against the base branch.
check: $(STAMP)
	$(BIN)/hubbot validate --base $(BASE)
	$(BIN)/hubbot secrets check
	$(BIN)/hubbot diff --base $(BASE) --format text

lint: $(STAMP)
	$(BIN)/ruff check bot bench tests scripts
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# Speed at 2, 50 and 200 hubs and work avoided on replayed histories: one table,
# one summary line (see bench/run.py; targets are reported, never asserted).
# More repositories to replay: make bench BENCH_ARGS="PATH ..."
bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# The JSON copies of schemas/ that editors read (.vscode/settings.json); a test
# fails when they are out of date.
schemas: $(STAMP)
	$(BIN)/python scripts/editor_schemas.py
