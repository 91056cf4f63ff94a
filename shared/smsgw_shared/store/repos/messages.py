"""Messages, their parts and history, the outbox and scheduled sends."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from smsgw_shared.store.direct import DirectConnection, asyncpg_dsn
from smsgw_shared.store.schema import message_events, message_parts, messages, outbox

CANCELABLE = ("scheduled", "queued")

# The accept statement: arrays of columns, unnested; messages, their first history entry
# and their outbox jobs in one round trip and one implicit transaction.
_ACCEPT_MESSAGE_COLUMNS = (
    ("id", "uuid"),
    ("batch_id", "uuid"),
    ("api_key_id", "uuid"),
    ("to_number", "text"),
    ("sender", "text"),
    ("text", "text"),
    ("encoding", "text"),
    ("parts_count", "int2"),
    ("route", "text"),
    ("status", "text"),
    ("flash", "bool"),
    ("dlr", "bool"),
    ("validity", "int4"),
    ("reference", "text"),
    ("status_callback", "text"),
    ("job_id", "uuid"),
    ("send_at", "timestamptz"),
    ("expires_at", "timestamptz"),
)
_ACCEPT_OUTBOX_COLUMNS = (
    ("message_id", "uuid"),
    ("exchange", "text"),
    ("routing_key", "text"),
    ("body", "text"),
    ("available_at", "timestamptz"),
)


def _unnest(columns: Sequence[tuple[str, str]], first: int) -> str:
    return ", ".join(f"${first + i}::{t}[]" for i, (_, t) in enumerate(columns))


_ACCEPT_SQL = f"""
WITH m AS (
    INSERT INTO messages ({", ".join(c for c, _ in _ACCEPT_MESSAGE_COLUMNS)})
    SELECT * FROM unnest({_unnest(_ACCEPT_MESSAGE_COLUMNS, 1)})
    RETURNING id, status
), e AS (
    INSERT INTO message_events (message_id, state, source) SELECT id, status, 'api' FROM m
)
INSERT INTO outbox ({", ".join(c for c, _ in _ACCEPT_OUTBOX_COLUMNS)})
SELECT * FROM unnest({_unnest(_ACCEPT_OUTBOX_COLUMNS, len(_ACCEPT_MESSAGE_COLUMNS) + 1)})
RETURNING id, message_id::text
"""  # noqa: S608 (column names are constants)
_DELETE_OUTBOX_SQL = "DELETE FROM outbox WHERE id = ANY($1::int8[])"


@dataclass(frozen=True)
class OutboxRow:
    """A publish the store still owes the broker."""

    id: int
    exchange: str
    routing_key: str
    body: str
    message_id: uuid.UUID | None


@dataclass(frozen=True)
class MessageFilter:
    """Filters of `GET /v1/messages`."""

    status: str | None = None
    to: str | None = None
    reference: str | None = None
    batch_id: uuid.UUID | None = None
    since: datetime | None = None
    until: datetime | None = None
    api_key_id: uuid.UUID | None = None


class MessageRepository:
    """All SQL about outgoing messages."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def direct(self) -> DirectConnection:
        """A connection of its own for a hot-path writer (see `accept`)."""
        return DirectConnection(asyncpg_dsn(self.engine.url))

    async def accept(
        self,
        via: DirectConnection,
        rows: Sequence[dict[str, Any]],
        jobs: Sequence[dict[str, Any]],
    ) -> list[int]:
        """Insert message rows, their first history entry and their outbox jobs in one
        statement (atomic: all or nothing); returns the outbox ids in `jobs` order. Ids
        may be given as UUIDs or as their canonical text."""
        if not rows:
            return []
        cols = [[r[c] for r in rows] for c, _ in _ACCEPT_MESSAGE_COLUMNS]
        jcols = [[j[c] for j in jobs] for c, _ in _ACCEPT_OUTBOX_COLUMNS]

        async def _insert(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return await conn.fetch(_ACCEPT_SQL, *cols, *jcols)  # type: ignore[no-any-return]

        by_message = {r["message_id"]: r["id"] for r in await via.run(_insert)}
        return [by_message[str(j["message_id"])] for j in jobs]

    async def delete_outbox(self, via: DirectConnection, ids: Sequence[int]) -> None:
        """Forget outbox rows whose publish the broker confirmed."""
        if ids:
            await via.run(lambda conn: conn.execute(_DELETE_OUTBOX_SQL, list(ids)))

    async def release_outbox(self, ids: Sequence[int], error: str) -> None:
        """Make rows the hot path failed to publish due for the relay now."""
        if ids:
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(outbox)
                    .where(outbox.c.id.in_(list(ids)))
                    .values(available_at=func.now(), last_error=error[:500])
                )

    async def relay_batch(self, limit: int, publish: Any) -> tuple[int, list[str]]:
        """Lock due outbox rows (SKIP LOCKED: several relays may run), hand them to
        `publish(rows) -> list[str | None]` (each row's error, or None once confirmed),
        delete the confirmed ones and push the others back, later each time, with their
        error. Returns how many were published and the errors of the others."""
        async with self.engine.begin() as conn:
            res = await conn.execute(
                select(outbox)
                .where(outbox.c.available_at <= func.now())
                .order_by(outbox.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            rows = [OutboxRow(r.id, r.exchange, r.routing_key, r.body, r.message_id) for r in res]
            if not rows:
                return 0, []
            errors: list[str | None] = await publish(rows)
            done = [r.id for r, err in zip(rows, errors, strict=True) if err is None]
            failed = [
                (r.id, err[:500]) for r, err in zip(rows, errors, strict=True) if err is not None
            ]
            if done:
                await conn.execute(delete(outbox).where(outbox.c.id.in_(done)))
            if failed:
                await conn.execute(
                    update(outbox)
                    .where(outbox.c.id == bindparam("b_id"))
                    .values(
                        attempts=outbox.c.attempts + 1,
                        last_error=bindparam("b_error"),
                        available_at=func.now()
                        + func.make_interval(
                            0, 0, 0, 0, 0, 0, func.least(60, outbox.c.attempts + 1)
                        ),
                    ),
                    [{"b_id": i, "b_error": e} for i, e in failed],
                )
            return len(done), [e for _, e in failed]

    async def outbox_backlog(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(outbox))).scalar_one())

    async def release_due(self, limit: int, make_job: Any) -> int:
        """Move due scheduled messages to `queued` and put their jobs in the outbox."""
        async with self.engine.begin() as conn:
            res = await conn.execute(
                select(messages)
                .where(messages.c.status == "scheduled", messages.c.send_at <= func.now())
                .order_by(messages.c.send_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            due = list(res)
            if not due:
                return 0
            ids = [r.id for r in due]
            await conn.execute(
                update(messages)
                .where(messages.c.id.in_(ids))
                .values(status="queued", updated_at=func.now())
            )
            await conn.execute(
                insert(message_events),
                [{"message_id": i, "state": "queued", "source": "scheduler"} for i in ids],
            )
            await conn.execute(insert(outbox), [make_job(r._mapping) for r in due])
            return len(due)

    async def get(self, message_id: uuid.UUID) -> dict[str, Any] | None:
        """One message with its parts and history."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(messages).where(messages.c.id == message_id))).first()
            if row is None:
                return None
            parts = await conn.execute(
                select(message_parts)
                .where(message_parts.c.message_id == message_id)
                .order_by(message_parts.c.idx)
            )
            history = await conn.execute(
                select(message_events)
                .where(message_events.c.message_id == message_id)
                .order_by(message_events.c.id)
            )
            out = dict(row._mapping)
            out["parts_detail"] = [dict(p._mapping) for p in parts]
            out["history"] = [dict(h._mapping) for h in history]
            return out

    async def list(
        self, flt: MessageFilter, limit: int, cursor: tuple[datetime, uuid.UUID] | None
    ) -> list[dict[str, Any]]:
        """Newest first; `cursor` is the (created_at, id) of the last row of the previous page."""
        conds = []
        if flt.status:
            conds.append(messages.c.status == flt.status)
        if flt.to:
            conds.append(messages.c.to_number == flt.to)
        if flt.reference:
            conds.append(messages.c.reference == flt.reference)
        if flt.batch_id:
            conds.append(messages.c.batch_id == flt.batch_id)
        if flt.since:
            conds.append(messages.c.created_at >= flt.since)
        if flt.until:
            conds.append(messages.c.created_at < flt.until)
        if flt.api_key_id:
            conds.append(messages.c.api_key_id == flt.api_key_id)
        if cursor:
            ts, mid = cursor
            conds.append(
                or_(
                    messages.c.created_at < ts,
                    and_(messages.c.created_at == ts, messages.c.id < mid),
                )
            )
        stmt = (
            select(messages)
            .where(*conds)
            .order_by(messages.c.created_at.desc(), messages.c.id.desc())
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(stmt)]

    async def cancel(self, message_id: uuid.UUID) -> tuple[bool, str | None]:
        """Cancel while scheduled/queued. Returns (canceled, current status or None)."""
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(messages)
                .where(messages.c.id == message_id, messages.c.status.in_(CANCELABLE))
                .values(status="canceled", updated_at=func.now(), done_at=func.now())
                .returning(messages.c.id)
            )
            if res.first() is not None:
                await conn.execute(
                    insert(message_events).values(
                        message_id=message_id, state="canceled", source="api"
                    )
                )
                # A queued job still in the outbox will never be needed.
                await conn.execute(delete(outbox).where(outbox.c.message_id == message_id))
                return True, "canceled"
            cur = (
                await conn.execute(select(messages.c.status).where(messages.c.id == message_id))
            ).scalar_one_or_none()
            return False, cur
