"""Batched publishing (`amqp/frames.py`) against the real RabbitMQ: what arrives, and each
message's own outcome (ack, return, nack, closed channel, no confirm in time)."""

from __future__ import annotations

from datetime import UTC, datetime

import aiormq
import pytest
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.frame import marshal
from pamqp.header import ContentHeader

from smsgw_shared.amqp import AmqpConnection, Outgoing, Publisher, UnroutableError, frames
from smsgw_shared.amqp.frames import Frame, encode, publish_frames
from smsgw_shared.amqp.topology import QueueSpec

from .test_amqp import job


async def _underlay(pub: Publisher) -> aiormq.Channel:
    ch = await (await pub._get_channel()).get_underlay_channel()
    assert isinstance(ch, aiormq.Channel)
    return ch


def _frame(exchange: str, key: str, body: bytes, message_id: str | None = None) -> Frame:
    props = Basic.Properties(content_type="application/json", delivery_mode=2)
    props.message_id = message_id
    return Frame(exchange, key, body, props)


def _clean(ch: aiormq.Channel) -> bool:
    """Nothing of ours left in the channel's bookkeeping."""
    return not ch.confirmations and not ch.message_id_delivery_tag


async def test_a_batch_arrives_whole_and_in_order(amqp: AmqpConnection):
    t = amqp.topology
    await amqp.declare(t.job_queues("modem:*"))
    queue = t.job_queue("modem:*")
    pub = Publisher(amqp)
    big = b"x" * 300_000  # larger than a frame (128 KiB): split into body frames
    items = [
        Outgoing(t.jobs_exchange, "modem.pool", f"m{i}".encode(), message_id=f"id-{i}")
        for i in range(200)
    ]
    items[50] = Outgoing(t.jobs_exchange, "modem.pool", big, message_id="id-big")
    items[60] = Outgoing(t.jobs_exchange, "modem.pool", b"", message_id="id-empty")
    items[70] = Outgoing(t.jobs_exchange, "modem.pool", b"no id")
    items[80] = Outgoing(t.jobs_exchange, "modem.pool", job("h"), headers={"x-attempt": 3})
    assert await pub.publish_many(items) == [None] * 200
    assert _clean(await _underlay(pub))

    ch = await amqp.channel(confirms=False)
    q = await ch.declare_queue(queue, passive=True)
    got = []
    while (m := await q.get(no_ack=True, fail=False)) is not None:
        got.append(m)
    await ch.close()
    assert [m.body for m in got] == [it.body() for it in items]
    assert got[50].message_id == "id-big" and got[0].message_id == "id-0"
    assert got[70].message_id  # one is made up when the caller gave none
    assert (got[80].headers or {}).get("x-attempt") == 3
    assert all(m.delivery_mode == 2 and m.content_type == "application/json" for m in got)
    await pub.close()


async def test_each_message_of_a_batch_has_its_own_outcome(amqp: AmqpConnection):
    t = amqp.topology
    await amqp.declare(t.job_queues("modem:*"))
    # A queue that takes one message and nacks the rest.
    one = f"{t.ns}.only-one"
    await amqp.declare(
        [
            QueueSpec(
                one,
                {"x-max-length": 1, "x-overflow": "reject-publish"},
                ((t.jobs_exchange, "one"),),
            )
        ]
    )
    pub = Publisher(amqp)
    keys = ["modem.pool", "nowhere", "modem.pool", "one", "one", "modem.pool", "nowhere"]
    errors = await pub.publish_many([Outgoing(t.jobs_exchange, k, job(k)) for k in keys])
    assert errors[0] is None and errors[2] is None and errors[5] is None
    assert isinstance(errors[1], UnroutableError) and isinstance(errors[6], UnroutableError)
    assert errors[3] is None
    assert errors[4] is not None and not isinstance(errors[4], UnroutableError)  # nacked
    assert _clean(await _underlay(pub))
    # The channel goes on publishing.
    assert await pub.publish_many([Outgoing(t.jobs_exchange, "modem.pool", job("z"))]) == [None]
    ch = await amqp.channel(confirms=False)
    await ch.queue_delete(one)
    await ch.close()
    await pub.close()


async def test_no_confirm_in_time_is_a_timeout_per_message(amqp: AmqpConnection):
    t = amqp.topology
    await amqp.declare(t.job_queues("modem:*"))
    pub = Publisher(amqp)
    ch = await _underlay(pub)
    out = await publish_frames(
        ch, [_frame(t.jobs_exchange, "modem.pool", b"a"), _frame(t.jobs_exchange, "x", b"b")], 0
    )
    assert [type(o) for o in out] == [TimeoutError, TimeoutError]
    assert _clean(ch)
    # The late confirms are ignored; the next batch is confirmed as usual.
    assert [
        type(o) for o in await publish_frames(ch, [_frame(t.jobs_exchange, "modem.pool", b"c")], 10)
    ] == [Basic.Ack]
    await pub.close()


async def test_a_channel_the_broker_closes_fails_the_batch_instead_of_hanging(
    amqp: AmqpConnection,
):
    t = amqp.topology
    await amqp.declare(t.job_queues("modem:*"))
    pub = Publisher(amqp)
    ch = await _underlay(pub)
    frames = [_frame(t.jobs_exchange, "modem.pool", b"a"), _frame(f"{t.ns}.missing", "k", b"b")]
    out = await publish_frames(ch, frames, 30)  # the broker closes the channel: 404
    assert all(isinstance(o, Exception) for o in out[1:])
    assert not any(isinstance(o, TimeoutError) for o in out)
    # The publisher reopens a channel for the next publish.
    assert await pub.publish_many([Outgoing(t.jobs_exchange, "modem.pool", job("n"))]) == [None]
    await pub.close()


async def test_a_closed_or_unconfirmed_channel_is_refused(amqp: AmqpConnection):
    plain = await (await amqp.channel(confirms=False)).get_underlay_channel()
    try:
        await publish_frames(plain, [_frame("", "q", b"a")], 1)
    except ValueError as exc:
        assert "confirms" in str(exc)
    else:
        raise AssertionError("a channel without confirms was accepted")
    pub = Publisher(amqp)
    ch = await _underlay(pub)
    await ch.close()
    try:
        await publish_frames(ch, [_frame("", "q", b"a")], 1)
    except aiormq.exceptions.ChannelInvalidStateError:
        pass
    else:
        raise AssertionError("a closed channel was accepted")
    await pub.close()


def _pamqp(m: Frame, channel: int, frame_max: int) -> bytes:
    """The same message as pamqp (and aiormq's own publish) encodes it."""
    frames: list[object] = [
        Basic.Publish(exchange=m.exchange, routing_key=m.routing_key, mandatory=True),
        ContentHeader(properties=m.properties, body_size=len(m.body)),
    ]
    frames += [ContentBody(m.body[i : i + frame_max]) for i in range(0, len(m.body), frame_max)]
    return b"".join(marshal(f, channel) for f in frames)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "props",
    [
        {},
        {"content_type": "application/json", "delivery_mode": 2, "message_id": "m-1"},
        {"delivery_mode": 1, "correlation_id": "c", "reply_to": "amq.rabbitmq.reply-to"},
        {"expiration": "1500", "message_id": "ж" * 20, "content_type": ""},
        {"headers": {"x-attempt": 3, "x-reason": "retry"}, "message_id": "h"},  # via pamqp
        {"priority": 5, "timestamp": datetime(2026, 12, 4, 12, 0, tzinfo=UTC), "app_id": "a"},
    ],
)
@pytest.mark.parametrize("size", [0, 1, 100, 4088, 4089, 10_000])
def test_frames_are_encoded_as_pamqp_encodes_them(props: dict, size: int, monkeypatch):
    m = Frame(
        "ns.jobs",
        "modem.pool" * 3,
        bytes(range(256)) * (size // 256) + b"x" * (size % 256),
        Basic.Properties(**props),
    )
    fell_back = []
    real = frames.marshal
    monkeypatch.setattr(frames, "marshal", lambda *a: fell_back.append(1) or real(*a))
    for channel in (1, 7, 65535):
        assert encode(m, channel, 4088) == _pamqp(m, channel, 4088)
    # Headers, priority, timestamps, app_id go through pamqp; the rest is encoded here.
    assert bool(fell_back) == bool({"headers", "priority"} & props.keys())


def test_a_name_too_long_for_amqp_is_refused_before_anything_is_sent():
    with pytest.raises(ValueError, match="255"):
        encode(Frame("x" * 256, "k", b"", Basic.Properties()), 1, 4088)
    with pytest.raises(ValueError, match="255"):
        encode(Frame("", "k", b"", Basic.Properties(message_id="é" * 128)), 1, 4088)
