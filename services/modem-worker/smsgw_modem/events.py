"""Publishing what a modem reports: status events, incoming parts, heartbeats, RPC replies.

The only module of the worker's logic that builds `Outgoing` messages; the shared
publisher owns confirms and the broker.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from smsgw_shared.amqp import Outgoing, Publisher, PublishError, Topology
from smsgw_shared.messages import Heartbeat, InboundPart, ModemReply, StatusEvent

log = logging.getLogger(__name__)


class EventSink:
    """Confirmed publishing of the worker's events to `{ns}.events` (and replies)."""

    def __init__(self, publisher: Publisher, topology: Topology) -> None:
        self._publisher = publisher
        self._topology = topology

    async def status(self, event: StatusEvent) -> None:
        """Publish a status event; returns once the broker confirmed it."""
        await self._publisher.publish(
            Outgoing(
                self._topology.events_exchange,
                self._topology.status_key(event.state),
                event,
                message_id=event.event_id,
            )
        )

    async def inbound(self, part: InboundPart) -> None:
        """Publish one incoming SMS part; returns once confirmed."""
        await self._publisher.publish(
            Outgoing(
                self._topology.events_exchange,
                self._topology.inbound_key(part.route),
                part,
                message_id=part.event_id,
            )
        )

    async def heartbeat(self, beat: Heartbeat) -> None:
        """Publish a heartbeat; a heartbeat nobody takes is not an error."""
        try:
            await self._publisher.publish(
                Outgoing(
                    self._topology.events_exchange,
                    self._topology.heartbeat_key(beat.route),
                    beat,
                    persistent=False,
                    expiration=max(beat.interval * 4, 10.0),
                )
            )
        except PublishError as exc:
            log.debug("heartbeat not published: %s", exc)

    async def reply(self, reply_to: str, reply: ModemReply) -> None:
        """Answer an RPC request on its reply queue; a caller that left is only logged."""
        try:
            await self._publisher.publish(
                Outgoing("", reply_to, reply, correlation_id=reply.request_id, persistent=False)
            )
        except PublishError as exc:
            log.warning(
                "RPC reply not delivered", extra={"request_id": reply.request_id, "error": str(exc)}
            )


class CancelRegistry:
    """Message ids canceled by the API (CancelNotice), remembered for `ttl` seconds."""

    def __init__(self, ttl: float = 86400.0, max_size: int = 100_000) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._ids: OrderedDict[str, float] = OrderedDict()

    def add(self, message_id: str) -> None:
        """Remember a canceled message."""
        self._ids[message_id] = time.monotonic()
        self._ids.move_to_end(message_id)
        while len(self._ids) > self.max_size:
            self._ids.popitem(last=False)

    def __contains__(self, message_id: object) -> bool:
        seen = self._ids.get(message_id) if isinstance(message_id, str) else None
        if seen is None:
            return False
        if time.monotonic() - seen > self.ttl:
            del self._ids[message_id]  # type: ignore[arg-type]
            return False
        return True
