# eventwire developer entry points. Every target is idempotent and fast when
# nothing changed: the venv is reinstalled only when a pyproject.toml changes
# (the runtime's, or the devkit's: the second distribution in ./devkit), and
# the Kafka jars are fetched once into ~/.cache/eventwire/kafka/<version>/.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint docs fmt kafka-jars registry-build asyncapi-cli postgres bench clean

$(STAMP): pyproject.toml devkit/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' -e ./devkit
	touch $(STAMP)

# Fetch the pinned Apache Kafka jars with Maven (skipped when cached or when
# KAFKA_HOME names a distribution). Without Java this prints why and goes on
# (the demo then falls back to the in-memory transport), unless
# EVENTWIRE_DEVKIT_STRICT=1. `eventwire broker` comes from ./devkit.
kafka-jars: $(STAMP)
	$(BIN)/eventwire broker fetch

# Build the pinned Schema Registry (Apicurio, Confluent-compatible API) once with Maven
# into ~/.cache/eventwire/registry/<version>/ (about 55 s cold, then cached). Without
# Java or Maven this warns and goes on (the registry tests skip), unless
# EVENTWIRE_DEVKIT_STRICT=1. `eventwire registry` comes from ./devkit.
registry-build: $(STAMP)
	$(BIN)/eventwire registry fetch

demo: $(STAMP)
	-@$(BIN)/eventwire broker fetch
	$(BIN)/eventwire demo $(DEMO_ARGS)

# PostgreSQL for the outbox tests, from Debian's packages when absent (needs
# root/apt). The tests start their own private server; none is left running.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql)

# The official AsyncAPI CLI (@asyncapi/cli, pinned with its lockfile in the devkit), which
# the contract tests validate exported documents with: installed once with npm into
# ~/.cache/eventwire/asyncapi-cli/<version>/ (about 2 minutes the first time). Without
# node/npm this prints why and goes on (those tests skip), unless EVENTWIRE_DEVKIT_STRICT=1.
asyncapi-cli: $(STAMP)
	$(BIN)/python -m eventwire_devkit.asyncapi

test: $(STAMP) kafka-jars registry-build asyncapi-cli postgres
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src devkit tests examples bench tools
	$(BIN)/ruff format --check src devkit tests examples bench tools
	$(BIN)/mypy

# The documentation site (mkdocs.yml, docs/) into site/, warnings as errors. The reference
# tables are generated from the code by tools/docs_hooks.py during the build. The docs
# extra (MkDocs, Material, mkdocstrings) comes with the dev extra the venv has.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

fmt: $(STAMP)
	$(BIN)/ruff format src devkit tests examples bench tools
	$(BIN)/ruff check --fix src devkit tests examples bench tools

bench: $(STAMP) kafka-jars
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/eventwire bench $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
