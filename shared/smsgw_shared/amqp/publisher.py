"""Publishing with confirms: a publish returns only once the broker has the message.

`mandatory=True` on a channel with `on_return_raises=True`: a message no queue takes is an
error (`UnroutableError`), never a silent drop. `publish_many` writes a whole batch in one
buffer and waits for its confirms together (`frames.py`): a fraction of the CPU of aiormq's
per-message publish, which also costs a few event-loop turns each (figures: README).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractRobustChannel
from pamqp.commands import Basic

from smsgw_shared.amqp.connection import AmqpConnection
from smsgw_shared.amqp.frames import Frame, publish_frames
from smsgw_shared.messages.base import Payload


class PublishError(Exception):
    """The broker did not confirm a publish (nack, closed channel, timeout)."""


class UnroutableError(PublishError):
    """The broker returned the message: no queue is bound for its routing key."""


class MissingExchangeError(PublishError):
    """The exchange does not exist; nothing was sent (it would have closed the channel)."""


@dataclass
class Outgoing:
    """One message to publish: where, what, and the AMQP properties worth setting."""

    exchange: str
    routing_key: str
    payload: Payload | bytes
    headers: dict[str, Any] = field(default_factory=dict)
    message_id: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    expiration: float | None = None
    persistent: bool = True

    def body(self) -> bytes:
        return self.payload if isinstance(self.payload, bytes) else self.payload.to_bytes()

    def properties(self) -> Basic.Properties:
        """AMQP properties for a raw (aiormq) publish."""
        return Basic.Properties(
            content_type="application/json",
            delivery_mode=2 if self.persistent else 1,
            headers=self.headers or None,
            message_id=self.message_id,
            correlation_id=self.correlation_id,
            reply_to=self.reply_to,
            expiration=str(int(self.expiration * 1000)) if self.expiration is not None else None,
        )

    def to_message(self) -> aio_pika.Message:
        body = self.payload if isinstance(self.payload, bytes) else self.payload.to_bytes()
        return aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=(
                aio_pika.DeliveryMode.PERSISTENT
                if self.persistent
                else aio_pika.DeliveryMode.NOT_PERSISTENT
            ),
            headers=self.headers or None,
            message_id=self.message_id,
            correlation_id=self.correlation_id,
            reply_to=self.reply_to,
            expiration=self.expiration,
        )


def _error(item: Outgoing, outcome: object) -> PublishError | None:
    """What a publish's outcome (the broker's confirm or an exception) means: None for an
    ack, else the error to report."""
    if isinstance(outcome, Basic.Ack):
        return None
    if isinstance(outcome, PublishError):
        return outcome
    if isinstance(outcome, aio_pika.exceptions.DeliveryError | aiormq.exceptions.PublishError):
        frame = getattr(outcome, "frame", None) or getattr(outcome, "message", None)
        if isinstance(frame, Basic.Return) or "NO_ROUTE" in str(outcome):
            return UnroutableError(
                f"unroutable: exchange {item.exchange!r} key {item.routing_key!r}"
            )
        return PublishError(f"publish not confirmed: {outcome!r}")
    if isinstance(outcome, TimeoutError):
        return PublishError("publish confirm timed out")
    if isinstance(outcome, BaseException):
        return PublishError(f"publish failed: {outcome!r}")
    return PublishError(f"broker did not ack the publish: {outcome!r}")


def _not_found(outcome: object) -> bool:
    """The broker closed the channel with 404 NOT_FOUND: an exchange we took for existing
    is gone (a queue is never the target of a publish)."""
    return isinstance(outcome, aiormq.exceptions.ChannelNotFoundEntity)


def _missing(item: Outgoing) -> MissingExchangeError:
    return MissingExchangeError(f"exchange {item.exchange!r} does not exist")


class Publisher:
    """Confirmed publishing on one lazily opened channel, reopened after failures."""

    def __init__(self, amqp: AmqpConnection, timeout: float = 10.0) -> None:
        self._amqp = amqp
        self._timeout = timeout
        self._channel: AbstractRobustChannel | None = None
        self._lock = asyncio.Lock()

    async def _get_channel(self) -> AbstractRobustChannel:
        ch = self._channel
        if ch is None or ch.is_closed:
            async with self._lock:
                if self._channel is None or self._channel.is_closed:
                    self._channel = await self._amqp.channel(confirms=True)
                ch = self._channel
        return ch

    async def _open(self, items: Sequence[Outgoing]) -> tuple[AbstractRobustChannel, set[str]]:
        """The channel, and which of the items' exchanges do not exist."""
        try:
            ch = await self._get_channel()
            missing = await self._amqp.missing_exchanges({it.exchange for it in items})
        except Exception as exc:
            raise PublishError(f"no channel: {exc!r}") from exc
        return ch, missing

    async def publish(self, item: Outgoing) -> None:
        """Publish one message and wait for its confirm."""
        (err,) = await self.publish_many([item])
        if err is not None:
            raise err

    async def publish_many(
        self, items: Sequence[Outgoing], timeout: float | None = None
    ) -> list[PublishError | None]:
        """Publish many in one write, confirms awaited together (up to `timeout` seconds,
        the publisher's own by default); each item's error or None."""
        if not items:
            return []
        try:
            ch, missing = await self._open(items)
        except PublishError as err:
            return [err for _ in items]
        sendable = [it for it in items if it.exchange not in missing]
        wait = self._timeout if timeout is None else timeout
        results = iter(await self._publish_batch(ch, sendable, wait))
        return [_missing(it) if it.exchange in missing else next(results) for it in items]

    async def _publish_batch(
        self, ch: AbstractRobustChannel, items: Sequence[Outgoing], timeout: float
    ) -> list[PublishError | None]:
        frames = [Frame(it.exchange, it.routing_key, it.body(), it.properties()) for it in items]
        try:
            underlay = await ch.get_underlay_channel()
            outcomes: list[object] = await publish_frames(underlay, frames, timeout)
        except Exception as exc:
            outcomes = [exc for _ in items]
        gone = {it.exchange for it, o in zip(items, outcomes, strict=True) if _not_found(o)}
        if gone:
            self._amqp.forget_exchanges(gone)
        errors = [
            _missing(it) if it.exchange in gone else _error(it, o)
            for it, o in zip(items, outcomes, strict=True)
        ]
        unroutable = {
            it.exchange
            for it, e in zip(items, errors, strict=True)
            if isinstance(e, UnroutableError)
        }
        if unroutable:
            self._amqp.unroutable(unroutable)
        return errors

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
        self._channel = None
