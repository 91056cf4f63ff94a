"""Client-visible events (`message.status`, `message.received`) for the compat streams.

The compat adapters only need `subscribe(key, types)`. A shared live stream (the one behind
`GET /v1/events`) is used when the app puts it in `state.extras["event_feed"]`; otherwise
`PollingFeed` tails the event log the inbound service writes (`EventLogRepository`, with
the same visibility rule as the native streams), from the moment of subscription on — the
seed streams had no resume either.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from smsgw_api.deps import AppState
from smsgw_shared.store.repos.event_log import EventLogRepository, StreamFilter
from smsgw_shared.store.repos.keys import ApiKey

POLL_INTERVAL = 0.5  # seconds between event_log reads
BATCH = 500


@dataclass(frozen=True)
class FeedEvent:
    """One stored event: its type, the message it is about (if any) and its payload."""

    type: str
    message_id: uuid.UUID | None
    payload: dict[str, Any] = field(default_factory=dict)


class EventFeed(Protocol):
    """A live subscription to the events `key` may read, of the given types."""

    def subscribe(self, key: ApiKey, types: Sequence[str]) -> AsyncIterator[FeedEvent]: ...


class PollingFeed:
    """Tails `event_log` by id: statuses of the key's own messages (all for admin keys),
    and received SMS for any key that may read."""

    def __init__(self, engine: AsyncEngine, interval: float = POLL_INTERVAL) -> None:
        self.log = EventLogRepository(engine)
        self.interval = interval

    async def subscribe(self, key: ApiKey, types: Sequence[str]) -> AsyncIterator[FeedEvent]:
        """Events from now on, in log order; the payload is the envelope's `data`."""
        last = await self.log.last_id()
        flt = StreamFilter(types=tuple(types), viewer_id=key.id, admin="admin" in key.scopes)
        while True:
            rows = await self.log.read_after(last, flt, BATCH)
            for row in rows:
                last = row.id
                if row.payload is None:
                    continue
                data = row.payload.get("data")
                data = data if isinstance(data, dict) else {}
                yield FeedEvent(row.type, _uuid(data.get("message_id")), data)
            if len(rows) < BATCH:
                await asyncio.sleep(self.interval)


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def feed_for(state: AppState) -> EventFeed:
    """The shared stream if the app provides one, else a poller on the store."""
    feed = state.extras.get("event_feed")
    if feed is None:
        feed = PollingFeed(state.engine)
        state.extras["event_feed"] = feed
    return feed  # type: ignore[no-any-return]
