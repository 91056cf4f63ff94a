"""The adaptive token bucket: per-PDU cost, halving on throttle, gradual recovery."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from smsgw_smpp import throttle
from smsgw_smpp.throttle import AdaptiveRate


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    c = FakeClock()
    monkeypatch.setattr(throttle, "time", SimpleNamespace(monotonic=c.monotonic))
    return c


def test_halves_then_recovers_to_the_configured_rate(clock: FakeClock) -> None:
    rate = AdaptiveRate(100)
    rate.throttled()
    assert rate.rate == 50 and rate.is_throttled
    rate.throttled()  # same burst (within 200 ms): not a second halving
    assert rate.rate == 50
    seen = []
    for _ in range(6):
        clock.now += 1
        rate._recover(clock.now)
        seen.append(rate.rate)
    assert seen == sorted(seen) and seen[0] == 75  # climbs, never jumps back at once
    assert rate.rate == 100 and not rate.is_throttled


def test_unlimited_bind_learns_a_rate_and_returns_to_unlimited(clock: FakeClock) -> None:
    rate = AdaptiveRate(0)
    rate._count(400, clock.now)
    clock.now += 0.5
    rate.throttled()
    assert 100 <= rate.rate <= 200 and rate.is_throttled
    for _ in range(30):
        clock.now += 1
        rate._recover(clock.now)
    assert rate.rate == 0 and not rate.is_throttled


async def test_acquire_costs_one_token_per_pdu() -> None:
    rate = AdaptiveRate(200)
    t0 = time.monotonic()
    for _ in range(20):
        await rate.acquire(5)  # a 5-part message costs 5
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.3  # 100 PDUs at 200/s, minus a burst of 21
    unlimited = AdaptiveRate(0)
    for _ in range(1000):
        # Never waits: the coroutine finishes without once suspending.
        step = unlimited.acquire()
        with pytest.raises(StopIteration):
            step.send(None)
