"""Heartbeats → `route_state`; a change of a route's state → a `route.state` event."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from smsgw_inbound import metrics
from smsgw_inbound.events import ROUTE_STATE, LogEvent, iso, record_events, stable_id
from smsgw_shared.amqp import DeliveryInfo
from smsgw_shared.messages import Heartbeat, utcnow
from smsgw_shared.store.repos.route_state import RouteStateRepository


def route_event(beat: Heartbeat, previous: str | None, now: datetime) -> LogEvent:
    """The `route.state` event of a state change."""
    return LogEvent(
        event_id=stable_id(ROUTE_STATE, beat.route, beat.state, beat.sent_at.isoformat()),
        type=ROUTE_STATE,
        data={
            "route": beat.route,
            "kind": beat.kind,
            "state": beat.state,
            "previous": previous,
            "connected": beat.connected,
            "signal_dbm": beat.signal_dbm,
            "operator": beat.operator,
            "queue_depth": beat.queue_depth,
            "at": iso(beat.sent_at),
        },
        created_at=now,
        route=beat.route,
    )


class HeartbeatHandler:
    """Consumer handler of `heartbeat_queue`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def handle(self, beat: Heartbeat, info: DeliveryInfo) -> None:
        """Upsert the route's state; log an event when it changed."""
        row = {
            "route": beat.route,
            "kind": beat.kind,
            "state": beat.state,
            "connected": beat.connected,
            "signal_dbm": beat.signal_dbm,
            "operator": beat.operator,
            "queue_depth": beat.queue_depth,
            "in_flight": beat.in_flight,
            "details": beat.details,
            "last_seen": beat.sent_at,
        }
        async with self.engine.begin() as conn:
            stored, previous = await RouteStateRepository.upsert(conn, row)
            changed = stored and previous != beat.state
            if changed:
                await record_events(conn, [route_event(beat, previous, utcnow())])
        metrics.HEARTBEATS.labels(str(changed).lower()).inc()
