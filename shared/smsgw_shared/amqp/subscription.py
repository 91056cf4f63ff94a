"""One consumer subscribed on the aiormq channel under a robust aio-pika channel.

aio-pika's `Queue.consume` wraps every delivery in an `IncomingMessage` (a lock checked on
each of its two dozen attribute writes) and runs the callback in a task of its own, beside
the task aiormq already gives each delivery: for the SMPP worker's jobs that was a tenth of
its CPU. A `Subscription` hands the callback aiormq's `DeliveredMessage` in aiormq's task.

What aio-pika's robust queue would otherwise do is done here:
- after a broker drop the robust channel reopens (its QoS restored) on a new aiormq
  channel: `reopen_callbacks` subscribes again there;
- the broker cancels the consumer when its queue is deleted (an operator, a policy): it
  subscribes again every `RESUBSCRIBE_S` once the queue is back (looking first, on a plain
  aiormq channel of its own, since consuming from a missing queue closes the channel);
- one consumer per subscription, whichever of those two paths subscribes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import aiormq
from aio_pika.abc import AbstractRobustChannel

from smsgw_shared.amqp.connection import AmqpConnection

log = logging.getLogger(__name__)

RESUBSCRIBE_S = 2.0

OnDelivery = Callable[[aiormq.abc.DeliveredMessage], Coroutine[Any, Any, None]]


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
        # One subscribe at a time, and none while subscribed on the channel in use: a
        # reopen and a re-subscribe loop may both try (two consumers would double the
        # prefetch, and `cancel` would stop only one of them).
        self._lock = asyncio.Lock()

    async def start(self, prefetch: int) -> None:
        """Open a channel with this prefetch and subscribe; raises when that fails
        (`LookupError` when the queue is missing, or the broker's error), leaving nothing
        behind: no channel, nothing that would subscribe later on its own."""
        channel = self._channel = await self._amqp.channel(confirms=False, prefetch=prefetch)
        self._stopping = False
        channel.reopen_callbacks.add(self._on_reopen)
        try:
            # Look first: consuming from a missing queue makes the broker close the channel.
            if not await self._queue_exists():
                raise LookupError(f"queue {self.queue_name} does not exist")
            await self._subscribe()
        except BaseException:
            await self.cancel()
            await self.close()
            raise

    async def _subscribe(self) -> None:
        assert self._channel is not None
        async with self._lock:
            raw = await self._channel.get_underlay_channel()
            if self._consumer_tag is not None and self._consumer_tag in getattr(
                raw, "consumers", {}
            ):
                return  # subscribed on this channel already
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
        closed_for = 0
        while not self._stopping:
            await asyncio.sleep(RESUBSCRIBE_S)
            try:
                assert self._channel is not None
                if self._channel.is_closed:
                    # The robust connection reopens it and `_on_reopen` subscribes. Should
                    # that not happen (a reopen that failed), ask for it, under the channel's
                    # own restore lock.
                    closed_for += 1
                    if closed_for % 5 == 0:
                        await self._channel.restore()
                    continue
                closed_for = 0
                if not await self._queue_exists():
                    continue
                await self._subscribe()
                log.info("subscribed again", extra={"queue": self.queue_name})
                return
            except Exception as exc:
                log.warning("subscribe failed: %r", exc, extra={"queue": self.queue_name})

    async def _queue_exists(self) -> bool:
        """Whether the queue is there, asked on a plain aiormq channel of its own: the
        broker closes a channel whose passive declare finds nothing, and a robust channel
        would reopen itself then (and stay open, unseen)."""
        assert self._channel is not None
        try:
            raw = await self._channel.get_underlay_channel()
            probe = await raw.connection.channel(publisher_confirms=False)
        except Exception:
            return False
        try:
            await probe.queue_declare(self.queue_name, passive=True)
            return True
        except Exception:
            return False
        finally:
            if not probe.is_closed:
                with contextlib.suppress(Exception):
                    await probe.close()

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
            return
        pending = self._resubscribing
        if pending is not None and pending is not asyncio.current_task():
            pending.cancel()

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

    async def close(self) -> None:
        """Close the channel, once the deliveries in hand are settled. Always `close()`, even
        when it is closed now (the broker gone, or a 404): a robust channel not closed for
        good reopens itself once the broker is back, and leaks."""
        if self._channel is None:
            return
        try:
            await self._channel.close()
        except Exception as exc:
            log.debug("closing the channel failed: %r", exc)
