"""eventwire's logging: stdlib loggers, structlog's stdlib integration, collapsed repeats.

The application-level cases run in a subprocess (a fresh interpreter with nothing
configured, or configured as an application would) against a dead address
(``127.0.0.1:1``): nothing listens there, so they need no broker.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

from eventwire import KafkaConfig
from eventwire.observability.logging import (
    COLLAPSE_WINDOW_S,
    LogEvent,
    RepeatCollapser,
    capture_logs,
    get_logger,
    librdkafka_level,
)
from eventwire.transports.kafka import _LibrdkafkaLog

DEAD = "127.0.0.1:1"


def run_app(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as an application's main module in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


UNCONFIGURED_APP = f"""
    import time
    import msgspec
    from eventwire import DeliveryError, Publisher, Route

    class Placed(msgspec.Struct, frozen=True):
        order_id: str

    pub = Publisher({DEAD!r}, routes={{Placed: Route(topic="orders", key="order_id")}},
                    connect_timeout=None)
    for n in range(50):
        pub.publish(Placed(order_id=f"o{{n}}"))
        time.sleep(0.06)   # ~3 s of a dead broker while publishing
    try:
        pub.close(1)
    except DeliveryError:
        pass               # the application handles it; eventwire only logs
"""


class TestAnApplicationThatConfiguredNothing:
    def test_sees_nothing_on_stdout_and_a_few_lines_on_stderr(self) -> None:
        """50 events to a dead broker for 3 s: stdout empty, stderr a handful of lines."""
        proc = run_app(UNCONFIGURED_APP)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert 1 <= len(lines) < 10, lines
        assert any(line.startswith("kafka_error code=_TRANSPORT") for line in lines), lines
        # the same connection failure, repeated ~every 50-500 ms, is one line per source
        assert sum("Connection refused" in line for line in lines) <= 2, lines


STRUCTLOG_APP = f"""
    import logging, sys, time
    import structlog
    from eventwire import KafkaConfig
    from eventwire.transports.kafka import KafkaTransport

    # structlog's documented stdlib integration: the application's own events and the
    # records of stdlib loggers (eventwire's) are rendered by one ProcessorFormatter.
    shared = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso"),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(),
        ],
    ))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    structlog.get_logger("app").info("app_started", pid=1)
    transport = KafkaTransport(KafkaConfig({DEAD!r}), connect_timeout=None)
    time.sleep(1.5)
    transport.close(0)
"""


class TestAnApplicationUsingStructlog:
    def test_gets_kafka_error_as_a_structured_event_with_its_fields(self) -> None:
        """Through structlog's ProcessorFormatter, kafka_error arrives with code, reason, logger."""
        proc = run_app(STRUCTLOG_APP)
        assert proc.returncode == 0, proc.stderr
        events = [json.loads(line) for line in proc.stdout.splitlines()]
        assert events[0]["event"] == "app_started"
        [transport_error] = [
            e for e in events if e["event"] == "kafka_error" and e["code"] == "_TRANSPORT"
        ]
        assert transport_error["level"] == "warning"
        assert transport_error["logger"] == "eventwire.kafka"
        assert "timestamp" in transport_error  # the application's shared processors ran
        assert "Connection refused" in transport_error["reason"]
        assert proc.stderr == ""


PLAIN_LOGGING_APP = f"""
    import logging, time
    from eventwire import KafkaConfig
    from eventwire.transports.kafka import KafkaTransport

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    transport = KafkaTransport(KafkaConfig({DEAD!r}), connect_timeout=None)
    time.sleep(1.5)
    transport.close(0)
"""


class TestAnApplicationUsingPlainLogging:
    def test_sees_readable_lines_with_the_fields(self) -> None:
        """basicConfig: one readable line per event, the event name then key=value fields."""
        proc = run_app(PLAIN_LOGGING_APP)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stderr.splitlines()
        assert any(
            line.startswith("WARNING eventwire.kafka kafka_error code=_TRANSPORT reason='")
            for line in lines
        ), lines
        assert any(line.startswith("ERROR eventwire.librdkafka librdkafka_log") for line in lines)

    def test_fields_are_record_attributes(self) -> None:
        """Each field is also an attribute of the LogRecord, for %(code)s and JSON formatters."""
        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = records.append  # type: ignore[method-assign]
        logger = logging.getLogger("eventwire.test_fields")
        logger.addHandler(handler)
        try:
            with capture_logs():
                get_logger("eventwire.test_fields").warning("kafka_error", code="_SSL", reason="x")
        finally:
            logger.removeHandler(handler)
        [record] = records
        assert record.code == "_SSL"  # type: ignore[attr-defined]
        assert record.event == "kafka_error"  # type: ignore[attr-defined]
        assert record.getMessage() == "kafka_error code=_SSL reason=x"
        assert record.funcName == "test_fields_are_record_attributes"  # the caller, not ours


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestRepeatCollapser:
    def test_first_is_logged_repeats_are_counted_and_summarised_after_the_window(self) -> None:
        """The first hit logs, repeats within 30 s do not, the next after logs with the count."""
        clock = FakeClock()
        collapse = RepeatCollapser(clock=clock)
        assert collapse.window_s == COLLAPSE_WINDOW_S == 30.0
        assert collapse.hit("k") == (0, 0.0)
        for _ in range(14):
            clock.now += 2
            assert collapse.hit("k") is None
        clock.now += 3  # 31 s after the first line
        assert collapse.hit("k") == (14, 31.0)
        clock.now += 29.9
        assert collapse.hit("k") is None  # at most one line per window
        clock.now += 0.1
        assert collapse.hit("k") == (1, 30.0)

    def test_a_key_quiet_for_a_window_starts_afresh(self) -> None:
        """After a window with no repeat, the next hit is logged as a first (no count)."""
        clock = FakeClock()
        collapse = RepeatCollapser(clock=clock)
        assert collapse.hit("k") == (0, 0.0)
        clock.now += 45
        assert collapse.hit("k") == (0, 45.0)

    def test_keys_are_independent(self) -> None:
        """Each key has its own first line and its own window."""
        clock = FakeClock()
        collapse = RepeatCollapser(clock=clock)
        assert collapse.hit(("_TRANSPORT", "b1")) == (0, 0.0)
        assert collapse.hit(("_TRANSPORT", "b2")) == (0, 0.0)
        assert collapse.hit(("_SSL", "b1")) == (0, 0.0)
        assert collapse.hit(("_TRANSPORT", "b1")) is None

    def test_counts_are_exact_under_threads(self) -> None:
        """8 threads x 1,000 hits within one window: one logged, the rest counted exactly."""
        clock = FakeClock()
        collapse = RepeatCollapser(clock=clock)
        logged: list[tuple[int, float]] = []

        def hammer() -> None:
            for _ in range(1_000):
                verdict = collapse.hit("k")
                if verdict is not None:
                    logged.append(verdict)

        threads = [threading.Thread(target=hammer) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert logged == [(0, 0.0)]
        clock.now += 30
        assert collapse.hit("k") == (7_999, 30.0)

    def test_remembers_at_most_max_keys(self) -> None:
        """Beyond max_keys the least recently logged key is forgotten (and logs again)."""
        collapse = RepeatCollapser(clock=FakeClock(), max_keys=2)
        assert collapse.hit("a") == (0, 0.0)
        assert collapse.hit("b") == (0, 0.0)
        assert collapse.hit("c") == (0, 0.0)  # forgets "a"
        assert collapse.hit("b") is None
        assert collapse.hit("a") == (0, 0.0)


class TestCollapsedEvents:
    def test_a_collapsed_event_logs_once_then_a_summary_with_the_count(self) -> None:
        """EventLogger(collapse=key): one line, then 'N more in the last 30 s' after the window."""
        log = get_logger("eventwire.test_collapse")
        clock = FakeClock()
        log._collapser = RepeatCollapser(clock=clock)
        with capture_logs() as logs:
            for _ in range(20):
                log.warning("kafka_error", code="_TRANSPORT", reason="down", collapse="b1")
            clock.now += 30
            log.warning("kafka_error", code="_TRANSPORT", reason="down", collapse="b1")
            log.warning("kafka_error", code="_TRANSPORT", reason="down", collapse="b2")
        assert [(e["event"], e.get("repeated")) for e in logs] == [
            ("kafka_error", None),
            ("kafka_error", 19),
            ("kafka_error", None),
        ]
        summary = LogEvent({k: v for k, v in logs[1].items() if k != "log_level"})
        assert str(summary) == "kafka_error code=_TRANSPORT reason=down (19 more in the last 30 s)"

    def test_capture_logs_resets_the_windows(self) -> None:
        """capture_logs() starts every collapse window afresh, so a test sees the first line."""
        log = get_logger("eventwire.test_reset")
        log.warning("delivery_failed", code="_MSG_TIMED_OUT", collapse="k")
        with capture_logs() as logs:
            log.warning("delivery_failed", code="_MSG_TIMED_OUT", collapse="k")
        assert [e["event"] for e in logs] == ["delivery_failed"]

    def test_a_disabled_level_costs_no_collapse_count(self) -> None:
        """Below the logger's level nothing is formatted or counted."""
        log = get_logger("eventwire.test_disabled")
        logging.getLogger("eventwire.test_disabled").setLevel(logging.ERROR)
        try:
            log._collapser = RepeatCollapser(clock=FakeClock())
            log.warning("kafka_error", code="_TRANSPORT", collapse="b1")
            assert log._collapser.hit(("kafka_error", "b1")) == (0, 0.0)
        finally:
            logging.getLogger("eventwire.test_disabled").setLevel(logging.NOTSET)


class TestLibrdkafkaLines:
    @pytest.mark.parametrize(
        ("level", "expected"),
        [
            (0, logging.ERROR),
            (3, logging.ERROR),
            (4, logging.DEBUG),
            (6, logging.DEBUG),
            (7, logging.DEBUG),
            # what confluent-kafka passes to a Python logger: logging levels
            (50, logging.ERROR),
            (40, logging.ERROR),
            (30, logging.DEBUG),
            (20, logging.DEBUG),
            (10, logging.DEBUG),
        ],
    )
    def test_levels(self, level: int, expected: int) -> None:
        """Syslog 0-3 (and logging ERROR and up) are ERROR; everything else is DEBUG."""
        assert librdkafka_level(level) == expected

    def test_info_lines_are_debug_and_error_lines_error_and_collapsed(self) -> None:
        """A level-6 line is a DEBUG librdkafka_log; level-3 lines are ERROR, once per broker."""
        sink = _LibrdkafkaLog(lambda text: text.replace("hunter2-secret", "***"))
        fmt = "%s [%s] %s"
        with capture_logs("eventwire.librdkafka") as logs:
            sink.log(6, fmt, "INIT", "eventwire#producer-1", "[thrd:app]: started")
            for _ in range(5):
                sink.log(
                    3,
                    fmt,
                    "FAIL",
                    "eventwire#producer-1",
                    "[thrd:b:9092/1]: b:9092/1: Connect failed (password hunter2-secret)",
                )
        assert [(e["log_level"], e["facility"]) for e in logs] == [
            ("debug", "INIT"),
            ("error", "FAIL"),
        ]
        assert logs[1]["text"].endswith("Connect failed (password ***)")


def test_kafka_error_reaches_the_kafka_logger_scrubbed() -> None:
    """A librdkafka error_cb becomes one kafka_error on eventwire.kafka, its secret scrubbed."""
    from eventwire.transports.kafka import KafkaTransport

    secret = "Sup3r-Secr3t-PW-7f2c"
    config = KafkaConfig(DEAD, sasl_password=secret, sasl_username="svc", overrides={})
    transport = KafkaTransport(config, connect_timeout=None)
    try:
        with capture_logs() as logs:
            for _ in range(3):
                transport._on_error(_FakeKafkaError("_TRANSPORT", f"b:9092/1: failed {secret}"))
    finally:
        transport.close(0)
    errors = [e for e in logs if e["event"] == "kafka_error"]
    assert errors == [
        {"event": "kafka_error", "code": "_TRANSPORT", "reason": "b:9092/1: failed ***",
         "log_level": "warning"}
    ]  # fmt: skip


class _FakeKafkaError:
    """Quacks like confluent_kafka.KafkaError for the error callback."""

    def __init__(self, name: str, text: str, *, fatal: bool = False) -> None:
        self._name, self._text, self._fatal = name, text, fatal

    def name(self) -> str:
        return self._name

    def str(self) -> str:
        return self._text

    def fatal(self) -> bool:
        return self._fatal

    def code(self) -> Any:
        return None
