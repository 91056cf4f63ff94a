"""Status projection: the reads and writes the inbound service makes, one batch of status
events per transaction. The caller owns the transaction (`engine.begin()`) and the logic;
this module owns the SQL."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    String,
    Uuid,
    any_,
    bindparam,
    column,
    delete,
    func,
    insert,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from smsgw_shared.store.direct import driver_of
from smsgw_shared.store.schema import message_events, message_parts, messages, pending_reports

Key = tuple[str, str]  # (route, provider id)

MESSAGE_COLUMNS = (
    messages.c.id,
    messages.c.status,
    messages.c.parts_count,
    messages.c.route,
    messages.c.to_number,
    messages.c.reference,
    messages.c.api_key_id,
    messages.c.status_callback,
    messages.c.error_code,
    messages.c.error,
    messages.c.sent_at,
    messages.c.done_at,
)


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
    new_pending: list[dict[str, Any]] = field(default_factory=list)
    matched_pending: list[int] = field(default_factory=list)


def _array(values: Sequence[Any], item_type: Any) -> Any:
    """One array parameter instead of an IN list: the statement text (and asyncpg's prepared
    statement) stays the same whatever the batch size."""
    return bindparam(None, list(values), type_=ARRAY(item_type))


def _keys_table(keys: Sequence[Key]) -> Any:
    """(route, pid) pairs as a table: unnest of two arrays."""
    routes = bindparam(None, [k[0] for k in keys], type_=ARRAY(String))
    pids = bindparam(None, [k[1] for k in keys], type_=ARRAY(String))
    return (
        func.unnest(routes, pids)
        .table_valued(column("route", String), column("pid", String))
        .render_derived(name="k", with_types=False)
    )


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


def lock_id(key: Key) -> int:
    """A stable signed 64-bit advisory lock id for a (route, provider id) key."""
    digest = hashlib.blake2b(f"{key[0]}|{key[1]}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class ProjectionRepository:
    """All SQL of the status projection."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @staticmethod
    async def lock_keys(conn: AsyncConnection, keys: Iterable[Key]) -> None:
        """Serialise work on these provider ids (a report and the `sent` it belongs to may be
        applied by two processes at once). Locks are taken in one global order: no deadlock."""
        ids = sorted({lock_id(k) for k in keys})
        if ids:
            # unnest scans the array in order, so the locks are taken in sorted order.
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(x) FROM unnest(:ids) AS t(x)").bindparams(
                    bindparam("ids", type_=ARRAY(BigInteger))
                ),
                {"ids": ids},
            )

    @staticmethod
    async def message_ids_for_keys(
        conn: AsyncConnection, keys: Sequence[Key], since: datetime
    ) -> set[uuid.UUID]:
        """Messages with a part submitted since `since` under one of these keys."""
        if not keys:
            return set()
        k = _keys_table(keys)
        res = await conn.execute(
            select(message_parts.c.message_id)
            .select_from(
                message_parts.join(
                    k,
                    (message_parts.c.route == k.c.route) & (message_parts.c.provider_id == k.c.pid),
                )
            )
            .where(
                or_(message_parts.c.submitted_at.is_(None), message_parts.c.submitted_at >= since)
            )
        )
        return {r[0] for r in res}

    @staticmethod
    async def lock_messages(
        conn: AsyncConnection, ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, dict[str, Any]]:
        """Lock and read messages, in id order (every writer locks in this order)."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        res = await conn.execute(
            select(*MESSAGE_COLUMNS)
            .where(messages.c.id == any_(_array(wanted, Uuid)))
            .order_by(messages.c.id)
            .with_for_update()
        )
        keys = list(res.keys())  # once: `row._mapping` builds its key view on every row
        return {r.id: dict(zip(keys, r, strict=True)) for r in res}

    @staticmethod
    async def load_parts(conn: AsyncConnection, ids: Iterable[uuid.UUID]) -> list[dict[str, Any]]:
        """The stored parts of these messages."""
        wanted = list(ids)
        if not wanted:
            return []
        res = await conn.execute(
            select(message_parts).where(message_parts.c.message_id == any_(_array(wanted, Uuid)))
        )
        keys = list(res.keys())
        return [dict(zip(keys, r, strict=True)) for r in res]

    @staticmethod
    async def seen(
        conn: AsyncConnection, event_ids: Sequence[str], message_ids: Iterable[uuid.UUID]
    ) -> set[str]:
        """Which of these events were applied to these messages, or parked, before.

        Looked up per message (its history is a few rows on an index) rather than by event
        id across the whole history table, which the planner may scan."""
        if not event_ids:
            return set()
        ids = _array(sorted(set(event_ids)), String)
        mids = sorted(set(message_ids))
        found: set[str] = set()
        if mids:
            applied = await conn.execute(
                select(message_events.c.source_event_id).where(
                    message_events.c.message_id == any_(_array(mids, Uuid)),
                    message_events.c.source_event_id == any_(ids),
                )
            )
            found |= {r[0] for r in applied}
        parked = await conn.execute(
            select(pending_reports.c.event_id).where(pending_reports.c.event_id == any_(ids))
        )
        return found | {r[0] for r in parked}

    @staticmethod
    async def pending_for(
        conn: AsyncConnection, keys: Sequence[Key], since: datetime
    ) -> list[PendingReport]:
        """Parked reports under these keys, received since `since`, oldest first."""
        if not keys:
            return []
        p = pending_reports
        k = _keys_table(keys)
        res = await conn.execute(
            select(p)
            .select_from(p.join(k, (p.c.route == k.c.route) & (p.c.provider_id == k.c.pid)))
            .where(p.c.received_at >= since)
            .order_by(p.c.id)
        )
        return [
            PendingReport(
                r.id, r.route, r.provider_id, r.recipient, r.event_id, r.body, r.received_at
            )
            for r in res
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
            await pg.execute(UPSERT_PARTS, *_columns(w.parts, PART_KEYS))
        if w.history:
            await pg.execute(INSERT_HISTORY, *_columns(w.history, HISTORY_KEYS))
        if w.new_pending:
            await conn.execute(pg_insert(pending_reports).on_conflict_do_nothing(), w.new_pending)
        if w.matched_pending:
            await conn.execute(
                delete(pending_reports).where(
                    pending_reports.c.id == any_(_array(w.matched_pending, BigInteger))
                )
            )

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
