"""Webhook deliveries and their attempts: enqueued by the projection, claimed and
recorded by the dispatcher, listed and redelivered through the API (`WebhookRepository`,
in `webhooks`, is the whole of it)."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Uuid,
    and_,
    any_,
    bindparam,
    cast,
    func,
    insert,
    literal_column,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from smsgw_shared.ids import uuid7_strings
from smsgw_shared.store.direct import driver_of
from smsgw_shared.store.schema import (
    api_keys,
    event_log,
    messages,
    webhook_attempts,
    webhook_deliveries,
    webhooks,
)

SECRET_PREFIX = "whsec_"

# The host of a URL (bracketed for IPv6), without userinfo or port: the same pattern in
# PostgreSQL (ARE) and Python, so the claim and the dispatcher count a host's deliveries
# alike.
HOST_PATTERN = r"^[^:/?#]*://(?:[^/?#]*@)?(\[[^/?#]*\]|[^:/?#]*)"
_HOST_RE = re.compile(HOST_PATTERN)
# The message id in a message.status body (compact JSON: `"data":{"message_id":"…"`), where
# a status callback finds its message (a strict UUID: the cast never fails).
MESSAGE_ID_PATTERN = (
    r'"message_id":"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"'
)

ENQUEUE = """
INSERT INTO webhook_deliveries (id, webhook_id, url, event_id, event_type, payload, status)
SELECT id, webhook_id, url, event_id, event_type, payload, 'pending'
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[])
    AS d(id, webhook_id, url, event_id, event_type, payload)
ON CONFLICT DO NOTHING
"""


def host_key(url: str) -> str:
    """The host whose deliveries share `webhooks.concurrency_per_host` (lower case)."""
    m = _HOST_RE.match(url)
    return m.group(1).lower() if m else ""


def key_callback_secret(secret_hash: str) -> str | None:
    """The Standard Webhooks secret that signs the status callbacks of an API key's
    messages: its HMAC key is SHA-256 of the key's secret (the stored `secret_hash`, hex),
    which the client can compute from the key it holds (docs/webhooks.md, "Verifying a
    status callback"). None for a hash that is not 32 bytes of hex."""
    try:
        digest = bytes.fromhex(secret_hash)
    except ValueError:
        return None
    if len(digest) != 32:
        return None
    return SECRET_PREFIX + base64.b64encode(digest).decode()


@dataclass(frozen=True)
class NewDelivery:
    """A delivery to enqueue (webhook_id None: a message's own status_callback)."""

    webhook_id: uuid.UUID | None
    url: str
    event_id: str
    event_type: str
    payload: str


@dataclass(frozen=True)
class ClaimedDelivery:
    """A due delivery this process now owns until its lease runs out."""

    id: uuid.UUID
    webhook_id: uuid.UUID | None
    url: str
    event_id: str
    event_type: str
    payload: str
    attempts: int
    secrets: tuple[str, ...]  # a status callback: its key's (`key_callback_secret`), if any


@dataclass(frozen=True)
class AttemptResult:
    """The outcome of one HTTP attempt, to record."""

    delivery_id: uuid.UUID
    status: str  # pending (retry later), succeeded, dead
    status_code: int | None
    error: str | None
    duration_ms: int
    attempted_at: datetime
    next_attempt_at: datetime | None = None


ANY_DUE = (
    "SELECT EXISTS (SELECT 1 FROM webhook_deliveries"
    " WHERE status = 'pending' AND next_attempt_at <= now())"
)


class DeliveryStore:
    """The SQL of webhook deliveries and attempts."""

    engine: AsyncEngine

    # -- deliveries ---------------------------------------------------------------------
    @staticmethod
    async def enqueue(conn: AsyncConnection, items: Sequence[NewDelivery]) -> int:
        """Add deliveries (a delivery already enqueued for this event is kept as is): one
        statement over arrays, on the asyncpg connection (in the caller's transaction)."""
        if not items:
            return 0
        pg = await driver_of(conn)
        await pg.execute(
            ENQUEUE,
            [uuid.UUID(i) for i in uuid7_strings(len(items))],
            [d.webhook_id for d in items],
            [d.url for d in items],
            [d.event_id for d in items],
            [d.event_type for d in items],
            [d.payload for d in items],
        )
        return len(items)

    async def any_due(self) -> bool:
        """Whether any delivery is due: the first entry of `ix_deliveries_due`, a fraction
        of a claim's cost. The dispatcher polls several times a second and most polls find
        nothing (a gateway without webhooks: every one)."""
        async with self.engine.connect() as conn:
            pg = await driver_of(conn)
            return bool(await pg.fetchval(ANY_DUE))

    async def claim(
        self,
        limit: int,
        room: Mapping[str, int],
        default_room: int,
        lease: float,
        previous_secret_ttl: float,
        host_room: Mapping[str, int] | None = None,
        default_host_room: int | None = None,
    ) -> list[ClaimedDelivery]:
        """Take due deliveries, oldest first (SKIP LOCKED: several dispatchers may run), at
        most `room[url]` (else `default_room`) per URL and none for URLs without room, pushing
        their next attempt `lease` seconds ahead so a crashed dispatcher's work comes back.
        With `default_host_room`, also at most `host_room[host]` (else that) per host
        (`host_key`) in all, and none for hosts without room.

        Claimed per URL, so a dead endpoint's backlog is never walked through for the others:
        a skip scan over `ix_deliveries_url_due` lists the URLs with pending deliveries (the
        smallest, then the next one above it, ...: one index probe per URL), URLs without
        room are dropped, and for each remaining URL a LATERAL sub-select takes its oldest due
        rows (at most its room) from the same index."""
        if not await self.any_due():
            return []
        d, w = webhook_deliveries, webhooks
        # A literal, not a bound parameter: a generic plan of the prepared statement could
        # not use the partial index otherwise.
        pending = d.c.status == literal_column("'pending'")
        urls = select(func.min(d.c.url).label("url")).where(pending).cte("urls", recursive=True)
        urls = urls.union_all(
            select(
                select(func.min(d.c.url)).where(pending, d.c.url > urls.c.url).scalar_subquery()
            ).where(urls.c.url.is_not(None))
        )
        # Room per URL as a JSON object (one binary search per URL, however many endpoints
        # the dispatcher knows); URLs at the default are left out.
        own = {u: n for u, n in room.items() if n != default_room}
        n: ColumnElement[Any] = func.coalesce(
            bindparam(None, own, type_=JSONB)[urls.c.url].astext.cast(Integer), default_room
        )
        n = func.least(n, limit)
        conds = [urls.c.url.is_not(None), n > 0]
        if default_host_room is not None:
            # A host's URLs each get at most the host's room (a full host: none, so its
            # many URLs never fill the claim); the host's total is cut to its room below.
            hosts = {h: k for h, k in (host_room or {}).items() if k != default_host_room}
            host = func.lower(func.substring(urls.c.url, bindparam(None, HOST_PATTERN)))
            hn = func.coalesce(
                bindparam(None, hosts, type_=JSONB)[host].astext.cast(Integer), default_host_room
            )
            n = func.least(n, hn)
            conds.append(hn > 0)
        todo = select(urls.c.url, n.label("n")).where(*conds).cte("todo")
        # `url = todo.url AND next_attempt_at <= now()`, written as a range of (url,
        # next_attempt_at) that only ix_deliveries_url_due serves: given `url = ...` the
        # planner may rather walk ix_deliveries_due (every URL's due rows in time order)
        # filtering on url, which is the walk through a dead endpoint's backlog this avoids.
        due = (
            select(d)
            .where(
                pending,
                d.c.url >= todo.c.url,
                tuple_(d.c.url, d.c.next_attempt_at) <= tuple_(todo.c.url, func.now()),
            )
            .order_by(d.c.url, d.c.next_attempt_at)
            .limit(todo.c.n)
            .with_for_update(skip_locked=True)
            .lateral("due")
        )
        # A status callback (no subscription) is signed by the key that sent the message:
        # its event's row in event_log names the key (event_id is unique there); once
        # retention has deleted that row, the message does (its id is in the payload).
        ev, msg, key = event_log, messages, api_keys
        callback = due.c.webhook_id.is_(None)
        message_id = cast(func.substring(due.c.payload, bindparam(None, MESSAGE_ID_PATTERN)), Uuid)
        stmt = (
            select(due, w.c.secrets, w.c.secrets_rotated_at, key.c.secret_hash)
            .select_from(
                todo.join(due, true())
                .outerjoin(w, w.c.id == due.c.webhook_id)
                .outerjoin(ev, and_(callback, ev.c.event_id == due.c.event_id))
                .outerjoin(msg, and_(callback, ev.c.id.is_(None), msg.c.id == message_id))
                .outerjoin(key, key.c.id == func.coalesce(ev.c.api_key_id, msg.c.api_key_id))
            )
            .limit(limit)
        )
        async with self.engine.begin() as conn:
            left = dict(room)
            host_left = dict(host_room or {})
            rows = []
            for r in await conn.execute(stmt):
                n_left = left.get(r.url, default_room)
                if default_host_room is not None:
                    h = host_key(r.url)
                    h_left = host_left.get(h, default_host_room)
                    if h_left <= 0:
                        continue  # not leased: due again for the next claim
                    if n_left > 0:
                        host_left[h] = h_left - 1
                if n_left > 0:
                    rows.append(r)
                    left[r.url] = n_left - 1
            if not rows:
                return []
            rows.sort(key=lambda r: r.next_attempt_at)  # the query yields them URL by URL
            now = (await conn.execute(select(func.now()))).scalar_one()
            await conn.execute(
                update(d)
                .where(d.c.id == any_(bindparam(None, [r.id for r in rows], type_=ARRAY(Uuid))))
                .values(next_attempt_at=now + timedelta(seconds=lease))
            )
        out = []
        for r in rows:
            keys: tuple[str, ...] = tuple(r.secrets or ())
            if r.webhook_id is None and r.secret_hash:
                signing = key_callback_secret(r.secret_hash)
                keys = (signing,) if signing else ()
            if keys[1:] and (
                r.secrets_rotated_at is None
                or r.secrets_rotated_at + timedelta(seconds=previous_secret_ttl) < now
            ):
                keys = keys[:1]
            out.append(
                ClaimedDelivery(
                    r.id, r.webhook_id, r.url, r.event_id, r.event_type, r.payload, r.attempts, keys
                )
            )
        return out

    async def record(self, results: Sequence[AttemptResult]) -> None:
        """Store attempts and the deliveries' new state, in one transaction."""
        if not results:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(webhook_attempts),
                [
                    {
                        "delivery_id": r.delivery_id,
                        "status_code": r.status_code,
                        "error": r.error,
                        "duration_ms": r.duration_ms,
                        "attempted_at": r.attempted_at,
                    }
                    for r in results
                ],
            )
            d = webhook_deliveries
            await conn.execute(
                update(d)
                .where(d.c.id == bindparam("b_id"))
                .values(
                    status=bindparam("b_status"),
                    attempts=d.c.attempts + 1,
                    last_status_code=bindparam("b_code"),
                    last_error=bindparam("b_error"),
                    next_attempt_at=func.coalesce(
                        bindparam("b_next", type_=d.c.next_attempt_at.type), d.c.next_attempt_at
                    ),
                    updated_at=func.now(),
                ),
                [
                    {
                        "b_id": r.delivery_id,
                        "b_status": r.status,
                        "b_code": r.status_code,
                        "b_error": r.error,
                        "b_next": r.next_attempt_at,
                    }
                    for r in results
                ],
            )

    async def deliveries(
        self,
        webhook_id: uuid.UUID,
        limit: int,
        cursor: tuple[datetime, uuid.UUID] | None = None,
        status: str | None = None,
        delivery_id: uuid.UUID | None = None,
    ) -> list[dict[str, Any]]:
        """A subscription's deliveries, newest first, each with its attempts."""
        d = webhook_deliveries
        conds = [d.c.webhook_id == webhook_id]
        if delivery_id:
            conds.append(d.c.id == delivery_id)
        if status:
            conds.append(d.c.status == status)
        if cursor:
            ts, did = cursor
            conds.append(or_(d.c.created_at < ts, and_(d.c.created_at == ts, d.c.id < did)))
        async with self.engine.connect() as conn:
            stmt = select(d).where(*conds).order_by(d.c.created_at.desc(), d.c.id.desc())
            rows = [dict(r._mapping) for r in await conn.execute(stmt.limit(limit))]
            await self._attach_attempts(conn, rows)
        return rows

    async def delivery(
        self, webhook_id: uuid.UUID, delivery_id: uuid.UUID
    ) -> dict[str, Any] | None:
        """One delivery of a subscription, with its attempts."""
        rows = await self.deliveries(webhook_id, 1, delivery_id=delivery_id)
        return rows[0] if rows else None

    @staticmethod
    async def _attach_attempts(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        a = webhook_attempts
        by_id: dict[uuid.UUID, list[dict[str, Any]]] = {r["id"]: [] for r in rows}
        res = await conn.execute(select(a).where(a.c.delivery_id.in_(list(by_id))).order_by(a.c.id))
        for att in res:
            by_id[att.delivery_id].append(dict(att._mapping))
        for r in rows:
            r["attempts_detail"] = by_id[r["id"]]

    async def redeliver(self, webhook_id: uuid.UUID, delivery_id: uuid.UUID) -> bool:
        """Make a delivery due now (again, if it succeeded or was dead-lettered)."""
        d = webhook_deliveries
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(d)
                .where(d.c.id == delivery_id, d.c.webhook_id == webhook_id)
                .values(status="pending", next_attempt_at=func.now(), updated_at=func.now())
                .returning(d.c.id)
            )
            return res.first() is not None

    async def backlog(self) -> int:
        """Deliveries due now and not yet made."""
        d = webhook_deliveries
        stmt = select(func.count()).where(
            d.c.status == "pending", d.c.next_attempt_at <= func.now()
        )
        async with self.engine.connect() as conn:
            return int((await conn.execute(stmt)).scalar_one())
