"""What every list endpoint shares: opaque (created_at, id) cursors and RFC 3339 times."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime

from smsgw_api.problems import Problem


def iso(v: datetime | None) -> str | None:
    """RFC 3339 text of an aware datetime, or None."""
    return v.isoformat() if v else None


def time_range(since: datetime | None, until: datetime | None) -> None:
    """A list's `since`/`until` must say their offset (a bare time would be read in the
    server's zone); 422 `invalid_time` otherwise."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise Problem(
                422,
                "invalid_time",
                f"{name} needs a timezone",
                f"use RFC 3339 with an offset, e.g. {name}=2026-01-01T10:00:00Z",
                field=name,
            )


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    """The cursor that continues after this row (newest-first ordering)."""
    raw = json.dumps([created_at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """(created_at, id) from a cursor; 400 `invalid_cursor` for anything else."""
    try:
        pad = "=" * (-len(cursor) % 4)
        ts, row_id = json.loads(base64.urlsafe_b64decode(cursor + pad))
        return datetime.fromisoformat(ts), uuid.UUID(row_id)
    except (ValueError, TypeError) as exc:
        raise Problem(
            400, "invalid_cursor", "Invalid cursor", "use the next_cursor of a previous page"
        ) from exc
