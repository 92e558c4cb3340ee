# `make check` and `make test` do all set-up on a fresh machine (Debian packages
# if root, a venv with the project and its test tools, helm and kubectl).
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Chart packages beside the repository render the chart offline (README: "Manifest
# diffs and the chart lock"); a HUBBOT_CHART_PACKAGES already set wins.
REPO := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
ifneq ($(wildcard $(REPO)/../shared/charts/.),)
export HUBBOT_CHART_PACKAGES ?= $(abspath $(REPO)/../shared/charts)
endif

.PHONY: setup check test lint bench lock schemas

setup: $(STAMP)

# `make check` needs only the bot (requirements/runtime.txt), helm and git; `make test`
# adds the test tools (requirements/test.txt: the same pins and more) and the Debian
# packages the tests run against. Both locks pin every package with sha256 hashes.
CHECK_STAMP := $(VENV)/.installed-check
$(CHECK_STAMP): requirements/runtime.txt scripts/install-helm
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/runtime.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python scripts/install-helm $(BIN)
	touch $@

$(STAMP): $(CHECK_STAMP) requirements/test.txt scripts/install-system-deps
	scripts/install-system-deps
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/test.txt
	touch $@

# What a contributor runs before opening a PR: every hub valid, every secrets
# file encrypted for the right keys, and the rendered diff against the base branch.
# BASE=REF chooses the base (default: scripts/base-ref, which says what it chose).
check: $(CHECK_STAMP)
	@base="$(BASE)"; base="$${base:-$$(scripts/base-ref)}"; set -x; \
	$(BIN)/hubbot validate --base "$$base" && \
	$(BIN)/hubbot secrets check && \
	$(BIN)/hubbot diff --base "$$base" --format text

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

# Re-pin the locks from pyproject.toml's ranges (see README, "Dependencies and the lock
# file"). Only PyPI is asked: a machine's own pip config (mirrors, local wheels,
# constraints) must not leak into the lock. The runtime lock is the test lock's subset.
PIP_COMPILE = env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null $(BIN)/pip-compile --quiet \
	--generate-hashes --strip-extras --allow-unsafe --all-build-deps --no-emit-index-url
lock: $(STAMP)
	$(PIP_COMPILE) $(LOCK_ARGS) --extra test --output-file=requirements/test.txt pyproject.toml
	$(PIP_COMPILE) $(LOCK_ARGS) --constraint requirements/test.txt \
		--output-file=requirements/runtime.txt pyproject.toml

# The JSON copies of schemas/ that editors read (.vscode/settings.json); a test
# fails when they are out of date.
schemas: $(STAMP)
	$(BIN)/python scripts/editor_schemas.py
