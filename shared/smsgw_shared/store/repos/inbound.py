"""Incoming SMS: single messages, parts of long ones waiting for reassembly, queries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from smsgw_shared.store.repos.projection import lock_id
from smsgw_shared.store.repos.route_sql import routes_condition
from smsgw_shared.store.schema import inbound_messages, inbound_parts

GROUP_COLUMNS = ("route", "sender", "recipient", "ref_bits", "ref", "total")


@dataclass(frozen=True)
class PartGroup:
    """The parts that make one long SMS: same route, sender, recipient and reference."""

    route: str
    sender: str
    recipient: str | None
    ref_bits: int
    ref: int
    total: int

    def lock_key(self) -> tuple[str, str]:
        return (
            self.route,
            f"{self.sender}|{self.recipient}|{self.ref_bits}|{self.ref}|{self.total}",
        )

    def where(self) -> list[Any]:
        p = inbound_parts
        # The md5s are what the open-slot index holds (a number may be too long for a btree).
        rcpt = (
            [func.md5(p.c.recipient).is_(None)]
            if self.recipient is None
            else [
                func.md5(p.c.recipient) == func.md5(self.recipient),
                p.c.recipient == self.recipient,
            ]
        )
        return [
            p.c.route == self.route,
            func.md5(p.c.sender) == func.md5(self.sender),
            p.c.sender == self.sender,
            *rcpt,
            p.c.ref_bits == self.ref_bits,
            p.c.ref == self.ref,
            p.c.total == self.total,
        ]


@dataclass(frozen=True)
class InboundFilter:
    """Filters of `GET /v1/inbound`."""

    sender: str | None = None
    recipient: str | None = None
    route: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    # A route-limited key sees only these routes and patterns (`modem:*`); None: every one.
    visible_routes: tuple[str, ...] | None = None


class InboundRepository:
    """All SQL about incoming SMS."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @staticmethod
    async def insert_message(conn: AsyncConnection, row: dict[str, Any]) -> bool:
        """Store a received message; False when this id was stored before (a duplicate)."""
        res = await conn.execute(
            pg_insert(inbound_messages)
            .values(**row)
            .on_conflict_do_nothing(index_elements=[inbound_messages.c.id])
            .returning(inbound_messages.c.id)
        )
        return res.first() is not None

    @staticmethod
    async def lock_group(conn: AsyncConnection, group: PartGroup) -> None:
        """Serialise work on one long message (its last two parts may arrive at once)."""
        await conn.execute(select(func.pg_advisory_xact_lock(lock_id(group.lock_key()))))

    @staticmethod
    async def add_part(conn: AsyncConnection, row: dict[str, Any]) -> bool:
        """Store a part; False when the event or the open slot is taken (a duplicate)."""
        res = await conn.execute(
            pg_insert(inbound_parts)
            .values(**row)
            .on_conflict_do_nothing()
            .returning(inbound_parts.c.id)
        )
        return res.first() is not None

    @staticmethod
    async def seen_assembled(
        conn: AsyncConnection,
        group: PartGroup,
        seq: int,
        text: str,
        raw_hex: str | None,
        since: datetime,
    ) -> bool:
        """Whether this part (same slot, text and raw text) was already assembled since
        `since`."""
        p = inbound_parts
        res = await conn.execute(
            select(p.c.id)
            .where(
                *group.where(),
                p.c.seq == seq,
                p.c.text == text,
                p.c.raw_hex.is_not_distinct_from(raw_hex),
                p.c.message_id.is_not(None),
                p.c.received_at >= since,
            )
            .limit(1)
        )
        return res.first() is not None

    @staticmethod
    async def open_parts(conn: AsyncConnection, group: PartGroup) -> list[dict[str, Any]]:
        """The group's parts not yet assembled, by sequence number."""
        p = inbound_parts
        res = await conn.execute(
            select(p).where(*group.where(), p.c.message_id.is_(None)).order_by(p.c.seq)
        )
        return [dict(r._mapping) for r in res]

    @staticmethod
    async def close_parts(
        conn: AsyncConnection, part_ids: Sequence[int], message_id: uuid.UUID
    ) -> None:
        """Link assembled parts to their message (freeing the slot for a new message)."""
        await conn.execute(
            update(inbound_parts)
            .where(inbound_parts.c.id.in_(list(part_ids)))
            .values(message_id=message_id)
        )

    @staticmethod
    async def stale_groups(conn: AsyncConnection, before: datetime, limit: int) -> list[PartGroup]:
        """Groups whose first part arrived before `before` and are still incomplete."""
        p = inbound_parts
        cols = [p.c[c] for c in GROUP_COLUMNS]
        res = await conn.execute(
            select(*cols)
            .where(p.c.message_id.is_(None))
            .group_by(*cols)
            .having(func.min(p.c.received_at) < before)
            .limit(limit)
        )
        return [PartGroup(*r) for r in res]

    async def open_groups(self) -> int:
        """Long messages waiting for parts."""
        p = inbound_parts
        cols = [p.c[c] for c in GROUP_COLUMNS]
        sub = select(*cols).where(p.c.message_id.is_(None)).group_by(*cols).subquery()
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(sub))).scalar_one())

    async def purge_assembled(self, before: datetime) -> int:
        """Forget assembled parts received before `before` (kept only to spot duplicates)."""
        async with self.engine.begin() as conn:
            res = await conn.execute(
                delete(inbound_parts).where(
                    inbound_parts.c.message_id.is_not(None), inbound_parts.c.received_at < before
                )
            )
            return int(res.rowcount or 0)

    async def get(self, message_id: uuid.UUID) -> dict[str, Any] | None:
        """One received message."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(inbound_messages).where(inbound_messages.c.id == message_id)
                )
            ).first()
        return dict(row._mapping) if row is not None else None

    async def search(
        self, flt: InboundFilter, limit: int, cursor: tuple[datetime, uuid.UUID] | None
    ) -> list[dict[str, Any]]:
        """Newest first; `cursor` is the (created_at, id) of the previous page's last row."""
        m = inbound_messages
        conds = []
        if flt.sender:
            conds.append(m.c.sender == flt.sender)
        if flt.recipient:
            conds.append(m.c.recipient == flt.recipient)
        if flt.route:
            conds.append(m.c.route == flt.route)
        if flt.visible_routes is not None:
            conds.append(routes_condition(m.c.route, flt.visible_routes))
        if flt.since:
            conds.append(m.c.created_at >= flt.since)
        if flt.until:
            conds.append(m.c.created_at < flt.until)
        if cursor:
            ts, mid = cursor
            conds.append(or_(m.c.created_at < ts, and_(m.c.created_at == ts, m.c.id < mid)))
        stmt = select(m).where(*conds).order_by(m.c.created_at.desc(), m.c.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(stmt)]
