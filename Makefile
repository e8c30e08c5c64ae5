# eventwire developer entry points. Every target is idempotent and fast when
# nothing changed: the venv is reinstalled only when a pyproject.toml changes
# (the runtime's, or the devkit's: the second distribution in ./devkit), and
# the Kafka jars are fetched once into ~/.cache/eventwire/kafka/<version>/.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-floors lint docs docs-tables fmt kafka-jars registry-build asyncapi-cli postgres bench clean

# The test and lint tools are PEP 735 dependency groups (pyproject's [dependency-groups]),
# not extras of the wheel: `pip install --group` needs pip >= 25.1, hence the upgrade first.
$(STAMP): pyproject.toml devkit/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install -q -e '.[cli,contracts,otel,prometheus,postgres,pydantic,registry]' \
	  -e ./devkit --group dev
	touch $(STAMP)

# Fetch the pinned Apache Kafka jars with Maven (skipped when cached or when
# KAFKA_HOME names a distribution). Without Java this prints why and goes on
# (the demo then falls back to the in-memory transport), unless
# EVENTWIRE_DEVKIT_STRICT=1 (or CI=true). `eventwire broker` comes from ./devkit.
kafka-jars: $(STAMP)
	$(BIN)/eventwire broker fetch

# Build the pinned Schema Registry (Apicurio, Confluent-compatible API) once with Maven
# into ~/.cache/eventwire/registry/<version>/ (about 55 s cold, then cached). Without
# Java or Maven this warns and goes on (the registry tests skip), unless
# EVENTWIRE_DEVKIT_STRICT=1 (or CI=true). `eventwire registry` comes from ./devkit.
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
# node/npm this prints why and goes on (those tests skip), unless EVENTWIRE_DEVKIT_STRICT=1 (or CI=true).
asyncapi-cli: $(STAMP)
	$(BIN)/python -m eventwire_devkit.asyncapi

test: $(STAMP) kafka-jars registry-build asyncapi-cli postgres
	$(BIN)/pytest $(PYTEST_ARGS)

# The dependency floors: the lowest version pyproject allows of each direct dependency
# (uv's --resolution lowest-direct, every extra but registry) in a separate venv,
# .venv-floors, running the unit suite and the Kafka integration suite on one broker (not
# chaos, not the 3-node cluster tests, not the registry suites); and the opentelemetry floor
# in .venv-floors-otel. uv comes from PyPI into the dev venv. See .ci/floors.sh.
test-floors: $(STAMP) kafka-jars postgres
	$(BIN)/python -m pip install -q 'uv>=0.6'
	bash .ci/floors.sh $(BIN)/uv $(PYTHON) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src devkit tests examples bench tools
	$(BIN)/ruff format --check src devkit tests examples bench tools
	$(BIN)/mypy

# The documentation site (mkdocs.yml, docs/) into site/, warnings as errors. The reference
# tables are generated from the code by tools/docs_hooks.py during the build. The docs
# group (MkDocs, Material, mkdocstrings) comes with the dev group the venv has.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The same tables, written into the committed pages (between their eventwire:generate
# and eventwire:end markers), so the pages read complete on GitHub too; a test fails
# while a committed table differs from the code.
docs-tables: $(STAMP)
	$(BIN)/python tools/docs_hooks.py

fmt: $(STAMP)
	$(BIN)/ruff format src devkit tests examples bench tools
	$(BIN)/ruff check --fix src devkit tests examples bench tools

bench: $(STAMP) kafka-jars
	$(BIN)/python -m pip install -q --group bench
	$(BIN)/eventwire bench $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) .venv-floors .venv-floors-otel .pytest_cache .mypy_cache .ruff_cache site
