"""Bulk UUIDs are well-formed version 7 UUIDs, all different, ordered by time."""

from __future__ import annotations

import time
import uuid

from smsgw_shared.ids import uuid7_strings


def test_uuid7_strings_are_canonical_version_7_and_distinct():
    before = time.time_ns() // 1_000_000
    ids = uuid7_strings(5000)
    after = time.time_ns() // 1_000_000
    assert len(ids) == len(set(ids)) == 5000
    for s in ids:
        u = uuid.UUID(s)
        assert (u.version, u.variant, str(u)) == (7, uuid.RFC_4122, s)
        assert before <= u.int >> 80 <= after  # the 48-bit millisecond timestamp
    # Every hex digit of the random positions turns up (no stuck bits).
    for pos in (15, 20, 35):
        assert {s[pos] for s in ids} == set("0123456789abcdef")
    assert {s[19] for s in ids} == set("89ab")
    assert uuid7_strings(0) == []


def test_uuid7_strings_sort_by_time():
    early = uuid7_strings(100, now_ms=1_700_000_000_000)
    late = uuid7_strings(100, now_ms=1_700_000_000_001)
    assert max(early) < min(late)
    assert uuid.UUID(early[0]).int >> 80 == 1_700_000_000_000
