"""Messages, their parts and history, the outbox and scheduled sends."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import Float, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from smsgw_shared.store.db import CUSTOM_PLANS
from smsgw_shared.store.direct import DirectConnection, asyncpg_dsn
from smsgw_shared.store.schema import message_events, message_parts, messages, outbox

CANCELABLE = ("scheduled", "queued")

# The accept statement: one round trip and one implicit transaction for the messages of
# many requests, their first history entry and their outbox jobs. What a request's
# messages share goes once per request (`g`); each recipient's own values go in arrays
# (`r`) that point at their request by its ordinal. Fewer, shorter arrays: asyncpg encodes
# 6 values a recipient instead of 23. The outbox rows carry no body: the API publishes the
# body it built, and the relay makes it again from the message's row if it has to.
_ACCEPT_SHARED_COLUMNS = (
    ("batch_id", "uuid"),
    ("api_key_id", "uuid"),
    ("sender", "text"),
    ("text", "text"),
    ("encoding", "text"),
    ("parts_count", "int2"),
    ("status", "text"),
    ("flash", "bool"),
    ("dlr", "bool"),
    ("validity", "int4"),
    ("reference", "text"),
    ("status_callback", "text"),
    ("send_at", "timestamptz"),
    ("expires_at", "timestamptz"),
    ("exchange", "text"),  # outbox: the jobs' exchange (NULL: no jobs, scheduled)
    ("available_at", "timestamptz"),  # outbox: when the relay may take the jobs
)
_ACCEPT_RECIPIENT_COLUMNS = (
    ("id", "uuid"),
    ("to_number", "text"),
    ("route", "text"),
    ("job_id", "uuid"),
    ("n", "int8"),  # the request's ordinal in `g`
    ("routing_key", "text"),  # outbox
)
_MESSAGE_SHARED = [c for c, _ in _ACCEPT_SHARED_COLUMNS[:-2]]
_MESSAGE_OWN = ["id", "to_number", "route", "job_id"]


def _unnest(columns: Sequence[tuple[str, str]], first: int) -> str:
    return ", ".join(f"${first + i}::{t}[]" for i, (_, t) in enumerate(columns))


_ACCEPT_SQL = f"""
WITH g AS (
    SELECT * FROM unnest({_unnest(_ACCEPT_SHARED_COLUMNS, 1)})
        WITH ORDINALITY AS g({", ".join(c for c, _ in _ACCEPT_SHARED_COLUMNS)}, n)
), r AS (
    SELECT * FROM unnest({_unnest(_ACCEPT_RECIPIENT_COLUMNS, len(_ACCEPT_SHARED_COLUMNS) + 1)})
        AS r({", ".join(c for c, _ in _ACCEPT_RECIPIENT_COLUMNS)})
), m AS (
    INSERT INTO messages ({", ".join(_MESSAGE_OWN + _MESSAGE_SHARED)})
    SELECT {", ".join([f"r.{c}" for c in _MESSAGE_OWN] + [f"g.{c}" for c in _MESSAGE_SHARED])}
    FROM r JOIN g USING (n)
    RETURNING id, status
), e AS (
    INSERT INTO message_events (message_id, state, source) SELECT id, status, 'api' FROM m
)
INSERT INTO outbox (message_id, exchange, routing_key, available_at)
SELECT r.id, g.exchange, r.routing_key, g.available_at
FROM r JOIN g USING (n) WHERE g.exchange IS NOT NULL
RETURNING id, message_id::text
"""  # noqa: S608 (column names are constants)


@dataclass
class NewMessages:
    """One request's messages for `accept`: the values they share, and each recipient's
    own (`add`). Queued messages (`exchange` set) get an outbox job each; scheduled ones
    (`exchange` None) get none: the scheduler makes their jobs when they are due."""

    batch_id: str | uuid.UUID
    api_key_id: str | uuid.UUID | None
    sender: str | None
    text: str
    encoding: str
    parts_count: int
    status: str
    flash: bool = False
    dlr: bool = True
    validity: int | None = None
    reference: str | None = None
    status_callback: str | None = None
    send_at: datetime | None = None
    expires_at: datetime | None = None
    exchange: str | None = None
    available_at: datetime | None = None
    ids: list[str | uuid.UUID] = field(default_factory=list)
    to_numbers: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    job_ids: list[str | uuid.UUID] = field(default_factory=list)
    routing_keys: list[str | None] = field(default_factory=list)

    def add(
        self,
        message_id: str | uuid.UUID,
        to: str,
        route: str,
        job_id: str | uuid.UUID,
        routing_key: str | None = None,
    ) -> None:
        """One recipient; `routing_key` is its job's (queued messages only)."""
        self.ids.append(message_id)
        self.to_numbers.append(to)
        self.routes.append(route)
        self.job_ids.append(job_id)
        self.routing_keys.append(routing_key)

    @property
    def jobs(self) -> int:
        """How many outbox jobs `accept` makes for these messages."""
        return len(self.ids) if self.exchange is not None else 0


_DELETE_OUTBOX_SQL = "DELETE FROM outbox WHERE id = ANY($1::int8[])"


@dataclass(frozen=True)
class OutboxRow:
    """A publish the store still owes the broker. A row without `body` is the send job of
    `message_id`: `message` is that message's stored row (None if it is gone)."""

    id: int
    exchange: str
    routing_key: str
    body: str | None
    message_id: uuid.UUID | None
    message: Mapping[str, Any] | None = None


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

    def direct_for_deletes(self) -> DirectConnection:
        """A connection of its own for `delete_outbox`, planned anew each time.

        PostgreSQL caches a generic plan of a prepared statement after five runs, costed
        for a 10-element array: while the outbox is small that plan is a sequential scan,
        kept when the outbox grows, and deleting 1,000 confirmed jobs then read every row
        of it and every dead row not vacuumed yet (PostgreSQL's largest cost in bench_api).
        Planned with the real array the delete is an index scan (`CUSTOM_PLANS`)."""
        return DirectConnection(asyncpg_dsn(self.engine.url), server_settings=CUSTOM_PLANS)

    async def accept(self, via: DirectConnection, groups: Sequence[NewMessages]) -> list[int]:
        """Insert the messages of these requests, their first history entry and their
        outbox jobs in one statement (atomic: all or nothing); returns the outbox ids, one
        a queued message, in the order of `groups` and of their recipients."""
        groups = [g for g in groups if g.ids]
        if not groups:
            return []
        shared = [[getattr(g, c) for g in groups] for c, _ in _ACCEPT_SHARED_COLUMNS]
        ordinals: list[int] = []
        for n, g in enumerate(groups, 1):
            ordinals += [n] * len(g.ids)
        own = [
            [i for g in groups for i in g.ids],
            [t for g in groups for t in g.to_numbers],
            [r for g in groups for r in g.routes],
            [j for g in groups for j in g.job_ids],
            ordinals,
            [k for g in groups for k in g.routing_keys],
        ]

        async def _insert(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return await conn.fetch(_ACCEPT_SQL, *shared, *own)  # type: ignore[no-any-return]

        by_message = {r["message_id"]: r["id"] for r in await via.run(_insert)}
        return [by_message[str(mid)] for g in groups if g.exchange is not None for mid in g.ids]

    async def delete_outbox(self, via: DirectConnection, ids: Sequence[int]) -> None:
        """Forget outbox rows whose publish the broker confirmed."""
        if ids:
            await via.run(lambda conn: conn.execute(_DELETE_OUTBOX_SQL, list(ids)))

    async def release_outbox(self, ids: Sequence[int], error: str, after: float = 0.0) -> None:
        """Make rows the hot path failed to publish due for the relay now, or `after`
        seconds from now (a publish in doubt: no relay of any API process should take them
        while it may still reach the broker)."""
        if ids:
            due = func.now() + func.make_interval(0, 0, 0, 0, 0, 0, float(after))
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(outbox)
                    .where(outbox.c.id.in_(list(ids)))
                    .values(available_at=due if after else func.now(), last_error=error[:500])
                )

    async def settle_outbox(self, done: Sequence[int], failed: Sequence[tuple[int, str]]) -> None:
        """The broker's late answers to publishes in doubt: forget the confirmed rows, make
        the failed ones due now."""
        if not done and not failed:
            return
        async with self.engine.begin() as conn:
            if done:
                await conn.execute(delete(outbox).where(outbox.c.id.in_(list(done))))
            if failed:
                await conn.execute(
                    update(outbox)
                    .where(outbox.c.id == bindparam("b_id"))
                    .values(available_at=func.now(), last_error=bindparam("b_error")),
                    [{"b_id": i, "b_error": e[:500]} for i, e in failed],
                )

    async def relay_batch(
        self, limit: int, publish: Any, hold: Callable[[str], float | None] | None = None
    ) -> tuple[int, list[str]]:
        """Lock due outbox rows (SKIP LOCKED: several relays may run), hand them to
        `publish(rows) -> list[str | None]` (each row's error, or None once confirmed),
        delete the confirmed ones and push the others back, later each time, with their
        error; a row whose error `hold` gives seconds for is pushed back that long instead.
        Returns how many were published and the errors of the others."""
        async with self.engine.begin() as conn:
            res = await conn.execute(
                select(outbox)
                .where(outbox.c.available_at <= func.now())
                .order_by(outbox.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            due = list(res)
            if not due:
                return 0, []
            bodiless = [r.message_id for r in due if r.body is None]
            stored: dict[uuid.UUID, Mapping[str, Any]] = {}
            if bodiless:
                found = await conn.execute(select(messages).where(messages.c.id.in_(bodiless)))
                stored = {m.id: dict(m._mapping) for m in found}
            rows = [
                OutboxRow(
                    r.id,
                    r.exchange,
                    r.routing_key,
                    r.body,
                    r.message_id,
                    stored.get(r.message_id) if r.body is None else None,
                )
                for r in due
            ]
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
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            func.coalesce(
                                bindparam("b_hold", type_=Float),
                                func.least(60, outbox.c.attempts + 1),
                            ),
                        ),
                    ),
                    [
                        {"b_id": i, "b_error": e, "b_hold": hold(e) if hold else None}
                        for i, e in failed
                    ],
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

    async def in_batch(self, batch_id: str | uuid.UUID) -> list[dict[str, Any]]:
        """The messages stored for a batch (what one request accepted), oldest id first."""
        async with self.engine.connect() as conn:
            res = await conn.execute(
                select(
                    messages.c.id,
                    messages.c.to_number,
                    messages.c.status,
                    messages.c.parts_count,
                    messages.c.encoding,
                    messages.c.route,
                )
                .where(messages.c.batch_id == batch_id)
                .order_by(messages.c.id)
            )
            return [dict(r._mapping) for r in res]

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
            # As it happened: the projection times a report no earlier than the submission
            # it reports on, so a receipt applied before a late `sent` still sorts after it.
            history = await conn.execute(
                select(message_events)
                .where(message_events.c.message_id == message_id)
                .order_by(message_events.c.occurred_at, message_events.c.id)
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
