"""Packed status events without a broker: `unpack` (plain, packed, malformed) and the
Packer on a fake publisher (what it joins, splits and reports). The broker side is in
`test_packing`."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

import pytest

from smsgw_shared.amqp import Outgoing, Packer, PublishError
from smsgw_shared.amqp.consumer import ATTEMPT_HEADER, REASON_HEADER
from smsgw_shared.amqp.packing import MAX_PACK, PACKED, unpack
from smsgw_shared.messages import SendJob, StatusEvent
from smsgw_shared.messages.base import PayloadError

GUARD_S = 30.0  # a generous bound on anything that should be quick: a hang fails, not blocks


def event(mid: str, state: str = "sent", **kw: object) -> StatusEvent:
    return StatusEvent.model_validate({"message_id": mid, "state": state, "route": "smpp:b1"} | kw)


async def _publish_together(packer: Packer, items: Sequence[Outgoing]) -> list[object]:
    """Publish concurrently (one loop turn); each caller's result or exception."""
    return await asyncio.wait_for(
        asyncio.gather(*(packer.publish(it) for it in items), return_exceptions=True), GUARD_S
    )


# -- unpack, no broker -------------------------------------------------------------------


def test_unpack_a_plain_message_gives_its_one_payload():
    e = event("m1")
    assert unpack(StatusEvent, e.to_bytes(), {}) == [e]
    # Other headers (retry attempt, reason) do not make it packed.
    assert unpack(StatusEvent, e.to_bytes(), {ATTEMPT_HEADER: 2, REASON_HEADER: "x"}) == [e]


def test_unpack_a_packed_message_gives_its_payloads_in_order():
    events = [event(f"m{i}", state="delivered" if i % 2 else "sent") for i in range(5)]
    body = b"[" + b",".join(e.to_bytes() for e in events) + b"]"
    assert unpack(StatusEvent, body, {PACKED: 5}) == events


def test_unpack_of_a_plain_message_does_not_accept_an_array():
    body = b"[" + event("m1").to_bytes() + b"]"
    with pytest.raises(PayloadError):
        unpack(StatusEvent, body, {})


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{not json", "packed StatusEvent"),
        (b"[", "packed StatusEvent"),
        (b"[]", "empty"),
        (b"[1, 2]", "packed StatusEvent: 0"),
        (b'[{"message_id": "x"}]', "packed StatusEvent: 0.state"),
        (event("single").to_bytes(), "packed StatusEvent"),  # an object, not an array
        (b"[" + event("m1").to_bytes() + b',{"state": "sent"}]', "packed StatusEvent: 1"),
        (b"[" + event("new", v=2).to_bytes() + b"]", "unsupported version 2 > 1"),
    ],
)
def test_unpack_refuses_a_malformed_pack(body: bytes, why: str):
    with pytest.raises(PayloadError, match=why):
        unpack(StatusEvent, body, {PACKED: 1})


def test_unpack_refuses_a_newer_plain_payload():
    with pytest.raises(PayloadError, match="unsupported version"):
        unpack(StatusEvent, event("new", v=2).to_bytes(), {})


# -- Packer on a fake publisher ----------------------------------------------------------


class FakePublisher:
    """Records what the Packer hands its publisher; can hold or fail the publishes."""

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []
        self.gate: asyncio.Event | None = None
        self.error: PublishError | None = None
        self.crash: Exception | None = None
        self.started = asyncio.Event()

    async def publish_many(self, items: Sequence[Outgoing]) -> list[PublishError | None]:
        self.sent.extend(items)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.crash is not None:
            raise self.crash
        return [self.error for _ in items]


def _fake_packer(fake: FakePublisher, **kw: int) -> Packer:
    return Packer(fake, **kw)  # type: ignore[arg-type]


def _payloads(sent: Sequence[Outgoing]) -> list[StatusEvent]:
    return [p for it in sent for p in unpack(StatusEvent, it.body(), it.headers)]


async def test_packer_joins_the_publishes_of_one_loop_turn():
    fake = FakePublisher()
    packer = _fake_packer(fake)
    events = [event(f"m{i}") for i in range(200)]
    results = await _publish_together(packer, [Outgoing("ev", "status.sent", e) for e in events])
    assert results == [None] * 200
    # One round of packs of at most MAX_PACK (50) payloads each, in order.
    assert [it.headers for it in fake.sent] == [{PACKED: MAX_PACK}] * (200 // MAX_PACK)
    assert _payloads(fake.sent) == events
    # A lone publish goes as a plain message: no header, the payload's own body.
    await asyncio.wait_for(packer.publish(Outgoing("ev", "status.sent", events[0])), GUARD_S)
    assert fake.sent[-1].headers == {} and fake.sent[-1].body() == events[0].to_bytes()
    await packer.close()


async def test_packer_packs_per_exchange_and_key_and_caps_a_pack():
    fake = FakePublisher()
    packer = _fake_packer(fake, max_items=30)
    items = [
        Outgoing(ex, key, event(f"{ex}-{key}-{i}"))
        for i in range(40)
        for ex, key in (("ev", "status.sent"), ("ev", "status.delivered"), ("other", "status.sent"))
    ]
    assert await _publish_together(packer, items) == [None] * 120
    assert sorted((it.exchange, it.routing_key, it.headers.get(PACKED)) for it in fake.sent) == [
        ("ev", "status.delivered", 10),
        ("ev", "status.delivered", 30),
        ("ev", "status.sent", 10),
        ("ev", "status.sent", 30),
        ("other", "status.sent", 10),
        ("other", "status.sent", 30),
    ]
    for it in fake.sent:  # nothing crossed into another key's pack
        prefix = f"{it.exchange}-{it.routing_key}-"
        assert all(str(p.message_id).startswith(prefix) for p in _payloads([it]))
    assert Counter(p.message_id for p in _payloads(fake.sent)) == Counter(
        it.payload.message_id for it in items if isinstance(it.payload, StatusEvent)
    )
    await packer.close()


async def test_publishes_arriving_while_packs_await_confirms_form_the_next_pack():
    fake = FakePublisher()
    fake.gate = asyncio.Event()
    packer = _fake_packer(fake, in_flight=2)
    first = asyncio.create_task(packer.publish(Outgoing("ev", "k", event("a"))))
    await asyncio.wait_for(fake.started.wait(), GUARD_S)
    fake.started.clear()
    second = asyncio.create_task(packer.publish(Outgoing("ev", "k", event("b"))))
    await asyncio.wait_for(fake.started.wait(), GUARD_S)
    # Two rounds in flight: these wait, gathering, then go as one pack.
    rest = [
        asyncio.create_task(packer.publish(Outgoing("ev", "k", event(f"c{i}")))) for i in range(50)
    ]
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(fake.sent) == 2
    assert not first.done() and not second.done()  # nobody returns before the confirm
    assert not any(t.done() for t in rest)
    fake.gate.set()
    await asyncio.wait_for(asyncio.gather(first, second, *rest), GUARD_S)
    assert [it.headers.get(PACKED) for it in fake.sent] == [None, None, 50]
    assert [p.message_id for p in _payloads(fake.sent)] == ["a", "b"] + [f"c{i}" for i in range(50)]
    await packer.close()


async def test_every_caller_of_a_failed_pack_gets_the_error():
    fake = FakePublisher()
    packer = _fake_packer(fake)
    fake.error = PublishError("nacked")
    results = await _publish_together(
        packer, [Outgoing("ev", "k", event(f"m{i}")) for i in range(20)]
    )
    assert len(fake.sent) == 1
    assert all(isinstance(r, PublishError) and "nacked" in str(r) for r in results), results
    # A publisher that raises instead of answering: still every caller hears of it.
    fake.error = None
    fake.crash = RuntimeError("channel exploded")
    results = await _publish_together(
        packer, [Outgoing("ev", "k", event(f"n{i}")) for i in range(20)]
    )
    assert all(isinstance(r, PublishError) and "exploded" in str(r) for r in results), results
    # And the Packer keeps working afterwards.
    fake.crash = None
    assert await _publish_together(packer, [Outgoing("ev", "k", event("x"))] * 3) == [None] * 3
    await packer.close()


async def test_a_packed_send_job_round_trips_through_unpack():
    """`unpack` works for any payload type, not only status events."""
    jobs = [
        SendJob(message_id=f"j{i}", to="+79160001234", text="hi", route="modem:*") for i in range(3)
    ]
    body = b"[" + b",".join(j.to_bytes() for j in jobs) + b"]"
    assert unpack(SendJob, body, {PACKED: 3}) == jobs
    with pytest.raises(PayloadError, match="packed SendJob"):
        unpack(SendJob, b"[" + event("m").to_bytes() + b"]", {PACKED: 1})
