"""CloudEvents headers and UUIDv7 event ids."""

from __future__ import annotations

import datetime as dt
import time
import uuid

from hypothesis import given
from hypothesis import strategies as st

from eventwire._cloudevents import HeaderTemplate, new_event_id, rfc3339_millis


class TestEventId:
    def test_is_a_version_7_rfc_9562_uuid(self) -> None:
        """Event ids parse as UUIDs with version 7 and the RFC variant."""
        u = uuid.UUID(new_event_id())
        assert u.version == 7
        assert u.variant == uuid.RFC_4122

    def test_embeds_the_unix_millisecond_timestamp(self) -> None:
        """The first 48 bits are the creation time in Unix milliseconds."""
        before = time.time_ns() // 1_000_000
        u = uuid.UUID(new_event_id())
        after = time.time_ns() // 1_000_000
        assert before <= u.int >> 80 <= after

    def test_ids_are_unique(self) -> None:
        """100k ids made in a tight loop never collide."""
        ids = {new_event_id() for _ in range(100_000)}
        assert len(ids) == 100_000

    def test_ids_sort_by_time_across_milliseconds(self) -> None:
        """Ids from a later millisecond sort after ids from an earlier one."""
        assert new_event_id(1_000) < new_event_id(1_001) < new_event_id(2**40)


class TestTime:
    @given(st.integers(min_value=0, max_value=253402300799999))
    def test_rfc3339_matches_datetime(self, ms: int) -> None:
        """ce_time equals datetime's own ISO format of the same instant, in UTC with Z."""
        expected = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
        parsed = dt.datetime.fromisoformat(rfc3339_millis(ms).replace("Z", "+00:00"))
        assert abs((parsed - expected).total_seconds()) < 0.001
        assert rfc3339_millis(ms).endswith("Z")


class TestHeaderTemplate:
    def test_builds_the_binary_mode_kafka_binding_headers(self) -> None:
        """Headers are ce_specversion, ce_id, ce_type, ce_source, ce_time, content-type."""
        t = HeaderTemplate(
            type_name="com.x.Placed", source="urn:svc", content_type="application/json"
        )
        headers = dict(t.build("id-1", 0, [("traceparent", b"00-abc")]))
        assert headers == {
            "ce_specversion": b"1.0",
            "ce_id": b"id-1",
            "ce_type": b"com.x.Placed",
            "ce_source": b"urn:svc",
            "ce_time": b"1970-01-01T00:00:00.000Z",
            "content-type": b"application/json",
            "traceparent": b"00-abc",
        }
