"""Every script in examples/ runs as a user would run it, and prints what it claims.

The examples that need Kafka get ``EVENTWIRE_BOOTSTRAP`` from the ``kafka_bootstrap``
fixture, so they all share the session's cluster (their topics are auto-created).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eventwire_devkit.consume import read_topic

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SUMMARY = re.compile(
    r"summary: published=(\d+) acknowledged=(\d+) failed=(\d+) lost=(-?\d+)$", re.M
)


def example_command(name: str, *args: str) -> list[str]:
    return [sys.executable, str(EXAMPLES / name), *args]


def example_env(bootstrap: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("EVENTWIRE_BOOTSTRAP", None)
    if bootstrap is not None:
        env["EVENTWIRE_BOOTSTRAP"] = bootstrap
    return env


def run_example(
    name: str, *args: str, bootstrap: str | None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<name>`` to completion and require exit code 0."""
    proc = subprocess.run(
        example_command(name, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=example_env(bootstrap),
        cwd=EXAMPLES.parent,
        check=False,
    )
    assert proc.returncode == 0, (
        f"{name} exited {proc.returncode}\n--- stdout:\n{proc.stdout}\n"
        f"--- stderr:\n{proc.stderr[-4000:]}"
    )
    return proc


def summary_of(output: str) -> tuple[int, int, int, int]:
    match = SUMMARY.search(output)
    assert match, f"no summary line in:\n{output}"
    published, acknowledged, failed, lost = (int(g) for g in match.groups())
    return published, acknowledged, failed, lost


def test_01_basic_prints_the_delivery_result(kafka_bootstrap: str) -> None:
    """01 publishes one OrderPlaced and prints where the broker stored it."""
    out = run_example("01_basic.py", bootstrap=kafka_bootstrap).stdout
    assert re.search(r"^stored at orders\[\d+\] offset \d+$", out, re.M), out
    assert "DeliveryResult(event_id=" in out
    assert "event_type='com.example.orders.OrderPlaced', topic='orders'" in out


def test_02_multi_topic_delivers_three_types_to_three_topics(kafka_bootstrap: str) -> None:
    """02 sends orders (an undecorated Struct routed by `routes=`), payments and shipments."""
    out = run_example("02_multi_topic.py", bootstrap=kafka_bootstrap).stdout
    assert "delivered 15 events of 3 types to 3 topics: orders, payments, shipments" in out
    order_lines = [line for line in out.splitlines() if line.startswith("order-")]
    assert len(order_lines) == 5
    for line in order_lines:
        assert re.fullmatch(
            r"order-\d: orders\[\d\]@\d+  payments\[\d\]@\d+  shipments\[\d\]@\d+", line
        )


def test_03_async_batch_isolates_the_invalid_event(kafka_bootstrap: str) -> None:
    """03's unroutable event gets a RoutingError while the ten valid ones, before and after it, are delivered."""
    out = run_example("03_async_batch.py", bootstrap=kafka_bootstrap).stdout
    lines = out.splitlines()
    assert lines[-1] == "batch of 11: 10 delivered, 1 failed"
    assert lines[3].startswith("failed  None: RoutingError: key field 'order_id'")
    assert all(line.startswith("ok ") for line in lines[:3] + lines[4:11])


def test_04_monitored_shows_spans_metrics_and_the_trace_in_headers(kafka_bootstrap: str) -> None:
    """04 prints PRODUCER spans that end with partition/offset (or ERROR), a scraped
    /metrics excerpt with the contract names, and a consumed traceparent of its trace."""
    out = run_example("04_monitored.py", bootstrap=kafka_bootstrap).stdout
    trace_id = re.search(r"^trace ([0-9a-f]{32}):", out, re.M)
    assert trace_id is not None, out
    assert re.search(r"send orders-monitored\s+PRODUCER UNSET partition \d+ offset \d+", out)
    assert "PRODUCER ERROR error.type=MSG_SIZE_TOO_LARGE" in out
    assert f"00-{trace_id.group(1)}-" in out  # the consumed record continues the trace
    assert re.search(
        r'eventwire_events_published_total\{outcome="delivered",topic="orders-monitored"\} \d', out
    )
    assert "eventwire_publish_duration_seconds_count" in out
    assert summary_of(out)[3] == 0  # lost


def test_05_context_manager_flushes_and_names_failed_events(kafka_bootstrap: str) -> None:
    """05 shows the block's end flushing everything, and DeliveryError naming the refused events."""
    out = run_example("05_context_manager.py", bootstrap=kafka_bootstrap).stdout
    assert "after the block:  200 of 200 acknowledged, 0 in flight" in out
    assert re.search(r"2\. publish\(\) refused [0-9a-f-]{36}: MSG_SIZE_TOO_LARGE", out), out
    assert "the block went on: com.example.orders.InvoiceAttached delivered" in out
    assert "3. leaving the block raised DeliveryError: 1 failed" in out
    assert re.search(r"it names event [0-9a-f-]{36}: True; others delivered: 5/5", out), out


def test_06_testing_with_mocks_passes_without_kafka() -> None:
    """06 runs its capture_events checks with no broker configured and reports all of them passed."""
    out = run_example("06_testing_with_mocks.py", bootstrap=None).stdout
    assert sum(line.startswith("ok   ") for line in out.splitlines()) == 4, out
    assert "4 of 4 checks passed (no Kafka needed)" in out


def test_06_testing_with_mocks_is_a_pytest_module() -> None:
    """06's test functions also pass when pytest collects the file directly."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(EXAMPLES / "06_testing_with_mocks.py"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=example_env(None),
        cwd=EXAMPLES.parent,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout


def test_06_testing_with_mocks_exits_1_when_a_check_fails(tmp_path: Path) -> None:
    """A copy of 06 whose expected total is wrong prints FAIL for that check and exits 1."""
    source = (EXAMPLES / "06_testing_with_mocks.py").read_text()
    broken = source.replace('"Ada Lovelace", 19.98)]', '"Ada Lovelace", 19.99)]')
    assert broken != source
    (tmp_path / "06_broken.py").write_text(broken)
    shutil.copy(EXAMPLES / "_common.py", tmp_path / "_common.py")
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "06_broken.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env=example_env(None),
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL Placing an order publishes exactly one OrderPlaced" in proc.stdout
    assert "3 of 4 checks passed" in proc.stdout


def test_07_use_case_returns_the_number_of_orders(kafka_bootstrap: str) -> None:
    """07's ExtractOrdersUseCase.execute() returns, and the script prints, the gateway's order count."""
    out = run_example("07_use_case.py", "--orders", "137", bootstrap=kafka_bootstrap).stdout
    assert out.strip() == "extracted and published 137 orders to topic 'orders'"


def test_08_performance_tuning_prints_the_rate(kafka_bootstrap: str) -> None:
    """08 delivers 50,000 events with the high_throughput profile and prints events/s."""
    out = run_example("08_performance_tuning.py", bootstrap=kafka_bootstrap).stdout
    assert "linger.ms=50" in out and "compression.type=lz4" in out and "acks=all" in out
    assert re.search(r"delivered 50,000 events in [\d.]+ s: [\d,]+ events/s", out), out


def test_09_low_latency_prints_p50_and_p99(kafka_bootstrap: str) -> None:
    """09 awaits each event's ack with the low_latency profile and prints p50 <= p99."""
    out = run_example("09_low_latency.py", "--events", "200", bootstrap=kafka_bootstrap).stdout
    assert "published 200 events one at a time" in out
    match = re.search(r"p50 ([\d.]+) ms, p99 ([\d.]+) ms", out)
    assert match, out
    assert 0 < float(match[1]) <= float(match[2])


def test_10_graceful_shutdown_ends_on_its_own(kafka_bootstrap: str, kafka_topic: str) -> None:
    """10 stops after --events, flushes, and all 5000 events are in the topic."""
    out = run_example(
        "10_graceful_shutdown.py", "--topic", kafka_topic, bootstrap=kafka_bootstrap
    ).stdout
    assert "stopping (5000 events sent)" in out
    assert summary_of(out) == (5000, 5000, 0, 0)
    records = read_topic(kafka_bootstrap, kafka_topic, expected=5000, idle=1.0)
    assert len(records) == 5000


def test_10_graceful_shutdown_on_sigterm_loses_nothing(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    """SIGTERM mid-stream makes 10 stop, flush and exit 0 with every published event in the topic."""
    proc = subprocess.Popen(
        example_command("10_graceful_shutdown.py", "--events", "0", "--topic", kafka_topic),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=example_env(kafka_bootstrap),
        cwd=EXAMPLES.parent,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(f"publishing to '{kafka_topic}'")
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out + err[-4000:]
    assert "stopping (SIGTERM)" in out
    published, acknowledged, failed, lost = summary_of(out)
    assert published > 1000
    assert (acknowledged, failed, lost) == (published, 0, 0)
    records = read_topic(kafka_bootstrap, kafka_topic, expected=published, idle=1.0)
    assert len(records) == published


def test_consume_dedup_skips_resent_events_and_dead_letters_a_foreign_record(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    """consume_dedup decodes typed events, skips the 5 re-sent ce_ids and dead-letters the record without CloudEvents headers."""
    out = run_example("consume_dedup.py", "--topic", kafka_topic, bootstrap=kafka_bootstrap).stdout
    assert "published 20 events" in out and "re-sent 5 of them under their ce_id" in out
    assert "total of the processed orders: 2100.00" in out  # each order counted once
    assert (
        f"consumed 26 records: 20 processed, 5 duplicates skipped, 1 dead-lettered "
        f"to '{kafka_topic}.dlq'" in out
    ), out
    (dead,) = read_topic(kafka_bootstrap, f"{kafka_topic}.dlq", expected=1, idle=1.0)
    assert dead.value == b'{"legacy": true}'
    assert dead.header("eventwire.decode_error") == b"missing_header"


def test_consume_dedup_is_documented() -> None:
    """consume_dedup starts with a docstring stating the at-least-once contract."""
    source = (EXAMPLES / "consume_dedup.py").read_text()
    assert source.startswith('"""')
    assert "at least once" in source


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("[0-9][0-9]_*.py")))
def test_every_example_has_a_docstring_and_a_test(name: str) -> None:
    """Each example starts with a module docstring and is run by a test in this file."""
    source = (EXAMPLES / name).read_text()
    assert source.startswith('"""'), f"{name} has no module docstring"
    prefix = name[:2]
    assert f"def test_{prefix}_" in Path(__file__).read_text(), f"no test runs {name}"
