"""BatchConsumer against the real RabbitMQ: outcomes per item, crashes, broker drops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence

import pytest

from smsgw_shared.amqp import (
    AmqpConnection,
    BatchConsumer,
    Consumer,
    DeliveryInfo,
    Outgoing,
    PermanentFailure,
    Publisher,
    Requeue,
    RetryLater,
    subscription,
)
from smsgw_shared.amqp.consumer import REASON_HEADER
from smsgw_shared.messages import SendJob
from smsgw_shared.testing import wait_for

from .test_amqp import _async_true, _close_all_connections, _ready_count, dlq_messages, job


async def _setup(amqp: AmqpConnection) -> tuple[str, Publisher]:
    t = amqp.topology
    await amqp.declare(t.job_queues("modem:*"))
    return t.job_queue("modem:*"), Publisher(amqp)


async def _send(pub: Publisher, amqp: AmqpConnection, ids: Sequence[str | bytes]) -> None:
    t = amqp.topology
    items = [
        Outgoing(t.jobs_exchange, "modem.pool", i if isinstance(i, bytes) else job(i)) for i in ids
    ]
    assert await pub.publish_many(items) == [None] * len(items)


async def test_each_item_gets_its_own_outcome(amqp: AmqpConnection):
    queue, pub = await _setup(amqp)
    seen: list[tuple[str, ...]] = []
    requeued_once: set[str] = set()
    dead_hook: list[str] = []

    async def handler(jobs: Sequence[SendJob]) -> list[BaseException | None]:
        seen.append(tuple(j.message_id for j in jobs))
        out: list[BaseException | None] = []
        for j in jobs:
            if j.message_id.startswith("fail"):
                out.append(PermanentFailure("never"))
            elif j.message_id == "again" and "again" not in requeued_once:
                requeued_once.add("again")
                out.append(Requeue("give it back"))
            elif j.message_id == "later":
                out.append(RetryLater("busy"))
            else:
                out.append(None)
        return out

    async def on_dead(body: bytes, reason: str) -> None:
        dead_hook.append(reason.split(":", maxsplit=1)[0])

    consumer = BatchConsumer(
        amqp, queue, SendJob, handler, batch_size=50, max_attempts=2, on_dead_letter=on_dead
    )
    await consumer.start()
    ids: list[str | bytes] = [f"ok{i}" for i in range(100)]
    ids[10] = "fail1"
    ids[60] = "fail2"
    ids[30] = "again"
    ids[40] = "later"
    ids[70] = b"\x00\xffnot json"
    await _send(pub, amqp, ids)

    async def settled() -> bool:
        flat = [m for batch in seen for m in batch]
        return "again" in requeued_once and flat.count("again") == 2 and len(dead_hook) == 4

    await wait_for(settled, timeout=20)
    await consumer.stop()
    assert await _ready_count(amqp, queue) == 0  # every delivery was settled
    dead = await dlq_messages(amqp, queue)
    reasons = sorted(h[REASON_HEADER].split(":")[0] for _, h in dead)
    assert reasons == ["failed", "failed", "poison", "retries exhausted"]
    assert sorted(dead_hook) == reasons
    assert max(len(b) for b in seen) <= 50
    await pub.close()


async def test_a_crashing_handler_requeues_its_batch(amqp: AmqpConnection):
    queue, pub = await _setup(amqp)
    calls = 0
    done: set[str] = set()

    async def handler(jobs: Sequence[SendJob]) -> list[BaseException | None]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("bug on the first call")
        done.update(j.message_id for j in jobs)
        return [None] * len(jobs)

    consumer = BatchConsumer(amqp, queue, SendJob, handler)
    await consumer.start()
    await _send(pub, amqp, [str(i) for i in range(20)])
    await wait_for(lambda: _async_true(len(done) == 20), timeout=15)
    await consumer.stop()
    assert await _ready_count(amqp, queue) == 0
    await pub.close()


async def test_resubscribes_after_the_broker_drops_the_connection(amqp: AmqpConnection):
    t = amqp.topology
    queue, _ = await _setup(amqp)
    done: set[str] = set()
    gate = asyncio.Event()
    in_hand = asyncio.Event()

    async def handler(jobs: Sequence[SendJob]) -> list[BaseException | None]:
        if any(j.message_id == "slow" for j in jobs):
            in_hand.set()
            await gate.wait()
        done.update(j.message_id for j in jobs)
        return [None] * len(jobs)

    worker = AmqpConnection(amqp.url, t, name="batch-under-test")
    await worker.connect()
    consumer = BatchConsumer(worker, queue, SendJob, handler)
    await consumer.start()
    pub_conn = AmqpConnection(amqp.url, t)
    await pub_conn.connect()
    pub = Publisher(pub_conn)
    await _send(pub, amqp, ["slow"])
    await asyncio.wait_for(in_hand.wait(), 10)  # the handler holds it: the drop catches it
    await asyncio.to_thread(_close_all_connections)
    gate.set()  # finishes on a dead channel: its ack fails, the broker redelivers it
    await pub.close()
    await pub_conn.close()

    pub_conn = AmqpConnection(amqp.url, t)
    await pub_conn.connect()
    pub = Publisher(pub_conn)
    await _send(pub, pub_conn, [f"after{i}" for i in range(10)])
    await wait_for(lambda: _async_true(len(done) == 11), timeout=30)
    await consumer.stop()
    assert await _ready_count(pub_conn, queue) == 0
    await pub.close()
    await pub_conn.close()
    await worker.close()


async def _async_true_count(amqp: AmqpConnection, queue: str, n: int) -> bool:
    return await _ready_count(amqp, queue) == n


async def test_stop_gives_back_what_is_still_in_hand(amqp: AmqpConnection):
    queue, pub = await _setup(amqp)

    async def handler(jobs: Sequence[SendJob]) -> list[BaseException | None]:
        await asyncio.sleep(3600)
        return [None] * len(jobs)

    consumer = BatchConsumer(amqp, queue, SendJob, handler)
    await consumer.start()
    await _send(pub, amqp, [str(i) for i in range(5)])
    await wait_for(lambda: _async_true(consumer.in_flight == 5), timeout=10)
    await consumer.stop(timeout=0.5)
    # The broker requeues them as it sees the channel close: give it a moment.
    await wait_for(lambda: _async_true_count(amqp, queue, 5), timeout=10)
    await pub.close()


def _consumer(
    kind: str, amqp: AmqpConnection, queue: str, taken: list[str]
) -> BatchConsumer[SendJob] | Consumer[SendJob]:
    """A consumer of either kind that appends each job's message id to `taken`."""

    async def handler(jobs: Sequence[SendJob]) -> list[BaseException | None]:
        taken.extend(j.message_id for j in jobs)
        return [None] * len(jobs)

    async def one(j: SendJob, _info: DeliveryInfo) -> None:
        taken.append(j.message_id)

    if kind == "batch":
        return BatchConsumer(amqp, queue, SendJob, handler)
    return Consumer(amqp, queue, SendJob, one)


@pytest.mark.parametrize("kind", ["batch", "single"])
async def test_subscribes_again_when_the_broker_cancels_the_consumer(
    amqp: AmqpConnection, caplog: pytest.LogCaptureFixture, kind: str
):
    """An operator deletes the queue and declares it again: consuming resumes, for both
    kinds of consumer (both subscribe on the raw channel, `subscription.py`)."""
    caplog.set_level(logging.WARNING, logger="smsgw_shared.amqp.subscription")
    t = amqp.topology
    queue, pub = await _setup(amqp)
    done: list[str] = []
    consumer = _consumer(kind, amqp, queue, done)
    await consumer.start()
    await _send(pub, amqp, ["before"])
    await wait_for(lambda: _async_true("before" in done), timeout=10)

    ch = await amqp.channel(confirms=False)
    await ch.queue_delete(queue, if_unused=False, if_empty=False)
    await ch.close()

    async def cancel_seen() -> bool:  # the queue comes back only once the consumer lost it
        return any(
            r.getMessage() == "consumer cancelled by the broker"
            and getattr(r, "queue", None) == queue
            for r in caplog.records
        )

    await wait_for(cancel_seen, timeout=10)
    again = AmqpConnection(amqp.url, t)  # a fresh connection declares from scratch
    await again.connect()
    await again.declare(t.job_queues("modem:*"))
    await again.close()

    await _send(pub, amqp, ["after"])
    await wait_for(lambda: _async_true("after" in done), timeout=20)
    await consumer.stop()
    await pub.close()


@pytest.mark.parametrize("kind", ["batch", "single"])
async def test_a_consumer_that_could_not_start_leaves_nothing_behind(
    amqp: AmqpConnection, monkeypatch: pytest.MonkeyPatch, kind: str
):
    """Starting on a missing queue fails, and that consumer never consumes the queue once
    it exists (a caller that retries starts a new one: an orphan would steal its jobs)."""
    monkeypatch.setattr(subscription, "RESUBSCRIBE_S", 0.2)
    t = amqp.topology
    queue = t.job_queue("modem:*")
    taken: list[str] = []
    consumer = _consumer(kind, amqp, queue, taken)
    channels = await _open_channels(amqp)
    for _ in range(3):  # a caller retrying
        with pytest.raises(LookupError):
            await consumer.start()
    # Closed for good, nothing left to subscribe later: no reopen hook, no re-subscribe loop.
    sub = consumer._subscription
    assert sub._channel is not None and sub._channel.is_closed
    assert sub._on_reopen not in sub._channel.reopen_callbacks
    assert sub._resubscribing is None or sub._resubscribing.done()
    await wait_for(lambda: _async_true_of(_open_channels(amqp), channels), timeout=10)
    assert await _open_channels(amqp) == channels
    queue, pub = await _setup(amqp)
    await _send(pub, amqp, ["orphaned?"])
    await wait_for(lambda: _async_true_of(_ready_count(amqp, queue), 1), timeout=10)
    assert taken == []
    assert await _ready_count(amqp, queue) == 1
    # A consumer started now gets the job: no orphan competes for it.
    fresh: list[str] = []
    again = _consumer(kind, amqp, queue, fresh)
    await again.start()
    await wait_for(lambda: _async_true("orphaned?" in fresh), timeout=10)
    assert taken == []
    await again.stop()
    await pub.close()


async def _async_true_of(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def _open_channels(amqp: AmqpConnection) -> int:
    raw = amqp.connection.transport.connection  # type: ignore[attr-defined]  # aiormq's
    return sum(1 for ch in raw.channels.values() if ch is not None and not ch.is_closed)


@pytest.mark.parametrize("kind", ["batch", "single"])
async def test_one_consumer_however_many_paths_subscribe(amqp: AmqpConnection, kind: str):
    """A reopen and a re-subscribe loop may both subscribe: the queue still has one
    consumer (two would double the prefetch, and a stop would cancel only one)."""
    queue, pub = await _setup(amqp)
    consumer = _consumer(kind, amqp, queue, [])
    await consumer.start()
    sub = consumer._subscription
    await asyncio.gather(sub._subscribe(), sub._subscribe(), sub._on_reopen())
    ch = await amqp.channel(confirms=False)
    q = await ch.declare_queue(queue, passive=True)
    assert q.declaration_result.consumer_count == 1
    await ch.close()
    await consumer.stop()
    await pub.close()


async def _lingering(
    amqp: AmqpConnection, batch_size: int, linger: float
) -> tuple[str, Publisher, BatchConsumer[SendJob], list[list[str]]]:
    """A started consumer with `linger` that records each batch's message ids."""
    queue, pub = await _setup(amqp)
    seen: list[list[str]] = []

    async def handler(jobs: Sequence[SendJob]) -> list[BaseException | None]:
        seen.append([j.message_id for j in jobs])
        return [None] * len(jobs)

    consumer = BatchConsumer(amqp, queue, SendJob, handler, batch_size=batch_size, linger=linger)
    await consumer.start()
    return queue, pub, consumer, seen


async def test_a_small_batch_lingers_for_more(amqp: AmqpConnection):
    """With `linger`, deliveries that trickle in are handled as one batch, not one each."""
    queue, pub, consumer, seen = await _lingering(amqp, batch_size=50, linger=1.0)
    for i in range(5):
        await _send(pub, amqp, [f"m{i}"])
        await asyncio.sleep(0.05)
    await wait_for(lambda: _async_true(sum(map(len, seen)) == 5), timeout=15)
    assert seen == [[f"m{i}" for i in range(5)]]
    await consumer.stop()
    assert await _ready_count(amqp, queue) == 0
    await pub.close()


async def test_a_full_batch_does_not_linger(amqp: AmqpConnection):
    _queue, pub, consumer, seen = await _lingering(amqp, batch_size=10, linger=60.0)
    await _send(pub, amqp, [f"m{i}" for i in range(20)])
    # Long before the 60 s linger: two full batches.
    await wait_for(lambda: _async_true(sum(map(len, seen)) == 20), timeout=10)
    assert [len(b) for b in seen] == [10, 10]
    await consumer.stop()
    await pub.close()


async def test_stop_does_not_wait_out_the_linger(amqp: AmqpConnection):
    queue, pub, consumer, seen = await _lingering(amqp, batch_size=50, linger=60.0)
    await _send(pub, amqp, ["lonely"])
    await wait_for(lambda: _async_true(consumer.in_flight == 1), timeout=10)
    assert seen == []  # lingering
    left = await asyncio.wait_for(consumer.stop(timeout=10), timeout=15)
    assert left == 0
    assert seen == [["lonely"]]  # handled at stop, not given back
    assert await _ready_count(amqp, queue) == 0
    await pub.close()


async def test_a_broker_drop_drops_what_lingers_instead_of_handling_it_twice(
    amqp: AmqpConnection, caplog: pytest.LogCaptureFixture
):
    """Deliveries buffered when the broker drops the connection are the broker's again (it
    redelivers them on the new channel): they are dropped, so each is handled once, not
    once stale (its ack failing) and once redelivered."""
    t = amqp.topology
    queue, pub = await _setup(amqp)
    seen: list[list[str]] = []

    async def handler(jobs: Sequence[SendJob]) -> list[BaseException | None]:
        seen.append([j.message_id for j in jobs])
        return [None] * len(jobs)

    worker = AmqpConnection(amqp.url, t, name="lingering-under-test")
    await worker.connect()
    consumer = BatchConsumer(worker, queue, SendJob, handler, batch_size=50, linger=3.0)
    await consumer.start()
    await _send(pub, amqp, ["a", "b"])
    await wait_for(lambda: _async_true(consumer.in_flight == 2), timeout=10)
    assert seen == []  # lingering when the drop comes
    caplog.set_level(logging.INFO, logger="smsgw_shared.amqp.batch")
    await asyncio.to_thread(_close_all_connections)
    # Once the linger runs out the stale copies go (or, without the drop, are handled),
    # and the broker's redelivered ones are handled and acked.
    await wait_for(
        lambda: _async_true(
            "of a closed channel" in caplog.text
            and sum(map(len, seen)) >= 2
            and consumer.in_flight == 0
        ),
        timeout=30,
    )
    assert sorted(i for batch in seen for i in batch) == ["a", "b"]
    await consumer.stop()
    await worker.close()
    assert await _ready_count(amqp, queue) == 0
    await pub.close()
