"""Many confirmed publishes written as one frame buffer on an aiormq channel.

aiormq's `basic_publish` takes the channel lock, queues the message's frames and waits
for the socket to drain, once per message: under a busy event loop each publish costs a
few loop turns, and the API's dispatcher published ~3k jobs in 10 s while requests kept
the loop busy (the outbox grew by ~25k rows a second). Here a batch takes the lock once,
marshals every message's frames into one buffer, writes it with one drain, and waits for
the broker's confirms (several times less CPU a message; the README has the figures).

The frames are encoded here (AMQP 0-9-1 `basic.publish`, content header, body frames),
byte for byte as pamqp encodes them, for the properties the publisher sets; anything else
(headers, priority, timestamps...) is left to pamqp, whose general marshalling costs several
times more a message; `test_frames.py` compares both encodings.

The bookkeeping is aiormq's own (`delivery_tag`, `confirmations`, `message_id_delivery_tag`),
so its ack, nack and return handling applies unchanged; the code that drives that private
state is `aiormq_internals.py`, which names the aiormq versions it supports and is checked by
`shared/tests/amqp/test_internals.py`. On any other aiormq the messages are published with
aiormq's public `basic_publish` (`publish_one_by_one`): correct, slower.
`shared/tests/amqp/test_frames.py` covers the batch path; `test_internals.py` runs its tests
again on the public one.
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import aiormq
import aiormq.abc
from pamqp.commands import Basic
from pamqp.frame import marshal
from pamqp.header import ContentHeader

from smsgw_shared.amqp import aiormq_internals


@dataclass(frozen=True)
class Frame:
    """One message as frames want it."""

    exchange: str
    routing_key: str
    body: bytes
    properties: Basic.Properties


_FRAME_END = b"\xce"
_PUBLISH = struct.pack(">HHH", 60, 40, 0)  # basic.publish, reserved-1
_MANDATORY = b"\x01"
_HEADER = struct.Struct(">HHQH")  # class basic, weight 0, body size, property flags
_FRAME = struct.Struct(">BHI")  # type, channel, payload size
# The properties encoded here, in wire order, with their flag bits; all short strings but
# delivery_mode (one octet).
_SIMPLE = (
    ("content_type", 0x8000),
    ("delivery_mode", 0x1000),
    ("correlation_id", 0x0400),
    ("reply_to", 0x0200),
    ("expiration", 0x0100),
    ("message_id", 0x0080),
)
_OTHER = (
    *("content_encoding", "headers", "priority", "timestamp"),
    *("message_type", "user_id", "app_id", "cluster_id"),
)


def _shortstr(value: str) -> bytes:
    raw = value.encode()
    if len(raw) > 255:
        raise ValueError(f"AMQP short string longer than 255 bytes: {value[:40]!r}...")
    return bytes((len(raw),)) + raw


def _frame(kind: int, channel: int, payload: bytes) -> bytes:
    return _FRAME.pack(kind, channel, len(payload)) + payload + _FRAME_END


def _present(value: object) -> bool:
    """pamqp's rule: a property is sent unless it is None or an empty string (pamqp's own
    default for `cluster_id` is '')."""
    return value is not None and value != ""


def _header(props: Basic.Properties, size: int, channel: int) -> bytes:
    if any(_present(getattr(props, name)) for name in _OTHER):
        return marshal(ContentHeader(properties=props, body_size=size), channel)
    flags = 0
    parts = []
    for name, bit in _SIMPLE:
        value = getattr(props, name)
        if not _present(value):
            continue
        flags |= bit
        parts.append(bytes((value,)) if name == "delivery_mode" else _shortstr(value))
    return _frame(2, channel, _HEADER.pack(60, 0, size, flags) + b"".join(parts))


def encode(m: Frame, channel: int, frame_max: int) -> bytes:
    """One message's frames: `basic.publish` (mandatory), content header, body frames of
    at most `frame_max` bytes of body each."""
    method = _PUBLISH + _shortstr(m.exchange) + _shortstr(m.routing_key) + _MANDATORY
    out = [_frame(1, channel, method), _header(m.properties, len(m.body), channel)]
    body = m.body
    for i in range(0, len(body), frame_max):
        out.append(_frame(3, channel, body[i : i + frame_max]))
    return b"".join(out)


async def publish_frames(
    channel: aiormq.abc.AbstractChannel, messages: Sequence[Frame], timeout: float
) -> list[object]:
    """Publish `messages` (mandatory, confirms on); each one's outcome, in order: the
    broker's `Basic.Ack`, or the exception that failed it (a return, a nack, the channel's
    close, `TimeoutError` when no confirm came within `timeout` seconds)."""
    if not isinstance(channel, aiormq.Channel):  # the bookkeeping is this class's
        raise TypeError(f"not an aiormq channel: {channel!r}")
    if not channel.publisher_confirms:
        raise ValueError("publish_frames needs a channel with publisher confirms")
    if not messages:
        return []
    for m in messages:
        if not m.properties.message_id:  # a return is matched to its message by this id
            m.properties.message_id = uuid.uuid4().hex
    if not aiormq_internals.usable(channel):
        return await publish_one_by_one(channel, messages, timeout)
    number, frame_max = channel.number, channel.max_content_size
    payload = b"".join([encode(m, number, frame_max) for m in messages])  # may raise
    ids = [str(m.properties.message_id) for m in messages]
    return await aiormq_internals.publish_batch(channel, payload, ids, timeout)


async def publish_one_by_one(
    channel: aiormq.abc.AbstractChannel, messages: Sequence[Frame], timeout: float
) -> list[object]:
    """`publish_frames` through aiormq's public `basic_publish`, pipelined (the channel's
    lock keeps them in order): for an aiormq whose internals `aiormq_internals` does not
    support. Same outcomes, ~3x the CPU a message."""

    async def one(m: Frame) -> object:
        try:
            return await channel.basic_publish(
                m.body,
                exchange=m.exchange,
                routing_key=m.routing_key,
                properties=m.properties,
                mandatory=True,
                timeout=timeout,
            )
        except Exception as exc:
            return exc

    return list(await asyncio.gather(*(one(m) for m in messages)))
