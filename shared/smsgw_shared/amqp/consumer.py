"""Consuming with manual acks: the only place (with the publisher) that touches AMQP
messages. A handler takes a typed payload and returns or raises an `Outcome`.

- returns → ack (coalesced with other finished deliveries, see `acks`);
- `RetryLater` → a copy goes to a delay queue (confirmed) with the attempt count, then ack;
  after `max_attempts` it is dead-lettered instead;
- `PermanentFailure` / `Poison` / a body that does not parse → a copy goes to the DLQ with the
  reason in headers (confirmed), then ack;
- `Requeue` → nack with requeue;
- any other exception → logged, nack with requeue; quorum queues' delivery limit
  dead-letters a message that keeps crashing its handler.

Because every copy is confirmed before the original is acked, a crash in between gives a
duplicate, never a loss. `stop()` stops taking new messages and waits for those in hand.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import aiormq
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.message import IncomingMessage

from smsgw_shared.amqp.acks import Acker, settle
from smsgw_shared.amqp.connection import AmqpConnection
from smsgw_shared.amqp.outcomes import (
    DeliveryInfo,
    PermanentFailure,
    Poison,
    Requeue,
    RetryLater,
)
from smsgw_shared.amqp.publisher import Outgoing, Publisher, PublishError
from smsgw_shared.amqp.subscription import Subscription, delivery_tag
from smsgw_shared.amqp.topology import DELIVERY_LIMIT, Topology
from smsgw_shared.messages.base import Payload, PayloadError
from smsgw_shared.observability.logging import current_message_id

log = logging.getLogger(__name__)

P = TypeVar("P", bound=Payload)
Handler = Callable[[P, DeliveryInfo], Awaitable[None]]
# Called with the raw body and the reason before a message is dead-lettered, so the service
# can record the outcome (e.g. publish a `failed` status for a send job).
DeadLetterHook = Callable[[bytes, str], Awaitable[None]]

ATTEMPT_HEADER = "x-smsgw-attempt"
REASON_HEADER = "x-smsgw-reason"


def attempt_of(headers: dict[str, Any]) -> int:
    raw = headers.get(ATTEMPT_HEADER, 0)
    return raw if isinstance(raw, int) else 0


def deliveries_of(headers: dict[str, Any]) -> int:
    """How often the broker delivered it before (quorum queues count redeliveries)."""
    raw = headers.get("x-delivery-count", 0)
    return raw if isinstance(raw, int) else 0


@dataclass
class Disposition:
    """What happens to a delivery after its handler: ack, retry, dead-letter or requeue."""

    topology: Topology
    queue_name: str
    max_attempts: int
    publisher: Publisher
    on_dead_letter: DeadLetterHook | None = None
    acks: Acker = field(default_factory=Acker)

    def ack(self, message: AbstractIncomingMessage) -> None:
        self.acks.done(_channel_of(message), message.delivery_tag or 0)

    async def apply(
        self, message: AbstractIncomingMessage, attempt: int, outcome: BaseException | None
    ) -> None:
        """Settle `message` by its handler's outcome (None: done; an `Outcome`)."""
        if outcome is None:
            self.ack(message)
        elif isinstance(outcome, RetryLater):
            if attempt + 1 >= self.max_attempts:
                await self.dead_letter(message, f"retries exhausted: {outcome.reason}")
            else:
                await self._retry(message, attempt + 1, outcome)
        elif isinstance(outcome, PermanentFailure | Poison):
            kind = "poison" if isinstance(outcome, Poison) else "failed"
            await self.dead_letter(message, f"{kind}: {outcome.reason}")
        elif isinstance(outcome, Requeue):
            log.info("requeue", extra={"queue": self.queue_name, "reason": outcome.reason})
            await self.nack(message)
        else:
            log.error(
                "handler crashed; message requeued: %r", outcome, extra={"queue": self.queue_name}
            )
            await self.nack(message)

    async def nack(self, message: AbstractIncomingMessage) -> None:
        self.acks.forget(_channel_of(message), message.delivery_tag or 0)
        await settle(message.nack(requeue=True))

    async def _retry(self, message: AbstractIncomingMessage, attempt: int, exc: RetryLater) -> None:
        delay_ms = self.topology.delay_for(attempt - 1, exc.delay)
        item = _copy(message, "", self.topology.delay_queue(self.queue_name, delay_ms))
        item.headers[ATTEMPT_HEADER] = attempt
        item.headers[REASON_HEADER] = exc.reason[:500]
        await self._forward_then_ack(message, item)

    async def dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        log.warning("dead-lettered", extra={"queue": self.queue_name, "reason": reason[:500]})
        if self.on_dead_letter is not None:
            try:
                await self.on_dead_letter(message.body, reason)
            except Exception:
                # The hook failed: keep the message (requeue) so the outcome is not lost.
                log.exception("dead-letter hook failed; requeued", extra={"queue": self.queue_name})
                await self.nack(message)
                return
        item = _copy(message, self.topology.dlx, self.queue_name)
        item.headers[REASON_HEADER] = reason[:500]
        item.headers["x-smsgw-dead-at"] = datetime.now(UTC).isoformat()
        await self._forward_then_ack(message, item)

    async def _forward_then_ack(self, message: AbstractIncomingMessage, item: Outgoing) -> None:
        try:
            await self.publisher.publish(item)
        except PublishError:
            # Not forwarded: keep the original (requeue) rather than lose it.
            log.exception("could not forward; requeued", extra={"queue": self.queue_name})
            await self.nack(message)
            return
        self.ack(message)


def _channel_of(message: AbstractIncomingMessage) -> Any:
    try:
        return message.channel
    except Exception:  # closed channel: its deliveries are the broker's again
        return None


def _copy(message: AbstractIncomingMessage, exchange: str, key: str) -> Outgoing:
    return Outgoing(
        exchange=exchange,
        routing_key=key,
        payload=message.body,
        headers=dict(message.headers or {}),
        message_id=message.message_id,
        correlation_id=message.correlation_id,
    )


class Consumer(Generic[P]):
    """Consumes one queue into one handler, one task per delivery (aiormq's: the delivery
    comes straight from the aiormq channel, `subscription.py`; an aio-pika message is made
    only to settle it some other way than an ack)."""

    def __init__(
        self,
        amqp: AmqpConnection,
        queue: str,
        payload_type: type[P],
        handler: Handler[P],
        *,
        prefetch: int = 32,
        max_attempts: int = 5,
        max_deliveries: int = DELIVERY_LIMIT - 1,
        publisher: Publisher | None = None,
        on_dead_letter: DeadLetterHook | None = None,
    ) -> None:
        self._amqp = amqp
        self.queue_name = queue
        self._payload_type = payload_type
        self._handler = handler
        self._prefetch = prefetch
        self._max_attempts = max_attempts
        self._max_deliveries = max_deliveries
        self._subscription = Subscription(amqp, queue, self._on_message)
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._disposition = Disposition(
            amqp.topology, queue, max_attempts, publisher or Publisher(amqp), on_dead_letter
        )
        self._acks = self._disposition.acks

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def start(self) -> None:
        """Open a channel with the prefetch and start consuming."""
        await self._subscription.start(self._prefetch)

    async def _on_message(self, message: aiormq.abc.DeliveredMessage) -> None:
        # Runs in the task aiormq gives each delivery.
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
            self._idle.clear()
        channel, tag = message.channel, delivery_tag(message)
        self._acks.track(channel, tag)
        try:
            await self._process(message)
        finally:
            # Left unsettled (the handler task died): the broker redelivers it once the
            # channel closes; it must not hold back the acks of the deliveries after it.
            self._acks.forget(channel, tag)
            if task is not None:
                self._in_flight.discard(task)
                if not self._in_flight:
                    self._idle.set()

    async def _process(self, message: aiormq.abc.DeliveredMessage) -> None:
        props = message.header.properties
        headers = props.headers or {}
        attempt = attempt_of(headers)
        info = DeliveryInfo(
            queue=self.queue_name,
            attempt=attempt,
            max_attempts=self._max_attempts,
            redelivered=bool(getattr(message.delivery, "redelivered", False)),
            message_id=props.message_id,
            reply_to=props.reply_to,
            correlation_id=props.correlation_id,
        )
        try:
            payload = self._payload_type.from_bytes(message.body)
        except PayloadError as exc:
            await self._disposition.dead_letter(IncomingMessage(message), f"poison: {exc}")
            return
        # Quorum queues count redeliveries (a handler that crashes, a consumer that dies
        # holding the message). Dead-letter it ourselves one short of the broker's limit, so
        # the service's hook still records the outcome instead of a silent broker DLX.
        deliveries = deliveries_of(headers)
        if deliveries >= self._max_deliveries:
            await self._disposition.dead_letter(
                IncomingMessage(message), f"poison: delivered {deliveries + 1} times"
            )
            return
        # Every log line written while handling carries the message id (JSON logs).
        token = current_message_id.set(getattr(payload, "message_id", None))
        try:
            await self._handler(payload, info)
        except (RetryLater, PermanentFailure, Poison, Requeue) as exc:
            await self._disposition.apply(IncomingMessage(message), attempt, exc)
            return
        except asyncio.CancelledError:
            await self._disposition.nack(IncomingMessage(message))
            raise
        except Exception:
            log.exception("handler crashed; message requeued", extra={"queue": self.queue_name})
            await asyncio.sleep(0.5)  # don't spin on a message that crashes at once
            await self._disposition.nack(IncomingMessage(message))
            return
        finally:
            current_message_id.reset(token)
        self._acks.done(message.channel, delivery_tag(message))

    async def stop(self, timeout: float = 30.0) -> int:
        """Stop taking messages, finish the ones in hand (up to `timeout`), close. Returns
        how many were still unfinished then (given back: the broker redelivers them)."""
        left = 0
        await self._subscription.cancel()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            left = len(self._in_flight)
            log.warning(
                "stop: %d message(s) still in hand; they will be redelivered",
                left,
                extra={"queue": self.queue_name},
            )
            cancelled = list(self._in_flight)
            for t in cancelled:
                t.cancel()
            # Let each cancelled handler send its nack before the channel closes, so the
            # broker gives the message back at once rather than when it notices the close.
            if cancelled:
                await asyncio.wait(cancelled, timeout=5)
        await self._acks.drain()
        await self._subscription.close()
        await self._disposition.publisher.close()
        return left
