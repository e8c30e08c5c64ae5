"""SIGKILL of an asyncio outbox service mid-stream, then a fresh relay drains."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from eventwire import KafkaConfig
from eventwire.outbox import OutboxRelay, OutboxStore, SQLiteOutbox
from eventwire.outbox.postgres import PostgresOutbox
from eventwire.transports.kafka import KafkaTransport
from eventwire_devkit.consume import read_topic
from tests.integration.conftest import postgres_dsn  # noqa: F401  (the fixture)

WORKER = Path(__file__).with_name("async_outbox_crash_worker.py")

pytestmark = pytest.mark.kafka


def noted(log: Path) -> dict[str, set[str]]:
    """The worker's log: tag (S, C, R, P, A) -> event ids."""
    tags: dict[str, set[str]] = {t: set() for t in "SCRPA"}
    for line in log.read_text().splitlines():
        tag, _, ce_id = line.partition(" ")
        if ce_id:  # a line cut by the kill has no id yet
            tags[tag].add(ce_id)
    return tags


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_committed_events_survive_a_sigkill_and_rolled_back_ones_never_appear(
    kind: str,
    tmp_path: Path,
    kafka_bootstrap: str,
    kafka_topic: str,
    request: pytest.FixtureRequest,
) -> None:
    """SIGKILLed while staging in committed and rolled-back transactions and publishing:
    after a fresh relay drains, every event of a committed transaction and every acked
    publish is in the topic, nothing of a rolled-back transaction is, and nothing the
    worker did not write."""
    if kind == "sqlite":
        target = str(tmp_path / "app.db")
        SQLiteOutbox(target).close()
        with sqlite3.connect(target) as conn:
            conn.execute("CREATE TABLE orders (id TEXT)")
    else:
        target = request.getfixturevalue("postgres_dsn")
        with psycopg.connect(target, autocommit=True) as admin:
            for table in ("eventwire_outbox", "eventwire_outbox_relays", "orders"):
                admin.execute(f"DROP TABLE IF EXISTS {table}")
            admin.execute("CREATE TABLE orders (id TEXT)")
    log = tmp_path / "ids.log"
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), kind, target, kafka_bootstrap, kafka_topic, str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "RUNNING":
        proc.kill()
        pytest.fail(f"worker did not start: {line!r} {proc.communicate()[1][-3000:]}")
    time.sleep(1.5)  # mid-stream: transactions, commits and relay rounds under way
    proc.kill()
    proc.wait(timeout=30)
    assert proc.returncode == -9

    ids = noted(log)
    store: OutboxStore = SQLiteOutbox(target) if kind == "sqlite" else PostgresOutbox(target)
    pending = store.status().pending
    time.sleep(2.5)  # the dead relay's 2 s leases expire; its entries become claimable
    relay = OutboxRelay(store, lambda: KafkaTransport(KafkaConfig(kafka_bootstrap)), lease_s=60)
    assert relay.drain(timeout=90)
    relay.stop()
    assert store.status().pending == 0
    must = ids["C"] | ids["A"]
    records = read_topic(kafka_bootstrap, kafka_topic, expected=len(must), timeout=90, idle=2.0)
    delivered = [(r.header("ce_id") or b"").decode() for r in records]
    unique = set(delivered)
    print(
        f"\n== async outbox SIGKILL ({kind}) ==\nstaged {len(ids['S'])}  committed "
        f"{len(ids['C'])}  rolled back {len(ids['R'])}  published {len(ids['P'])}  acked "
        f"{len(ids['A'])}  pending at kill {pending}  consumed {len(delivered)}  unique "
        f"{len(unique)}  lost {len(must - unique)}  from rollbacks {len(ids['R'] & unique)}"
    )
    assert ids["C"] and ids["R"] and ids["A"]
    assert must <= unique
    assert not ids["R"] & unique
    assert unique <= ids["S"] | ids["P"]
