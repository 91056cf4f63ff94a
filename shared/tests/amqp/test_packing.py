"""Packed status events (`amqp/packing.py`) on the real RabbitMQ: the Packer publishing, and
how `BatchConsumer` settles a packed message (once, by its first failure). Without a broker:
`test_packing_units`."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

import pytest

from smsgw_shared.amqp import (
    AmqpConnection,
    BatchConsumer,
    MissingExchangeError,
    Outgoing,
    Packer,
    PermanentFailure,
    Publisher,
    Requeue,
    RetryLater,
    UnroutableError,
)
from smsgw_shared.amqp.consumer import REASON_HEADER
from smsgw_shared.amqp.packing import MAX_PACK, PACKED, unpack
from smsgw_shared.messages import StatusEvent
from smsgw_shared.testing import wait_for

from .test_amqp import _async_true, _ready_count, dlq_messages
from .test_packing_units import _publish_together, event


async def _setup(amqp: AmqpConnection) -> tuple[str, Publisher, Packer]:
    await amqp.declare(amqp.topology.inbound_queues())
    pub = Publisher(amqp)
    return amqp.topology.status_queue, pub, Packer(pub)


def _out(amqp: AmqpConnection, payload: StatusEvent | bytes, key: str = "status.sent") -> Outgoing:
    return Outgoing(amqp.topology.events_exchange, key, payload)


async def _raw_messages(amqp: AmqpConnection, queue: str) -> list[tuple[bytes, dict]]:
    """Take every message of a queue as it is (body, headers)."""
    ch = await amqp.channel(confirms=False)
    q = await ch.declare_queue(queue, passive=True)
    out = []
    while (m := await q.get(no_ack=True, fail=False)) is not None:
        out.append((m.body, dict(m.headers or {})))
    await ch.close()
    return out


async def _unconsumed(amqp: AmqpConnection, queue: str) -> bool:
    ch = await amqp.channel(confirms=False)
    q = await ch.declare_queue(queue, passive=True)
    await ch.close()
    return not q.declaration_result.consumer_count


async def _settled_empty(amqp: AmqpConnection, queue: str) -> None:
    """Nothing ready and nothing unacked: once the broker has dropped the stopped consumer
    (its channel closed), anything it left unacked is ready again, so the count must be 0."""
    await wait_for(lambda: _unconsumed(amqp, queue), timeout=20)
    assert await _ready_count(amqp, queue) == 0


# -- Packer and BatchConsumer on the real broker -----------------------------------------


async def test_200_concurrent_publishes_are_few_messages_and_each_payload_is_handled_once(
    amqp: AmqpConnection,
):
    queue, pub, packer = await _setup(amqp)
    events = [event(f"m{i}", state="sent" if i % 2 else "delivered") for i in range(200)]
    items = [_out(amqp, e, amqp.topology.status_key(e.state)) for e in events]
    assert await _publish_together(packer, items) == [None] * 200
    # Confirmed before returning: the messages are in the queue already.
    in_queue = await _ready_count(amqp, queue)
    assert 2 <= in_queue <= 10, in_queue  # one pack per key (at least), far fewer than 200

    seen: list[str] = []

    async def handler(batch: Sequence[StatusEvent]) -> list[BaseException | None]:
        seen.extend(e.event_id for e in batch)
        return [None] * len(batch)

    consumer = BatchConsumer(amqp, queue, StatusEvent, handler)
    await consumer.start()
    await wait_for(lambda: _async_true(len(seen) >= 200), timeout=20)
    await consumer.stop()
    assert Counter(seen) == Counter(e.event_id for e in events)  # all 200, exactly once
    await _settled_empty(amqp, queue)  # nothing given back for a redelivery
    assert await dlq_messages(amqp, queue) == []
    await pub.close()


async def test_a_batch_holds_at_most_batch_size_payloads_counting_what_packs_hold(
    amqp: AmqpConnection,
):
    """batch_size counts payloads, not messages: packs of 50 with batch_size 60 are
    handled one pack a batch (a pack larger than batch_size still goes, alone)."""
    queue, pub, packer = await _setup(amqp)
    events = [event(f"m{i}") for i in range(200)]
    assert await _publish_together(packer, [_out(amqp, e) for e in events]) == [None] * 200
    assert await _ready_count(amqp, queue) == 200 // MAX_PACK
    sizes: list[int] = []

    async def handler(batch: Sequence[StatusEvent]) -> list[BaseException | None]:
        sizes.append(len(batch))
        return [None] * len(batch)

    consumer = BatchConsumer(amqp, queue, StatusEvent, handler, batch_size=60, concurrency=1)
    await consumer.start()
    await wait_for(lambda: _async_true(sum(sizes) >= 200), timeout=20)
    await consumer.stop()
    assert sizes == [MAX_PACK] * 4
    small = BatchConsumer(amqp, queue, StatusEvent, handler, batch_size=10, concurrency=1)
    sizes.clear()
    assert await _publish_together(packer, [_out(amqp, e) for e in events[:50]]) == [None] * 50
    await small.start()
    await wait_for(lambda: _async_true(sum(sizes) >= 50), timeout=20)
    await small.stop()
    assert sizes == [50]
    await _settled_empty(amqp, queue)
    await pub.close()


async def test_packed_messages_in_the_queue_unpack_to_what_was_published(amqp: AmqpConnection):
    queue, pub, packer = await _setup(amqp)
    events = [event(f"m{i}") for i in range(200)]
    assert await _publish_together(packer, [_out(amqp, e) for e in events]) == [None] * 200
    raw = await _raw_messages(amqp, queue)
    assert len(raw) < 200
    assert sum(h.get(PACKED, 1) for _, h in raw) == 200
    got = [p for body, headers in raw for p in unpack(StatusEvent, body, headers)]
    assert got == events  # in order, nothing lost or doubled
    for body, headers in raw:
        if PACKED in headers:
            assert len(json.loads(body)) == headers[PACKED]
    await pub.close()


async def _consume_packs(
    amqp: AmqpConnection,
    outcome_of: dict[str, list[BaseException | None]],
    packs: Sequence[Sequence[str]],
    **consumer_kw: int,
) -> tuple[list[str], BatchConsumer[StatusEvent], Publisher, str]:
    """Publish each of `packs` as one packed message (checked), then consume them with a
    handler answering `outcome_of[mid]` in turn (None once the list runs out)."""
    queue, pub, packer = await _setup(amqp)
    for mids in packs:
        before = await _ready_count(amqp, queue)
        assert await _publish_together(packer, [_out(amqp, event(m)) for m in mids]) == [
            None
        ] * len(mids)
        assert await _ready_count(amqp, queue) == before + 1  # one message for the pack
    seen: list[str] = []

    async def handler(batch: Sequence[StatusEvent]) -> list[BaseException | None]:
        out: list[BaseException | None] = []
        for e in batch:
            assert e.message_id is not None
            seen.append(e.message_id)
            todo = outcome_of.get(e.message_id, [])
            out.append(todo.pop(0) if todo else None)
        return out

    consumer = BatchConsumer(amqp, queue, StatusEvent, handler, **consumer_kw)
    await consumer.start()
    return seen, consumer, pub, queue


async def test_a_packed_message_with_one_retry_later_is_retried_whole(amqp: AmqpConnection):
    pack = [f"r{i}" for i in range(10)]
    others = [f"ok{i}" for i in range(10)]
    seen, consumer, pub, queue = await _consume_packs(
        amqp, {"r3": [RetryLater("busy", delay=0.2)]}, [pack, others]
    )
    # The whole pack back once (the other acked): stop() then waits for the acks.
    await wait_for(lambda: _async_true(len(seen) == 2 * len(pack) + len(others)), timeout=20)
    await consumer.stop()
    counts = Counter(seen)
    assert all(counts[m] == 2 for m in pack), counts  # the whole message came back
    assert all(counts[m] == 1 for m in others), counts  # the other pack was acked once
    await _settled_empty(amqp, queue)
    assert await dlq_messages(amqp, queue) == []
    await pub.close()


async def test_a_packed_message_with_one_requeue_is_redelivered_whole(amqp: AmqpConnection):
    pack = [f"q{i}" for i in range(10)]
    seen, consumer, pub, queue = await _consume_packs(
        amqp, {"q7": [Requeue("give it back")]}, [pack]
    )
    await wait_for(lambda: _async_true(len(seen) == 2 * len(pack)), timeout=20)
    await consumer.stop()
    assert Counter(seen) == Counter({m: 2 for m in pack})
    await _settled_empty(amqp, queue)
    assert await dlq_messages(amqp, queue) == []
    await pub.close()


async def test_a_packed_message_with_one_permanent_failure_goes_whole_to_the_dlq(
    amqp: AmqpConnection,
):
    pack = [f"p{i}" for i in range(10)]
    others = [f"ok{i}" for i in range(10)]
    # A later failure in the same message does not settle it again: the first one decides.
    outcomes: dict[str, list[BaseException | None]] = {
        "p2": [PermanentFailure("never works")],
        "p8": [PermanentFailure("also bad")],
    }
    seen, consumer, pub, queue = await _consume_packs(amqp, outcomes, [pack, others])
    dead: list[tuple[bytes, dict]] = []

    async def in_dlq() -> bool:
        dead.extend(await dlq_messages(amqp, queue))
        return bool(dead)

    await wait_for(in_dlq, timeout=20)
    await wait_for(lambda: _async_true(len(seen) == len(pack + others)), timeout=20)
    await consumer.stop()
    dead.extend(await dlq_messages(amqp, queue))
    assert len(dead) == 1, dead
    body, headers = dead[0]
    assert headers[REASON_HEADER] == "failed: never works"
    assert headers[PACKED] == 10
    assert [e.message_id for e in unpack(StatusEvent, body, headers)] == pack
    assert Counter(seen) == Counter(pack + others)  # each handled once, nothing retried
    await _settled_empty(amqp, queue)
    await pub.close()


@pytest.mark.parametrize("retry", [RetryLater("busy", delay=0.2), Requeue("back"), OSError("blip")])
async def test_a_payload_asking_for_a_retry_is_not_dead_lettered_by_another_ones_failure(
    amqp: AmqpConnection, retry: BaseException
):
    """Once per message, `fail` is permanent and `flaky` fails only the first time (as an
    event whose store write hit a transient error). Before packing each was its own
    message: `flaky` was retried and applied. In one pack, `flaky` must get its retry too
    (the pack may then go to the DLQ for `fail`, which is idempotent to replay)."""
    pack = ["fail", "flaky", "ok"]
    outcomes: dict[str, list[BaseException | None]] = {
        "fail": [PermanentFailure("unknown message")] * 10,
        "flaky": [retry],
    }
    seen, consumer, pub, _ = await _consume_packs(amqp, outcomes, [pack])
    await wait_for(lambda: _async_true("flaky" in seen), timeout=20)
    try:
        await wait_for(lambda: _async_true(seen.count("flaky") >= 2), timeout=5)
    finally:
        await consumer.stop()
        await pub.close()


async def test_malformed_packs_are_dead_lettered_as_poison_and_do_not_block(
    amqp: AmqpConnection,
):
    queue, pub, packer = await _setup(amqp)
    bad = {
        "bad json": b'[{"state": "sent", "route"',
        "wrong shape": b'[{"message_id": "x", "route": "smpp:b1"}]',
        "not objects": b"[1, 2, 3]",
        "empty": b"[]",
        "an object": event("obj").to_bytes(),
        "newer": b"[" + event("v2a", v=2).to_bytes() + b"," + event("v2b").to_bytes() + b"]",
    }
    items = [
        Outgoing(amqp.topology.events_exchange, "status.sent", body, headers={PACKED: 2})
        for body in bad.values()
    ]
    assert await pub.publish_many(items) == [None] * len(items)
    good = [event(f"ok{i}") for i in range(30)]
    assert await _publish_together(packer, [_out(amqp, e) for e in good]) == [None] * 30
    seen: list[str] = []

    async def handler(batch: Sequence[StatusEvent]) -> list[BaseException | None]:
        seen.extend(e.message_id or "" for e in batch)
        return [None] * len(batch)

    # batch_size 1: the bad ones each come alone, ahead of the good pack.
    consumer = BatchConsumer(amqp, queue, StatusEvent, handler, batch_size=1)
    await consumer.start()
    dead: list[tuple[bytes, dict]] = []

    async def all_dead() -> bool:
        dead.extend(await dlq_messages(amqp, queue))
        return len(dead) >= len(bad)

    await wait_for(all_dead, timeout=20)
    await wait_for(lambda: _async_true(len(seen) >= 30), timeout=20)
    await consumer.stop()
    assert sorted(seen) == sorted(e.message_id or "" for e in good)
    assert sorted(body for body, _ in dead) == sorted(bad.values())
    reasons = {body: h[REASON_HEADER] for body, h in dead}
    for name, body in bad.items():
        reason = reasons[body]
        assert reason.startswith("poison: "), (name, reason)
        assert "StatusEvent" in reason, (name, reason)
    assert "empty" in reasons[bad["empty"]]
    assert "unsupported version 2 > 1" in reasons[bad["newer"]]
    await _settled_empty(amqp, queue)
    await pub.close()


async def test_every_caller_hears_of_a_missing_exchange_or_an_unroutable_pack(
    amqp: AmqpConnection,
):
    t = amqp.topology
    queue, pub, packer = await _setup(amqp)
    missing = f"{t.ns}.no-such-exchange"
    mixed = [Outgoing(missing, "status.sent", event(f"x{i}")) for i in range(30)] + [
        _out(amqp, event(f"ok{i}")) for i in range(30)
    ]
    results = await _publish_together(packer, mixed)
    assert all(isinstance(r, MissingExchangeError) for r in results[:30]), results[:30]
    assert results[30:] == [None] * 30  # the other key's pack is unaffected
    results = await _publish_together(
        packer, [_out(amqp, event(f"u{i}"), key="nobody.listens") for i in range(30)]
    )
    assert all(isinstance(r, UnroutableError) for r in results), results
    # The Packer and its publisher keep working.
    assert await _publish_together(packer, [_out(amqp, event("after"))] * 5) == [None] * 5
    raw = await _raw_messages(amqp, queue)
    got = [p.message_id for body, h in raw for p in unpack(StatusEvent, body, h)]
    assert got == [f"ok{i}" for i in range(30)] + ["after"] * 5
    await packer.close()
    await pub.close()
