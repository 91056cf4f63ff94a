"""The acker: one multiple ack for a finished prefix; finished deliveries behind one in hand
wait BEHIND_DELAY for the prefix, then go one by one (a fake channel records the frames)."""

from __future__ import annotations

import asyncio

from smsgw_shared.amqp.acks import BEHIND_DELAY, Acker


class FakeChannel:
    is_closed = False

    def __init__(self) -> None:
        self.acks: list[tuple[int, bool]] = []

    async def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.acks.append((tag, multiple))


async def _turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_finished_prefix_is_one_multiple_ack():
    ch, acker = FakeChannel(), Acker()
    for tag in range(1, 101):
        acker.track(ch, tag)
    for tag in range(1, 101):
        acker.done(ch, tag)
    await _turns()
    assert ch.acks == [(100, True)]


async def test_finished_behind_one_in_hand_wait_for_the_prefix_to_catch_up():
    ch, acker = FakeChannel(), Acker()
    for tag in range(1, 11):
        acker.track(ch, tag)
    for tag in range(2, 11):  # 1 is still in hand
        acker.done(ch, tag)
    await _turns()
    assert ch.acks == []  # nothing yet: 2..10 wait for 1
    acker.done(ch, 1)
    await _turns()
    assert ch.acks == [(10, True)]  # one frame for all ten
    await asyncio.sleep(BEHIND_DELAY * 2)
    assert ch.acks == [(10, True)]  # and no late single acks


async def test_behind_a_slow_one_they_are_acked_one_by_one_after_the_delay():
    ch, acker = FakeChannel(), Acker()
    for tag in range(1, 5):
        acker.track(ch, tag)
    for tag in (2, 3, 4):
        acker.done(ch, tag)
    await asyncio.sleep(BEHIND_DELAY * 3)
    assert sorted(ch.acks) == [(2, False), (3, False), (4, False)]  # 1 still holds nobody
    acker.forget(ch, 1)  # e.g. nacked
    await _turns()
    assert sorted(ch.acks) == [(2, False), (3, False), (4, False)]


async def test_drain_sends_the_waiting_ones_at_once():
    ch, acker = FakeChannel(), Acker()
    for tag in range(1, 4):
        acker.track(ch, tag)
    acker.done(ch, 3)
    await asyncio.wait_for(acker.drain(), 1)
    assert ch.acks == [(3, False)]
    await asyncio.sleep(BEHIND_DELAY * 2)
    assert ch.acks == [(3, False)]  # the cancelled late flush sends nothing twice
