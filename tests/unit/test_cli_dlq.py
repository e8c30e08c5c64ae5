"""`eventwire dlq list|replay`: replay writes only where the operator says; untrusted text is inert.

The dead-letter topics live on librdkafka's in-process mock cluster (no Java):
the command reads them with its real consumer and replays with its real
producer, and the tests read the targets back with a plain consumer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from rich.console import Console
from typer.testing import CliRunner

from eventwire.cli import outbox as cli_outbox
from eventwire.cli._app import build_app
from eventwire.outbox import OutboxEntry, SQLiteOutbox
from eventwire.outbox.dead_letter import dead_letter_headers
from eventwire_devkit.consume import read_topic
from eventwire_devkit.librdkafka import LibrdkafkaTestApiUnavailable, MockCluster
from eventwire_devkit.pytest_plugin import unavailable

DLQ = "orders.dlq"
Headers = list[tuple[str, bytes]]


@pytest.fixture(autouse=True)
def _wide_plain_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wide consoles (no wrapping), no colours (so any ESC in the output came from a record),
    and no EVENTWIRE_* variable of the machine."""
    for name in list(os.environ):
        if name.startswith(("EVENTWIRE_KAFKA_", "EVENTWIRE_RELAY_", "EVENTWIRE_OUTBOX_")):
            monkeypatch.delenv(name)
    monkeypatch.setattr(cli_outbox, "out", Console(width=400, color_system=None))
    monkeypatch.setattr(cli_outbox, "err", Console(stderr=True, width=400, color_system=None))


@pytest.fixture
def mock() -> Iterator[MockCluster]:
    """A one-broker mock cluster with the dead-letter topic and the topics replays may target."""
    try:
        cluster = MockCluster()
    except LibrdkafkaTestApiUnavailable as exc:
        unavailable(f"librdkafka's test API is unavailable: {exc}")
    with cluster:
        for topic in (DLQ, "orders", "payments", "orders-retry"):
            cluster.create_topic(topic)
        yield cluster


def run(*args: str) -> tuple[int, str]:
    """Run the CLI in-process; its exit code and stdout+stderr (an exception's text too)."""
    result = CliRunner().invoke(build_app(), list(args))
    text = result.stdout + result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        text += f"\n{type(result.exception).__name__}: {result.exception}"
    return result.exit_code, text


def dead(ce_id: str, original_topic: bytes | str, **extra: bytes) -> Headers:
    """The headers of a dead letter of ``original_topic`` (bytes: written as they are)."""
    headers = dead_letter_headers(
        [("ce_id", ce_id.encode()), ("ce_type", b"test.OrderPlaced")],
        code="MSG_SIZE_TOO_LARGE",
        reason="too large",
        attempts=1,
        original_topic="placeholder",
        first_failure_s=0.0,
        last_failure_s=0.0,
    )
    value = original_topic if isinstance(original_topic, bytes) else original_topic.encode()
    headers = [(k, value if k == "eventwire_dlq_original_topic" else v) for k, v in headers]
    return headers + [(k, v) for k, v in extra.items()]


def produce(mock: MockCluster, *records: Headers, topic: str = DLQ) -> None:
    """Write one record per header list to ``topic`` (value ``b"v:<ce_id>"``)."""
    producer = Producer({"bootstrap.servers": mock.bootstrap_servers})
    for headers in records:
        ce_id = dict(headers).get("ce_id", b"?")
        producer.produce(topic, b"v:" + ce_id, b"k", headers=headers)
    assert producer.flush(10) == 0


def ce_ids(mock: MockCluster, topic: str, expected: int | None = None) -> list[bytes | None]:
    """The ce_id headers of the records of ``topic``, in offset order."""
    records = read_topic(mock.bootstrap_servers, topic, expected=expected, timeout=20, idle=0.5)
    return [r.header("ce_id") for r in records]


class TestReplayWritesOnlyWhereTheOperatorSays:
    def test_replay_without_a_target_option_refuses_and_writes_nothing(
        self, mock: MockCluster
    ) -> None:
        """`dlq replay --topic T` alone exits 2 naming --to-topic and --allow-topic, and a
        record whose header names another topic is not written there."""
        produce(mock, dead("forged-1", "payments"))
        code, text = run("dlq", "replay", "--topic", DLQ, "--bootstrap", mock.bootstrap_servers)
        assert code == 2, text
        assert "--to-topic" in text
        assert "--allow-topic" in text
        assert ce_ids(mock, "payments") == []

    def test_allow_topic_replays_allowed_origins_and_skips_a_forged_one(
        self, mock: MockCluster
    ) -> None:
        """With --allow-topic orders, a dead letter of orders goes back to orders (same ce_id,
        no eventwire_dlq_* headers); one whose header says payments is reported with its
        ce_id and skipped, never written; the exit code is 1."""
        produce(mock, dead("good-1", "orders"), dead("forged-1", "payments"))
        code, text = run(
            "dlq", "replay", "--topic", DLQ, "--bootstrap", mock.bootstrap_servers,
            "--allow-topic", "orders",
        )  # fmt: skip
        assert code == 1, text
        assert "skipped 0:1 (ce_id forged-1)" in text
        assert "'payments' is not an allowed replay target" in text
        assert "replayed 1 of 2" in text
        [back] = read_topic(mock.bootstrap_servers, "orders", expected=1, timeout=20, idle=0.5)
        assert back.header("ce_id") == b"good-1"
        assert not [k for k, _ in back.headers if k.startswith("eventwire_dlq_")]
        assert ce_ids(mock, "payments") == []

    def test_to_topic_sends_every_record_there_whatever_its_header(self, mock: MockCluster) -> None:
        """--to-topic orders-retry writes every record there, whatever its header names
        (even none, or bytes that are not UTF-8), and exits 0."""
        no_origin = [h for h in dead("c", "orders") if h[0] != "eventwire_dlq_original_topic"]
        produce(mock, dead("a", "orders"), dead("b", b"\xffpayments"), no_origin)
        code, text = run(
            "dlq", "replay", "--topic", DLQ, "--bootstrap", mock.bootstrap_servers,
            "--to-topic", "orders-retry",
        )  # fmt: skip
        assert code == 0, text
        assert "replayed 3 of 3" in text
        assert ce_ids(mock, "orders-retry", expected=3) == [b"a", b"b", b"c"]
        assert ce_ids(mock, "orders") == []
        assert ce_ids(mock, "payments") == []

    def test_dry_run_lists_each_record_and_its_target_and_writes_nothing(
        self, mock: MockCluster
    ) -> None:
        """--dry-run shows each record -> target, or SKIP with the reason, writes nothing,
        and exits 1 as the replay would (a record would be skipped)."""
        produce(mock, dead("good-1", "orders"), dead("forged-1", "payments"))
        code, text = run(
            "dlq", "replay", "--topic", DLQ, "--bootstrap", mock.bootstrap_servers,
            "--allow-topic", "orders", "--dry-run",
        )  # fmt: skip
        assert code == 1, text
        lines = text.splitlines()
        assert any("0:0" in line and "good-1" in line and "-> orders" in line for line in lines)
        assert any("0:1" in line and "forged-1" in line and "SKIP" in line for line in lines)
        assert "dry run: 1 would be replayed, 1 skipped" in text
        assert ce_ids(mock, "orders") == []
        assert ce_ids(mock, "payments") == []

    @pytest.mark.parametrize(
        ("options", "expected"),
        [
            (["--to-topic", "a", "--allow-topic", "b"], "not both"),
            (["--to-topic", "bad topic"], "'bad topic' is not a legal Kafka topic name"),
            (["--allow-topic", "orders", "--allow-topic", ""], "'' is empty"),
        ],
    )
    def test_bad_target_options_exit_2_naming_the_problem(
        self, options: list[str], expected: str
    ) -> None:
        """Both target options, or a target that is not a legal topic name, exit 2 with the
        reason, before Kafka is contacted."""
        code, text = run("dlq", "replay", "--topic", DLQ, "--bootstrap", "127.0.0.1:9", *options)
        assert code == 2, text
        assert expected in text

    @pytest.mark.parametrize("option", [["--to-topic", "x"], ["--allow-topic", "x"], ["--dry-run"]])
    def test_topic_options_without_topic_exit_2(self, tmp_path: Path, option: list[str]) -> None:
        """--to-topic, --allow-topic and --dry-run apply to --topic only: with an outbox they
        exit 2 instead of being ignored, and nothing is requeued."""
        SQLiteOutbox(tmp_path / "o.db").close()
        code, text = run("dlq", "replay", "--sqlite", str(tmp_path / "o.db"), *option)
        assert code == 2, text
        assert "only with --topic" in text


class TestOptionsOfOneMode:
    """An option of the other mode is refused, never ignored: ignoring it acts on other
    dead letters than the operator asked for."""

    @pytest.mark.parametrize(
        "stray", [["--id", "2"], ["--sqlite", "x.db"], ["--postgres-env", "DB_URL"]]
    )
    def test_outbox_options_with_topic_exit_2_and_nothing_is_replayed(
        self, mock: MockCluster, stray: list[str]
    ) -> None:
        """`dlq replay --topic T --id 2` replayed every record of T (--id was ignored)."""
        produce(mock, dead("e-1", "orders"), dead("e-2", "orders"))
        code, text = run(
            "dlq", "replay", "--topic", DLQ, "--bootstrap", mock.bootstrap_servers,
            "--to-topic", "orders", *stray,
        )  # fmt: skip
        assert code == 2, text
        assert f"with --topic (a dead-letter topic), {stray[0]}" in text
        assert ce_ids(mock, "orders") == []

    @pytest.mark.parametrize("stray", [["--bootstrap", "127.0.0.1:9"], ["--set", "acks=1"]])
    def test_kafka_options_without_topic_exit_2(self, tmp_path: Path, stray: list[str]) -> None:
        SQLiteOutbox(tmp_path / "o.db").close()
        code, text = run("dlq", "list", "--sqlite", str(tmp_path / "o.db"), *stray)
        assert code == 2, text
        assert "only apply with --topic" in text

    def test_replaying_a_topic_into_itself_exits_2(self) -> None:
        code, text = run(
            "dlq", "replay", "--topic", DLQ, "--bootstrap", "127.0.0.1:9", "--to-topic", DLQ
        )
        assert code == 2, text
        assert "is the dead-letter topic itself" in text

    def test_an_id_that_names_no_parked_event_exits_1_and_a_huge_one_2(
        self, tmp_path: Path
    ) -> None:
        """--id of a pending row (or of no row) used to print "requeued 0" and exit 0; an id
        beyond 64 bits crashed with OverflowError. Now: exit 1 naming the count, exit 2."""
        store = SQLiteOutbox(tmp_path / "o.db")
        parked, pending = store.add(
            [
                OutboxEntry("e-1", "t.T", "orders", b"k", b"v", ()),
                OutboxEntry("e-2", "t.T", "orders", b"k2", b"v", ()),
            ]
        )
        store.park(parked, "broken")
        store.close()
        db = str(tmp_path / "o.db")
        code, text = run("dlq", "replay", "--sqlite", db, "--id", str(pending), "--id", "999")
        assert code == 1, text
        assert "2 of the 2 --id value(s) named no parked event" in text
        code, text = run("dlq", "replay", "--sqlite", db, "--id", str(parked))
        assert code == 0, text
        assert "requeued 1 parked event(s)" in text
        code, text = run("dlq", "replay", "--sqlite", db, "--id", str(2**70))
        assert code == 2, text
        assert "Traceback" not in text


class TestUntrustedRecords:
    def test_a_non_utf8_original_topic_is_skipped_and_the_rest_replayed(
        self, mock: MockCluster
    ) -> None:
        """A record whose eventwire_dlq_original_topic is not UTF-8 is reported and skipped;
        the records before and after it are replayed and flushed; the exit code is 1."""
        produce(mock, dead("a", "orders"), dead("bad", b"\xff\xfeorders"), dead("b", "orders"))
        code, text = run(
            "dlq", "replay", "--topic", DLQ, "--bootstrap", mock.bootstrap_servers,
            "--allow-topic", "orders",
        )  # fmt: skip
        assert code == 1, text
        assert "skipped 0:1 (ce_id bad): its eventwire_dlq_original_topic header is not UTF-8" in (
            text
        )
        assert ce_ids(mock, "orders", expected=2) == [b"a", b"b"]

    def test_skip_reports_show_a_forged_origin_escaped(self, mock: MockCluster) -> None:
        """A forged origin with markup and an escape sequence is reported literally: the
        markup as text, ESC as \\x1b, nothing interpreted."""
        produce(mock, dead("f", "[/x]\x1b]0;owned\x07"))
        code, text = run(
            "dlq", "replay", "--topic", DLQ, "--bootstrap", mock.bootstrap_servers,
            "--allow-topic", "orders",
        )  # fmt: skip
        assert code == 1, text
        assert "\x1b" not in text
        assert "\x07" not in text
        assert "[/x]\\x1b]0;owned\\x07" in text

    def test_list_shows_markup_escape_sequences_and_bad_bytes_literally(
        self, mock: MockCluster
    ) -> None:
        """`dlq list --topic` shows a header with rich markup ([/x]) as text, control
        characters (ESC, bidi override) as escapes, and bytes that are not UTF-8 as \\xNN."""
        produce(
            mock,
            dead(
                "[/x]",
                "orders",
                eventwire_dlq_reason=b"\x1b[2J\x1b]0;owned\x07[bold]boom[/bold] \xe2\x80\xae",
                ce_type=b"type-\xff",
            ),
        )
        code, text = run("dlq", "list", "--topic", DLQ, "--bootstrap", mock.bootstrap_servers)
        assert code == 0, text
        assert "[/x]" in text
        assert "\x1b" not in text
        assert "\u202e" not in text
        assert "\\x1b[2J\\x1b]0;owned\\x07[bold]boom[/bold] \\u202e" in text
        assert "type-\\xff" in text

    def test_parked_list_shows_an_error_with_markup_literally(self, tmp_path: Path) -> None:
        """`dlq list --sqlite` shows a parked event's error text (which can quote a broker or
        a record) literally: markup as text, ESC escaped."""
        store = SQLiteOutbox(tmp_path / "o.db")
        [entry_id] = store.add([OutboxEntry("e-1", "t.T", "orders", b"k", b"v", ())])
        store.park(entry_id, "[/x] \x1b[31mred")
        store.close()
        code, text = run("dlq", "list", "--sqlite", str(tmp_path / "o.db"))
        assert code == 0, text
        assert "[/x] \\x1b[31mred" in text
        assert "\x1b" not in text

    def test_parked_list_title_says_how_many_are_parked_beyond_those_shown(
        self, tmp_path: Path
    ) -> None:
        """With more parked events than --limit, the title says how many there are in all."""
        store = SQLiteOutbox(tmp_path / "o.db")
        ids = store.add([OutboxEntry(f"e-{i}", "t.T", "orders", b"k", b"v", ()) for i in range(3)])
        for entry_id in ids:
            store.park(entry_id, "MSG_SIZE_TOO_LARGE: too big")
        store.close()
        code, text = run("dlq", "list", "--sqlite", str(tmp_path / "o.db"), "--limit", "2")
        assert code == 0, text
        assert "parked events (2 of 3, oldest first)" in text
        code, text = run("dlq", "list", "--sqlite", str(tmp_path / "o.db"))
        assert "parked events (all 3)" in text

    @pytest.mark.parametrize("limit", ["99999999999999999999", "1000001"])
    def test_a_limit_past_a_million_exits_2_naming_it(self, tmp_path: Path, limit: str) -> None:
        """--limit above SQLite's INTEGER printed an OverflowError traceback (exit 1), even
        with --json; now it is refused like --limit 0 (exit 2, the option and range named)."""
        store = SQLiteOutbox(tmp_path / "o.db")
        [entry_id] = store.add([OutboxEntry("e-1", "t.T", "orders", b"k", b"v", ())])
        store.park(entry_id, "MSG_SIZE_TOO_LARGE: too big")
        store.close()
        code, text = run(
            "dlq", "list", "--sqlite", str(tmp_path / "o.db"), "--limit", limit, "--json"
        )
        assert code == 2, text
        assert "--limit" in text
        assert "1000000" in text
        assert "Traceback" not in text and "OverflowError" not in text


class TestListJson:
    def test_list_topic_json_has_the_documented_keys_and_header_values(
        self, mock: MockCluster
    ) -> None:
        """`dlq list --topic T --json` prints one JSON object: source "topic", the topic, the
        record count, and each record's position and dead-letter headers (attempts an int,
        bytes that are not UTF-8 as \\xNN escapes), at most --limit of them."""
        produce(mock, dead("e-1", "orders"), dead("e-2", "payments", ce_type=b"type-\xff"))
        code, text = run(
            "dlq", "list", "--topic", DLQ, "--bootstrap", mock.bootstrap_servers, "--json"
        )
        assert code == 0, text
        doc = json.loads(text)
        assert set(doc) == {"source", "topic", "total", "dead_letters"}
        assert (doc["source"], doc["topic"], doc["total"]) == ("topic", DLQ, 2)
        first, second = doc["dead_letters"]
        assert set(first) == {
            "partition",
            "offset",
            "event_id",
            "event_type",
            "original_topic",
            "code",
            "attempts",
            "reason",
        }
        assert (first["event_id"], first["original_topic"], first["attempts"]) == (
            "e-1",
            "orders",
            1,
        )
        assert (first["code"], first["reason"]) == ("MSG_SIZE_TOO_LARGE", "too large")
        assert isinstance(first["offset"], int)
        assert second["event_type"] == "type-\\xff"
        code, text = run(
            "dlq", "list", "--topic", DLQ, "--bootstrap", mock.bootstrap_servers, "--json",
            "--limit", "1",
        )  # fmt: skip
        assert code == 0, text
        limited = json.loads(text)
        assert (limited["total"], len(limited["dead_letters"])) == (2, 1)


class TestNeverAPartOfTheTopicAsIfItWereAll:
    def test_a_topic_larger_than_one_read_is_refused_and_nothing_is_replayed(
        self, mock: MockCluster, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """More dead letters than one run reads (READ_MAX): list and replay exit 1 saying so,
        and replay writes nothing (before, the first READ_MAX were replayed as "all")."""
        monkeypatch.setattr(cli_outbox, "READ_MAX", 3)
        produce(mock, *(dead(f"e-{n}", "orders") for n in range(5)))
        boot = ["--bootstrap", mock.bootstrap_servers]
        code, text = run("dlq", "replay", "--topic", DLQ, *boot, "--allow-topic", "orders")
        assert code == 1, text
        assert f"'{DLQ}' holds more than 3 records" in text
        assert "nothing was listed or replayed" in text
        assert ce_ids(mock, "orders") == []
        code, text = run("dlq", "list", "--topic", DLQ, *boot, "--json")
        assert code == 1, text
        assert "holds more than 3 records" in text

    def test_a_topic_read_to_its_end_is_complete(self, mock: MockCluster) -> None:
        from eventwire import KafkaConfig
        from eventwire.transports.kafka import read_records

        produce(mock, *(dead(f"e-{n}", "orders") for n in range(5)))
        config = KafkaConfig(mock.bootstrap_servers)
        whole = read_records(config, DLQ, max_records=100, timeout=10)
        cut = read_records(config, DLQ, max_records=3, timeout=10)
        assert (len(whole.records), whole.complete) == (5, True)
        assert (len(cut.records), cut.complete) == (3, False)

    def test_a_consumer_setting_librdkafka_refuses_is_one_line_exit_2(
        self, mock: MockCluster
    ) -> None:
        """Before: a traceback ending in KafkaException (the consumer was made unguarded)."""
        code, text = run(
            "dlq", "list", "--topic", DLQ, "--bootstrap", mock.bootstrap_servers,
            "--set", "sasl.mechanism=BOGUS", "--set", "security.protocol=SASL_PLAINTEXT",
        )  # fmt: skip
        assert code == 2, text
        assert "Kafka consumer configuration rejected" in text
        assert "Traceback" not in text and "KafkaException" not in text


def test_ctrl_c_ends_a_topic_read_that_waits_for_a_broker_at_once() -> None:
    """`dlq list --topic` toward a dead port: SIGINT ends it within seconds (before, the
    metadata request blocked for its whole 30 s), and librdkafka's lines go through
    logging (before: hundreds of raw `%3|...|FAIL|` lines on stderr)."""
    import signal
    import subprocess
    import sys
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTWIRE_")}
    # Ctrl-C as in a terminal, even under a runner started with SIGINT ignored (`cmd &`).
    as_in_a_terminal = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "sys.argv = ['eventwire', *sys.argv[1:]]; runpy.run_module('eventwire.cli', "
        "run_name='__main__')"
    )
    args = ["dlq", "list", "--topic", DLQ, "--bootstrap", "127.0.0.1:1"]
    proc = subprocess.Popen(
        [sys.executable, "-c", as_in_a_terminal, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _out, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 10, err
    assert proc.returncode != 0
    assert "%3|" not in err
