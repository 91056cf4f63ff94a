"""Client-visible events: stable ids, the JSON envelope, who may see them, who wants them.

Every event is written once to `event_log` (streams resume from it) and turned into webhook
deliveries in the same transaction. The body is the Standard Webhooks envelope
`{"id", "type", "timestamp", "data"}` (docs/webhooks.md).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw_shared.routing import route_matches
from smsgw_shared.store.repos.event_log import EventLogRepository
from smsgw_shared.store.repos.webhooks import NewDelivery, Subscription, WebhookRepository

# Stable ids: the same source event always yields the same id (webhook-id, SSE id source).
_NAMESPACE = uuid.UUID("6f1c2c1e-5b7e-4d0e-9a51-3c9a1f0e7d21")

MESSAGE_STATUS = "message.status"
MESSAGE_RECEIVED = "message.received"
ROUTE_STATE = "route.state"
EVENT_TYPES = (MESSAGE_STATUS, MESSAGE_RECEIVED, ROUTE_STATE)


_NAMESPACE_BYTES = _NAMESPACE.bytes


def stable_id(*parts: object) -> str:
    """`evt_<32 hex>` derived from the parts: the hex of `uuid.uuid5(_NAMESPACE, name)`,
    computed on the digest's bytes (no `UUID` object: twice as fast, the same id)."""
    name = "|".join([p if isinstance(p, str) else str(p) for p in parts])
    sha1 = hashlib.sha1(_NAMESPACE_BYTES + name.encode(), usedforsecurity=False)  # uuid5's
    digest = bytearray(sha1.digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return "evt_" + digest.hex()


def iso(ts: datetime | None) -> str | None:
    return ts.isoformat().replace("+00:00", "Z") if ts else None


@dataclass(frozen=True)
class LogEvent:
    """One client-visible event, before it is stored."""

    event_id: str
    type: str
    data: dict[str, Any]
    created_at: datetime
    route: str | None = None
    message_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    callback_url: str | None = None  # the message's own status_callback

    @property
    def subtype(self) -> str | None:
        """`message.status.delivered` for a status event (subscriptions may name it)."""
        status = self.data.get("status")
        return f"{self.type}.{status}" if self.type == MESSAGE_STATUS and status else None

    def envelope(self) -> dict[str, Any]:
        """The Standard Webhooks envelope (`data` holds JSON types only)."""
        return {
            "id": self.event_id,
            "type": self.type,
            "timestamp": iso(self.created_at),
            "data": self.data,
        }

    def body(self) -> str:
        """The webhook body (also the SSE/WebSocket frame data)."""
        return json.dumps(self.envelope(), separators=(",", ":"), ensure_ascii=False)

    def row(self) -> dict[str, Any]:
        """The `event_log` row."""
        return {
            "event_id": self.event_id,
            "type": self.type,
            "route": self.route,
            "message_id": self.message_id,
            "api_key_id": self.api_key_id,
            "payload": self.envelope(),
            "created_at": self.created_at,
        }


def visible_to_owner(sub: Subscription, ev: LogEvent) -> bool:
    """Admin-owned (or ownerless) subscriptions see everything; other keys see their own
    messages' status and received messages (the same rule as the live streams)."""
    if sub.owner_id is None or sub.owner_admin:
        return True
    if ev.type == MESSAGE_STATUS:
        return ev.api_key_id == sub.owner_id
    return ev.type == MESSAGE_RECEIVED


def wants(sub: Subscription, ev: LogEvent) -> bool:
    """Whether the subscription asked for this event (type, route and number filters)."""
    if not ({"*", ev.type, ev.subtype} & set(sub.events)):
        return False
    if sub.routes and not any(route_matches(p, ev.route) for p in sub.routes):
        return False
    if sub.numbers and ev.data.get("to") not in sub.numbers:
        return False
    return visible_to_owner(sub, ev)


def deliveries_for(events: Iterable[LogEvent], subs: Sequence[Subscription]) -> list[NewDelivery]:
    """The webhook deliveries to enqueue for these events."""
    out: list[NewDelivery] = []
    for ev in events:
        body: str | None = None
        for sub in subs:
            if wants(sub, ev):
                body = body or ev.body()
                out.append(NewDelivery(sub.id, sub.url, ev.event_id, ev.type, body))
        if ev.callback_url:
            body = body or ev.body()
            out.append(NewDelivery(None, ev.callback_url, ev.event_id, ev.type, body))
    return out


async def record_events(conn: AsyncConnection, events: Sequence[LogEvent]) -> int:
    """Log events and enqueue their webhooks in the caller's transaction; an event logged
    before (same id) is skipped. Returns the number of deliveries enqueued."""
    if not events:
        return 0
    new_ids = await EventLogRepository.append(conn, [e.row() for e in events])
    fresh = [e for e in events if e.event_id in new_ids]
    if not fresh:
        return 0
    subs = await WebhookRepository.active_subscriptions(conn)
    return await WebhookRepository.enqueue(conn, deliveries_for(fresh, subs))
