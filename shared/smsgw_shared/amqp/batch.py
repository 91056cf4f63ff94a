"""Consuming in batches, for handlers that apply many messages in one store transaction.

`Consumer` gives every delivery its own handler call: as much CPU per message as the inbound
projection's own work. `BatchConsumer` takes deliveries from the aiormq channel under the
robust channel (`subscription.py`), buffers them and hands the handler a list of payloads;
the handler answers one outcome per payload (None: done, or an `Outcome` such as
`PermanentFailure`). A packed message (`packing.py`) gives the handler all its payloads and
is settled once, by the first of their outcomes that is not None. Finished deliveries are
acked with coalesced `multiple` acks; anything else goes through the same `Disposition` as
`Consumer` (retry, dead-letter with the hook, requeue). Up to `concurrency` batches run at
once, so one batch's store round trips overlap the next one's parsing. With `linger`, a batch
smaller than `batch_size` waits that long after its oldest delivery came for more (a stop
takes what is buffered at once).

A handler that raises requeues its whole batch (after a pause): it must deal with transient
store errors itself (the inbound projection retries in place).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic

import aiormq
from aio_pika.message import IncomingMessage

from smsgw_shared.amqp.connection import AmqpConnection
from smsgw_shared.amqp.consumer import DeadLetterHook, Disposition, P, attempt_of, deliveries_of
from smsgw_shared.amqp.outcomes import Outcome, PermanentFailure, Poison
from smsgw_shared.amqp.packing import MAX_PACK, PACKED, unpack
from smsgw_shared.amqp.publisher import Publisher
from smsgw_shared.amqp.subscription import Subscription, delivery_tag
from smsgw_shared.amqp.topology import DELIVERY_LIMIT
from smsgw_shared.messages.base import PayloadError

log = logging.getLogger(__name__)

BatchHandler = Callable[[Sequence[P]], Awaitable[Sequence[BaseException | None]]]


def _urgency(outcome: BaseException | None) -> int:
    """How a payload's outcome ranks when one packed message holds several: done (0) <
    dead-letter (1) < retry, requeue or a crash (2)."""
    if outcome is None:
        return 0
    return 1 if isinstance(outcome, PermanentFailure | Poison) else 2


def _count(message: aiormq.abc.DeliveredMessage) -> int:
    """Payloads in a message: a pack's count (header), else 1."""
    n = (message.header.properties.headers or {}).get(PACKED, 1)
    return n if isinstance(n, int) and 0 < n <= MAX_PACK else 1


class BatchConsumer(Generic[P]):
    """Consumes one queue into a handler of payload lists."""

    def __init__(
        self,
        amqp: AmqpConnection,
        queue: str,
        payload_type: type[P],
        handler: BatchHandler[P],
        *,
        batch_size: int = 500,
        prefetch: int = 1000,
        concurrency: int = 2,
        linger: float = 0.0,
        max_attempts: int = 5,
        max_deliveries: int = DELIVERY_LIMIT - 1,
        publisher: Publisher | None = None,
        on_dead_letter: DeadLetterHook | None = None,
    ) -> None:
        self._amqp = amqp
        self.queue_name = queue
        self._payload_type = payload_type
        self._handler = handler
        self.batch_size = batch_size
        self.linger = linger
        self._prefetch = prefetch
        self._max_deliveries = max_deliveries
        self._disposition = Disposition(
            amqp.topology, queue, max_attempts, publisher or Publisher(amqp), on_dead_letter
        )
        self._acks = self._disposition.acks
        self._subscription = Subscription(amqp, queue, self._on_delivery)
        self._buffer: list[aiormq.abc.DeliveredMessage] = []
        self._arrived: list[float] = []  # loop time each buffered delivery came
        self._buffered = 0  # payloads in the buffer
        self._full = asyncio.Event()  # a whole batch is buffered (or stopping)
        self._stopping = False
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._running: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._handling = 0

    @property
    def in_flight(self) -> int:
        """Deliveries buffered or being handled."""
        return len(self._buffer) + self._handling

    async def start(self) -> None:
        await self._subscription.start(self._prefetch)
        self._loop_task = asyncio.create_task(self._run(), name=f"batch:{self.queue_name}")

    async def _on_delivery(self, message: aiormq.abc.DeliveredMessage) -> None:
        self._acks.track(message.channel, delivery_tag(message))
        self._buffer.append(message)
        self._arrived.append(asyncio.get_running_loop().time())
        self._buffered += _count(message)
        if self._buffered >= self.batch_size:
            self._full.set()
        self._idle.clear()
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._buffer:
                # Take the batch once a slot is free: it grows meanwhile.
                await self._slots.acquire()
                await self._gather()
                batch = self._take()
                if not batch:  # only deliveries of a closed channel were buffered
                    self._slots.release()
                    if not self._handling:
                        self._idle.set()
                    continue
                self._handling += len(batch)
                task = asyncio.create_task(self._process(batch))
                self._running.add(task)
                task.add_done_callback(functools.partial(self._finished, len(batch)))

    async def _gather(self) -> None:
        """Let a batch smaller than `batch_size` grow until `linger` seconds after its
        oldest delivery came: fewer, bigger batches cost the store and the handler less
        per payload, for that much more delay."""
        loop = asyncio.get_running_loop()
        while self._buffered < self.batch_size and not self._stopping:
            left = self._arrived[0] + self.linger - loop.time()
            if left <= 0:
                return
            self._full.clear()
            try:
                async with asyncio.timeout(left):
                    await self._full.wait()
            except TimeoutError:
                return

    def _drop_stale(self) -> None:
        """Forget buffered deliveries of a channel that has closed (a broker drop, or the
        broker closing the channel): the broker has them back and redelivers them on the
        new channel, so handling them too would apply each twice, with the old copy's ack
        failing. A linger widens the window in which they wait here. They lead the buffer
        (a new channel opens after the old one closed): usually one check."""
        dropped = 0
        while dropped < len(self._buffer) and self._buffer[dropped].channel.is_closed:
            dropped += 1
        if not dropped:
            return
        del self._buffer[:dropped]
        del self._arrived[:dropped]
        self._buffered = sum(map(_count, self._buffer))
        log.info(
            "dropped %d buffered deliveries of a closed channel (redelivered)",
            dropped,
            extra={"queue": self.queue_name},
        )

    def _take(self) -> list[aiormq.abc.DeliveredMessage]:
        """The next batch: messages up to `batch_size` payloads (packs count what they hold;
        a single pack larger than that goes alone)."""
        self._drop_stale()
        total = taken = 0
        for message in self._buffer:
            n = _count(message)
            if taken and total + n > self.batch_size:
                break
            total += n
            taken += 1
        batch = self._buffer[:taken]
        del self._buffer[:taken]
        del self._arrived[:taken]
        self._buffered -= total
        return batch

    def _finished(self, size: int, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slots.release()
        self._handling -= size
        if not task.cancelled() and task.exception() is not None:
            log.error("batch crashed: %r", task.exception(), extra={"queue": self.queue_name})
        if not self._buffer and not self._handling:
            self._idle.set()

    async def _process(self, batch: list[aiormq.abc.DeliveredMessage]) -> None:
        # One item per payload: a packed message (`packing.py`) gives several.
        items: list[tuple[aiormq.abc.DeliveredMessage, P, int]] = []
        for raw in batch:
            headers = raw.header.properties.headers or {}
            try:
                payloads = unpack(self._payload_type, raw.body, headers)
            except PayloadError as exc:
                await self._disposition.dead_letter(IncomingMessage(raw), f"poison: {exc}")
                continue
            deliveries = deliveries_of(headers)
            if deliveries >= self._max_deliveries:
                reason = f"poison: delivered {deliveries + 1} times"
                await self._disposition.dead_letter(IncomingMessage(raw), reason)
                continue
            attempt = attempt_of(headers)
            items.extend((raw, p, attempt) for p in payloads)
        if not items:
            return
        raws = list(dict.fromkeys(r for r, _, _ in items))
        try:
            outcomes = await self._handler([p for _, p, _ in items])
            if len(outcomes) != len(items):
                raise RuntimeError(f"handler gave {len(outcomes)} outcomes for {len(items)}")
        except asyncio.CancelledError:
            await self._requeue(raws)
            raise
        except Exception:
            log.exception("batch handler crashed; batch requeued", extra={"queue": self.queue_name})
            await asyncio.sleep(0.5)  # don't spin on a batch that crashes at once
            await self._requeue(raws)
            return
        if any(o is not None and not isinstance(o, Outcome) for o in outcomes):
            await asyncio.sleep(0.5)  # items that failed on their own are requeued: no spin
        # A message is done when all its payloads are. Else its most urgent failure decides:
        # a payload asking for a retry gets it even beside one that failed for good (the
        # retried pack may then be dead-lettered for that one; replaying it is idempotent).
        verdict: dict[int, tuple[aiormq.abc.DeliveredMessage, int, BaseException | None]] = {}
        for (raw, _, attempt), outcome in zip(items, outcomes, strict=True):
            seen = verdict.get(id(raw))
            if seen is None or _urgency(outcome) > _urgency(seen[2]):
                verdict[id(raw)] = (raw, attempt, outcome)
        for raw, attempt, outcome in verdict.values():
            if outcome is None:
                self._acks.done(raw.channel, delivery_tag(raw))
            else:
                await self._disposition.apply(IncomingMessage(raw), attempt, outcome)

    async def _requeue(self, batch: Sequence[aiormq.abc.DeliveredMessage]) -> None:
        await asyncio.gather(*(self._disposition.nack(IncomingMessage(r)) for r in batch))

    async def stop(self, timeout: float = 30.0) -> int:
        """Stop taking messages, finish the ones in hand (up to `timeout`), close. Returns
        how many were still unfinished then (given back: the broker redelivers them)."""
        left = 0
        self._stopping = True  # what is buffered goes now, without lingering
        self._full.set()
        await self._subscription.cancel()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            left = self.in_flight
            log.warning("stop: %d message(s) still in hand; they will be redelivered", left)
        if self._loop_task is not None:
            self._loop_task.cancel()
        for t in list(self._running):
            t.cancel()
        await asyncio.gather(
            *self._running, *([self._loop_task] if self._loop_task else []), return_exceptions=True
        )
        await self._acks.drain()
        await self._subscription.close()
        await self._disposition.publisher.close()
        return left
