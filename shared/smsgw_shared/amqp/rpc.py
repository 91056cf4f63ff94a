"""Request/reply over RabbitMQ with direct reply-to (`amq.rabbitmq.reply-to`).

Used by the API to ask one modem worker for USSD or its balance. The caller waits at most
its timeout; a reply that arrives later is dropped (the caller has answered 504 already).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TypeVar

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from smsgw_shared.amqp.connection import AmqpConnection
from smsgw_shared.amqp.publisher import Outgoing, PublishError, UnroutableError
from smsgw_shared.messages.base import Payload

R = TypeVar("R", bound=Payload)

REPLY_TO = "amq.rabbitmq.reply-to"


class RpcTimeout(TimeoutError):
    """No reply within the timeout."""


class RpcClient:
    """One channel consuming direct replies; requests published on the same channel."""

    def __init__(self, amqp: AmqpConnection) -> None:
        self._amqp = amqp
        self._channel: AbstractChannel | None = None
        self._pending: dict[str, asyncio.Future[bytes]] = {}
        self._lock = asyncio.Lock()

    async def _ensure(self) -> AbstractChannel:
        async with self._lock:
            if self._channel is None or self._channel.is_closed:
                ch = await self._amqp.connection.channel(
                    publisher_confirms=True, on_return_raises=True
                )
                queue = await ch.get_queue(REPLY_TO, ensure=False)
                await queue.consume(self._on_reply, no_ack=True)
                self._channel = ch
            return self._channel

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        fut = self._pending.pop(message.correlation_id or "", None)
        if fut is not None and not fut.done():
            fut.set_result(message.body)

    async def call(self, item: Outgoing, reply_type: type[R], timeout: float) -> R:
        """Publish `item` (its correlation_id identifies the reply) and await the reply."""
        if not item.correlation_id:
            raise ValueError("an RPC request needs a correlation_id")
        ch = await self._ensure()
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[item.correlation_id] = fut
        try:
            msg = item.to_message()
            msg.reply_to = REPLY_TO
            msg.expiration = timeout
            try:
                exchange = await ch.get_exchange(item.exchange, ensure=False)
                await exchange.publish(msg, item.routing_key, mandatory=True, timeout=timeout)
            except aio_pika.exceptions.DeliveryError as exc:
                raise UnroutableError(f"no consumer queue for {item.routing_key!r}") from exc
            except Exception as exc:
                raise PublishError(f"request not published: {exc!r}") from exc
            try:
                body = await asyncio.wait_for(fut, timeout)
            except TimeoutError as exc:
                raise RpcTimeout(f"no reply within {timeout:g}s") from exc
            return reply_type.from_bytes(body)
        finally:
            self._pending.pop(item.correlation_id, None)

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            with contextlib.suppress(Exception):
                await self._channel.close()
        self._channel = None
