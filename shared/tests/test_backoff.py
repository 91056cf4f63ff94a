"""Retry delays: doubling from the first, capped, jittered downwards only; pause() stops early."""

from __future__ import annotations

import asyncio

import pytest

from smsgw_shared.backoff import Backoff, backoff_delay, pause


def test_doubles_up_to_the_cap_without_jitter() -> None:
    b = Backoff(0.5, 4.0, jitter=0.0)
    assert [b.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next() == 0.5


@pytest.mark.parametrize("r", [0.0, 0.25, 0.999])
def test_jitter_shortens_by_at_most_its_share(r: float) -> None:
    b = Backoff(1.0, 8.0, jitter=0.5, rand=lambda: r)
    got = [b.next() for _ in range(5)]
    bases = [1.0, 2.0, 4.0, 8.0, 8.0]
    assert got == [base * (1 - 0.5 * r) for base in bases]
    assert all(base / 2 < d <= base for d, base in zip(got, bases, strict=True))


def test_real_randomness_stays_in_bounds() -> None:
    for attempt in range(80):  # far past the cap: no overflow
        d = backoff_delay(attempt, 0.1, 30.0)
        assert min(30.0, 0.1 * 2**attempt) / 2 <= d <= min(30.0, 0.1 * 2**attempt)


def test_bad_arguments_are_refused() -> None:
    for first, cap, jitter in ((0.0, 1.0, 0.5), (2.0, 1.0, 0.5), (1.0, 2.0, 1.0)):
        with pytest.raises(ValueError):
            Backoff(first, cap, jitter)


async def test_pause_returns_early_when_stopped() -> None:
    stop = asyncio.Event()
    waiter = asyncio.create_task(pause(3600, stop))
    await asyncio.sleep(0)
    assert not waiter.done()
    stop.set()
    assert await asyncio.wait_for(waiter, 5) is True
    assert await pause(0, None) is False
    assert await pause(0, asyncio.Event()) is False
