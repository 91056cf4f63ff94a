"""One consumer subscribed on the aiormq channel under a robust aio-pika channel.

aio-pika's `Queue.consume` wraps every delivery in an `IncomingMessage` (a lock checked on
each of its two dozen attribute writes) and runs the callback in a task of its own, beside
the task aiormq already gives each delivery: for the SMPP worker's jobs that was a tenth of
its CPU. A `Subscription` hands the callback aiormq's `DeliveredMessage` in aiormq's task.

What aio-pika's robust queue would otherwise do is done here:
- after a broker drop the robust channel reopens (its QoS restored) on a new aiormq
  channel: `reopen_callbacks` subscribes again there;
- the broker cancels the consumer when its queue is deleted (an operator, a policy): it
  subscribes again every `RESUBSCRIBE_S` once the queue is back (looking first, on a channel
  of its own, since consuming from a missing queue closes the channel).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import aiormq
from aio_pika.abc import AbstractRobustChannel

from smsgw_shared.amqp.connection import AmqpConnection

log = logging.getLogger(__name__)

RESUBSCRIBE_S = 2.0

OnDelivery = Callable[[aiormq.abc.DeliveredMessage], Coroutine[Any, Any, None]]


async def close_quietly(channel: AbstractRobustChannel) -> None:
    """Close a channel that failed to start consuming (already closed, or the broker gone:
    nothing to do)."""
    if channel.is_closed:
        return
    try:
        await channel.close()
    except Exception as exc:
        log.debug("closing the channel failed: %r", exc)


def delivery_tag(message: aiormq.abc.DeliveredMessage) -> int:
    return getattr(message.delivery, "delivery_tag", None) or 0


class Subscription:
    """Consumes `queue` on `channel`'s aiormq channel into `on_delivery`, and keeps doing so
    across reconnects and broker cancels until `cancel()`."""

    def __init__(self, amqp: AmqpConnection, queue: str, on_delivery: OnDelivery) -> None:
        self._amqp = amqp
        self.queue_name = queue
        self._on_delivery = on_delivery
        self._channel: AbstractRobustChannel | None = None
        self._consumer_tag: str | None = None
        self._stopping = False
        self._resubscribing: asyncio.Task[None] | None = None

    async def start(self, channel: AbstractRobustChannel) -> None:
        """Subscribe; raises when that fails (the queue is missing, the broker is gone),
        leaving nothing behind that would subscribe later on its own."""
        self._channel = channel
        channel.reopen_callbacks.add(self._on_reopen)
        try:
            await self._subscribe()
        except BaseException:
            await self.cancel()
            raise

    async def _subscribe(self) -> None:
        assert self._channel is not None
        raw = await self._channel.get_underlay_channel()
        raw.on_consumer_cancel_callbacks.add(self._on_cancel)
        ok = await raw.basic_consume(self.queue_name, self._on_delivery, no_ack=False)
        self._consumer_tag = ok.consumer_tag

    def _on_cancel(self, frame: Any) -> None:
        """The broker cancelled our consumer (the queue was deleted, e.g. by an operator):
        subscribe again until the queue is back."""
        if frame.consumer_tag != self._consumer_tag or self._stopping:
            return
        log.warning("consumer cancelled by the broker", extra={"queue": self.queue_name})
        self._keep_resubscribing()

    def _keep_resubscribing(self) -> None:
        if self._resubscribing is None or self._resubscribing.done():
            self._resubscribing = asyncio.create_task(self._resubscribe())

    async def _resubscribe(self) -> None:
        while not self._stopping:
            await asyncio.sleep(RESUBSCRIBE_S)
            try:
                if not await self._queue_exists():
                    continue
                assert self._channel is not None
                if self._channel.is_closed:
                    await self._channel.reopen()  # subscribes again in _on_reopen
                else:
                    await self._subscribe()
                log.info("subscribed again", extra={"queue": self.queue_name})
                return
            except Exception as exc:
                log.warning("subscribe failed: %r", exc, extra={"queue": self.queue_name})

    async def _queue_exists(self) -> bool:
        ch = await self._amqp.channel(confirms=False)
        try:
            await ch.declare_queue(self.queue_name, passive=True)
            return True
        except Exception:
            return False
        finally:
            if not ch.is_closed:
                await ch.close()

    async def _on_reopen(self, *_: Any) -> None:
        # The robust channel restored its QoS; our consumer lives on the raw channel below
        # it, which is new after a reconnect.
        if self._stopping:
            return
        try:
            if not await self._queue_exists():
                raise LookupError(f"queue {self.queue_name} is gone")
            await self._subscribe()
            log.info("re-subscribed after reconnect", extra={"queue": self.queue_name})
        except Exception as exc:
            log.warning("re-subscribe failed: %r", exc, extra={"queue": self.queue_name})
            self._keep_resubscribing()

    async def cancel(self) -> None:
        """Stop taking deliveries (those in hand stay the caller's to settle)."""
        self._stopping = True
        if self._resubscribing is not None:
            self._resubscribing.cancel()
        if self._channel is None:
            return
        self._channel.reopen_callbacks.discard(self._on_reopen)
        if self._consumer_tag is not None and not self._channel.is_closed:
            try:
                raw = await self._channel.get_underlay_channel()
                await raw.basic_cancel(self._consumer_tag)
            except Exception as exc:
                log.debug("cancel failed: %r", exc)
