#!/usr/bin/env bash
# The dependency-floors job (`make test-floors`): installs the LOWEST version that
# pyproject.toml allows for each direct dependency of eventwire (every extra but
# `registry`, whose confluent-kafka floor is higher on purpose) and of the devkit, in a
# separate venv (.venv-floors), and runs the unit suite and the Kafka integration suite
# on it. Transitive dependencies resolve to their newest allowed versions (uv's
# --resolution lowest-direct). The test tools of the `test` dependency group are
# installed on top, constrained so they cannot lift a runtime dependency above its floor.
#
# Usage: .ci/floors.sh UV PYTHON [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
uv=$1
python=$2
shift 2
venv=.venv-floors
extras="cli,contracts,otel,prometheus,postgres,pydantic,asyncpg,aiosqlite"

rm -rf "$venv"
"$uv" venv -q --python "$python" "$venv"
printf -- '-e .[%s]\n-e ./devkit\n' "$extras" >"$venv/floors.in"
"$uv" pip compile -q --python "$venv/bin/python" --resolution lowest-direct \
  --no-header --no-annotate "$venv/floors.in" -o "$venv/floors.txt"
# The pins minus the editable checkouts are the constraints for the whole install, except
# pytest: the devkit's floor (8.0) is older than what the suite's own test tools need
# (pytest-asyncio >= 0.24 wants pytest >= 8.2), so pytest is the test group's choice.
grep -v -e '^-e ' -e '^pytest==' "$venv/floors.txt" >"$venv/constraints.txt"
# The `test` group, with psycopg's pure-Python build over the system libpq instead of
# psycopg[binary] (whose wheels for the oldest psycopg predate this Python).
"$venv/bin/python" - >"$venv/test-group.txt" <<'PY'
import tomllib

group = tomllib.load(open("pyproject.toml", "rb"))["dependency-groups"]["test"]
for requirement in group:
    print(requirement.replace("psycopg[binary]", "psycopg"))
PY
"$uv" pip install -q --python "$venv/bin/python" -c "$venv/constraints.txt" \
  -e ".[$extras]" -e ./devkit -r "$venv/test-group.txt"

echo "floors: the lowest direct dependencies installed in $venv:"
"$uv" pip freeze --python "$venv/bin/python" | grep -v '^-e ' |
  grep -iE '^(confluent-kafka|msgspec|opentelemetry-api|opentelemetry-sdk|opentelemetry-exporter-prometheus|uuid-utils|typer|rich|pyyaml|psycopg|pydantic|prometheus-client|pytest|click)=='

# opentelemetry: the prometheus extra's exporter (0.66b0) needs opentelemetry 1.45, so the
# run above has 1.45; the base and `otel` floors (1.30) get their own small venv, without
# the prometheus extra, for the tracing, metrics and logging tests.
otel=.venv-floors-otel
rm -rf "$otel"
"$uv" venv -q --python "$python" "$otel"
printf -- '-e .[cli,otel]\n-e ./devkit\n' >"$otel/floors.in"
"$uv" pip compile -q --python "$otel/bin/python" --resolution lowest-direct \
  --no-header --no-annotate "$otel/floors.in" -o "$otel/floors.txt"
grep -v -e '^-e ' -e '^pytest==' "$otel/floors.txt" >"$otel/constraints.txt"
grep -v -i -e '^opentelemetry-exporter-prometheus' -e '^prometheus-client' \
  "$venv/test-group.txt" >"$otel/test-group.txt"
"$uv" pip install -q --python "$otel/bin/python" -c "$otel/constraints.txt" \
  -e ".[cli,otel]" -e ./devkit -r "$otel/test-group.txt"
echo "floors: opentelemetry in $otel:"
"$uv" pip freeze --python "$otel/bin/python" | grep -iE '^opentelemetry-(api|sdk)=='
"$otel/bin/python" -m pytest -p no:cacheprovider tests/unit/test_tracing.py \
  tests/unit/test_metrics.py tests/unit/test_relay_metrics.py tests/unit/test_logging.py \
  tests/unit/test_publisher.py tests/unit/test_async_publisher.py -k "not Prometheus" "$@"

# The unit suite and the real-broker Kafka suite on the 1-node cluster. Not the chaos suite
# nor the 3-node cluster tests (`cluster3`: they pause and restart brokers, test the
# devkit's cluster rather than the client libraries, and are timing-bound on a loaded
# machine), and not the Schema Registry suites (the registry extra has its own floor).
"$venv/bin/python" -m pytest -p no:cacheprovider tests/unit \
  --ignore-glob 'tests/unit/test_schema_registry*.py' "$@"
"$venv/bin/python" -m pytest -p no:cacheprovider tests/integration -m "kafka and not cluster3" \
  --ignore-glob 'tests/integration/test_schema_registry*.py' "$@"
