"""The accounting every chaos test prints: what was published, and what the log holds."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from eventwire_devkit.consume import ConsumedRecord


@dataclass
class Accounting:
    published: int
    acked: int
    reported_failed: int
    in_outbox: int
    consumed: int
    duplicates: int
    #: Published, never in the log, and never reported failed to the caller.
    lost: int
    order_violations: int

    def table(self, title: str) -> str:
        rows = [(name, getattr(self, name)) for name in self.__dataclass_fields__]
        width = max(len(n) for n, _ in rows)
        lines = [f"== {title} =="] + [f"{n.replace('_', ' '):<{width}}  {v:>9,}" for n, v in rows]
        return "\n".join(lines)


def account(
    published: Mapping[str, tuple[bytes, int]],
    records: Iterable[ConsumedRecord],
    *,
    acked: int,
    reported_failed: int,
    in_outbox: int,
    reported_ids: Iterable[str] = (),
) -> Accounting:
    """``published`` maps ce_id -> (key, per-key sequence number).

    ``reported_ids`` are events the caller was told failed: missing from the log
    is then expected, not a loss.
    """
    seen: dict[str, int] = {}
    last_seq: dict[bytes, int] = {}
    violations = 0
    consumed = 0
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        consumed += 1
        ce_id = (r.header("ce_id") or b"").decode()
        seen[ce_id] = seen.get(ce_id, 0) + 1
        if seen[ce_id] > 1 or ce_id not in published:
            continue
        key, seq = published[ce_id]
        if seq < last_seq.get(key, -1):
            violations += 1
        last_seq[key] = max(seq, last_seq.get(key, -1))
    return Accounting(
        published=len(published),
        acked=acked,
        reported_failed=reported_failed,
        in_outbox=in_outbox,
        consumed=consumed,
        duplicates=sum(n - 1 for n in seen.values()),
        lost=len(set(published) - set(seen) - set(reported_ids)),
        order_violations=violations,
    )
