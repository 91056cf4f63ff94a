"""Retry delays: exponential, capped, with jitter, so a fleet of processes that lost the same
broker, store or SMSC does not come back at it in lock step.

`Backoff` hands out the delays of one retry loop (`next()`, `reset()` after a success);
`pause()` sleeps one of them, or less when a stop event is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable


def backoff_delay(
    attempt: int,
    first: float,
    cap: float,
    jitter: float = 0.5,
    rand: Callable[[], float] = random.random,
) -> float:
    """The delay before retry number `attempt` (0-based): `first`·2^attempt capped at `cap`,
    then shortened by up to `jitter` of itself (0.5: a delay in [d/2, d])."""
    base = min(cap, first * 2.0 ** min(attempt, 62))
    return base * (1.0 - jitter * rand())


class Backoff:
    """The delays of one retry loop: `next()` before each retry, `reset()` after a success."""

    def __init__(
        self,
        first: float,
        cap: float,
        jitter: float = 0.5,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if first <= 0 or cap < first:
            raise ValueError(f"need 0 < first <= cap, got first={first}, cap={cap}")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.first = first
        self.cap = cap
        self.jitter = jitter
        self.attempt = 0
        self._rand = rand

    def next(self) -> float:
        """The next delay; each call doubles the base until the cap."""
        delay = backoff_delay(self.attempt, self.first, self.cap, self.jitter, self._rand)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Start again from `first` (the operation worked)."""
        self.attempt = 0


async def pause(delay: float, stop: asyncio.Event | None = None) -> bool:
    """Sleep `delay` seconds, or until `stop` is set; True when it was stopped."""
    if stop is None:
        await asyncio.sleep(delay)
        return False
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)
    return stop.is_set()
