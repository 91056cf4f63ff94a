"""Bulk UUIDs are well-formed version 4 UUIDs, all different."""

from __future__ import annotations

import uuid

from smsgw_shared.ids import uuid4_strings


def test_uuid4_strings_are_canonical_version_4_and_distinct():
    ids = uuid4_strings(5000)
    assert len(ids) == len(set(ids)) == 5000
    for s in ids:
        u = uuid.UUID(s)
        assert (u.version, u.variant, str(u)) == (4, uuid.RFC_4122, s)
    # Every hex digit of the random positions turns up (no stuck bits).
    assert {s[0] for s in ids} == set("0123456789abcdef")
    assert {s[19] for s in ids} == set("89ab")
    assert uuid4_strings(0) == []
