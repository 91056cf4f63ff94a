"""Client-visible events (`message.status`, `message.received`) for the compat streams.

The compat adapters only need `subscribe(key, types)`: a live subscription, from the moment
of subscription on (the seed streams had no resume either), through the process's shared
tail of the event log (`services.event_hub`) with the same visibility rule, stream limits
and revocation as the native streams.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from smsgw_api.deps import AppState, visible_routes
from smsgw_api.services.event_hub import Subscription, hub_for
from smsgw_shared.store.repos.event_log import StreamFilter
from smsgw_shared.store.repos.keys import ApiKey


@dataclass(frozen=True)
class FeedEvent:
    """One stored event: its type, the message it is about (if any) and its payload."""

    type: str
    message_id: uuid.UUID | None
    payload: dict[str, Any] = field(default_factory=dict)


class EventFeed:
    """Statuses of the key's own messages (all for admin keys), and received SMS of the
    routes the key may see."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    def open(self, key: ApiKey, types: Sequence[str]) -> Subscription:
        """A place in the shared tail; raises `TooManyStreams` over the stream limits
        (call it before the response starts to answer that properly)."""
        flt = StreamFilter(
            types=tuple(types),
            viewer_id=key.id,
            admin=key.is_admin,
            visible_routes=visible_routes(self.state, key),
        )
        return hub_for(self.state).subscribe(key, flt)

    async def subscribe(
        self, key: ApiKey, types: Sequence[str], sub: Subscription | None = None
    ) -> AsyncIterator[FeedEvent]:
        """Events from now on, in order; the payload is the envelope's `data`."""
        sub = sub or self.open(key, types)
        async for batch in sub.follow():
            for row in batch:
                if row.payload is None:
                    continue
                data = row.payload.get("data")
                data = data if isinstance(data, dict) else {}
                yield FeedEvent(row.type, _uuid(data.get("message_id")), data)


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def feed_for(state: AppState) -> EventFeed:
    """The compat streams' feed."""
    return EventFeed(state)
