"""Status projection: the reads and writes the inbound service makes, one batch of status
events per transaction. The caller owns the transaction (`engine.begin()`) and the logic;
this module owns the SQL. The batch's statements run on the asyncpg connection under
SQLAlchemy's (in its transaction): no statement compilation or per-row parameter work on
the hot path."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from smsgw_shared.store.direct import driver_of
from smsgw_shared.store.schema import message_events, messages, pending_reports

Key = tuple[str, str]  # (route, provider id)


@dataclass(frozen=True)
class PendingReport:
    """A delivery report not matched to a part yet."""

    id: int
    route: str
    provider_id: str
    recipient: str | None
    event_id: str
    body: dict[str, Any]
    received_at: datetime


@dataclass
class ProjectionWrite:
    """Everything one batch changes."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    parts: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    new_pending: list[dict[str, Any]] = field(default_factory=list)  # body: JSON text
    matched_pending: list[int] = field(default_factory=list)


# The recipient columns hold phone numbers. A report naming something longer (a peer's
# junk: an address field is at most 21 octets in SMPP, 20 digits in a status report) keeps
# it in its stored body, but the column gets NULL rather than failing the whole batch; such
# a report can match no part anyway.
RECIPIENT_MAX = 32
# Provider ids likewise: an SMSC may answer a submit_sm with any C-octet string. A part
# whose id does not fit is stored without it (no receipt can name it: see PROVIDER_ID_MAX
# in the projection's matching).
PROVIDER_ID_MAX = 80


def _number(value: str | None) -> str | None:
    return value if value is None or len(value) <= RECIPIENT_MAX else None


def _provider_id(value: str | None) -> str | None:
    return value if value is None or len(value) <= PROVIDER_ID_MAX else None


def _columns(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[list[Any]]:
    """Rows as one list per column, in `keys` order (a missing key is NULL): the arrays an
    unnest statement takes."""
    return [[r.get(k) for r in rows] for k in keys]


MESSAGE_UPDATE_KEYS = ("b_id", "b_status", "b_error_code", "b_error", "b_sent_at", "b_done_at")
UPDATE_MESSAGES = """
UPDATE messages AS m SET status = u.status, error_code = u.error_code, error = u.error,
    sent_at = u.sent_at, done_at = u.done_at, updated_at = now()
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
    $6::timestamptz[]) AS u(id, status, error_code, error, sent_at, done_at)
WHERE m.id = u.id
"""
PART_KEYS = (
    "message_id", "idx", "route", "provider_id", "recipient", "status", "error_code",
    "submitted_at",
)  # fmt: skip
UPSERT_PARTS = """
INSERT INTO message_parts AS p
    (message_id, idx, route, provider_id, recipient, status, error_code, submitted_at)
SELECT * FROM unnest($1::uuid[], $2::smallint[], $3::text[], $4::text[], $5::text[],
    $6::text[], $7::text[], $8::timestamptz[])
ON CONFLICT (message_id, idx) DO UPDATE SET route = excluded.route,
    provider_id = excluded.provider_id, recipient = excluded.recipient,
    status = excluded.status, error_code = excluded.error_code,
    submitted_at = excluded.submitted_at, updated_at = now()
"""
HISTORY_KEYS = (
    "message_id", "state", "part", "source", "source_event_id", "error_code", "detail",
    "occurred_at", "reported_at",
)  # fmt: skip
# In the rows' order (WITH ORDINALITY): history ids follow the order events were applied.
INSERT_HISTORY = """
INSERT INTO message_events
    (message_id, state, part, source, source_event_id, error_code, detail, occurred_at,
     reported_at)
SELECT message_id, state, part, source, source_event_id, error_code, detail, occurred_at,
    reported_at
FROM unnest($1::uuid[], $2::text[], $3::smallint[], $4::text[], $5::text[], $6::text[],
    $7::text[], $8::timestamptz[], $9::timestamptz[]) WITH ORDINALITY
    AS h(message_id, state, part, source, source_event_id, error_code, detail, occurred_at,
         reported_at, n)
ORDER BY n
ON CONFLICT DO NOTHING
"""


# The batch's lookups fetch a few rows for each of some hundred keys: an index's work at
# any table size. PostgreSQL costs such a lookup on a table of some thousand rows (a young
# gateway's) as a sequential scan, which reads every row once for each batch. Only for the
# lookups: a statement with no index to use keeps its scan, costed 10^10 more while scans
# are off, and a statement without parameters keeps that plan (JIT-compiled for the cost,
# ~90 ms a run) on the connection after the transaction: JIT off too, scans back on after
# (to what the session had: an operator may have set them off for a role or database).
INDEX_PLANS = "SET LOCAL enable_seqscan = off; SET LOCAL jit = off"
USUAL_PLANS = "SET LOCAL enable_seqscan TO DEFAULT"  # the session's own (role, database)
LOCK_KEYS = "SELECT pg_advisory_xact_lock(x) FROM unnest($1::bigint[]) AS t(x)"
MESSAGES_FOR_KEYS = """
SELECT p.message_id FROM message_parts AS p
JOIN unnest($1::text[], $2::text[]) AS k(route, pid)
    ON p.route = k.route AND p.provider_id = k.pid
WHERE p.submitted_at IS NULL OR p.submitted_at >= $3
"""
LOCK_MESSAGES = """
SELECT id, status, parts_count, route, to_number, reference, api_key_id, status_callback,
    error_code, error, sent_at, done_at
FROM messages WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE
"""
LOAD_PARTS = """
SELECT message_id, idx, route, provider_id, recipient, status, error_code, submitted_at,
    updated_at
FROM message_parts WHERE message_id = ANY($1::uuid[])
"""
APPLIED_EVENTS = """
SELECT source_event_id FROM message_events
WHERE message_id = ANY($1::uuid[]) AND source_event_id = ANY($2::text[])
"""
PARKED_EVENTS = "SELECT event_id FROM pending_reports WHERE event_id = ANY($1::text[])"
PENDING_FOR_KEYS = """
SELECT p.id, p.route, p.provider_id, p.recipient, p.event_id, p.body::text AS body,
    p.received_at
FROM pending_reports AS p
JOIN unnest($1::text[], $2::text[]) AS k(route, pid)
    ON p.route = k.route AND p.provider_id = k.pid
WHERE p.received_at >= $3
ORDER BY p.id
"""
PENDING_KEYS = ("route", "provider_id", "recipient", "event_id", "body")
# In the rows' order (WITH ORDINALITY): `pending_for` reads parked reports oldest first by id.
INSERT_PENDING = """
INSERT INTO pending_reports (route, provider_id, recipient, event_id, body)
SELECT route, provider_id, recipient, event_id, body::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY
    AS n(route, provider_id, recipient, event_id, body, i)
ORDER BY i
ON CONFLICT DO NOTHING
"""
DELETE_PENDING = "DELETE FROM pending_reports WHERE id = ANY($1::bigint[])"


def lock_id(key: Key) -> int:
    """A stable signed 64-bit advisory lock id for a (route, provider id) key."""
    digest = hashlib.blake2b(f"{key[0]}|{key[1]}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class ProjectionRepository:
    """All SQL of the status projection."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @staticmethod
    @asynccontextmanager
    async def index_plans(conn: AsyncConnection) -> AsyncIterator[None]:
        """Within: this transaction's statements planned as index scans (`INDEX_PLANS`);
        after: as usual again (an error ends the transaction, and the settings with it)."""
        pg = await driver_of(conn)
        await pg.execute(INDEX_PLANS)
        yield
        await pg.execute(USUAL_PLANS)

    @staticmethod
    async def lock_keys(conn: AsyncConnection, keys: Iterable[Key]) -> None:
        """Serialise work on these provider ids (a report and the `sent` it belongs to may be
        applied by two processes at once). Locks are taken in one global order: no deadlock."""
        ids = sorted({lock_id(k) for k in keys})
        if ids:
            # unnest scans the array in order, so the locks are taken in sorted order.
            await (await driver_of(conn)).execute(LOCK_KEYS, ids)

    @staticmethod
    async def message_ids_for_keys(
        conn: AsyncConnection, keys: Sequence[Key], since: datetime
    ) -> set[uuid.UUID]:
        """Messages with a part submitted since `since` under one of these keys."""
        if not keys:
            return set()
        pg = await driver_of(conn)
        rows = await pg.fetch(MESSAGES_FOR_KEYS, [k[0] for k in keys], [k[1] for k in keys], since)
        return {r[0] for r in rows}

    @staticmethod
    async def lock_messages(
        conn: AsyncConnection, ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, dict[str, Any]]:
        """Lock and read messages, in id order (every writer locks in this order)."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        rows = await (await driver_of(conn)).fetch(LOCK_MESSAGES, wanted)
        return {r[0]: dict(r.items()) for r in rows}

    @staticmethod
    async def load_parts(conn: AsyncConnection, ids: Iterable[uuid.UUID]) -> list[dict[str, Any]]:
        """The stored parts of these messages."""
        wanted = list(ids)
        if not wanted:
            return []
        rows = await (await driver_of(conn)).fetch(LOAD_PARTS, wanted)
        return [dict(r.items()) for r in rows]

    @staticmethod
    async def seen(
        conn: AsyncConnection, event_ids: Sequence[str], message_ids: Iterable[uuid.UUID]
    ) -> set[str]:
        """Which of these events were applied to these messages, or parked, before.

        Looked up per message (its history is a few rows on an index) rather than by event
        id across the whole history table, which the planner may scan."""
        if not event_ids:
            return set()
        ids = sorted(set(event_ids))
        mids = sorted(set(message_ids))
        pg = await driver_of(conn)
        found: set[str] = set()
        if mids:
            found |= {r[0] for r in await pg.fetch(APPLIED_EVENTS, mids, ids)}
        return found | {r[0] for r in await pg.fetch(PARKED_EVENTS, ids)}

    @staticmethod
    async def pending_for(
        conn: AsyncConnection, keys: Sequence[Key], since: datetime
    ) -> list[PendingReport]:
        """Parked reports under these keys, received since `since`, oldest first."""
        if not keys:
            return []
        pg = await driver_of(conn)
        rows = await pg.fetch(PENDING_FOR_KEYS, [k[0] for k in keys], [k[1] for k in keys], since)
        return [
            PendingReport(
                r["id"],
                r["route"],
                r["provider_id"],
                r["recipient"],
                r["event_id"],
                json.loads(r["body"]),
                r["received_at"],
            )
            for r in rows
        ]

    @staticmethod
    async def write(conn: AsyncConnection, w: ProjectionWrite) -> None:
        """Apply a batch's changes: one statement per table, its rows as arrays (unnest),
        on the asyncpg connection under `conn` (in its transaction)."""
        if not (w.messages or w.parts or w.history or w.new_pending or w.matched_pending):
            return
        pg = await driver_of(conn)
        if w.messages:
            await pg.execute(UPDATE_MESSAGES, *_columns(w.messages, MESSAGE_UPDATE_KEYS))
        if w.parts:
            cols = _columns(w.parts, PART_KEYS)
            cols[3] = [_provider_id(p) for p in cols[3]]
            cols[4] = [_number(r) for r in cols[4]]
            await pg.execute(UPSERT_PARTS, *cols)
        if w.history:
            await pg.execute(INSERT_HISTORY, *_columns(w.history, HISTORY_KEYS))
        if w.new_pending:
            route, pid, recipient, event_id, body = _columns(w.new_pending, PENDING_KEYS)
            numbers = [_number(r) for r in recipient]
            await pg.execute(INSERT_PENDING, route, pid, numbers, event_id, body)
        if w.matched_pending:
            await pg.execute(DELETE_PENDING, w.matched_pending)

    @staticmethod
    async def due_for_expiry(
        conn: AsyncConnection, now: datetime, sent_cutoff: datetime, limit: int
    ) -> list[uuid.UUID]:
        """Lock messages past their validity: queued/sending at `now`; sent (and waiting for a
        report) at `sent_cutoff`. SKIP LOCKED: the projection may hold some of them."""
        res = await conn.execute(
            select(messages.c.id)
            .where(
                messages.c.status.in_(("queued", "sending", "sent")),
                messages.c.expires_at <= now,
                or_(
                    messages.c.status.in_(("queued", "sending")),
                    (messages.c.expires_at <= sent_cutoff) & messages.c.dlr,
                ),
            )
            .order_by(messages.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [r[0] for r in res]

    async def pending_count(self) -> int:
        """Delivery reports still waiting for their message."""
        async with self.engine.connect() as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(pending_reports))).scalar_one()
            )

    @staticmethod
    async def history_insert(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
        """Plain history rows (no idempotency key needed)."""
        if rows:
            await conn.execute(insert(message_events), list(rows))
