"""The log of client-visible events: written by the inbound service, read by the streams."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic_core import to_json
from sqlalchemy import ColumnElement, and_, case, false, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from smsgw_shared.routing import route_matches
from smsgw_shared.store.direct import driver_of
from smsgw_shared.store.repos.route_sql import routes_condition
from smsgw_shared.store.schema import event_log

APPEND = """
INSERT INTO event_log (event_id, type, route, message_id, api_key_id, payload, created_at)
SELECT event_id, type, route, message_id, api_key_id, payload::jsonb,
    coalesce(created_at, now())
FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::uuid[], $6::text[],
    $7::timestamptz[]) WITH ORDINALITY
    AS e(event_id, type, route, message_id, api_key_id, payload, created_at, n)
ORDER BY n
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""


@dataclass(frozen=True)
class StreamFilter:
    """What a stream client asked for and may see.

    `types` holds event types (`message.status`) or status subtypes
    (`message.status.delivered`); `routes` exact routes or pools (`modem:*`). A viewer that
    is not admin sees its own messages' status events and received messages only.
    """

    types: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()
    viewer_id: uuid.UUID | None = None
    admin: bool = True
    # A route-limited viewer sees received messages of these routes/patterns only.
    visible_routes: tuple[str, ...] | None = None

    def matches(self, ev: LoggedEvent) -> bool:
        """The filter in Python (`filter_condition` is the same rule in SQL): what the
        shared tail of the event log hands each live subscriber."""
        if self.types and not any(_type_matches(t, ev) for t in self.types):
            return False
        if self.routes and not any(route_matches(r, ev.route) for r in self.routes):
            return False
        if self.admin:
            return True
        if ev.type == "message.status":
            return self.viewer_id is not None and ev.api_key_id == self.viewer_id
        if ev.type != "message.received":
            return False
        return self.visible_routes is None or any(
            route_matches(r, ev.route) for r in self.visible_routes
        )


@dataclass(frozen=True)
class LoggedEvent:
    """One stored event; `payload` is None when the stream's filter excludes it."""

    id: int
    event_id: str
    type: str
    payload: dict[str, Any] | None
    route: str | None = None
    api_key_id: uuid.UUID | None = None


def _type_matches(t: str, ev: LoggedEvent) -> bool:
    base, _, sub = t.partition(".status.")
    if sub and base == "message":
        data = (ev.payload or {}).get("data")
        return ev.type == "message.status" and isinstance(data, dict) and data.get("status") == sub
    return ev.type == t


def _type_cond(t: str) -> ColumnElement[bool]:
    base, _, sub = t.partition(".status.")
    if sub and base == "message":
        return and_(
            event_log.c.type == "message.status",
            event_log.c.payload["data"]["status"].astext == sub,
        )
    return event_log.c.type == t


def filter_condition(flt: StreamFilter) -> ColumnElement[bool]:
    """The SQL condition of a stream filter."""
    conds: list[ColumnElement[bool]] = []
    if flt.types:
        conds.append(or_(*[_type_cond(t) for t in flt.types]))
    if flt.routes:
        conds.append(routes_condition(event_log.c.route, flt.routes))
    if not flt.admin:
        own = (
            and_(event_log.c.type == "message.status", event_log.c.api_key_id == flt.viewer_id)
            if flt.viewer_id is not None
            else false()
        )
        received = event_log.c.type == "message.received"
        if flt.visible_routes is not None:
            received = and_(received, routes_condition(event_log.c.route, flt.visible_routes))
        conds.append(or_(own, received))
    return and_(true(), *conds)


class EventLogRepository:
    """All SQL about `event_log`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @staticmethod
    async def append(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> set[str]:
        """Insert events (an event id already logged is skipped); returns the new ids."""
        if not rows:
            return set()
        # One statement over arrays on the asyncpg connection (in the caller's transaction),
        # in the rows' order: stream readers see events in id order.
        pg = await driver_of(conn)
        found = await pg.fetch(
            APPEND,
            [r["event_id"] for r in rows],
            [r["type"] for r in rows],
            [r.get("route") for r in rows],
            [r.get("message_id") for r in rows],
            [r.get("api_key_id") for r in rows],
            [to_json(r["payload"]).decode() for r in rows],
            [r.get("created_at") for r in rows],
        )
        return {r[0] for r in found}

    async def read_after(
        self, after: int, flt: StreamFilter, limit: int = 500, until: int | None = None
    ) -> list[LoggedEvent]:
        """Every event with `after` < id (<= `until`) in id order (so the caller sees
        gaps), with the payload only for those the filter lets through."""
        stmt = (
            select(
                event_log.c.id,
                event_log.c.event_id,
                event_log.c.type,
                case((filter_condition(flt), event_log.c.payload), else_=None).label("payload"),
            )
            .where(event_log.c.id > after)
            .order_by(event_log.c.id)
            .limit(limit)
        )
        if until is not None:
            stmt = stmt.where(event_log.c.id <= until)
        async with self.engine.connect() as conn:
            return [
                LoggedEvent(r.id, r.event_id, r.type, r.payload) for r in await conn.execute(stmt)
            ]

    async def read_all_after(self, after: int, limit: int = 1000) -> list[LoggedEvent]:
        """Every event with id > `after` in id order, whole (the shared tail filters each
        subscriber's share in Python with `StreamFilter.matches`)."""
        stmt = (
            select(
                event_log.c.id,
                event_log.c.event_id,
                event_log.c.type,
                event_log.c.payload,
                event_log.c.route,
                event_log.c.api_key_id,
            )
            .where(event_log.c.id > after)
            .order_by(event_log.c.id)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [
                LoggedEvent(r.id, r.event_id, r.type, r.payload, r.route, r.api_key_id)
                for r in await conn.execute(stmt)
            ]

    async def last_id(self) -> int:
        """The highest event id (0 when the log is empty)."""
        async with self.engine.connect() as conn:
            return int(
                (
                    await conn.execute(select(func.coalesce(func.max(event_log.c.id), 0)))
                ).scalar_one()
            )

    async def id_before(self, ts: datetime) -> int:
        """The id to resume after so that events created at or after `ts` are replayed."""
        async with self.engine.connect() as conn:
            first = (
                await conn.execute(
                    select(func.min(event_log.c.id)).where(event_log.c.created_at >= ts)
                )
            ).scalar_one_or_none()
        if first is None:
            return await self.last_id()
        return int(first) - 1
