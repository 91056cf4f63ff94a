"""Topology, publisher and consumer against the real RabbitMQ."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from smsgw_shared.amqp import (
    AmqpConnection,
    Consumer,
    DeliveryInfo,
    MissingExchangeError,
    Outgoing,
    PermanentFailure,
    Poison,
    Publisher,
    QueueSpec,
    RetryLater,
    UnroutableError,
)
from smsgw_shared.amqp.consumer import REASON_HEADER
from smsgw_shared.messages import SendJob
from smsgw_shared.testing import wait_for


def job(mid: str, route: str = "modem:*") -> SendJob:
    return SendJob(message_id=mid, to="+79160001234", text="hi", route=route)


async def dlq_messages(amqp: AmqpConnection, queue: str) -> list[tuple[bytes, dict]]:
    ch = await amqp.channel(confirms=False)
    q = await ch.get_queue(amqp.topology.dlq(queue), ensure=False)
    out = []
    while (m := await q.get(no_ack=True, fail=False)) is not None:
        out.append((m.body, dict(m.headers or {})))
    await ch.close()
    return out


async def test_topology_declares_twice(amqp: AmqpConnection):
    specs = amqp.topology.job_queues("modem:*") + amqp.topology.inbound_queues()
    await amqp.declare(specs)
    # A second connection (another service starting) declares the same without error.
    other = AmqpConnection(amqp.url, amqp.topology)
    await other.connect()
    await other.declare(specs)
    await other.close()


async def take_all(amqp: AmqpConnection, queue: str) -> int:
    """Empty a queue; how many messages it held."""
    ch = await amqp.channel(confirms=False)
    q = await ch.declare_queue(queue, passive=True)
    got = 0
    while await q.get(no_ack=True, fail=False) is not None:
        got += 1
    await ch.close()
    return got


async def test_confirmed_publish_arrives_and_unroutable_raises(amqp: AmqpConnection):
    t = amqp.topology
    await amqp.declare(t.job_queues("modem:*"))
    pub = Publisher(amqp)
    await pub.publish(Outgoing(t.jobs_exchange, t.job_routing_key("modem:*"), job("a")))
    with pytest.raises(UnroutableError):
        await pub.publish(Outgoing(t.jobs_exchange, "nobody.listens", job("b")))
    errors = await pub.publish_many(
        [Outgoing(t.jobs_exchange, "modem.pool", job(str(i))) for i in range(50)]
        + [Outgoing(t.jobs_exchange, "nope", job("x"))]
    )
    assert errors[:50] == [None] * 50
    assert isinstance(errors[50], UnroutableError)
    assert await take_all(amqp, t.job_queue("modem:*")) == 51
    await pub.close()


async def test_a_publish_to_a_missing_exchange_fails_alone_and_keeps_the_connection(
    amqp: AmqpConnection,
):
    # Sent as is, it would close the channel, and the publishes pipelined behind it the
    # whole connection (`CHANNEL_ERROR - expected 'channel.open'`).
    t = amqp.topology
    await amqp.declare(t.job_queues("modem:*"))
    reconnects: list[object] = []
    amqp.connection.reconnect_callbacks.add(lambda *a: reconnects.append(a))
    pub = Publisher(amqp)
    await pub.publish(Outgoing(t.jobs_exchange, "modem.pool", job("first")))
    channel = await pub._get_channel()
    underlay = await channel.get_underlay_channel()
    missing = f"{t.ns}.no-such-exchange"
    good = [Outgoing(t.jobs_exchange, "modem.pool", job(str(i))) for i in range(6)]
    errors = await pub.publish_many(
        [*good[:3], Outgoing(missing, "modem.pool", job("x")), *good[3:]]
    )
    assert errors[:3] == [None] * 3 and errors[4:] == [None] * 3
    assert isinstance(errors[3], MissingExchangeError) and missing in str(errors[3])
    with pytest.raises(MissingExchangeError):
        await pub.publish(Outgoing(missing, "modem.pool", job("y")))
    await asyncio.sleep(1.5)  # a reconnect would be under way by now (interval 1 s)
    assert reconnects == []
    assert await channel.get_underlay_channel() is underlay and not channel.is_closed
    assert await take_all(amqp, t.job_queue("modem:*")) == 7
    await pub.close()


async def test_outcomes_retry_poison_permanent(amqp: AmqpConnection):
    t = amqp.topology
    await amqp.declare(t.job_queues("modem:*"))
    queue = t.job_queue("modem:*")
    seen: list[tuple[str, int]] = []

    async def handler(payload: SendJob, info: DeliveryInfo) -> None:
        seen.append((payload.message_id, info.attempt))
        if payload.message_id == "retry" and info.attempt < 2:
            raise RetryLater("not now")
        if payload.message_id == "poison":
            raise Poison("cannot use this")
        if payload.message_id == "perm":
            raise PermanentFailure("never works")
        if payload.message_id == "exhaust":
            raise RetryLater("always busy")

    hooked: list[str] = []

    async def on_dead(body: bytes, reason: str) -> None:
        hooked.append(reason.split(":", maxsplit=1)[0])

    consumer = Consumer(amqp, queue, SendJob, handler, max_attempts=3, on_dead_letter=on_dead)
    await consumer.start()
    pub = Publisher(amqp)
    for mid in ("ok", "retry", "poison", "perm", "exhaust"):
        await pub.publish(Outgoing(t.jobs_exchange, "modem.pool", job(mid)))
    await pub.publish(Outgoing(t.jobs_exchange, "modem.pool", b"{not json"))

    async def retried() -> bool:
        return ("retry", 2) in seen and ("exhaust", 2) in seen

    await wait_for(retried, timeout=15)
    dead: list[tuple[bytes, dict]] = []

    async def four_dead() -> bool:
        dead.extend(await dlq_messages(amqp, queue))
        return len(dead) >= 4

    await wait_for(four_dead, timeout=10)
    reasons = sorted(h[REASON_HEADER].split(":")[0] for _, h in dead)
    assert reasons == ["failed", "poison", "poison", "retries exhausted"]
    assert sorted(hooked) == reasons  # the service heard of each before it went to the DLQ
    assert ("ok", 0) in seen
    await consumer.stop()
    await pub.close()


def _close_all_connections() -> None:
    subprocess.run(
        ["rabbitmqctl", "close_all_connections", "test: broker drop"],
        check=True,
        capture_output=True,
        timeout=60,
    )


async def test_consumer_survives_broker_dropping_connections(amqp: AmqpConnection):
    t = amqp.topology
    await amqp.declare(t.job_queues("modem:*"))
    queue = t.job_queue("modem:*")
    done: set[str] = set()
    gate = asyncio.Event()

    async def handler(payload: SendJob, info: DeliveryInfo) -> None:
        if payload.message_id == "slow":
            await gate.wait()
        done.add(payload.message_id)

    worker_conn = AmqpConnection(amqp.url, t, name="worker-under-test")
    await worker_conn.connect()
    consumer = Consumer(worker_conn, queue, SendJob, handler, prefetch=4)
    await consumer.start()
    pub = Publisher(amqp)
    await pub.publish(Outgoing(t.jobs_exchange, "modem.pool", job("slow")))
    await pub.publish(Outgoing(t.jobs_exchange, "modem.pool", job("before")))
    await wait_for(lambda: _async_true("before" in done))

    await asyncio.to_thread(_close_all_connections)
    gate.set()  # the slow job finishes on a dead channel: its ack fails, it is redelivered

    # The robust connection comes back and the consumer keeps consuming.
    pub2_conn = AmqpConnection(amqp.url, t)
    await pub2_conn.connect()
    pub2 = Publisher(pub2_conn)
    await pub2.publish(Outgoing(t.jobs_exchange, "modem.pool", job("after")))
    await wait_for(lambda: _async_true({"slow", "before", "after"} <= done), timeout=30)

    await consumer.stop()
    await worker_conn.close()
    await pub2_conn.close()


async def _async_true(v: bool) -> bool:
    return v


async def test_a_message_that_keeps_crashing_its_handler_is_dead_lettered(amqp: AmqpConnection):
    t = amqp.topology
    await amqp.declare(t.job_queues("modem:*"))
    queue = t.job_queue("modem:*")
    tries = 0
    hooked: list[str] = []

    async def handler(payload: SendJob, info: DeliveryInfo) -> None:
        nonlocal tries
        tries += 1
        raise RuntimeError("bug in the handler")

    async def on_dead(body: bytes, reason: str) -> None:
        hooked.append(reason)

    consumer = Consumer(amqp, queue, SendJob, handler, max_deliveries=2, on_dead_letter=on_dead)
    await consumer.start()
    pub = Publisher(amqp)
    await pub.publish(Outgoing(t.jobs_exchange, "modem.pool", job("crashes")))

    async def dead() -> bool:
        return bool(hooked)

    await wait_for(dead, timeout=15)
    assert tries == 2 and "delivered 3 times" in hooked[0]
    dead_letters: list[tuple[bytes, dict]] = []

    async def in_dlq() -> bool:
        dead_letters.extend(await dlq_messages(amqp, queue))
        return bool(dead_letters)

    await wait_for(in_dlq, timeout=10)
    assert SendJob.from_bytes(dead_letters[0][0]).message_id == "crashes"
    await consumer.stop()
    await pub.close()


async def _ready_count(amqp: AmqpConnection, queue: str) -> int:
    ch = await amqp.channel(confirms=False)
    q = await ch.declare_queue(queue, passive=True)
    count = q.declaration_result.message_count
    await ch.close()
    return int(count or 0)


async def _ready_is(amqp: AmqpConnection, queue: str, n: int) -> bool:
    return await _ready_count(amqp, queue) == n


async def test_acks_of_a_batch_finishing_together_all_reach_the_broker(amqp: AmqpConnection):
    """Handlers released at once are acked with coalesced frames; failures in the middle of
    the run are dead-lettered, and nothing is left unacked (it would come back as ready
    once the consumer's channel closes)."""
    t = amqp.topology
    await amqp.declare(t.job_queues("modem:*"))
    queue = t.job_queue("modem:*")
    gate = asyncio.Event()
    arrived: list[str] = []

    async def handler(payload: SendJob, info: DeliveryInfo) -> None:
        arrived.append(payload.message_id)
        await gate.wait()
        if int(payload.message_id) % 3 == 0:
            raise PermanentFailure("every third fails")

    consumer = Consumer(amqp, queue, SendJob, handler, prefetch=300)
    await consumer.start()
    pub = Publisher(amqp)
    await pub.publish_many(
        [Outgoing(t.jobs_exchange, "modem.pool", job(str(i))) for i in range(1, 201)]
    )
    await wait_for(lambda: _async_true(len(arrived) == 200), timeout=15)
    gate.set()
    await wait_for(lambda: _async_true(consumer.in_flight == 0), timeout=15)
    await consumer.stop()
    assert await _ready_count(amqp, queue) == 0
    assert len(await dlq_messages(amqp, queue)) == 66
    await pub.close()


async def test_a_slow_handler_does_not_hold_back_the_acks_behind_it(amqp: AmqpConnection):
    """With prefetch 5, a handler stuck on the first delivery would stall the queue if the
    finished ones behind it waited for it to be acked."""
    t = amqp.topology
    await amqp.declare(t.job_queues("modem:*"))
    queue = t.job_queue("modem:*")
    done: list[str] = []
    gate = asyncio.Event()

    async def handler(payload: SendJob, info: DeliveryInfo) -> None:
        if payload.message_id == "slow":
            await gate.wait()
        done.append(payload.message_id)

    consumer = Consumer(amqp, queue, SendJob, handler, prefetch=5)
    await consumer.start()
    pub = Publisher(amqp)
    await pub.publish(Outgoing(t.jobs_exchange, "modem.pool", job("slow")))
    await pub.publish_many(
        [Outgoing(t.jobs_exchange, "modem.pool", job(str(i))) for i in range(30)]
    )
    await wait_for(lambda: _async_true(len(done) == 30), timeout=15)
    gate.set()
    await wait_for(lambda: _async_true("slow" in done), timeout=5)
    await consumer.stop()
    assert await _ready_count(amqp, queue) == 0
    await pub.close()


async def test_a_handler_cancelled_at_stop_is_requeued_and_the_rest_stay_acked(
    amqp: AmqpConnection,
):
    t = amqp.topology
    await amqp.declare(t.job_queues("modem:*"))
    queue = t.job_queue("modem:*")
    done: list[str] = []

    async def handler(payload: SendJob, info: DeliveryInfo) -> None:
        if payload.message_id == "stuck":
            await asyncio.sleep(3600)
        done.append(payload.message_id)

    consumer = Consumer(amqp, queue, SendJob, handler, prefetch=50)
    await consumer.start()
    pub = Publisher(amqp)
    await pub.publish_many(
        [Outgoing(t.jobs_exchange, "modem.pool", job(m)) for m in ("a", "stuck", "b", "c")]
    )
    await wait_for(lambda: _async_true(len(done) == 3), timeout=15)
    assert await consumer.stop(timeout=0.5) == 1
    # Only the one in hand comes back. The broker requeues it asynchronously (a quorum
    # queue applies the nack through its log), so wait for it, then check nothing else is.
    await wait_for(lambda: _ready_is(amqp, queue, 1), timeout=15)
    ch = await amqp.channel(confirms=False)
    q = await ch.declare_queue(queue, passive=True)
    got = await q.get(no_ack=True)
    assert SendJob.model_validate_json(got.body).message_id == "stuck"
    assert await q.get(no_ack=True, fail=False) is None
    await ch.close()
    await pub.close()


async def test_declare_forever_retries_until_it_works(amqp: AmqpConnection, monkeypatch):
    """A failed declare (channel closed under it, broker gone) is tried again, backing off."""
    real = amqp.declare
    calls = 0

    async def flaky(queues=()):
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("channel closed")
        await real(queues)

    monkeypatch.setattr(amqp, "declare", flaky)
    specs = amqp.topology.job_queues("modem:*")
    await asyncio.wait_for(amqp.declare_forever(specs, first_delay=0.01), 5)
    assert calls == 3
    ch = await amqp.channel(confirms=False)
    await ch.declare_queue(specs[0].name, passive=True)  # it exists now
    await ch.close()


async def test_an_exchange_deleted_behind_the_publishers_back_is_noticed(amqp: AmqpConnection):
    """The broker lost the topology (reset, node recreated without its definitions) while
    the exchange was known to exist: the publish fails (never hangs), the exchange is
    asked about again, and the connection declares its topology again."""
    t = amqp.topology
    await amqp.declare(t.job_queues("modem:*"))
    pub = Publisher(amqp)
    await pub.publish(Outgoing(t.jobs_exchange, "modem.pool", job("before")))
    assert not amqp.topology_lost.is_set()
    ch = await amqp.channel(confirms=False)
    await ch.exchange_delete(t.jobs_exchange)
    await ch.close()
    (err,) = await asyncio.wait_for(
        pub.publish_many([Outgoing(t.jobs_exchange, "modem.pool", job("deleted"))]), 15
    )
    assert isinstance(err, MissingExchangeError) and t.jobs_exchange in str(err)

    async def declared_again() -> bool:
        return await pub.publish_many([Outgoing(t.jobs_exchange, "modem.pool", job("a"))]) == [None]

    await wait_for(declared_again, 15)  # the connection declared it all again, bindings too
    assert await take_all(amqp, t.job_queue("modem:*")) == 2  # "before" and "after"
    await pub.close()


async def test_a_lost_binding_is_declared_again(amqp: AmqpConnection):
    """The jobs exchange exists but the queue's binding is gone (another process deleted
    and declared the exchange again): the unroutable publish makes the connection declare
    everything again, and the next publish goes through."""
    t = amqp.topology
    specs = t.job_queues("modem:*")
    await amqp.declare(specs)
    ch = await amqp.channel(confirms=False)
    q = await ch.declare_queue(t.job_queue("modem:*"), passive=True)
    await q.unbind(t.jobs_exchange, t.job_routing_key("modem:*"))
    await ch.close()
    pub = Publisher(amqp)
    with pytest.raises(UnroutableError):
        await pub.publish(Outgoing(t.jobs_exchange, t.job_routing_key("modem:*"), job("lost")))

    async def bound_again() -> bool:
        out = [Outgoing(t.jobs_exchange, t.job_routing_key("modem:*"), job("again"))]
        return await pub.publish_many(out) == [None]

    await wait_for(bound_again, 15)
    assert await take_all(amqp, t.job_queue("modem:*")) == 1
    await pub.close()


async def test_a_reconnect_declares_everything_again(amqp: AmqpConnection, monkeypatch):
    """After the connection comes back the broker may be a different one (or reset)."""
    t = amqp.topology
    await amqp.declare(t.job_queues("modem:*"))
    real = amqp.declare
    again: list[set[str]] = []

    async def spy(queues=()):
        specs = list(queues)
        again.append({s.name for s in specs})
        await real(specs)

    monkeypatch.setattr(amqp, "declare", spy)
    await asyncio.to_thread(_close_all_connections)

    async def declared_again() -> bool:
        # Queues are declared after the exchanges: this one last.
        return bool(again) and amqp.is_connected and t.job_queue("modem:*") in amqp.declared_names

    await wait_for(declared_again, 20)
    assert t.job_queue("modem:*") in again[-1] and t.jobs_exchange in amqp.declared_names


async def test_a_queue_forgotten_for_redeclaring_is_still_known_for_cleanup(
    amqp: AmqpConnection,
):
    """An unroutable publish makes the connection forget what it declared (to declare it
    all again); the names a test deletes afterwards must not go with it, or its queues are
    left on the broker (they were, after every test run)."""
    t = amqp.topology
    extra = QueueSpec(f"{t.ns}.extra", {}, ((t.jobs_exchange, "extra"),))
    await amqp.declare([extra])
    amqp.unroutable([t.jobs_exchange])
    assert extra.name not in amqp.declared_names
    assert extra.name in amqp.queue_names
