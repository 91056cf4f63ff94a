"""Publishing with confirms: a publish returns only once the broker has the message.

`mandatory=True` on a channel with `on_return_raises=True`: a message no queue takes is an
error (`UnroutableError`), never a silent drop. `publish_many` pipelines confirms (many in
flight at once), ~3–5k/s on one channel versus ~1–1.6k/s awaiting each (DEPENDENCIES.md).
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
        ch, missing = await self._open([item])
        if missing:
            raise _missing(item)
        await self._publish_on(ch, item)

    async def _publish_on(self, ch: AbstractRobustChannel, item: Outgoing) -> None:
        try:
            # The underlying aiormq channel: about half the CPU per message of aio-pika's
            # Message/Exchange layer (57 vs 101 µs measured), same confirms and returns.
            underlay = await ch.get_underlay_channel()
            result = await underlay.basic_publish(
                item.body(),
                exchange=item.exchange,
                routing_key=item.routing_key,
                properties=item.properties(),
                mandatory=True,
                timeout=self._timeout,
            )
        except (aio_pika.exceptions.DeliveryError, aiormq.exceptions.PublishError) as exc:
            frame = getattr(exc, "frame", None) or getattr(exc, "message", None)
            if isinstance(frame, Basic.Return) or "NO_ROUTE" in str(exc):
                raise UnroutableError(
                    f"unroutable: exchange {item.exchange!r} key {item.routing_key!r}"
                ) from exc
            raise PublishError(f"publish not confirmed: {exc!r}") from exc
        except TimeoutError as exc:
            raise PublishError("publish confirm timed out") from exc
        except PublishError:
            raise
        except Exception as exc:
            raise PublishError(f"publish failed: {exc!r}") from exc
        if not isinstance(result, Basic.Ack):
            raise PublishError(f"broker did not ack the publish: {result!r}")

    async def publish_many(self, items: Sequence[Outgoing]) -> list[PublishError | None]:
        """Publish many with pipelined confirms; the result lists each item's error or None."""
        if not items:
            return []
        try:
            ch, missing = await self._open(items)
        except PublishError as err:
            return [err for _ in items]
        sendable = [it for it in items if it.exchange not in missing]
        results = iter(
            await asyncio.gather(
                *(self._publish_on(ch, it) for it in sendable), return_exceptions=True
            )
        )
        out: list[PublishError | None] = []
        for it in items:
            r = _missing(it) if it.exchange in missing else next(results)
            if r is None or isinstance(r, PublishError):
                out.append(r)
            else:
                out.append(PublishError(repr(r)))
        return out

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
        self._channel = None
